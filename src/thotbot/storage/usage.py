"""SQLUsageStore: requests per key and day, each key's User-Agents, hashed client addresses, in SQL.

Writes are batched upserts (``INSERT ... ON CONFLICT DO UPDATE``, on SQLite and PostgreSQL alike) that
add counts, so every instance flushes into the same rows and a retried batch is simply added later.
On SQLite each table's rows go as executemany of 500 rows, converted a column at a time
(``_DriverRows``); on PostgreSQL as one constant
statement a table and 5,000 rows, its columns sent as arrays (``INSERT ... SELECT * FROM unnest(...)``,
``UPDATE ... FROM unnest(...)``): one plan, and psycopg converts each column once, where one row a
statement cost seconds of a worker thread with 50,000 keys in use (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, TextClause, bindparam, case, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from thotbot.core.dates import utcnow
from thotbot.core.memo import Memo
from thotbot.core.useragents import ParsedUserAgent, UAClass, clean, parse
from thotbot.storage import KeyRecord, KeyUsage
from thotbot.storage.db import SessionFactory
from thotbot.storage.keys import to_record
from thotbot.storage.models import (
    Account,
    APIKey,
    Base,
    UsageAgent,
    UsageClient,
    UsageDay,
    UsageSalt,
)
from thotbot.storage.pacing import pace, stepped

__all__ = [
    "AgentCount",
    "AgentUsage",
    "ClientCount",
    "DayCount",
    "KeyAgents",
    "KeyUsageSummary",
    "SQLUsageStore",
    "UsageBatch",
    "add_agent",
    "in_key_order",
    "merge_agents",
]

_CHUNK = 500
#: Rows a statement on PostgreSQL, where a chunk is one statement with one array a column.
_PG_CHUNK = 5_000

# PostgreSQL: the same few statements every flush, whatever its size. A conflict key may appear once
# in one INSERT ("ON CONFLICT DO UPDATE command cannot affect row a second time"): rows are merged
# first. Every batch is sorted, so two instances lock rows in one order: they wait, never deadlock.
# (Each INSERT takes its rows in the order of its arrays.)
_PG_KNOWN_KEYS = text("SELECT id FROM api_keys WHERE id = ANY(CAST(:ids AS varchar[]))")
_PG_DAYS = text(
    "INSERT INTO usage_days (key_id, day, requests, unitemised)"
    " SELECT * FROM unnest(CAST(:key_id AS varchar[]), CAST(:day AS date[]),"
    " CAST(:requests AS bigint[]), CAST(:unitemised AS bigint[]))"
    " ON CONFLICT (key_id, day) DO UPDATE SET requests = usage_days.requests + excluded.requests,"
    " unitemised = usage_days.unitemised + excluded.unitemised"
)
_PG_AGENTS = text(
    "INSERT INTO usage_agents (key_id, user_agent, app, version, contact, ua_class, first_seen, last_seen,"
    " requests)"
    " SELECT * FROM unnest(CAST(:key_id AS varchar[]), CAST(:user_agent AS varchar[]),"
    " CAST(:app AS varchar[]), CAST(:version AS varchar[]), CAST(:contact AS varchar[]),"
    " CAST(:ua_class AS varchar[]), CAST(:first_seen AS timestamptz[]), CAST(:last_seen AS timestamptz[]),"
    " CAST(:requests AS bigint[]))"
    " ON CONFLICT (key_id, user_agent) DO UPDATE SET requests = usage_agents.requests + excluded.requests,"
    " first_seen = LEAST(usage_agents.first_seen, excluded.first_seen),"
    " last_seen = GREATEST(usage_agents.last_seen, excluded.last_seen),"
    " app = excluded.app, version = excluded.version, contact = excluded.contact,"
    " ua_class = excluded.ua_class"
)
_PG_CLIENTS = text(
    "INSERT INTO usage_clients (key_id, day, client_hash, requests)"
    " SELECT * FROM unnest(CAST(:key_id AS varchar[]), CAST(:day AS date[]),"
    " CAST(:client_hash AS bytea[]), CAST(:requests AS bigint[]))"
    " ON CONFLICT (key_id, day, client_hash) DO UPDATE"
    " SET requests = usage_clients.requests + excluded.requests"
)
# The keys' rows locked in the order of their ids first (the sort under FOR NO KEY UPDATE), then
# updated: the join of the update alone takes them in whatever order its plan reads them.
_PG_LAST_USED = text(
    "UPDATE api_keys SET last_used_at = s.at, last_user_agent = s.ua"
    " FROM (SELECT k.id, u.at, u.ua FROM api_keys AS k"
    " JOIN unnest(CAST(:id AS varchar[]), CAST(:at AS timestamptz[]), CAST(:ua AS varchar[]))"
    " AS u(id, at, ua) ON k.id = u.id ORDER BY k.id FOR NO KEY UPDATE OF k) AS s"
    " WHERE api_keys.id = s.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < s.at)"
)


@dataclass(frozen=True, slots=True)
class DayCount:
    key_id: str
    day: date
    requests: int
    unitemised: int = 0


@dataclass(frozen=True, slots=True)
class AgentCount:
    key_id: str
    user_agent: str | None
    first_seen: datetime
    last_seen: datetime
    requests: int


@dataclass(frozen=True, slots=True)
class ClientCount:
    key_id: str
    day: date
    client_hash: bytes
    requests: int


@dataclass(frozen=True, slots=True)
class UsageBatch:
    days: Sequence[DayCount] = ()
    agents: Sequence[AgentCount] = ()
    clients: Sequence[ClientCount] = ()
    last_used: Mapping[str, KeyUsage] = field(default_factory=dict)

    def key_ids(self) -> set[str]:
        ids = set(self.last_used)
        for rows in (self.days, self.agents, self.clients):
            ids.update(row.key_id for row in rows)
        return ids


@dataclass(frozen=True, slots=True)
class AgentUsage:
    user_agent: str | None
    app: str | None
    version: str | None
    contact: str | None
    ua_class: UAClass
    first_seen: datetime
    last_seen: datetime
    requests: int


@dataclass(frozen=True, slots=True)
class KeyAgents:
    """One key's User-Agents, busiest first, with its account's address to write to."""

    account_email: str
    key: KeyRecord
    agents: tuple[AgentUsage, ...]
    unitemised: int = 0

    @property
    def requests(self) -> int:
        return sum(agent.requests for agent in self.agents) + self.unitemised


@dataclass(frozen=True, slots=True)
class KeyUsageSummary:
    """One key's usage, for its page: requests per day, and its busiest User-Agents."""

    daily: dict[date, int]
    #: Busiest first, at most as many as asked for.
    agents: tuple[AgentUsage, ...]
    #: Every distinct User-Agent kept for the key, and their requests, shown or not.
    agent_count: int = 0
    agent_requests: int = 0
    #: Requests counted only in the daily totals, their User-Agent being over the in-memory cap.
    unitemised: int = 0


class SQLUsageStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def write(self, batch: UsageBatch) -> None:
        """Add a batch in one transaction; rows of keys that no longer exist are dropped."""
        with self._sessions.begin() as session:
            known = _existing_keys(session, batch.key_ids())
            self._upsert_days(session, [r for r in batch.days if r.key_id in known])
            self._upsert_agents(session, [r for r in batch.agents if r.key_id in known])
            self._upsert_clients(session, [r for r in batch.clients if r.key_id in known])
            self._update_last_used(session, {k: v for k, v in batch.last_used.items() if k in known})

    def ensure_salts(self, days: Iterable[date]) -> dict[date, bytes]:
        """Return the salt of each day, creating those missing; every instance gets the same ones."""
        wanted = sorted(set(days))
        table = _table(UsageSalt)
        with self._sessions.begin() as session:
            stmt = _insert(session, table).on_conflict_do_nothing(index_elements=["day"])
            rows = [{"day": d, "salt": secrets.token_bytes(32), "created_at": utcnow()} for d in wanted]
            session.connection().execute(stmt, rows)
            found = session.execute(select(UsageSalt.day, UsageSalt.salt).where(UsageSalt.day.in_(wanted)))
            return {day: bytes(salt) for day, salt in found}

    def prune(self, keep_since: date, salts_since: date) -> int:
        """Delete aggregates from before ``keep_since`` and salts from before ``salts_since``."""
        cutoff = datetime.combine(keep_since, time(), UTC)
        with self._sessions.begin() as session:
            deleted = 0
            for stmt in (
                delete(UsageDay).where(UsageDay.day < keep_since),
                delete(UsageClient).where(UsageClient.day < keep_since),
                delete(UsageAgent).where(UsageAgent.last_seen < cutoff),
                delete(UsageSalt).where(UsageSalt.day < salts_since),
            ):
                deleted += session.connection().execute(stmt).rowcount
            return deleted

    def daily(self, key_id: str, since: date) -> dict[date, int]:
        """Requests per UTC day from ``since`` on; days without requests are absent."""
        with self._sessions() as session:
            rows = session.execute(
                select(UsageDay.day, UsageDay.requests)
                .where(UsageDay.key_id == key_id, UsageDay.day >= since)
                .order_by(UsageDay.day)
            )
            return {day: requests for day, requests in rows}

    def agents(self, key_id: str) -> list[AgentUsage]:
        """A key's User-Agents, busiest first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(UsageAgent)
                .where(UsageAgent.key_id == key_id)
                .order_by(UsageAgent.requests.desc(), UsageAgent.user_agent)
            )
            return [_agent(row) for row in rows]

    def key_summary(self, key_id: str, since: date, *, max_agents: int = 50) -> KeyUsageSummary:
        """A key's requests per UTC day from ``since`` on, and its ``max_agents`` busiest User-Agents
        with the number and requests of all of them, in one session."""
        with self._sessions() as session:
            daily = {
                day: requests
                for day, requests in session.execute(
                    select(UsageDay.day, UsageDay.requests)
                    .where(UsageDay.key_id == key_id, UsageDay.day >= since)
                    .order_by(UsageDay.day)
                )
            }
            agents = session.scalars(
                select(UsageAgent)
                .where(UsageAgent.key_id == key_id)
                .order_by(UsageAgent.requests.desc(), UsageAgent.user_agent)
                .limit(max_agents)
            )
            shown = tuple(_agent(row) for row in agents)
            count, requests = session.execute(
                select(func.count(), func.coalesce(func.sum(UsageAgent.requests), 0)).where(
                    UsageAgent.key_id == key_id
                )
            ).one()
            unitemised = session.scalar(
                select(func.coalesce(func.sum(UsageDay.unitemised), 0)).where(UsageDay.key_id == key_id)
            )
        return KeyUsageSummary(daily, shown, int(count), int(requests), int(unitemised or 0))

    def distinct_clients(self, key_id: str, day: date) -> int:
        with self._sessions() as session:
            count = session.scalar(
                select(func.count()).where(UsageClient.key_id == key_id, UsageClient.day == day)
            )
            return count or 0

    def integrations(self) -> list[KeyAgents]:
        """Every key with recorded usage, with its account's email; busiest keys first."""
        owners: dict[str, tuple[str, KeyRecord]] = {}
        agents: dict[str, list[AgentUsage]] = {}
        with self._sessions() as session:
            rows = session.execute(
                select(UsageAgent, APIKey, Account.email)
                .join(APIKey, APIKey.id == UsageAgent.key_id)
                .join(Account, Account.id == APIKey.account_id)
            )
            for agent, key, email in rows:
                owners.setdefault(key.id, (email, to_record(key)))
                agents.setdefault(key.id, []).append(_agent(agent))
            unitemised = {
                key_id: int(total or 0)
                for key_id, total in session.execute(
                    select(UsageDay.key_id, func.sum(UsageDay.unitemised))
                    .where(UsageDay.unitemised > 0)
                    .group_by(UsageDay.key_id)
                )
            }
            missing = sorted(set(unitemised) - set(owners))
            if missing:
                for key, email in session.execute(
                    select(APIKey, Account.email)
                    .join(Account, Account.id == APIKey.account_id)
                    .where(APIKey.id.in_(missing))
                ):
                    owners[key.id] = (email, to_record(key))
        result = [
            KeyAgents(
                account_email=email,
                key=record,
                agents=tuple(sorted(agents.get(key_id, ()), key=lambda a: (-a.requests, a.user_agent or ""))),
                unitemised=unitemised.get(key_id, 0),
            )
            for key_id, (email, record) in owners.items()
        ]
        return sorted(result, key=lambda k: (-k.requests, k.account_email, k.key.id))

    @staticmethod
    def _upsert_days(session: Session, rows: list[DayCount]) -> None:
        if not rows:
            return
        merged: dict[tuple[str, date], tuple[int, int]] = {}  # (requests, unitemised)
        for r in stepped(rows):
            requests, unitemised = merged.get((r.key_id, r.day), (0, 0))
            merged[r.key_id, r.day] = (requests + r.requests, unitemised + r.unitemised)
        slots = in_key_order(merged)
        totals = [merged[slot] for slot in slots]
        if _postgresql(session):
            # zip(*rows) turns rows into columns in C.
            key_ids, days = zip(*slots, strict=True)
            request_counts, unitemised_counts = zip(*totals, strict=True)
            _execute_unnest(
                session.connection(),
                _PG_DAYS,
                {
                    "key_id": _texts(key_ids),
                    "day": _plain(days),
                    "requests": _plain(request_counts),
                    "unitemised": _plain(unitemised_counts),
                },
            )
            return
        table = _table(UsageDay)
        stmt = _insert(session, table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key_id", "day"],
            set_={
                "requests": table.c.requests + stmt.excluded.requests,
                "unitemised": table.c.unitemised + stmt.excluded.unitemised,
            },
        )
        params = [
            {"key_id": key_id, "day": day, "requests": requests, "unitemised": unitemised}
            for (key_id, day), (requests, unitemised) in zip(slots, totals, strict=True)
        ]
        _execute_chunked(session, stmt, params)

    @staticmethod
    def _upsert_agents(session: Session, rows: list[AgentCount]) -> None:
        if not rows:
            return
        # One row a key and cleaned User-Agent, parsed again on every write, so better rules apply
        # to the agents still in use.
        if _postgresql(session):
            # merge_agents' rows, as columns: no AgentUsage made for each row only to be taken apart.
            totals = _agent_totals(rows)
            slots = in_key_order(totals)
            key_ids, user_agents = zip(*slots, strict=True)
            first_seen, last_seen, requests = zip(*[totals[slot] for slot in slots], strict=True)
            parsed: Memo[str, ParsedUserAgent] = Memo(parse)
            found = [parsed[user_agent] for user_agent in user_agents]
            _execute_unnest(
                session.connection(),
                _PG_AGENTS,
                {
                    "key_id": _texts(key_ids),
                    "user_agent": _texts(user_agents),
                    "app": _texts([p.app for p in found]),
                    "version": _texts([p.version for p in found]),
                    "contact": _texts([p.contact for p in found]),
                    "ua_class": _texts([p.ua_class.value for p in found]),
                    "first_seen": _times(first_seen),
                    "last_seen": _times(last_seen),
                    "requests": _plain(requests),
                },
            )
            return
        ordered = in_key_order(merge_agents(rows).items(), key=itemgetter(0), key_id=_agent_key_id)
        table = _table(UsageAgent)
        stmt = _insert(session, table)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["key_id", "user_agent"],
            set_={
                "requests": table.c.requests + excluded.requests,
                "first_seen": case(
                    (table.c.first_seen <= excluded.first_seen, table.c.first_seen), else_=excluded.first_seen
                ),
                "last_seen": case(
                    (table.c.last_seen >= excluded.last_seen, table.c.last_seen), else_=excluded.last_seen
                ),
                # Parsed again on every write, so better rules apply to the agents still in use.
                "app": excluded.app,
                "version": excluded.version,
                "contact": excluded.contact,
                "ua_class": excluded.ua_class,
            },
        )
        params = [
            {
                "key_id": key_id,
                "user_agent": user_agent,
                "app": agent.app,
                "version": agent.version,
                "contact": agent.contact,
                "ua_class": agent.ua_class.value,
                "first_seen": agent.first_seen,
                "last_seen": agent.last_seen,
                "requests": agent.requests,
            }
            for (key_id, user_agent), agent in ordered
        ]
        _execute_chunked(session, stmt, params)

    @staticmethod
    def _upsert_clients(session: Session, rows: list[ClientCount]) -> None:
        if not rows:
            return
        merged: dict[tuple[str, date, bytes], int] = {}
        for r in stepped(rows):
            place = (r.key_id, r.day, r.client_hash)
            merged[place] = merged.get(place, 0) + r.requests
        slots = in_key_order(merged)
        if _postgresql(session):
            key_ids, days, hashes = zip(*slots, strict=True)
            _execute_unnest(
                session.connection(),
                _PG_CLIENTS,
                {
                    "key_id": _texts(key_ids),
                    "day": _plain(days),
                    "client_hash": _bytes(hashes),
                    "requests": _plain([merged[slot] for slot in slots]),
                },
            )
            return
        table = _table(UsageClient)
        stmt = _insert(session, table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key_id", "day", "client_hash"],
            set_={"requests": table.c.requests + stmt.excluded.requests},
        )
        params = [
            {
                "key_id": key_id,
                "day": day,
                "client_hash": client_hash,
                "requests": merged[key_id, day, client_hash],
            }
            for key_id, day, client_hash in slots
        ]
        _execute_chunked(session, stmt, params)

    @staticmethod
    def _update_last_used(session: Session, usage: Mapping[str, KeyUsage]) -> None:
        if not usage:
            return
        # Each key once: its id alone orders them.
        ordered = in_key_order(usage.items(), key=itemgetter(0))
        cleaned: dict[str | None, str | None] = {}
        for _, use in stepped(ordered):
            if use.user_agent not in cleaned:
                cleaned[use.user_agent] = clean(use.user_agent)
        if _postgresql(session):
            # Only forward: an older use a late batch carries leaves the newer one in place.
            _execute_unnest(
                session.connection(),
                _PG_LAST_USED,
                {
                    "id": _texts([key_id for key_id, _ in ordered]),
                    "at": _times([use.last_used_at for _, use in ordered]),
                    "ua": _texts([cleaned[use.user_agent] for _, use in ordered]),
                },
            )
            return
        table = _table(APIKey)
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .where(or_(table.c.last_used_at.is_(None), table.c.last_used_at < bindparam("b_at")))
            .values(last_used_at=bindparam("b_at"), last_user_agent=bindparam("b_ua"))
        )
        params = [
            {"b_id": key_id, "b_at": use.last_used_at, "b_ua": cleaned[use.user_agent]}
            for key_id, use in ordered
        ]
        _execute_chunked(session, stmt, params)


