"""Refused calls to restricted endpoints, written to the account's security log, folded.

Whichever check refused the call (the guard: read-only key, revoked or expired key; the route:
no ``account:security`` grant), one line is written per attempt, and repeats of the
same refusal by the same key fold into one row with a count, so a flood cannot bury other events.
Only refusals write: the allowed path of ordinary calls gains no database write.
"""

from __future__ import annotations

from thotbot.storage import SecurityLog

__all__ = ["REFUSED", "RefusalLog", "refusal_detail"]

REFUSED = "restricted.refused"


def refusal_detail(method: str, path: str, code: str) -> str:
    # The path is percent-decoded: a NUL in it would make PostgreSQL refuse the row.
    return f"{method} {path} refused: {code}".replace("\x00", "\\x00")


class RefusalLog:
    def __init__(self, security_log: SecurityLog) -> None:
        self._log = security_log

    def record(
        self,
        account_id: str,
        key_id: str | None,
        method: str,
        path: str,
        code: str,
        *,
        ip_address: str | None,
        user_agent: str | None,
    ) -> None:
        """Blocking (one database write): call it through ``anyio.to_thread.run_sync``."""
        self._log.record(
            account_id,
            REFUSED,
            actor=f"api_key:{key_id}",
            key_id=key_id,
            detail=refusal_detail(method, path, code),
            ip_address=ip_address,
            user_agent=user_agent,
            fold=True,
        )
