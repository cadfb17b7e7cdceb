from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from thotbot.dashboard.forms import (
    FormInvalid,
    parse_new_key,
    parse_rename,
    parse_roll,
    parse_sign_in,
    parse_sign_up,
    safe_next,
)

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


class TestSignUp:
    def test_normalises_the_email(self) -> None:
        signup = parse_sign_up({"email": "  Ada@Example.ORG ", "password": "lamp orbit walrus tea"})

        assert signup.email == "ada@example.org"
        assert "lamp" not in repr(signup)

    def test_reports_every_field_at_once(self) -> None:
        with pytest.raises(FormInvalid) as exc_info:
            parse_sign_up({"email": "nope", "password": "short"})

        assert set(exc_info.value.errors) == {"email", "password"}
        assert exc_info.value.values == {"email": "nope"}

    def test_missing_fields(self) -> None:
        with pytest.raises(FormInvalid) as exc_info:
            parse_sign_up({})

        assert set(exc_info.value.errors) == {"email", "password"}


class TestSignIn:
    def test_needs_both_fields(self) -> None:
        with pytest.raises(FormInvalid) as exc_info:
            parse_sign_in({"email": "a@example.com"})

        assert exc_info.value.errors == {"password": "Enter your password."}


class TestNewKey:
    @pytest.mark.parametrize(
        ("expiry", "expected"),
        [
            ("30", NOW + timedelta(days=30)),
            ("90", NOW + timedelta(days=90)),
            ("365", NOW + timedelta(days=365)),
            ("never", None),
        ],
    )
    def test_expiry_choices(self, expiry: str, expected: datetime | None) -> None:
        wanted = parse_new_key({"name": "n", "expiry": expiry, "access": "full"}, NOW)

        assert wanted.expires_at == expected

    def test_date_means_the_end_of_that_day_utc(self) -> None:
        wanted = parse_new_key(
            {"name": "n", "expiry": "date", "expiry_date": "2026-03-11", "access": "full"}, NOW
        )

        assert wanted.expires_at == datetime(2026, 3, 12, tzinfo=UTC)

    @pytest.mark.parametrize("day", ["2026-03-10", "2026-03-09", "2040-01-01", "31/12/2026", ""])
    def test_bad_dates(self, day: str) -> None:
        with pytest.raises(FormInvalid) as exc_info:
            parse_new_key({"name": "n", "expiry": "date", "expiry_date": day, "access": "full"}, NOW)

        assert list(exc_info.value.errors) == ["expiry_date"]

    def test_name_is_tidied(self) -> None:
        wanted = parse_new_key({"name": "  billing \t server ", "expiry": "30", "access": "read_only"}, NOW)

        assert wanted.name == "billing server"
        assert wanted.read_only is True

    @pytest.mark.parametrize("name", ["", "   ", "x" * 101, "bad\x00name"])
    def test_bad_names(self, name: str) -> None:
        with pytest.raises(FormInvalid) as exc_info:
            parse_rename({"name": name})

        assert list(exc_info.value.errors) == ["name"]

    @pytest.mark.parametrize("name", ["ci thot_ak_0123abcd", "ci " + "0123456789abcdef" * 6, "thot%255Fak_1"])
    def test_a_name_holding_a_key_is_refused_without_echoing_it(self, name: str) -> None:
        # A name travels in mail and logs; a key pasted into it, in any encoding, must not.
        with pytest.raises(FormInvalid) as exc_info:
            parse_new_key({"name": name, "expiry": "30"}, NOW)

        assert "API key" in exc_info.value.errors["name"]
        assert name not in exc_info.value.errors["name"]

    def test_fields_that_are_files_count_as_missing(self) -> None:
        with pytest.raises(FormInvalid) as exc_info:
            parse_new_key({"name": object(), "expiry": "30", "access": "full"}, NOW)

        assert list(exc_info.value.errors) == ["name"]


@pytest.mark.parametrize(
    ("choice", "delay"),
    [
        ("now", timedelta(0)),
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
    ],
)
def test_roll_choices(choice: str, delay: timedelta) -> None:
    assert parse_roll({"old_expires": choice}) == delay


def test_roll_refuses_anything_else() -> None:
    with pytest.raises(FormInvalid):
        parse_roll({"old_expires": "forever"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/dashboard", "/dashboard"),
        ("/dashboard/api-keys/key_1", "/dashboard/api-keys/key_1"),
        ("/dashboardx", "/dashboardx"),
        ("https://evil.example/dashboard", None),
        ("//evil.example", None),
        ("/dashboard//evil.example", None),
        ("/dashboard\\x", None),
        ("/dashboard\nSet-Cookie: x", None),
        ("/login", None),
        (None, None),
        ("/dashboard" + "x" * 600, None),
    ],
)
def test_safe_next(value: object, expected: str | None) -> None:
    assert safe_next(value) == expected


@pytest.mark.parametrize(
    ("password", "reason"),
    [("welcome123", "common"), ("ada.lovelace!", "email"), ("lamp orbit walrus tea", None)],
)
def test_sign_up_says_why_a_password_is_weak(password: str, reason: str | None) -> None:
    form = {"email": "ada.lovelace@example.com", "password": password}
    if reason is None:
        parse_sign_up(form)
        return
    with pytest.raises(FormInvalid) as exc_info:
        parse_sign_up(form)

    message = exc_info.value.errors["password"]
    assert ("email address" in message) is (reason == "email")