T = TypeVar("T")
#: The characters of a key id that pick its bucket in in_key_order: "key_" and two hex digits.
KEY_PREFIX = 6
_cut_prefix = itemgetter(slice(0, KEY_PREFIX))


def in_key_order(
    items: Iterable[T],
    key: Callable[[T], Any] | None = None,
    key_id: Callable[[T], str] = itemgetter(0),  # type: ignore[assignment]
) -> list[T]:
    """``sorted(items, key=key)``, for items whose sort key starts with a key id (``key_id`` finds
    it: by default the first item of a tuple), as every writer orders its rows.

    ``sorted`` is one C call that holds the interpreter, and so the event loop, for all of it: 10
    to 30 ms for 50,000 rows under load. Here the rows go into buckets by the first KEY_PREFIX
    characters of their key id, a step at a time, and each bucket (a few hundred rows) is sorted on
    its own. Two strings whose prefixes differ are in the order of their prefixes, so the buckets
    taken in the order of their prefixes give exactly sorted()'s order, for the same CPU in all.
    """
    buckets: dict[str, list[T]] = {}
    for item in stepped(items):
        prefix = _cut_prefix(key_id(item))
        bucket = buckets.get(prefix)
        if bucket is None:
            buckets[prefix] = [item]
        else:
            bucket.append(item)
    ordered: list[T] = []
    for prefix in sorted(buckets):
        pace()
        ordered.extend(sorted(buckets[prefix], key=key))  # type: ignore[type-var, arg-type]
    return ordered


