"""Memo: a pure function's results by argument, for the background flushes' conversions."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

__all__ = ["Memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(dict[K, V]):
    """``memo[x]`` is ``function(x)``, computed once for each distinct ``x``.

    A flush's rows name thousands of keys but a few User-Agents, paths, days and hours, and cleaning
    a User-Agent or making a datetime costs a microsecond or more where a dict lookup costs a few
    dozen nanoseconds. Only for pure functions; one lives as long as one flush.
    """

    __slots__ = ("_function",)

    def __init__(self, function: Callable[[K], V]) -> None:
        super().__init__()
        self._function = function

    def __missing__(self, key: K) -> V:
        value = self[key] = self._function(key)
        return value
