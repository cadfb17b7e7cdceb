"""The built-in common-password check, applied to every password being chosen."""

from __future__ import annotations

import pytest

from thotbot.core.common_passwords import is_common_password


@pytest.mark.parametrize(
    ("password", "email", "common"),
    [
        ("password", None, True),
        ("Password123!", None, True),
        ("!!qwertyuiop2024", None, True),
        ("correct horse battery staple", None, True),
        ("aaaaaaaaaaaa", None, True),
        ("abababababab", None, True),
        ("jane.doe1990", "jane.doe@example.com", True),
        ("janedoe!", "jane.doe@example.com", True),
        ("lamp orbit walrus tea", None, False),
        ("Tr0ub4dor&3xyz", None, False),
        ("jane.doe is my friend", "jane.doe@example.com", False),
    ],
)
def test_common_passwords(password: str, email: str | None, common: bool) -> None:
    assert is_common_password(password, email) is common