def merge_agents(rows: Iterable[AgentCount]) -> dict[tuple[str, str], AgentUsage]:
    """The rows by key and cleaned User-Agent ('' for none), their counts added, each parsed once."""
    # Thousands of keys send the same few User-Agents: each distinct one is parsed once.
    parsed: Memo[str, ParsedUserAgent] = Memo(parse)
    merged: dict[tuple[str, str], AgentUsage] = {}
    for (key_id, user_agent), (first_seen, last_seen, requests) in _agent_totals(rows).items():
        found = parsed[user_agent]
        merged[key_id, user_agent] = AgentUsage(
            user_agent=user_agent or None,
            app=found.app,
            version=found.version,
            contact=found.contact,
            ua_class=found.ua_class,
            first_seen=first_seen,
            last_seen=last_seen,
            requests=requests,
        )
    return merged


def _agent_totals(rows: Iterable[AgentCount]) -> dict[tuple[str, str], tuple[datetime, datetime, int]]:
    """``(first_seen, last_seen, requests)`` by key and cleaned User-Agent ('' for none): the
    earliest first and the latest last time, the requests added (as ``add_agent``)."""
    cleaned: Memo[str | None, str] = Memo(lambda user_agent: clean(user_agent) or "")
    totals: dict[tuple[str, str], tuple[datetime, datetime, int]] = {}
    for r in stepped(rows):
        slot = (r.key_id, cleaned[r.user_agent])
        seen = totals.get(slot)
        if seen is None:
            totals[slot] = (r.first_seen, r.last_seen, r.requests)
        else:
            totals[slot] = (min(seen[0], r.first_seen), max(seen[1], r.last_seen), seen[2] + r.requests)
    return totals


