"""In-memory stores: dicts behind one lock, behaving as the SQL stores do (the conformance suite
in tests/storage/conformance/ holds both to it). For pure tests and quick experiments: nothing
outlives the process, and nothing is shared with another one.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from thotbot.core.accounts import normalize_email
from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, NotFound
from thotbot.core.redaction import redact, redact_cut
from thotbot.core.reminders import Reminder, passed_reminders
from thotbot.core.revocation import RevokedReason
from thotbot.core.useragents import clean
from thotbot.storage import AccountRecord, EntryFor, KeyChange, KeyRecord, LogEntry
from thotbot.storage.account_tokens import AccountLink, Purpose
from thotbot.storage.email_changes import (
    AppliedEmailChange,
    EmailChangeTokenInvalid,
    PendingEmailChange,
    hash_token,
)
from thotbot.storage.expiry_reminders import ReminderCandidate
from thotbot.storage.failing import AgentSeen, EndpointCount, KeyOwner, RequestWindow
from thotbot.storage.keys import new_key
from thotbot.storage.passkeys import ChallengeRecord, PasskeyRecord, new_passkey_id
from thotbot.storage.quotas import Quota, quota_bucket
from thotbot.storage.rate_windows import WindowHits, WindowId
from thotbot.storage.request_log import KEEP_PER_KEY, ErrorGroup, HourCount, RequestEntry, RequestLogBatch
from thotbot.storage.security_log import (
    FOLD_WINDOW,
    Cursor,
    LogPage,
    SecurityEventRecord,
    page_of,
    stored_entry,
)
from thotbot.storage.throttle import Attempt, ThrottleRules
from thotbot.storage.usage import AgentUsage, KeyAgents, KeyUsageSummary, UsageBatch, add_agent, merge_agents
from thotbot.storage.users import new_account_id
from thotbot.storage.web_sessions import SessionPolicy, SessionRecord, new_session_id
from thotbot.storage.web_sessions import hash_token as hash_session_token

__all__ = [
    "MemoryAccountTokenStore",
    "MemoryChallengeStore",
    "MemoryDatabase",
    "MemoryEmailChangeStore",
    "MemoryExpiryReminderStore",
    "MemoryFailingStore",
    "MemoryKeyStore",
    "MemoryPasskeyStore",
    "MemoryQuotaStore",
    "MemoryRateWindowStore",
    "MemoryRequestLog",
    "MemorySecurityLog",
    "MemorySignInThrottle",
    "MemoryUsageStore",
    "MemoryUserStore",
    "MemoryWebSecretStore",
    "MemoryWebSessionStore",
]

_MAX_UA = 512


@dataclass
class _Bucket:
    """A sign-in throttle bucket's counts (storage/throttle.py BucketRow)."""

    bucket: str
    failures: int
    last_failure_at: datetime
    blocked_until: datetime | None


@dataclass(frozen=True, slots=True)
class _EmailChange:
    account_id: str
    new_email: str
    created_at: datetime
    expires_at: datetime


