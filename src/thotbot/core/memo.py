"""Memo: a pure function's results by argument, for the flushes' conversions and the request path."""

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
    dozen nanoseconds. Only for pure functions. One made for a flush lives as long as the flush; one
    that lives as long as the process (on the request path) takes a ``limit``, and starts empty
    again when it holds that many results.
    """

    __slots__ = ("_function", "_limit")

    def __init__(self, function: Callable[[K], V], limit: int | None = None) -> None:
        super().__init__()
        self._function = function
        self._limit = limit

    def __missing__(self, key: K) -> V:
        if self._limit is not None and len(self) >= self._limit:
            self.clear()
        value = self[key] = self._function(key)
        return value