def add_agent(agent: AgentUsage, first_seen: datetime, last_seen: datetime, requests: int) -> AgentUsage:
    """``agent`` with more requests, seen from the earlier first time to the later last one."""
    return dataclasses.replace(
        agent,
        first_seen=min(agent.first_seen, first_seen),
        last_seen=max(agent.last_seen, last_seen),
        requests=agent.requests + requests,
    )


_Insert = sqlite.Insert | postgresql.Insert


def _existing_keys(session: Session, key_ids: set[str]) -> set[str]:
    """Which of these key ids still name a key: rows of deleted keys are dropped from a batch."""
    ordered = list(key_ids)  # in any order: a read takes no lock
    known: set[str] = set()
    if _postgresql(session):
        connection = session.connection()
        for start in range(0, len(ordered), _PG_CHUNK):
            pace()
            ids = _texts(ordered[start : start + _PG_CHUNK]).array(0, _PG_CHUNK)
            found = connection.execute(_PG_KNOWN_KEYS, {"ids": ids})
            known.update(found.scalars().all())
        return known
    for start in range(0, len(ordered), _CHUNK):
        pace()
        chunk = ordered[start : start + _CHUNK]
        known.update(session.scalars(select(APIKey.id).where(APIKey.id.in_(chunk))))
    return known


