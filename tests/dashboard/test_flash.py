from __future__ import annotations

import pytest

from thotbot.dashboard.flash import MAX_MESSAGE, read_flash, sign_flash

KEY = bytes(range(32))


def test_a_signed_flash_reads_back() -> None:
    assert read_flash(KEY, sign_flash(KEY, "Your address is now “ann@example.com”.")) == (
        "Your address is now “ann@example.com”."
    )


def test_long_messages_are_cut() -> None:
    assert read_flash(KEY, sign_flash(KEY, "x" * 5000)) == "x" * MAX_MESSAGE


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "no-dot",
        "SGk.",
        sign_flash(bytes(32), "signed with another key"),
        sign_flash(KEY, "original").replace("b3JpZ2luYWw", "Zm9yZ2Vk"),
        "é.é",
        "!!!.!!!",
        "A" * 5000,
    ],
)
def test_anything_not_signed_by_us_is_ignored(value: str | None) -> None:
    assert read_flash(KEY, value) is None
