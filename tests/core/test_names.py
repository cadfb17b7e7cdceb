"""One rule for a key's name on the API, the dashboard and the CLI (thotbot.core.names)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from thotbot.api.bodies import required_name
from thotbot.core.errors import ValidationFailed
from thotbot.core.names import NAME_PATTERN, key_name_problem, tidy_key_name
from thotbot.dashboard.forms import FormInvalid, parse_new_key

KEY = "thot_ak_" + "ab" * 48
REFUSED = [
    "",
    "   ",
    "x" * 101,
    "bad\x00name",
    "unit\x1fsep",
    "del\x7f",
    "c1\x85",
    "rtl\u202eevil",
    "bom\ufeff",
    "line\u2028sep",
    f"leaked {KEY}",
]
ACCEPTED = ["billing server", "nightly-sync/3.1", "Zahlungsdienst Köln", "支払い", "x" * 100]


@pytest.mark.parametrize("name", REFUSED)
def test_every_surface_refuses_the_same_names(name: str) -> None:
    assert key_name_problem(tidy_key_name(name)) is not None
    with pytest.raises(ValidationFailed):
        required_name({"name": name}, "name", max_length=100)
    with pytest.raises(FormInvalid):
        parse_new_key({"name": name, "expiry": "30", "access": "full"}, datetime.now(UTC))


@pytest.mark.parametrize("name", ACCEPTED)
def test_every_surface_accepts_the_same_names(name: str) -> None:
    assert key_name_problem(name) is None
    assert re.fullmatch(NAME_PATTERN, name)
    assert required_name({"name": name}, "name", max_length=100) == name
    assert parse_new_key({"name": name, "expiry": "30", "access": "full"}, datetime.now(UTC)).name == name


def test_typed_spaces_are_tidied_but_nothing_else() -> None:
    assert tidy_key_name("  billing \t server\r\n") == "billing server"
    assert tidy_key_name("a\x1fb") == "a\x1fb"
    assert tidy_key_name("\x85c1\x85") == "\x85c1\x85"
