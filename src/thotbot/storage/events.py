"""The security log: who did what to an account, when, from where."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from thotbot.redaction import redact, redact_cut
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import SecurityEvent, utcnow

__all__ = ["SQLSecurityLog", "SecurityEventRecord"]


@dataclass(frozen=True, slots=True)
class SecurityEventRecord:
    id: int
    account_id: str | None
    action: str
    actor: str
    key_id: str | None
    detail: str
    ip_address: str | None
    user_agent: str | None
    created_at: datetime


class SQLSecurityLog:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def record(
        self,
        account_id: str | None,
        action: str,
        *,
        actor: str,
        key_id: str | None = None,
        detail: str = "",
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        with self._sessions.begin() as session:
            session.add(
                SecurityEvent(
                    account_id=account_id,
                    action=action,
                    # Every text a client could have put key material in, in any encoding.
                    actor=redact(actor),
                    key_id=key_id,
                    detail=redact(detail),
                    ip_address=ip_address,
                    user_agent=redact_cut(user_agent, 512) if user_agent else None,
                    created_at=utcnow(),
                )
            )

    def list_for_account(self, account_id: str, limit: int = 100) -> list[SecurityEventRecord]:
        with self._sessions() as session:
            rows = session.scalars(
                select(SecurityEvent)
                .where(SecurityEvent.account_id == account_id)
                .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())
                .limit(limit)
            )
            return [
                SecurityEventRecord(
                    id=r.id,
                    account_id=r.account_id,
                    action=r.action,
                    actor=r.actor,
                    key_id=r.key_id,
                    detail=r.detail,
                    ip_address=r.ip_address,
                    user_agent=r.user_agent,
                    created_at=r.created_at,
                )
                for r in rows
            ]