class MemoryDatabase:
    """What a session factory is to the SQL stores: the tables the memory stores share, and one
    lock that each operation holds from start to end, so that no two interleave. An operation
    checks before it changes anything, so one that raises has changed nothing (as a rolled-back
    transaction), but where the SQL store, too, spends a token and then refuses."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.accounts: dict[str, AccountRecord] = {}
        self.password_hashes: dict[str, str | None] = {}
        #: Each key as a KeyRecord of a live account (``account_disabled`` is read from the account).
        self.keys: dict[str, KeyRecord] = {}
        #: Key ids by the SHA-256 of the key.
        self.key_hashes: dict[bytes, str] = {}
        #: (number, key id) of each change to a key, oldest first; kept when the key goes (as in SQL).
        self.key_changes: list[tuple[int, str]] = []
        self._key_change_numbers = itertools.count(1)
        self.security_events: dict[int, SecurityEventRecord] = {}
        self._event_ids = itertools.count(1)
        self.web_sessions: dict[str, SessionRecord] = {}
        #: The SHA-256 of each session's cookie value, by session id.
        self.session_tokens: dict[str, bytes] = {}
        #: (session id, form token) spent.
        self.form_tokens: set[tuple[str, str]] = set()
        self.throttle: dict[str, _Bucket] = {}
        self.passkeys: dict[str, PasskeyRecord] = {}
        self.challenges: dict[str, ChallengeRecord] = {}
        self.email_changes: dict[bytes, _EmailChange] = {}
        self.account_tokens: dict[bytes, AccountLink] = {}
        #: hits and the start of the window, by bucket.
        self.quotas: dict[str, tuple[int, datetime]] = {}
        self.web_secrets: dict[str, bytes] = {}
        #: (hits, end of the window) by bucket and window start.
        self.rate_windows: dict[WindowId, tuple[int, int]] = {}
        #: (requests, unitemised) by key and day.
        self.usage_days: dict[tuple[str, date], tuple[int, int]] = {}
        #: By key and cleaned User-Agent ('' for none).
        self.usage_agents: dict[tuple[str, str], AgentUsage] = {}
        #: Requests by key, day and hashed client address.
        self.usage_clients: dict[tuple[str, date, bytes], int] = {}
        self.usage_salts: dict[date, bytes] = {}
        #: When each key's expiry reminder ("7d", "1d") was claimed, by (key id, reminder).
        self.expiry_reminders: dict[tuple[str, str], datetime] = {}
        #: Each key's recent requests, in the order written (ids as in SQL: a counter).
        self.key_requests: dict[int, RequestEntry] = {}
        self._request_ids = itertools.count(1)
        #: By key, hour, endpoint and code.
        self.key_request_hours: dict[tuple[str, datetime, str, str], HourCount] = {}

    @contextmanager
    def transaction(self) -> Iterator[MemoryDatabase]:
        with self._lock:
            yield self

    def add_event(self, record: SecurityEventRecord) -> SecurityEventRecord:
        event = dataclasses.replace(record, id=next(self._event_ids))
        self.security_events[event.id] = event
        return event

    def change_keys(
        self,
        changed: Iterable[KeyRecord],
        entries: Iterable[LogEntry] = (),
        *,
        added: Mapping[bytes, KeyRecord] | None = None,
    ) -> None:
        """Store the keys ``added`` (by the SHA-256 of each) and the keys as a change left them,
        each change numbered for the pollers, with the security-log entries of it all. Callers
        make the entries first: one that cannot be made changes nothing, as a rolled-back
        transaction."""
        events = [_event(entry, utcnow()) for entry in entries]
        for digest, record in (added or {}).items():
            self.keys[record.id] = record
            self.key_hashes[digest] = record.id
        for record in changed:
            self.keys[record.id] = record
            self.key_changes.append((next(self._key_change_numbers), record.id))
        for event in events:
            self.add_event(event)

    def delete_keys(self, key_ids: Iterable[str]) -> None:
        """Delete keys with their usage, as the SQL foreign keys cascade."""
        gone = set(key_ids) & self.keys.keys()
        for key_id in gone:
            del self.keys[key_id]
        self.expiry_reminders = {k: t for k, t in self.expiry_reminders.items() if k[0] not in gone}
        self.key_hashes = {h: k for h, k in self.key_hashes.items() if k not in gone}
        self.usage_days = {slot: n for slot, n in self.usage_days.items() if slot[0] not in gone}
        self.usage_agents = {slot: a for slot, a in self.usage_agents.items() if slot[0] not in gone}
        self.usage_clients = {slot: n for slot, n in self.usage_clients.items() if slot[0] not in gone}
        self.key_requests = {i: e for i, e in self.key_requests.items() if e.key_id not in gone}
        self.key_request_hours = {s: h for s, h in self.key_request_hours.items() if s[0] not in gone}

    def delete_sessions(self, session_ids: Iterable[str]) -> int:
        """End sessions, and forget the form tokens spent in them (the SQL foreign key cascades)."""
        ended = set(session_ids) & self.web_sessions.keys()
        for session_id in ended:
            del self.web_sessions[session_id], self.session_tokens[session_id]
        self.form_tokens = {spent for spent in self.form_tokens if spent[0] not in ended}
        return len(ended)

    def delete_accounts(self, account_ids: Iterable[str]) -> int:
        """Delete accounts with all they hold, as the SQL foreign keys cascade."""
        gone = set(account_ids) & self.accounts.keys()
        for account_id in gone:
            del self.accounts[account_id], self.password_hashes[account_id]
        self.delete_keys([k.id for k in self.keys.values() if k.account_id in gone])
        self.delete_sessions([s.id for s in self.web_sessions.values() if s.account_id in gone])
        self.security_events = {i: e for i, e in self.security_events.items() if e.account_id not in gone}
        self.passkeys = {i: p for i, p in self.passkeys.items() if p.account_id not in gone}
        self.challenges = {i: c for i, c in self.challenges.items() if c.account_id not in gone}
        self.email_changes = {h: c for h, c in self.email_changes.items() if c.account_id not in gone}
        self.account_tokens = {h: t for h, t in self.account_tokens.items() if t.account_id not in gone}
        return len(gone)


class MemoryUserStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def create(
        self, email: str, password_hash: str | None, *, is_admin: bool = False, verified: bool = True
    ) -> AccountRecord:
        email = normalize_email(email)
        now = utcnow()
        record = AccountRecord(
            id=new_account_id(),
            email=email,
            is_admin=is_admin,
            created_at=now,
            email_verified_at=now if verified else None,
        )
        with self.db.transaction() as db:
            if _account_by_email(db, email) is not None:
                raise Conflict("An account with this email address already exists.", field="email")
            db.accounts[record.id] = record
            db.password_hashes[record.id] = password_hash
        return record

    def find(self, account_id: str) -> AccountRecord | None:
        with self.db.transaction() as db:
            return db.accounts.get(account_id)

    def find_by_email(self, email: str) -> AccountRecord | None:
        with self.db.transaction() as db:
            return _account_by_email(db, email.strip().lower())

    def get_by_email(self, email: str) -> AccountRecord:
        record = self.find_by_email(email)
        if record is None:
            raise NotFound(f"No account with email {email.strip()!r}.")
        return record

    def password_hash(self, account_id: str) -> str | None:
        with self.db.transaction() as db:
            return db.password_hashes.get(account_id)

    def set_password_hash(self, account_id: str, password_hash: str) -> None:
        with self.db.transaction() as db:
            if account_id not in db.accounts:
                raise NotFound(f"No account with id {account_id!r}.")
            db.password_hashes[account_id] = password_hash

    def mark_verified(self, account_id: str, *, now: datetime | None = None) -> bool:
        with self.db.transaction() as db:
            account = db.accounts.get(account_id)
            if account is None or account.verified:
                return False
            db.accounts[account_id] = dataclasses.replace(account, email_verified_at=now or utcnow())
            return True

    def set_disabled(self, account_id: str, disabled: bool, *, now: datetime | None = None) -> bool:
        with self.db.transaction() as db:
            account = db.accounts.get(account_id)
            if account is None or account.disabled == disabled:
                return False
            disabled_at = (now or utcnow()) if disabled else None
            db.accounts[account_id] = dataclasses.replace(account, disabled_at=disabled_at)
            return True

    def delete_unverified(self, created_before: datetime) -> int:
        with self.db.transaction() as db:
            stale = [a.id for a in db.accounts.values() if not a.verified and a.created_at < created_before]
            return db.delete_accounts(stale)

    def count(self) -> int:
        with self.db.transaction() as db:
            return len(db.accounts)


def _account_by_email(db: MemoryDatabase, email: str) -> AccountRecord | None:
    return next((a for a in db.accounts.values() if a.email == email), None)


class MemoryKeyStore:
    """Each change and its security-log entry happen under the one lock, the entry only when
    something changed (KeyStore)."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def create(
        self,
        account_id: str,
        name: str,
        *,
        expires_at: datetime | None = None,
        read_only: bool = False,
        log: EntryFor | None = None,
    ) -> tuple[str, KeyRecord]:
        raw, digest, record = new_key(account_id, name, expires_at=expires_at, read_only=read_only)
        with self.db.transaction() as db:
            if account_id not in db.accounts:  # the SQL foreign key refuses it too
                raise NotFound(f"No account with id {account_id!r}.")
            db.change_keys([], _entries(log, [record]), added={digest: record})
        return raw, record

    def roll(
        self,
        key_id: str,
        *,
        expires_at: datetime | None,
        old_expires_at: datetime,
        log: Callable[[KeyRecord, KeyRecord], Sequence[LogEntry]] | None = None,
    ) -> tuple[str, KeyRecord, KeyRecord]:
        with self.db.transaction() as db:
            old = _key(db, key_id)
            raw, digest, new = new_key(
                old.account_id, old.name, expires_at=expires_at, read_only=old.read_only
            )
            # The operator's allowlist and limit follow the key: a roll must not shed them.
            new = dataclasses.replace(new, allowed_networks=old.allowed_networks, rate_limit=old.rate_limit)
            old = dataclasses.replace(old, expires_at=old_expires_at)
            entries = log(new, old) if log is not None else ()
            for reminder in Reminder:  # no expiry reminder for the key rolled, as in SQL
                db.expiry_reminders.setdefault((key_id, reminder.value), utcnow())
            db.change_keys([old], entries, added={digest: new})
        return raw, new, old

    def find_by_hash(self, digest: bytes) -> KeyRecord | None:
        with self.db.transaction() as db:
            key_id = db.key_hashes.get(digest)
            if key_id is None:
                return None
            record = db.keys[key_id]
            return dataclasses.replace(record, account_disabled=db.accounts[record.account_id].disabled)

    def find_by_hashes(self, digests: Sequence[bytes]) -> dict[bytes, KeyRecord]:
        found = {digest: self.find_by_hash(digest) for digest in digests}
        return {digest: record for digest, record in found.items() if record is not None}

    def find(self, key_id: str) -> KeyRecord | None:
        with self.db.transaction() as db:
            return db.keys.get(key_id)

    def get(self, key_id: str) -> KeyRecord:
        record = self.find(key_id)
        if record is None:
            raise NotFound(f"No API key with id {key_id!r}.")
        return record

    def list_for_account(self, account_id: str) -> list[KeyRecord]:
        with self.db.transaction() as db:
            # Newest made first, so that keys made in the same microsecond come newest first too.
            mine = [k for k in reversed(db.keys.values()) if k.account_id == account_id]
        return sorted(mine, key=lambda k: k.created_at, reverse=True)

    def revoke(
        self, key_id: str, *, reason: RevokedReason = RevokedReason.OWNER, log: EntryFor | None = None
    ) -> KeyChange:
        with self.db.transaction() as db:
            record = _key(db, key_id)
            if record.revoked_at is not None:
                return KeyChange(record, changed=False)
            record = dataclasses.replace(record, revoked_at=utcnow(), revoked_reason=reason)
            db.change_keys([record], _entries(log, [record]))
        return KeyChange(record, changed=True)

    def revoke_by_hashes(
        self, digests: Sequence[bytes], *, reason: RevokedReason, log: EntryFor | None = None
    ) -> list[KeyRecord]:
        now = utcnow()
        with self.db.transaction() as db:
            wanted = {db.key_hashes.get(digest) for digest in digests}
            revoked = [
                dataclasses.replace(k, revoked_at=now, revoked_reason=reason)
                for k in db.keys.values()
                if k.id in wanted and k.revoked_at is None
            ]
            db.change_keys(revoked, _entries(log, revoked))
        return revoked

    def grant(self, key_id: str, grant: str, *, log: EntryFor | None = None) -> KeyChange:
        return self._change(key_id, lambda r: dataclasses.replace(r, grants=r.grants | {grant}), log)

    def set_allowed_networks(
        self, key_id: str, networks: tuple[str, ...], *, log: EntryFor | None = None
    ) -> KeyChange:
        return self._change(key_id, lambda r: dataclasses.replace(r, allowed_networks=networks), log)

    def set_rate_limit(
        self, key_id: str, rate_limit: str | None, *, log: EntryFor | None = None
    ) -> KeyChange:
        return self._change(key_id, lambda r: dataclasses.replace(r, rate_limit=rate_limit), log)

    def _change(
        self, key_id: str, change: Callable[[KeyRecord], KeyRecord], log: EntryFor | None
    ) -> KeyChange:
        """A key changed (and logged, and numbered) only if ``change`` gives another record."""
        with self.db.transaction() as db:
            record = _key(db, key_id)
            changed = change(record)
            if changed == record:
                return KeyChange(record, changed=False)
            db.change_keys([changed], _entries(log, [changed]))
        return KeyChange(changed, changed=True)

    def rename(self, key_id: str, name: str, *, log: EntryFor | None = None) -> KeyChange:
        with self.db.transaction() as db:
            record = dataclasses.replace(_key(db, key_id), name=redact(name))
            db.change_keys([record], _entries(log, [record]))
        return KeyChange(record, changed=True)

    def set_expiry(
        self, key_id: str, expires_at: datetime | None, *, log: EntryFor | None = None
    ) -> KeyChange:
        with self.db.transaction() as db:
            record = dataclasses.replace(_key(db, key_id), expires_at=expires_at)
            now = utcnow()
            passed = passed_reminders(now, expires_at)
            for reminder in Reminder:
                if reminder in passed:
                    db.expiry_reminders[(key_id, reminder.value)] = now
                else:
                    db.expiry_reminders.pop((key_id, reminder.value), None)
            db.change_keys([record], _entries(log, [record]))
        return KeyChange(record, changed=True)

    def announce_account_change(self, account_id: str) -> list[str]:
        with self.db.transaction() as db:
            theirs = [k for k in db.keys.values() if k.account_id == account_id]
            db.change_keys(theirs)
        return [k.id for k in theirs]

    def changes_since(self, seq: int) -> tuple[int, list[str]]:
        with self.db.transaction() as db:
            later = [(number, key_id) for number, key_id in db.key_changes if number > seq]
            latest = db.key_changes[-1][0] if db.key_changes else 0
        return (later[-1][0] if later else min(seq, latest)), [key_id for _, key_id in later]

    def latest_change(self) -> int:
        with self.db.transaction() as db:
            return db.key_changes[-1][0] if db.key_changes else 0


