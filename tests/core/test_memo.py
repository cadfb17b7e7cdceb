"""Memo computes each distinct argument's result once, None among arguments and results."""

from __future__ import annotations

from thotbot.core.memo import Memo


def test_each_distinct_argument_is_computed_once() -> None:
    calls: list[str | None] = []

    def shout(text: str | None) -> str | None:
        calls.append(text)
        return None if text is None else text.upper()

    memo: Memo[str | None, str | None] = Memo(shout)
    assert [memo[t] for t in ["a", "b", "a", None, None, "b"]] == ["A", "B", "A", None, None, "B"]
    assert calls == ["a", "b", None]
