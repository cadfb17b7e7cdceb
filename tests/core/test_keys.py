from __future__ import annotations

import hashlib
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import fake_key
from thotbot.auth.verifier import _bearer_token
from thotbot.core import keys
from thotbot.core.errors import AuthenticationError, MalformedAPIKey

PREFIX = "thot" + "_ak_"
HEX = "0123456789abcdef"


def test_generate_format() -> None:
    raw = keys.generate()

    assert re.fullmatch(r"thot_ak_[0-9a-f]{96}", raw)
    assert len(raw) == keys.KEY_LENGTH == 104


def test_generate_is_random() -> None:
    generated = {keys.generate() for _ in range(200)}

    assert len(generated) == 200
    # 384 bits: every hex digit appears in a few hundred keys (a constant or short source would not).
    assert set("".join(g[len(PREFIX) :] for g in generated)) == set(HEX)


def test_parse_roundtrip() -> None:
    raw = keys.generate()

    parsed = keys.parse(raw)

    assert parsed.digest == hashlib.sha256(raw.encode()).digest()
    assert parsed.digest == keys.hash_key(raw)
    assert parsed.hint == keys.hint(raw)


def test_parsed_key_repr_holds_no_secret() -> None:
    raw = keys.generate()

    parsed = keys.parse(raw)

    assert raw not in repr(parsed)
    assert parsed.digest.hex() not in repr(parsed)
    assert repr(parsed) == f"ParsedKey(hint={parsed.hint!r})"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param(PREFIX, id="prefix-only"),
        pytest.param(PREFIX + "a" * 95, id="short"),
        pytest.param(PREFIX + "a" * 97, id="long"),
        pytest.param(PREFIX + "A" * 96, id="uppercase-hex"),
        pytest.param(PREFIX.upper() + "a" * 96, id="uppercase-prefix"),
        pytest.param(PREFIX + "g" * 96, id="not-hex"),
        pytest.param("thot_sk_" + "a" * 96, id="other-prefix"),
        pytest.param("a" * 104, id="no-prefix"),
        pytest.param(" " + PREFIX + "a" * 95, id="leading-space"),
        pytest.param(PREFIX + "a" * 95 + "\n", id="trailing-newline"),
        pytest.param(PREFIX + "a" * 95 + "\x00", id="nul"),
        pytest.param(PREFIX + "٣" * 96, id="arabic-indic-digits"),
        pytest.param(PREFIX + "ａ" * 96, id="fullwidth"),
        pytest.param("sk_live_" + "a" * 96, id="stripe"),
        pytest.param("ghp_" + "a" * 36, id="github"),
        pytest.param("pypi-" + "a" * 99, id="pypi"),
        pytest.param(PREFIX + "a" * 200_000, id="200k"),
    ],
)
def test_parse_refuses(token: str) -> None:
    with pytest.raises(MalformedAPIKey) as exc_info:
        keys.parse(token)

    assert isinstance(exc_info.value, AuthenticationError)
    assert exc_info.value.code == "malformed_api_key"
    assert exc_info.value.status == 401
    assert exc_info.value.detail == MalformedAPIKey.default_detail


@given(st.text(max_size=300))
def test_parse_never_raises_anything_else_nor_echoes(token: str) -> None:
    if re.fullmatch(r"thot_ak_[0-9a-f]{96}", token):
        assert keys.parse(token).hint == keys.hint(token)
        return
    with pytest.raises(MalformedAPIKey) as exc_info:
        keys.parse(token)

    # The message is the same whatever was sent: it cannot echo any part of it.
    assert str(exc_info.value) == MalformedAPIKey.default_detail
    assert exc_info.value.detail == MalformedAPIKey.default_detail
    assert exc_info.value.extra == {}


@given(st.text(alphabet=HEX + "ABCDEFxyz_ ", min_size=96, max_size=96))
def test_parse_near_misses(body: str) -> None:
    token = PREFIX + body
    if set(body) <= set(HEX):
        assert keys.parse(token).hint == keys.hint(token)
        return
    with pytest.raises(MalformedAPIKey) as exc_info:
        keys.parse(token)

    assert body not in str(exc_info.value)


def test_hint() -> None:
    raw = PREFIX + "1234" + "0" * 88 + "abcd"

    assert keys.hint(raw) == PREFIX + "1234…abcd"


def test_hint_does_not_reveal_the_key() -> None:
    raw = keys.generate()

    hint = keys.hint(raw)

    assert hint.startswith(PREFIX)
    assert len(hint) == len(PREFIX) + 4 + 1 + 4
    assert raw not in hint


def test_hash_key_is_sha256_and_distinct() -> None:
    a, b = fake_key("a"), fake_key("b")

    assert keys.hash_key(a) == hashlib.sha256(a.encode()).digest()
    assert len(keys.hash_key(a)) == 32
    assert keys.hash_key(a) != keys.hash_key(b)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (PREFIX + "abc", True),
        (PREFIX.upper(), True),
        ("Thot_Ak_", True),
        ("token=" + PREFIX, True),
        ("thot_ak", False),
        ("thot-ak-", False),
        ("", False),
        ("q=thot", False),
        (string.printable, False),
    ],
)
def test_looks_like_key(value: str, expected: bool) -> None:
    assert keys.looks_like_key(value) is expected


_HEADER_PARTS = st.sampled_from(
    ["Bearer ", "bearer ", "Bearer  ", " Bearer ", "Basic ", "", "thot_ak_", "THOT_AK_", "x", " ", "\t"]
)


@given(
    before=_HEADER_PARTS,
    body=st.text(alphabet="0123456789abcdef", min_size=95, max_size=97),
    spoil=st.none() | st.tuples(st.integers(0, 96), st.sampled_from("ABCDEFgz_ \x00\xff")),
    after=st.sampled_from(["", " ", "\r", "0"]),
)
def test_the_bearer_shortcut_agrees_with_the_full_parse(
    before: str, body: str, spoil: tuple[int, str] | None, after: str
) -> None:
    if spoil is not None:
        at, char = spoil
        body = body[:at] + char + body[at + 1 :]
    value = f"{before}thot_ak_{body}{after}"
    raw = value.encode("latin-1")
    shortcut = keys.bearer_digest(raw)
    try:
        full: bytes | None = keys.digest(_bearer_token(raw, b""))
    except AuthenticationError:
        full = None
    if shortcut is not None:
        assert shortcut == full
    elif full is not None:
        # Declined, though a key: only a spelling clients do not send ("bearer", extra spaces).
        assert not value.startswith("Bearer thot_ak_") or value != value.strip() or "  " in value


def test_the_bearer_shortcut_takes_what_clients_send_and_nothing_else() -> None:
    key = fake_key()
    assert keys.bearer_digest(f"Bearer {key}".encode()) == keys.hash_key(key)
    for other in (
        f"bearer {key}",  # the scheme is case-insensitive: the full parse takes it
        f"Bearer  {key}",
        f"Bearer {key} ",
        f"Bearer {key.upper()}",
        f"Bearer {key[:-1]}",
        f"Bearer {key}0",
        f"Bearer {key[:-1]}g",
        f"Basic {key}",
    ):
        assert keys.bearer_digest(other.encode()) is None, other
    assert keys.bearer_digest(None) is None
