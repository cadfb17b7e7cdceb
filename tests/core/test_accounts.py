from __future__ import annotations

import pytest

from thotbot.core.accounts import (
    MIN_PASSWORD_LENGTH,
    check_new_password,
    check_password_strength,
    hash_password,
    normalize_email,
    verify_password,
)
from thotbot.core.errors import ValidationFailed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("you@example.com", "you@example.com"),
        ("  You@Example.COM \n", "you@example.com"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
    ],
)
def test_normalize_email(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "you",
        "you@",
        "@example.com",
        "you@example",
        "you@@example.com",
        "you @example.com",
        "a@b.c" + "c" * 320,
        "you@exa\nmple.com",
        "you\x00@example.com",
        "you@example.com\x7f",
        "you\x1b[31m@example.com",
    ],
)
def test_normalize_email_refuses(raw: str) -> None:
    with pytest.raises(ValidationFailed) as exc_info:
        normalize_email(raw)

    assert exc_info.value.extra == {"field": "email"}
    assert exc_info.value.status == 422
    assert "@example.com" in exc_info.value.detail  # it shows what a valid address looks like


@pytest.mark.parametrize(
    "raw",
    [
        "you\x00@example.com",
        "you@example.com\x00",
        "\x00you@example.com",
        "you@example.com\x1f",
        "you@example.com\x0b",
        "you\x9b@example.com",
        "you@example.com\x7f",
    ],
)
def test_normalize_email_names_control_characters(raw: str) -> None:
    with pytest.raises(ValidationFailed) as exc_info:
        normalize_email(raw)

    assert "control characters" in exc_info.value.detail
    assert exc_info.value.extra == {"field": "email"}


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("a" * (MIN_PASSWORD_LENGTH - 1), False),
        ("a" * MIN_PASSWORD_LENGTH, True),
        ("a" * 1024, True),
        ("a" * 1025, False),
        ("", False),
    ],
)
def test_check_password_strength(password: str, ok: bool) -> None:
    if ok:
        check_password_strength(password)
        return
    with pytest.raises(ValidationFailed) as exc_info:
        check_password_strength(password)

    assert exc_info.value.extra == {"field": "password"}
    assert password not in exc_info.value.detail or not password


@pytest.mark.parametrize(
    ("password", "email", "reason"),
    [
        ("short", None, "at least 10 characters"),
        ("Password123!", None, "among the first ones attackers try"),
        ("aaaaaaaaaaaa", None, "among the first ones attackers try"),
        ("ada.lovelace!", "ada.lovelace@example.com", "made from your email address"),
    ],
)
def test_check_new_password_refuses(password: str, email: str | None, reason: str) -> None:
    with pytest.raises(ValidationFailed) as exc_info:
        check_new_password(password, email)

    assert reason in exc_info.value.detail
    assert exc_info.value.extra == {"field": "password"}
    assert password not in exc_info.value.detail


def test_check_new_password_accepts_a_long_unusual_one() -> None:
    check_new_password("lamp orbit walrus tea", "ada.lovelace@example.com")


def test_hash_and_verify_password() -> None:
    hashed = hash_password("correct horse battery staple")

    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse battery staple")
    assert not verify_password(hashed, "correct horse battery stapler")


def test_hashes_are_salted() -> None:
    assert hash_password("same password here") != hash_password("same password here")


@pytest.mark.parametrize("stored", [None, "", "not-a-hash", "$argon2id$v=19$m=1,t=1,p=1$bad$bad"])
def test_verify_password_without_a_usable_hash(stored: str | None) -> None:
    assert verify_password(stored, "whatever password") is False
