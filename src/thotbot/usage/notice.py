"""The advisory header for requests with a missing or generic User-Agent: a hint, never a block."""

from __future__ import annotations

import functools

from thotbot.core.useragents import UAClass, classify

__all__ = ["DOCS_URL", "NOTICE_HEADER", "user_agent_notice"]

DOCS_URL = "https://thotbot.cc/docs/authentication#user-agent"
NOTICE_HEADER = (
    b"thotbot-notice",
    f'send a descriptive User-Agent, such as "your-app/1.0 (you@example.com)"; see {DOCS_URL}'.encode(),
)


def user_agent_notice(user_agent: str | None) -> tuple[bytes, bytes] | None:
    """The header to add to the response, or None when the User-Agent is descriptive enough."""
    return NOTICE_HEADER if _needs_notice(user_agent) else None


# Bounded: the guard cuts User-Agents to 512 bytes, so the cache holds at most about half a megabyte.
@functools.lru_cache(maxsize=1024)
def _needs_notice(user_agent: str | None) -> bool:
    return classify(user_agent) in (UAClass.GENERIC, UAClass.MISSING)