def _key(db: MemoryDatabase, key_id: str) -> KeyRecord:
    found = db.keys.get(key_id)
    if found is None:
        raise NotFound(f"No API key with id {key_id!r}.")
    return found


def _entries(log: EntryFor | None, records: Iterable[KeyRecord]) -> list[LogEntry]:
    return [log(record) for record in records] if log is not None else []


class MemorySecurityLog:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

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
        fold: bool = False,
        now: datetime | None = None,
    ) -> None:
        entry = LogEntry(account_id, action, actor, key_id, detail, ip_address, user_agent)
        event = _event(entry, now or utcnow())
        with self.db.transaction() as db:
            first = _first_of_fold(db, event) if fold and account_id is not None else None
            if first is None:
                db.add_event(event)
                return
            db.security_events[first.id] = dataclasses.replace(
                first,
                count=first.count + 1,
                last_at=event.created_at,
                ip_address=event.ip_address,
                user_agent=event.user_agent,
            )

    def count_since(self, account_id: str, action: str, since: datetime) -> tuple[int, datetime | None]:
        times = sorted(
            e.created_at for e in self._events(account_id) if e.action == action and e.created_at > since
        )
        return len(times), (times[0] if times else None)

    def list_for_account(self, account_id: str, limit: int = 100) -> list[SecurityEventRecord]:
        return self.page(account_id, limit=limit).events

    def page(
        self,
        account_id: str,
        *,
        before: Cursor | None = None,
        after: Cursor | None = None,
        limit: int = 50,
    ) -> LogPage:
        rows = sorted(self._events(account_id), key=_place)
        if after is not None:
            rows = [e for e in rows if _place(e) > (after.created_at, after.id)]
        else:
            if before is not None:
                rows = [e for e in rows if _place(e) < (before.created_at, before.id)]
            rows.reverse()
        return page_of(rows[: limit + 1], limit=limit, before=before, after=after)

    def prune(self, keep_days: int, *, now: datetime | None = None) -> int:
        cutoff = (now or utcnow()) - timedelta(days=keep_days)
        with self.db.transaction() as db:
            old = [
                e.id
                for e in db.security_events.values()
                if e.created_at < cutoff and (e.last_at is None or e.last_at < cutoff)
            ]
            for event_id in old:
                del db.security_events[event_id]
            return len(old)

    def _events(self, account_id: str) -> list[SecurityEventRecord]:
        with self.db.transaction() as db:
            return [e for e in db.security_events.values() if e.account_id == account_id]


