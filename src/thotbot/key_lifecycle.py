"""API key operations, shared by the API, the dashboard, the CLI and account recovery.

Each operation makes its change and writes its security-log entry in one database transaction (the
key store writes the entry, and only when something changed), then drops the key from this
process's cache and sends the mail, if any. So of two revocations of one key at the same moment,
exactly one is logged and mailed. They are blocking: call them from async code through
``anyio.to_thread.run_sync``. Who asks and from where travels in an ``Actor``.
The operator's IP allowlists and per-key rate limits (``thotbot keys allow``, ``keys limit``, and the
allowlist form on the dashboard) are changes like the others: numbered, so every server applies them
within a second, and logged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from thotbot.core import keys
from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, MalformedAPIKey, NotFound, ValidationFailed
from thotbot.core.identity import GRANTABLE, Actor
from thotbot.core.networks import parse_networks
from thotbot.core.revocation import RevokedReason
from thotbot.core.scanning import Leak
from thotbot.notifications import Notifier
from thotbot.ratelimit import normalise_key_limit
from thotbot.storage import EntryFor, KeyChange, KeyRecord, KeyStore, LogEntry

__all__ = ["KeyEvictor", "KeyLifecycle", "Rolled"]


class KeyEvictor(Protocol):
    """What a change needs of this process's cache of verified keys (auth/cache.py)."""

    def evict(self, key_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Rolled:
    #: The replacement, shown once.
    raw_key: str
    new: KeyRecord
    #: The key replaced, with its expiry brought forward.
    old: KeyRecord


class KeyLifecycle:
    def __init__(self, *, keys: KeyStore, cache: KeyEvictor, notifier: Notifier) -> None:
        self._keys = keys
        self._cache = cache
        self._notifier = notifier

    def create(
        self,
        account_id: str,
        name: str,
        actor: Actor,
        *,
        expires_at: datetime | None = None,
        read_only: bool = False,
    ) -> tuple[str, KeyRecord]:
        """Create a key and tell the account; the raw key is returned here and never again."""
        raw, record = self._keys.create(
            account_id,
            name,
            expires_at=expires_at,
            read_only=read_only,
            log=_entry("key.created", actor, lambda r: f"created {_describe(r)}, {_where(actor)}"),
        )
        self._notifier.key_created(account_id, record, actor)
        return raw, record

    def roll(self, account_id: str, key_id: str, actor: Actor, *, old_expires_in: timedelta) -> Rolled:
        """Replace an active key: the new one keeps the name, access and lifetime; the old one's
        expiry is brought forward to ``old_expires_in`` from now, never pushed back."""
        old = self._own(account_id, key_id)
        now = utcnow()
        if old.state(now) != "active":
            raise Conflict("Only an active key can be rolled. Create a new key instead.")
        lifetime = old.expires_at - old.created_at if old.expires_at else None
        old_expires_at = now + old_expires_in
        if old.expires_at is not None and old.expires_at < old_expires_at:
            old_expires_at = old.expires_at

        def log(new: KeyRecord, replaced: KeyRecord) -> list[LogEntry]:
            created = f"created {_describe(new)}, {_where(actor)}; replaces {replaced.id}"
            until = _minute(old_expires_at)
            rolled = f"{_name(replaced)} replaced by {new.id} ({new.hint}); stops working {until}"
            return [_entry("key.created", actor, created)(new), _entry("key.rolled", actor, rolled)(replaced)]

        raw, new, updated = self._keys.roll(
            key_id, expires_at=now + lifetime if lifetime else None, old_expires_at=old_expires_at, log=log
        )
        self._cache.evict(key_id)
        self._notifier.key_created(account_id, new, actor)
        return Rolled(raw, new, updated)

    def rename(self, account_id: str, key_id: str, name: str, actor: Actor) -> KeyChange:
        before = self._own(account_id, key_id)
        detail = f"{before.name!r} -> {name!r} ({before.hint})"
        return self._evicting(self._keys.rename(key_id, name, log=_entry("key.renamed", actor, detail)))

    def set_expiry(
        self, account_id: str, key_id: str, expires_at: datetime | None, actor: Actor
    ) -> KeyChange:
        self._own(account_id, key_id)
        when = _minute(expires_at) if expires_at else "never"
        log = _entry("key.expiry_changed", actor, lambda r: f"{_name(r)} now expires {when}")
        return self._evicting(self._keys.set_expiry(key_id, expires_at, log=log))

    def grant(self, key_id: str, grant: str, actor: Actor) -> KeyChange:
        """The operator's grant: lets one key call what only a session may (identity.GRANTABLE)."""
        if grant not in GRANTABLE:
            raise ValidationFailed(f"unknown grant {grant!r}; grants: {', '.join(sorted(GRANTABLE))}")
        log = _entry("key.granted", actor, lambda r: f"granted {grant} to {_name(r)}")
        return self._evicting(self._keys.grant(key_id, grant, log=log))

    def allow_networks(
        self, key_id: str, entries: Iterable[str], actor: Actor, *, account_id: str | None = None
    ) -> KeyChange:
        """Set the key's IP allowlist (CIDRs or addresses; none: any address again).

        ValidationFailed names the first bad entry. With ``account_id`` (the dashboard), only that
        account's key: NotFound for anyone else's.
        """
        networks = parse_networks(entries)
        if account_id is not None:
            self._own(account_id, key_id)
        shown = ", ".join(networks) if networks else "any address"
        log = _entry("key.networks_changed", actor, lambda r: f"{_name(r)} may now be used from {shown}")
        return self._evicting(self._keys.set_allowed_networks(key_id, networks, log=log))

    def set_rate_limit(self, key_id: str, rate_limit: str | None, actor: Actor) -> KeyChange:
        """The operator's limit for one key (``limits`` notation), or None for the server's default."""
        if rate_limit is not None:
            try:
                rate_limit = normalise_key_limit(rate_limit)
            except ValueError as exc:
                raise ValidationFailed(str(exc)) from None
        shown = rate_limit or "the server's default"
        log = _entry("key.rate_limit_changed", actor, lambda r: f"{_name(r)} is now limited to {shown}")
        return self._evicting(self._keys.set_rate_limit(key_id, rate_limit, log=log))

    def revoke(self, account_id: str, key_id: str, actor: Actor) -> KeyChange:
        """The owner revokes one of the account's keys; revoking a revoked key changes nothing."""
        self._own(account_id, key_id)
        return self._revoke(key_id, RevokedReason.OWNER, actor)

    def revoke_as_operator(self, key_id: str) -> KeyChange:
        return self._revoke(key_id, RevokedReason.OPERATOR, Actor.operator())

    def revoke_leaked(self, raw_keys: Iterable[str], actor: Actor) -> list[KeyRecord]:
        """Revoke each live key among these strings (anything else is ignored) and tell its owner.

        Returns the keys this call revoked; callers must not say which, to whoever sent them.
        """
        digests = []
        for raw in raw_keys:
            try:
                digests.append(keys.parse(raw.strip()).digest)
            except MalformedAPIKey:
                continue  # Not a key: say nothing about it either.
        log = _entry("key.revoked_leaked", actor, lambda r: f"{_name(r)} was reported as leaked and revoked")
        revoked = self._keys.revoke_by_hashes(digests, reason=RevokedReason.LEAKED, log=log)
        for record in revoked:
            self._cache.evict(record.id)
            self._notifier.key_revoked_as_leaked(record.account_id, record, actor)
        return revoked

    def revoke_reported(self, leaks: Sequence[Leak], actor: Actor) -> list[bool]:
        """GitHub secret scanning found these strings in public: revoke each live key among them,
        log where it was found to its account's security log and mail the owner the place.

        Returns, per leak and in order, whether it is a real key of this installation (live, or
        revoked or expired already): GitHub's true_positive. Anything else is ignored.
        """
        digests: list[bytes | None] = []
        for leak in leaks:
            try:
                digests.append(keys.parse(leak.token.strip()).digest)
            except MalformedAPIKey:
                digests.append(None)
        wanted = [d for d in digests if d is not None]
        known = self._keys.find_by_hashes(wanted) if wanted else {}
        # The first place each key was seen at, by key id: what its log entry and its mail name.
        where: dict[str, Leak] = {}
        for leak, digest in zip(leaks, digests, strict=True):
            record = known.get(digest) if digest is not None else None
            if record is not None:
                where.setdefault(record.id, leak)

        def place(record: KeyRecord) -> str:
            found = where.get(record.id)
            return _place(found) if found is not None else "a public place GitHub reported"

        def detail(record: KeyRecord) -> str:
            return f"{_name(record)} was found by GitHub secret scanning and revoked: {place(record)}"

        log = _entry("key.revoked_leaked", actor, detail)
        # Only live keys change (the store skips revoked ones): a key reported twice is logged once.
        revoked = self._keys.revoke_by_hashes(wanted, reason=RevokedReason.LEAKED, log=log)
        for record in revoked:
            self._cache.evict(record.id)
            self._notifier.key_revoked_as_leaked(record.account_id, record, actor, found_at=place(record))
        return [digest is not None and digest in known for digest in digests]

    def announce_account_change(self, account_id: str) -> list[str]:
        """The account was disabled or enabled: every server reads its keys again within a second."""
        key_ids = self._keys.announce_account_change(account_id)
        for key_id in key_ids:
            self._cache.evict(key_id)
        return key_ids

    def _revoke(self, key_id: str, reason: RevokedReason, actor: Actor) -> KeyChange:
        log = _entry("key.revoked", actor, lambda r: f"revoked {_name(r)} {_where(actor)}")
        return self._evicting(self._keys.revoke(key_id, reason=reason, log=log))

    def _evicting(self, change: KeyChange) -> KeyChange:
        self._cache.evict(change.record.id)
        return change

    def _own(self, account_id: str, key_id: str) -> KeyRecord:
        """The account's key; NotFound for anyone else's, so ids reveal nothing."""
        record = self._keys.find(key_id)
        if record is None or record.account_id != account_id:
            raise NotFound(f"You have no API key with id {key_id!r}.")
        return record


def _entry(action: str, actor: Actor, detail: str | Callable[[KeyRecord], str]) -> EntryFor:
    def entry(record: KeyRecord) -> LogEntry:
        text = detail if isinstance(detail, str) else detail(record)
        return LogEntry(record.account_id, action, key_id=record.id, detail=text, **actor.log_fields())

    return entry


def _place(leak: Leak) -> str:
    """Where a leak was found, as the security log and the mail say it (already escaped text)."""
    return f"{leak.url} ({leak.source})" if leak.source else leak.url


def _name(record: KeyRecord) -> str:
    return f"{record.name!r} ({record.hint})"


def _describe(record: KeyRecord) -> str:
    access = "read-only" if record.read_only else "full access"
    expires = _minute(record.expires_at) if record.expires_at else "never"
    return f"{_name(record)}, {access}, expires {expires}"


def _where(actor: Actor) -> str:
    kind = actor.who.partition(":")[0]
    return {"api_key": "through the API", "operator": "with the CLI"}.get(kind, "on the dashboard")


def _minute(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
