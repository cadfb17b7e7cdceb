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


def test_a_limited_memo_starts_empty_again_when_full() -> None:
    calls: list[int] = []

    def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    memo: Memo[int, int] = Memo(double, limit=3)
    assert [memo[n] for n in [1, 2, 3, 1]] == [2, 4, 6, 2]
    assert calls == [1, 2, 3]
    assert memo[4] == 8  # the fourth distinct argument: the three before are forgotten
    assert len(memo) == 1
    assert memo[1] == 2
    assert calls == [1, 2, 3, 4, 1]