def _event(entry: LogEntry, now: datetime) -> SecurityEventRecord:
    """The event to keep for ``entry``, redacted by the SQL log's own rule (id 0: unnumbered)."""
    entry = stored_entry(entry)
    return SecurityEventRecord(
        id=0,
        account_id=entry.account_id,
        action=entry.action,
        actor=entry.actor,
        key_id=entry.key_id,
        detail=entry.detail,
        ip_address=entry.ip_address,
        user_agent=entry.user_agent,
        created_at=now,
    )


def _place(event: SecurityEventRecord) -> tuple[datetime, int]:
    return event.created_at, event.id


def _first_of_fold(db: MemoryDatabase, event: SecurityEventRecord) -> SecurityEventRecord | None:
    """The newest row of the same refusal within FOLD_WINDOW of ``event``, if there is one."""
    same = [
        e
        for e in db.security_events.values()
        if (e.account_id, e.action, e.actor, e.key_id, e.detail)
        == (event.account_id, event.action, event.actor, event.key_id, event.detail)
        and e.created_at > event.created_at - FOLD_WINDOW
    ]
    return max(same, key=_place, default=None)


class MemoryWebSessionStore:
    def __init__(self, db: MemoryDatabase, policy: SessionPolicy | None = None) -> None:
        self.db = db
        self.policy = policy or SessionPolicy()

    def create(
        self,
        account_id: str | None,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
        replaces: str | None = None,
        flash: str | None = None,
        passkey_id: str | None = None,
        now: datetime | None = None,
    ) -> tuple[str, SessionRecord]:
        now = now or utcnow()
        idle, absolute = self.policy.lifetimes(account_id)
        token = secrets.token_urlsafe(32)
        record = SessionRecord(
            id=new_session_id(),
            account_id=account_id,
            csrf_secret=secrets.token_hex(32),
            created_at=now,
            last_seen_at=now,
            authenticated_at=now if account_id is not None else None,
            idle_expires_at=now + min(idle, absolute),
            expires_at=now + absolute,
            ip_address=ip_address,
            user_agent=redact_cut(user_agent, _MAX_UA) if user_agent else None,
            flash=flash,
            passkey_id=passkey_id,
        )
        with self.db.transaction() as db:
            if replaces is not None:
                db.delete_sessions([replaces])
            db.web_sessions[record.id] = record
            db.session_tokens[record.id] = hash_session_token(token)
        return token, record

    def find_by_token(
        self,
        token: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> SessionRecord | None:
        if not token or len(token) > 128:
            return None
        now = now or utcnow()
        digest = hash_session_token(token)
        with self.db.transaction() as db:
            found = next((sid for sid, h in db.session_tokens.items() if h == digest), None)
            if found is None:
                return None
            record = db.web_sessions[found]
            if record.idle_expires_at <= now or record.expires_at <= now:
                db.delete_sessions([found])
                return None
            ua = redact_cut(user_agent, _MAX_UA) if user_agent else None
            moved = (record.ip_address, record.user_agent) != (ip_address, ua)
            if now - record.last_seen_at >= self.policy.touch_every or moved:
                idle, _ = self.policy.lifetimes(record.account_id)
                record = dataclasses.replace(
                    record,
                    last_seen_at=now,
                    idle_expires_at=min(now + idle, record.expires_at),
                    ip_address=ip_address,
                    user_agent=ua,
                )
                db.web_sessions[found] = record
            return record

    def find(self, session_id: str) -> SessionRecord | None:
        with self.db.transaction() as db:
            return db.web_sessions.get(session_id)

    def list_for_account(self, account_id: str, *, now: datetime | None = None) -> list[SessionRecord]:
        now = now or utcnow()
        with self.db.transaction() as db:
            live = [
                s for s in db.web_sessions.values() if s.account_id == account_id and s.idle_expires_at > now
            ]
        live.sort(key=lambda s: s.id)
        live.sort(key=lambda s: s.last_seen_at, reverse=True)
        return live

    def reauthenticate(self, session_id: str, *, now: datetime | None = None) -> None:
        with self.db.transaction() as db:
            found = db.web_sessions.get(session_id)
            if found is not None:
                db.web_sessions[session_id] = dataclasses.replace(found, authenticated_at=now or utcnow())

    def delete(self, session_id: str, *, account_id: str | None = None) -> bool:
        with self.db.transaction() as db:
            found = db.web_sessions.get(session_id)
            if found is None or (account_id is not None and found.account_id != account_id):
                return False
            return bool(db.delete_sessions([session_id]))

    def delete_for_account(self, account_id: str, *, keep: str | None = None) -> int:
        with self.db.transaction() as db:
            return db.delete_sessions(
                s.id for s in db.web_sessions.values() if s.account_id == account_id and s.id != keep
            )

    def delete_for_passkey(self, passkey_id: str, *, keep: str | None = None) -> int:
        with self.db.transaction() as db:
            kept = db.web_sessions.get(keep) if keep is not None else None
            if kept is not None and kept.passkey_id == passkey_id:
                db.web_sessions[kept.id] = dataclasses.replace(kept, passkey_id=None)
            return db.delete_sessions(s.id for s in db.web_sessions.values() if s.passkey_id == passkey_id)

    def set_flash(self, session_id: str, message: str) -> None:
        with self.db.transaction() as db:
            found = db.web_sessions.get(session_id)
            if found is not None:
                db.web_sessions[session_id] = dataclasses.replace(found, flash=message)

    def pop_flash(self, session_id: str) -> str | None:
        with self.db.transaction() as db:
            found = db.web_sessions.get(session_id)
            if found is None or found.flash is None:
                return None
            db.web_sessions[session_id] = dataclasses.replace(found, flash=None)
            return found.flash

    def spend_form_token(self, session_id: str, token: str, *, now: datetime | None = None) -> bool:
        if not token or len(token) > 64:
            return False
        with self.db.transaction() as db:
            if session_id not in db.web_sessions or (session_id, token) in db.form_tokens:
                return False
            db.form_tokens.add((session_id, token))
            return True

    def prune(self, *, now: datetime | None = None) -> int:
        now = now or utcnow()
        with self.db.transaction() as db:
            return db.delete_sessions(s.id for s in db.web_sessions.values() if s.idle_expires_at <= now)


class MemorySignInThrottle(ThrottleRules):
    """The rules and decisions are SQLSignInThrottle's own (ThrottleRules); only the keeping differs."""

    def __init__(self, db: MemoryDatabase) -> None:
        super().__init__()
        self.db = db

    def reserve(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> Attempt:
        now = now or utcnow()
        rules = self._rules(email, ip_address)
        with self.db.transaction() as db:
            return self._reserve(_buckets(db, rules, now), rules, email, now)

    def record_success(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> None:
        now = now or utcnow()
        rules = self._rules(email, ip_address)
        address = self._address_of(ip_address)
        with self.db.transaction() as db:
            for row in _buckets(db, rules, now):
                if row.bucket != address:
                    del db.throttle[row.bucket]
                elif row.failures > 0:
                    row.failures -= 1
                    if row.failures <= self.address_rule.free_failures:
                        row.blocked_until = None

    def forget_account(self, email: str) -> None:
        account, pairs = self._account_of(email)
        with self.db.transaction() as db:
            for bucket in [b for b in db.throttle if b == account or b.startswith(pairs)]:
                del db.throttle[bucket]

    def address_retry_after(self, ip_address: str | None, *, now: datetime | None = None) -> int:
        if not ip_address:
            return 0
        with self.db.transaction() as db:
            return self._retry_after(db.throttle.get(self._address_of(ip_address)), now or utcnow())

    def record_address_failure(self, ip_address: str | None, *, now: datetime | None = None) -> int:
        if not ip_address:
            return 0
        now = now or utcnow()
        with self.db.transaction() as db:
            [row] = _buckets(db, [self._address_of(ip_address)], now)
            return self._fail_address(row, now)

    def prune(self, *, now: datetime | None = None) -> int:
        now = now or utcnow()
        oldest = self._oldest_kept(now)
        with self.db.transaction() as db:
            old = [
                row.bucket
                for row in db.throttle.values()
                if row.last_failure_at < oldest and (row.blocked_until is None or row.blocked_until < now)
            ]
            for bucket in old:
                del db.throttle[bucket]
            return len(old)


def _buckets(db: MemoryDatabase, buckets: Iterable[str], now: datetime) -> list[_Bucket]:
    """The buckets' counts, created (at 0) where missing, as storage/throttle.py ``_locked``."""
    return [db.throttle.setdefault(b, _Bucket(b, 0, now, None)) for b in sorted(buckets)]


class MemoryPasskeyStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def add(
        self,
        account_id: str,
        *,
        credential_id: bytes,
        public_key: bytes,
        sign_count: int,
        name: str,
        transports: Sequence[str] = (),
        now: datetime | None = None,
    ) -> PasskeyRecord:
        record = PasskeyRecord(
            id=new_passkey_id(),
            account_id=account_id,
            credential_id=credential_id,
            public_key=public_key,
            sign_count=sign_count,
            # Kept space-separated in SQL: the same list comes back.
            transports=tuple(" ".join(transports).split()),
            name=name,
            created_at=now or utcnow(),
            last_used_at=None,
        )
        with self.db.transaction() as db:
            if any(p.credential_id == credential_id for p in db.passkeys.values()):
                raise Conflict("This passkey is registered already.", field="credential")
            db.passkeys[record.id] = record
        return record

    def list_for_account(self, account_id: str) -> list[PasskeyRecord]:
        with self.db.transaction() as db:
            mine = [p for p in db.passkeys.values() if p.account_id == account_id]
        return sorted(mine, key=lambda p: (p.created_at, p.id))

    def find(self, passkey_id: str, *, account_id: str) -> PasskeyRecord | None:
        with self.db.transaction() as db:
            found = db.passkeys.get(passkey_id)
        return found if found is not None and found.account_id == account_id else None

    def find_by_credential_id(self, credential_id: bytes) -> PasskeyRecord | None:
        with self.db.transaction() as db:
            return next((p for p in db.passkeys.values() if p.credential_id == credential_id), None)

    def rename(self, passkey_id: str, name: str, *, account_id: str) -> PasskeyRecord:
        with self.db.transaction() as db:
            record = dataclasses.replace(_own(db, passkey_id, account_id), name=name)
            db.passkeys[passkey_id] = record
            return record

    def remove(self, passkey_id: str, *, account_id: str) -> PasskeyRecord:
        with self.db.transaction() as db:
            record = _own(db, passkey_id, account_id)
            del db.passkeys[passkey_id]
            db.delete_sessions(s.id for s in db.web_sessions.values() if s.passkey_id == passkey_id)
            return record

    def record_use(self, passkey_id: str, sign_count: int, *, now: datetime | None = None) -> bool:
        with self.db.transaction() as db:
            found = db.passkeys.get(passkey_id)
            if found is None:
                return False
            # Authenticators without a counter always send 0; that is allowed only while both are 0.
            moves_on = found.sign_count == 0 if sign_count == 0 else found.sign_count < sign_count
            if moves_on:
                db.passkeys[passkey_id] = dataclasses.replace(
                    found, sign_count=sign_count, last_used_at=now or utcnow()
                )
            return moves_on


def _own(db: MemoryDatabase, passkey_id: str, account_id: str) -> PasskeyRecord:
    found = db.passkeys.get(passkey_id)
    if found is None or found.account_id != account_id:
        raise NotFound(f"You have no passkey with id {passkey_id!r}.")
    return found


class MemoryChallengeStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def create(
        self,
        purpose: str,
        challenge: bytes,
        *,
        account_id: str | None,
        lifetime: timedelta,
        now: datetime | None = None,
    ) -> ChallengeRecord:
        now = now or utcnow()
        record = ChallengeRecord(
            id=secrets.token_urlsafe(24),
            purpose=purpose,
            account_id=account_id,
            challenge=challenge,
            created_at=now,
            expires_at=now + lifetime,
        )
        with self.db.transaction() as db:
            for expired in [c.id for c in db.challenges.values() if c.expires_at <= now]:
                del db.challenges[expired]
            db.challenges[record.id] = record
        return record

    def take(self, challenge_id: str) -> ChallengeRecord | None:
        with self.db.transaction() as db:
            return db.challenges.pop(challenge_id, None)


class MemoryEmailChangeStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def create(
        self, account_id: str, new_email: str, *, lifetime: timedelta, now: datetime | None = None
    ) -> tuple[str, PendingEmailChange]:
        now = now or utcnow()
        token = secrets.token_urlsafe(32)
        change = _EmailChange(account_id, new_email, created_at=now, expires_at=now + lifetime)
        with self.db.transaction() as db:
            db.email_changes = {
                h: c for h, c in db.email_changes.items() if c.account_id != account_id and c.expires_at > now
            }
            db.email_changes[hash_token(token)] = change
        return token, PendingEmailChange(account_id, new_email, change.expires_at)

    def find_pending(self, account_id: str, *, now: datetime | None = None) -> PendingEmailChange | None:
        now = now or utcnow()
        with self.db.transaction() as db:
            live = [c for c in db.email_changes.values() if c.account_id == account_id and c.expires_at > now]
        newest = max(live, key=lambda c: c.created_at, default=None)
        return PendingEmailChange(account_id, newest.new_email, newest.expires_at) if newest else None

    def cancel(self, account_id: str, *, now: datetime | None = None) -> list[str]:
        now = now or utcnow()
        with self.db.transaction() as db:
            mine = {h: c for h, c in db.email_changes.items() if c.account_id == account_id}
            for digest in mine:
                del db.email_changes[digest]
        return [c.new_email for c in mine.values() if c.expires_at > now]

    def apply(
        self,
        token: str,
        *,
        actor: str,
        ip_address: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> AppliedEmailChange:
        if not token or len(token) > 128:
            raise EmailChangeTokenInvalid
        now = now or utcnow()
        with self.db.transaction() as db:
            # Spent whatever follows: expired, or the address taken meanwhile.
            change = db.email_changes.pop(hash_token(token), None)
            if change is None or change.expires_at <= now:
                raise EmailChangeTokenInvalid
            account = db.accounts[change.account_id]
            holder = _account_by_email(db, change.new_email)
            if holder is not None and holder.id != account.id:
                raise Conflict(
                    "Another account uses this email address now; the change was not made.", field="email"
                )
            db.accounts[account.id] = dataclasses.replace(account, email=change.new_email)
            db.add_event(
                SecurityEventRecord(
                    id=0,
                    account_id=account.id,
                    action="email.changed",
                    actor=actor,
                    key_id=None,
                    detail=f"email changed from {account.email} to {change.new_email}",
                    ip_address=ip_address,
                    user_agent=redact_cut(user_agent, _MAX_UA) if user_agent else None,
                    created_at=now,
                )
            )
        return AppliedEmailChange(account.id, account.email, change.new_email)


class MemoryAccountTokenStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def create(
        self, account_id: str, purpose: Purpose, *, lifetime: timedelta, now: datetime | None = None
    ) -> tuple[str, AccountLink]:
        now = now or utcnow()
        token = secrets.token_urlsafe(32)
        link = AccountLink(account_id, purpose, now + lifetime)
        with self.db.transaction() as db:
            db.account_tokens = {
                h: old
                for h, old in db.account_tokens.items()
                if (old.account_id, old.purpose) != (account_id, purpose) and old.expires_at > now
            }
            db.account_tokens[hash_token(token)] = link
        return token, link

    def find(self, token: str, purpose: Purpose, *, now: datetime | None = None) -> AccountLink | None:
        if not _plausible(token):
            return None
        with self.db.transaction() as db:
            link = db.account_tokens.get(hash_token(token))
        return link if link and link.purpose == purpose and link.expires_at > (now or utcnow()) else None

    def take(self, token: str, purpose: Purpose, *, now: datetime | None = None) -> AccountLink | None:
        if not _plausible(token):
            return None
        digest = hash_token(token)
        with self.db.transaction() as db:
            link = db.account_tokens.get(digest)
            if link is None or link.purpose != purpose:
                return None
            del db.account_tokens[digest]  # an expired one is spent all the same
        return link if link.expires_at > (now or utcnow()) else None

    def find_pending(
        self, account_id: str, purpose: Purpose, *, now: datetime | None = None
    ) -> datetime | None:
        now = now or utcnow()
        with self.db.transaction() as db:
            return next(
                (
                    link.expires_at
                    for link in db.account_tokens.values()
                    if (link.account_id, link.purpose) == (account_id, purpose) and link.expires_at > now
                ),
                None,
            )

    def cancel(self, account_id: str, purpose: Purpose) -> int:
        with self.db.transaction() as db:
            mine = [
                h
                for h, link in db.account_tokens.items()
                if (link.account_id, link.purpose) == (account_id, purpose)
            ]
            for digest in mine:
                del db.account_tokens[digest]
            return len(mine)


def _plausible(token: str) -> bool:
    return 0 < len(token) <= 128 and token.isascii()


class MemoryQuotaStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def hit(self, quota: Quota, value: str, *, now: datetime | None = None) -> int:
        now = now or utcnow()
        bucket = quota_bucket(quota.kind, value)
        with self.db.transaction() as db:
            found = db.quotas.get(bucket)
            if found is None or now - found[1] >= quota.window:
                db.quotas[bucket] = (1, now)
                return 0
            hits, started = found
            if hits >= quota.limit:
                return quota.retry_after(started, now)
            db.quotas[bucket] = (hits + 1, started)
            return 0

    def prune(self, older_than: timedelta, *, now: datetime | None = None) -> int:
        cutoff = (now or utcnow()) - older_than
        with self.db.transaction() as db:
            old = [bucket for bucket, (_, started) in db.quotas.items() if started < cutoff]
            for bucket in old:
                del db.quotas[bucket]
            return len(old)


class MemoryRateWindowStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def add(self, hits: Sequence[WindowHits], watch: Sequence[WindowId] = ()) -> dict[WindowId, int]:
        with self.db.transaction() as db:
            totals: dict[WindowId, int] = {}
            for bucket, start, expires_at, count in hits:
                total = db.rate_windows.get((bucket, start), (0, expires_at))[0] + count
                db.rate_windows[bucket, start] = (total, expires_at)
                totals[bucket, start] = total
            for window in watch:
                if window in db.rate_windows:
                    totals[window] = db.rate_windows[window][0]
            return totals

    def prune(self, ended_before: int) -> int:
        with self.db.transaction() as db:
            old = [window for window, (_, expires_at) in db.rate_windows.items() if expires_at < ended_before]
            for window in old:
                del db.rate_windows[window]
            return len(old)


class MemoryWebSecretStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def ensure(self, name: str) -> bytes:
        with self.db.transaction() as db:
            return db.web_secrets.setdefault(name, secrets.token_bytes(32))


class MemoryUsageStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def write(self, batch: UsageBatch) -> None:
        agents = merge_agents(batch.agents)  # parsed before the lock is taken
        with self.db.transaction() as db:
            known = batch.key_ids() & db.keys.keys()
            for row in batch.days:
                if row.key_id in known:
                    requests, unitemised = db.usage_days.get((row.key_id, row.day), (0, 0))
                    db.usage_days[row.key_id, row.day] = (
                        requests + row.requests,
                        unitemised + row.unitemised,
                    )
            for slot, agent in agents.items():
                seen = db.usage_agents.get(slot)
                if slot[0] in known:
                    db.usage_agents[slot] = (
                        add_agent(agent, seen.first_seen, seen.last_seen, seen.requests) if seen else agent
                    )
            for client in batch.clients:
                if client.key_id in known:
                    place = (client.key_id, client.day, client.client_hash)
                    db.usage_clients[place] = db.usage_clients.get(place, 0) + client.requests
            for key_id, use in batch.last_used.items():
                key = db.keys.get(key_id)
                if key is not None and (key.last_used_at is None or key.last_used_at < use.last_used_at):
                    db.keys[key_id] = dataclasses.replace(
                        key, last_used_at=use.last_used_at, last_user_agent=clean(use.user_agent)
                    )

    def ensure_salts(self, days: Iterable[date]) -> dict[date, bytes]:
        with self.db.transaction() as db:
            return {day: db.usage_salts.setdefault(day, secrets.token_bytes(32)) for day in sorted(set(days))}

    def prune(self, keep_since: date, salts_since: date) -> int:
        cutoff = datetime.combine(keep_since, time(), UTC)
        with self.db.transaction() as db:
            before = _usage_rows(db)
            db.usage_days = {slot: n for slot, n in db.usage_days.items() if slot[1] >= keep_since}
            db.usage_clients = {slot: n for slot, n in db.usage_clients.items() if slot[1] >= keep_since}
            db.usage_agents = {slot: a for slot, a in db.usage_agents.items() if a.last_seen >= cutoff}
            db.usage_salts = {day: salt for day, salt in db.usage_salts.items() if day >= salts_since}
            return before - _usage_rows(db)

    def daily(self, key_id: str, since: date) -> dict[date, int]:
        with self.db.transaction() as db:
            return _daily(db, key_id, since)

    def agents(self, key_id: str) -> list[AgentUsage]:
        with self.db.transaction() as db:
            return _busiest_first(a for (k, _), a in db.usage_agents.items() if k == key_id)

    def key_summary(self, key_id: str, since: date, *, max_agents: int = 50) -> KeyUsageSummary:
        with self.db.transaction() as db:
            daily = _daily(db, key_id, since)
            unitemised = sum(u for (k, _), (_, u) in db.usage_days.items() if k == key_id)
        agents = self.agents(key_id)
        return KeyUsageSummary(
            daily,
            tuple(agents[:max_agents]),
            agent_count=len(agents),
            agent_requests=sum(a.requests for a in agents),
            unitemised=unitemised,
        )

    def distinct_clients(self, key_id: str, day: date) -> int:
        with self.db.transaction() as db:
            return sum(1 for k, d, _ in db.usage_clients if (k, d) == (key_id, day))

    def integrations(self) -> list[KeyAgents]:
        with self.db.transaction() as db:
            agents: dict[str, list[AgentUsage]] = {}
            for (key_id, _), agent in db.usage_agents.items():
                agents.setdefault(key_id, []).append(agent)
            unitemised: dict[str, int] = {}
            for (key_id, _), (_, count) in db.usage_days.items():
                if count > 0:
                    unitemised[key_id] = unitemised.get(key_id, 0) + count
            report = [
                KeyAgents(
                    account_email=db.accounts[db.keys[key_id].account_id].email,
                    key=db.keys[key_id],
                    agents=tuple(_busiest_first(agents.get(key_id, ()))),
                    unitemised=unitemised.get(key_id, 0),
                )
                for key_id in agents.keys() | unitemised.keys()
            ]
        return sorted(report, key=lambda k: (-k.requests, k.account_email, k.key.id))


class MemoryRequestLog:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def write(self, batch: RequestLogBatch) -> None:
        with self.db.transaction() as db:
            known = batch.key_ids() & db.keys.keys()
            for entry in batch.requests:
                if entry.key_id in known:
                    db.key_requests[next(db._request_ids)] = entry
            for row in batch.hours:
                if row.key_id not in known:
                    continue
                seen = db.key_request_hours.get(row.slot)
                db.key_request_hours[row.slot] = row if seen is None else seen.plus(row)

    def recent(self, key_id: str, limit: int = KEEP_PER_KEY) -> list[RequestEntry]:
        with self.db.transaction() as db:
            return [e for _, e in _newest_requests(db, key_id)][: max(0, min(limit, KEEP_PER_KEY))]

    def errors(self, key_id: str, since: datetime) -> list[ErrorGroup]:
        start = since.replace(minute=0, second=0, microsecond=0)
        groups: dict[tuple[str, str], ErrorGroup] = {}
        with self.db.transaction() as db:
            for (k, hour, endpoint, code), row in db.key_request_hours.items():
                if k != key_id or hour < start or not code:
                    continue
                group = groups.get((endpoint, code)) or ErrorGroup(endpoint, code, 0, row.last_seen)
                groups[endpoint, code] = ErrorGroup(
                    endpoint, code, group.requests + row.requests, max(group.last_seen, row.last_seen)
                )
        return sorted(
            groups.values(), key=lambda g: (-g.requests, -g.last_seen.timestamp(), g.endpoint, g.code)
        )

    def trim(self, key_ids: Iterable[str], keep: int = KEEP_PER_KEY) -> int:
        deleted = 0
        with self.db.transaction() as db:
            for key_id in set(key_ids):
                for row_id, _ in _newest_requests(db, key_id)[keep:]:
                    del db.key_requests[row_id]
                    deleted += 1
        return deleted

    def prune(self, before: datetime) -> int:
        hour = before.replace(minute=0, second=0, microsecond=0)
        with self.db.transaction() as db:
            count = len(db.key_requests) + len(db.key_request_hours)
            db.key_requests = {i: e for i, e in db.key_requests.items() if e.at >= before}
            db.key_request_hours = {s: h for s, h in db.key_request_hours.items() if h.hour >= hour}
            return count - len(db.key_requests) - len(db.key_request_hours)


def _newest_requests(db: MemoryDatabase, key_id: str) -> list[tuple[int, RequestEntry]]:
    mine = [(i, e) for i, e in db.key_requests.items() if e.key_id == key_id]
    return sorted(mine, key=lambda item: (item[1].at, item[0]), reverse=True)


def _usage_rows(db: MemoryDatabase) -> int:
    return len(db.usage_days) + len(db.usage_clients) + len(db.usage_agents) + len(db.usage_salts)


def _daily(db: MemoryDatabase, key_id: str, since: date) -> dict[date, int]:
    return {
        day: requests
        for (k, day), (requests, _) in sorted(db.usage_days.items())
        if k == key_id and day >= since
    }


def _busiest_first(agents: Iterable[AgentUsage]) -> list[AgentUsage]:
    return sorted(agents, key=lambda a: (-a.requests, a.user_agent or ""))


class MemoryExpiryReminderStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def candidates(self, now: datetime, within: timedelta) -> list[ReminderCandidate]:
        found = []
        with self.db.transaction() as db:
            for key in db.keys.values():
                account = db.accounts[key.account_id]
                if key.expires_at is None or not now < key.expires_at <= now + within:
                    continue
                if key.revoked_at is not None or account.disabled:
                    continue
                week = db.expiry_reminders.get((key.id, Reminder.WEEK.value))
                day = db.expiry_reminders.get((key.id, Reminder.DAY.value))
                if week is None or day is None:
                    found.append(ReminderCandidate(key, account.email, week, day))
        return sorted(found, key=lambda c: (c.key.expires_at, c.key.id))

    def claim(self, key_id: str, reminder: str, now: datetime) -> bool:
        which = Reminder(reminder)
        with self.db.transaction() as db:
            key = db.keys.get(key_id)
            if key is None or key.revoked_at is not None or (key_id, which.value) in db.expiry_reminders:
                return False
            db.expiry_reminders[(key_id, which.value)] = now
            if which is Reminder.DAY:
                db.expiry_reminders.setdefault((key_id, Reminder.WEEK.value), now)
            return True


class MemoryFailingStore:
    """Reads the hour rows MemoryRequestLog writes; rows of deleted keys are skipped when read, as
    the SQL foreign key cascades."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db
        #: (mail on, day last claimed) by account; an account not here has the mail on, never sent.
        self._mail: dict[str, tuple[bool, date | None]] = {}

    def window(self, since: datetime, until: datetime) -> RequestWindow:
        with self.db.transaction() as db:
            rows = [
                r for r in db.key_request_hours.values() if since <= r.hour < until and r.key_id in db.keys
            ]
            failing = {r.key_id for r in rows if r.code}
            counts: dict[tuple[str, str, str], EndpointCount] = {}
            agents: dict[tuple[str, str | None], AgentSeen] = {}
            for r in rows:
                if r.key_id not in failing:
                    continue
                slot = (r.key_id, r.endpoint, r.code)
                was = counts.get(slot)
                counts[slot] = EndpointCount(
                    r.key_id,
                    r.endpoint,
                    r.code,
                    r.requests + (was.requests if was else 0),
                    min(r.first_seen, was.first_seen) if was else r.first_seen,
                    max(r.last_seen, was.last_seen) if was else r.last_seen,
                )
                seen = agents.get((r.key_id, r.user_agent))
                agents[(r.key_id, r.user_agent)] = AgentSeen(
                    r.key_id,
                    r.user_agent,
                    r.requests + (seen.requests if seen else 0),
                    max(r.last_seen, seen.last_seen) if seen else r.last_seen,
                )
            owners = {}
            for key_id in failing:
                key = db.keys[key_id]
                account = db.accounts[key.account_id]
                owners[key_id] = KeyOwner(
                    account.email, dataclasses.replace(key, account_disabled=account.disabled)
                )
        return RequestWindow(since, until, tuple(counts.values()), tuple(agents.values()), owners)

    def integration_mail(self, account_id: str) -> bool:
        with self.db.transaction() as db:
            return account_id in db.accounts and self._mail.get(account_id, (True, None))[0]

    def set_integration_mail(self, account_id: str, on: bool) -> bool:
        with self.db.transaction() as db:
            if account_id not in db.accounts:
                return False
            self._mail[account_id] = (on, self._mail.get(account_id, (True, None))[1])
            return True

    def claim_integration_mail(self, account_id: str, day: date) -> bool:
        with self.db.transaction() as db:
            on, sent_on = self._mail.get(account_id, (True, None))
            if account_id not in db.accounts or not on or (sent_on is not None and sent_on >= day):
                return False
            self._mail[account_id] = (on, day)
            return True
