"""SQLFailingStore: what the report of failing integrations reads from the requests per key and hour
(``key_request_hours``, written in batches by the request log's flush), and each account's choice of
the daily mail about it.

Only keys with at least one failed request in the window are read in full: a window where every key
succeeds costs one indexed scan and no more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, or_, select, update

from thotbot.storage import KeyRecord
from thotbot.storage.db import SessionFactory
from thotbot.storage.keys import to_record
from thotbot.storage.models import Account, APIKey, KeyRequestHour
from thotbot.storage.request_log import HourCount

__all__ = ["AgentSeen", "EndpointCount", "HourCount", "KeyOwner", "RequestWindow", "SQLFailingStore"]

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class EndpointCount:
    """A key's requests in the window to one endpoint with one outcome (code '' is a success)."""

    key_id: str
    endpoint: str
    code: str
    requests: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class AgentSeen:
    """A User-Agent a key sent in the window (as the hour rows kept it: the last one of each hour)."""

    key_id: str
    user_agent: str | None
    requests: int
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class KeyOwner:
    account_email: str
    key: KeyRecord


@dataclass(frozen=True, slots=True)
class RequestWindow:
    """The requests of every key that failed at least once in the window, with its owner."""

    since: datetime
    until: datetime
    counts: tuple[EndpointCount, ...] = ()
    agents: tuple[AgentSeen, ...] = ()
    owners: dict[str, KeyOwner] = field(default_factory=dict)


class SQLFailingStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def window(self, since: datetime, until: datetime) -> RequestWindow:
        hours = KeyRequestHour
        in_window = (hours.hour >= since, hours.hour < until)
        with self._sessions() as session:
            failing = sorted(
                session.scalars(select(hours.key_id).where(*in_window, hours.code != "").distinct())
            )
            counts: list[EndpointCount] = []
            agents: list[AgentSeen] = []
            owners: dict[str, KeyOwner] = {}
            for start in range(0, len(failing), _CHUNK):
                chunk = failing[start : start + _CHUNK]
                for row in session.execute(
                    select(
                        hours.key_id,
                        hours.endpoint,
                        hours.code,
                        func.sum(hours.requests),
                        func.min(hours.first_seen),
                        func.max(hours.last_seen),
                    )
                    .where(*in_window, hours.key_id.in_(chunk))
                    .group_by(hours.key_id, hours.endpoint, hours.code)
                ):
                    key_id, endpoint, code, requests, first, last = row
                    counts.append(EndpointCount(key_id, endpoint, code, int(requests), first, last))
                for key_id, agent, requests, last in session.execute(
                    select(
                        hours.key_id, hours.user_agent, func.sum(hours.requests), func.max(hours.last_seen)
                    )
                    .where(*in_window, hours.key_id.in_(chunk))
                    .group_by(hours.key_id, hours.user_agent)
                ):
                    agents.append(AgentSeen(key_id, agent, int(requests), last))
                for key, email, disabled_at in session.execute(
                    select(APIKey, Account.email, Account.disabled_at)
                    .join(Account, Account.id == APIKey.account_id)
                    .where(APIKey.id.in_(chunk))
                ):
                    owners[key.id] = KeyOwner(email, to_record(key, account_disabled=disabled_at is not None))
        return RequestWindow(since, until, tuple(counts), tuple(agents), owners)

    def integration_mail(self, account_id: str) -> bool:
        with self._sessions() as session:
            return bool(session.scalar(select(Account.integration_mail).where(Account.id == account_id)))

    def set_integration_mail(self, account_id: str, on: bool) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(
                update(Account).where(Account.id == account_id).values(integration_mail=on)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def claim_integration_mail(self, account_id: str, day: date) -> bool:
        """Whether this caller is the one to mail ``account_id`` about ``day``: one conditional
        UPDATE, so of any number of instances trying at once exactly one is told yes, and none
        when the account turned the mail off or was mailed about that day (or a later one)."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Account)
                .where(
                    Account.id == account_id,
                    Account.integration_mail.is_(True),
                    or_(Account.integration_mail_sent_on.is_(None), Account.integration_mail_sent_on < day),
                )
                .values(integration_mail_sent_on=day)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]