def _agent_key_id(item: tuple[tuple[str, str], AgentUsage]) -> str:
    return item[0][0]


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _insert(session: Session, table: Table) -> _Insert:
    if _postgresql(session):
        return postgresql.insert(table)
    return sqlite.insert(table)


def _execute_chunked(session: Session, stmt: Any, params: list[dict[str, Any]]) -> None:
    """``stmt`` over every row of ``params`` (one dict a row, the same keys in each), ``_CHUNK`` rows
    an executemany."""
    if not params:
        return
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        for start in range(0, len(params), _CHUNK):
            pace()
            connection.execute(stmt, params[start : start + _CHUNK])
        return
    driver = _DriverRows(connection.dialect, stmt, list(params[0]))
    for start in range(0, len(params), _CHUNK):
        pace()
        connection.exec_driver_sql(driver.text, driver.rows(params[start : start + _CHUNK]))


class _DriverRows:
    """A statement compiled once, and rows as the driver takes them (SQLite's ``?`` order).

    ``Connection.execute`` with a list of dicts builds and converts every row's parameters in
    Python, one bind at a time: more than half of a 50,000-key flush's CPU on SQLite, more than
    SQLite took to write the rows. Here each column goes through its type's bind processor for the
    dialect (the very conversion ``execute`` applies), each distinct value once, and the rows are
    zipped in C.
    """

    def __init__(self, dialect: Any, stmt: Any, keys: list[str]) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=keys)
        order = compiled.positiontup
        assert order is not None, "SQLite's paramstyle is positional"
        self.text: str = compiled.string
        self._order: list[str] = list(order)
        self._columns: list[tuple[str, Callable[[dict[str, Any]], Any], Memo[Any, Any] | None]] = []
        for name in dict.fromkeys(order):
            processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            self._columns.append((name, itemgetter(name), None if processor is None else Memo(processor)))

    def rows(self, params: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        columns: dict[str, list[Any]] = {}
        for name, pick, converted in self._columns:
            values = list(map(pick, params))
            columns[name] = values if converted is None else [converted[value] for value in values]
        return list(zip(*[columns[name] for name in self._order], strict=True))


class _Column:
    """One column of a PostgreSQL batch, each value already in PostgreSQL's array element syntax.

    The arrays are written here rather than by psycopg, whose list dumper (Python, element by
    element) cost more than half of a 50,000-key flush's CPU: joining preformatted elements costs
    a fifth of that, and the statement casts the text to its array type."""

    __slots__ = ("_elements",)

    def __init__(self, elements: list[str]) -> None:
        self._elements = elements

    def __len__(self) -> int:
        return len(self._elements)

    def array(self, start: int, stop: int) -> str:
        return "{" + ",".join(self._elements[start:stop]) + "}"


def _texts(values: Sequence[str | None]) -> _Column:
    # Every element quoted, so commas, braces, blanks and the word NULL are text like any other;
    # inside the quotes only the backslash and the double quote are escaped. Most columns repeat a
    # few values (User-Agents, endpoints, codes): each distinct one is quoted once.
    quoted: dict[str | None, str] = {None: "NULL"}
    elements = []
    for value in stepped(values):
        element = quoted.get(value)
        if element is None:
            assert value is not None
            element = quoted[value] = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elements.append(element)
    return _Column(elements)


def _plain(values: Sequence[int | date]) -> _Column:
    """Integers and dates: digits and dashes, nothing to quote; each distinct value written once
    (counts of 1, one or two days, a few statuses fill most columns)."""
    written: dict[int | date, str] = {}
    elements = []
    for value in stepped(values):
        element = written.get(value)
        if element is None:
            element = written[value] = value.isoformat() if isinstance(value, date) else str(int(value))
        elements.append(element)
    return _Column(elements)


#: "000" to "999": a microsecond count is written as two of them, quicker than formatting it.
_THREE_DIGITS = [f"{n:03d}" for n in range(1000)]


def _times(values: Sequence[datetime]) -> _Column:
    """Aware datetimes, in UTC, as UTCDateTime stores them (a naive one is an error there too).

    Exactly ``'"' + value.astimezone(UTC).isoformat() + '"'`` (tests/storage/test_pg_arrays.py),
    at a third of its cost: ``isoformat`` of an aware datetime costs microseconds, and a flush
    writes several times a request. The values of a flush fall in a few seconds, so the part up to
    the second is written once per second, and the microseconds (left out when 0, as isoformat
    does) appended from a table.
    """
    seconds: dict[tuple[int, int, int, int], str] = {}
    elements = []
    for value in stepped(values):
        if value.tzinfo is not UTC:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTCDateTime column")
            value = value.astimezone(UTC)
        second = (value.toordinal(), value.hour, value.minute, value.second)
        prefix = seconds.get(second)
        if prefix is None:
            # isoformat() of the whole second ends in "+00:00", its offset in UTC: cut off.
            prefix = seconds[second] = '"' + value.replace(microsecond=0).isoformat()[:-6]
        micro = value.microsecond
        if micro:
            elements.append(
                prefix + "." + _THREE_DIGITS[micro // 1000] + _THREE_DIGITS[micro % 1000] + '+00:00"'
            )
        else:
            elements.append(prefix + '+00:00"')
    return _Column(elements)


def _bytes(values: Sequence[bytes]) -> _Column:
    # bytea's hex input (\\x...), its backslash escaped inside the quoted element.
    return _Column(['"\\\\x' + v.hex() + '"' for v in stepped(values)])


def _execute_unnest(connection: Connection, stmt: TextClause, columns: dict[str, _Column]) -> None:
    """``stmt`` once every ``_PG_CHUNK`` rows, each column's values as one array parameter."""
    rows = len(next(iter(columns.values())))
    for start in range(0, rows, _PG_CHUNK):
        stop = start + _PG_CHUNK
        pace()
        connection.execute(stmt, {name: column.array(start, stop) for name, column in columns.items()})


def _agent(row: UsageAgent) -> AgentUsage:
    return AgentUsage(
        user_agent=row.user_agent or None,
        app=row.app,
        version=row.version,
        contact=row.contact,
        ua_class=UAClass(row.ua_class),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        requests=row.requests,
    )
