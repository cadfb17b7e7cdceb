"""Storage seams: the Protocols the rest of the code depends on, and the records they return.

Each store has two implementations: SQL (``storage/<store>.py``, production) and memory
(``storage/memory.py``, for pure tests and quick experiments); ``services.py`` builds either.
The conformance suite (``tests/storage/conformance/``) holds them to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from thotbot.core.revocation import RevokedReason

if TYPE_CHECKING:
    # Records of one store each, kept beside their SQL store; named here only in annotations.
    from thotbot.storage.account_tokens import AccountLink, Purpose
    from thotbot.storage.email_changes import AppliedEmailChange, PendingEmailChange
    from thotbot.storage.expiry_reminders import ReminderCandidate
    from thotbot.storage.failing import RequestWindow
    from thotbot.storage.passkeys import ChallengeRecord, PasskeyRecord
    from thotbot.storage.quotas import Quota
    from thotbot.storage.rate_windows import WindowHits, WindowId
    from thotbot.storage.request_log import ErrorGroup, RequestEntry, RequestLogBatch
    from thotbot.storage.security_log import Cursor, LogPage, SecurityEventRecord
    from thotbot.storage.throttle import Attempt, ThrottleRule
    from thotbot.storage.usage import AgentUsage, KeyAgents, KeyUsageSummary, UsageBatch
    from thotbot.storage.web_sessions import SessionPolicy, SessionRecord

__all__ = [
    "AccountRecord",
    "AccountTokenStore",
    "ChallengeStore",
    "EmailChangeStore",
    "EntryFor",
    "ExpiryReminderStore",
    "FailingStore",
    "KeyChange",
    "KeyRecord",
    "KeyStore",
    "KeyUsage",
    "LogEntry",
    "PasskeyStore",
    "QuotaStore",
    "RateWindowStore",
    "RequestLogStore",
    "SecurityLog",
    "SignInThrottleStore",
    "UsageStore",
    "UserStore",
    "WebSecretStore",
    "WebSessionStore",
]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: str
    email: str
    is_admin: bool
    created_at: datetime
    #: None until the address is proven by a mailed link (accounts made by the operator are verified).
    email_verified_at: datetime | None = None
    #: Set by the operator (``thotbot users disable``): no sign-in, no key works.
    disabled_at: datetime | None = None

    @property
    def verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key's metadata; safe to cache, show and log (it holds no secret)."""

    id: str
    account_id: str
    name: str
    hint: str
    read_only: bool
    grants: frozenset[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_user_agent: str | None
    #: The owning account is disabled: the key is refused (read with the key, so no extra query).
    account_disabled: bool = False
    #: A RevokedReason value once revoked (revocation_phrase says it to people).
    revoked_reason: str | None = None
    #: The operator's IP allowlist, normalised CIDRs (core/networks.py); empty: any address.
    allowed_networks: tuple[str, ...] = ()
    #: The operator's per-key rate limit, `limits` notation; None: the server's THOTBOT_RATE_LIMIT.
    rate_limit: str | None = None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class KeyChange:
    """What a change to a key left: the key, and whether this call changed it (False when, say,
    it was revoked already, by this caller or by another one at the same moment)."""

    record: KeyRecord
    changed: bool


@dataclass(frozen=True, slots=True)
class KeyUsage:
    last_used_at: datetime
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One security-log event, to be written in the same transaction as the change it reports."""

    account_id: str | None
    action: str
    actor: str
    key_id: str | None = None
    detail: str = ""
    ip_address: str | None = None
    user_agent: str | None = None


#: Makes the security-log entry for a key from the key as the change left it.
EntryFor = Callable[[KeyRecord], LogEntry]


class KeyStore(Protocol):
    """API keys, looked up by the SHA-256 of the key. Every change that affects authentication
    (revocation, expiry, grants, name, the account's state) is numbered, so that every server
    evicts the key from its cache (``changes_since``). Each change takes ``log``: the store writes
    its entry in the change's own transaction, and only when something changed, so a change is
    never logged twice or not at all.
    """

    def create(
        self,
        account_id: str,
        name: str,
        *,
        expires_at: datetime | None = None,
        read_only: bool = False,
        log: EntryFor | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; the raw key is returned here and never again."""

    def roll(
        self,
        key_id: str,
        *,
        expires_at: datetime | None,
        old_expires_at: datetime,
        log: Callable[[KeyRecord, KeyRecord], Sequence[LogEntry]] | None = None,
    ) -> tuple[str, KeyRecord, KeyRecord]:
        """Create the key's replacement and set the old key's expiry, at once: ``log`` gets
        (new, old). Returns the raw new key, the new key and the old one."""

    def find_by_hash(self, digest: bytes) -> KeyRecord | None:
        """The key and whether its account is disabled (the guard's cache miss)."""

    def find_by_hashes(self, digests: Sequence[bytes]) -> dict[bytes, KeyRecord]:
        """``find_by_hash`` for many digests in one read: the found ones, by digest (the guard's
        concurrent cache misses share it)."""

    def find(self, key_id: str) -> KeyRecord | None: ...

    def get(self, key_id: str) -> KeyRecord:
        """Return the key or raise NotFound."""

    def list_for_account(self, account_id: str) -> list[KeyRecord]:
        """The account's keys, newest first."""

    def revoke(
        self, key_id: str, *, reason: RevokedReason = RevokedReason.OWNER, log: EntryFor | None = None
    ) -> KeyChange:
        """Revoke the key unless it is revoked already; raise NotFound for an unknown id."""

    def revoke_by_hashes(
        self, digests: Sequence[bytes], *, reason: RevokedReason, log: EntryFor | None = None
    ) -> list[KeyRecord]:
        """Revoke the live keys among these; return those this call revoked."""

    def grant(self, key_id: str, grant: str, *, log: EntryFor | None = None) -> KeyChange: ...

    def rename(self, key_id: str, name: str, *, log: EntryFor | None = None) -> KeyChange: ...

    def set_expiry(
        self, key_id: str, expires_at: datetime | None, *, log: EntryFor | None = None
    ) -> KeyChange: ...

    def set_allowed_networks(
        self, key_id: str, networks: tuple[str, ...], *, log: EntryFor | None = None
    ) -> KeyChange:
        """Replace the key's IP allowlist (normalised CIDRs; empty: any address); a change only
        when it differs."""

    def set_rate_limit(
        self, key_id: str, rate_limit: str | None, *, log: EntryFor | None = None
    ) -> KeyChange:
        """Set the key's rate limit (None: the server's default); a change only when it differs."""

    def announce_account_change(self, account_id: str) -> list[str]:
        """Number a change for every key of the account (disabled or enabled); returns their ids."""

    def changes_since(self, seq: int) -> tuple[int, list[str]]:
        """Return the newest change number and the ids of the keys changed after ``seq``.

        With no change after ``seq``, the newest number there is: lower than ``seq`` when the
        changes went back (a restored backup), which the caller must take as "forget everything".
        """

    def latest_change(self) -> int:
        """The newest change number (0 before any change)."""


class ExpiryReminderStore(Protocol):
    """Which expiring keys were mailed their 7-day and 1-day reminders (core/reminders.py)."""

    def candidates(self, now: datetime, within: timedelta) -> list[ReminderCandidate]:
        """Keys that may be due a reminder: unrevoked, of an enabled account, expiring after
        ``now`` and at most ``within`` later, with a reminder not claimed yet."""

    def claim(self, key_id: str, reminder: str, now: datetime) -> bool:
        """Mark the reminder ("7d" or "1d") sent at ``now`` unless it is already, or the key was
        revoked meanwhile: True for the one caller that may send it. Claiming the 1-day reminder
        claims the 7-day one too, so that one is never sent late."""


class UserStore(Protocol):
    """Accounts, one per normalised email address."""

    def create(
        self, email: str, password_hash: str | None, *, is_admin: bool = False, verified: bool = True
    ) -> AccountRecord:
        """Create an account; Conflict when the address has one, ValidationFailed when it is none."""

    def find(self, account_id: str) -> AccountRecord | None: ...

    def find_by_email(self, email: str) -> AccountRecord | None: ...

    def get_by_email(self, email: str) -> AccountRecord:
        """Return the account or raise NotFound."""

    def password_hash(self, account_id: str) -> str | None: ...

    def set_password_hash(self, account_id: str, password_hash: str) -> None:
        """Raises NotFound when there is no such account."""

    def mark_verified(self, account_id: str, *, now: datetime | None = None) -> bool:
        """Record that the account's address is proven; False when it already was."""

    def set_disabled(self, account_id: str, disabled: bool, *, now: datetime | None = None) -> bool:
        """Disable or enable the account; False when it was so already."""

    def delete_unverified(self, created_before: datetime) -> int:
        """Delete the accounts never verified and made before then, with all they hold."""

    def count(self) -> int: ...


class SecurityLog(Protocol):
    """Who did what to an account, when and from where; repeated refusals fold into one row."""

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
    ) -> None: ...

    def count_since(self, account_id: str, action: str, since: datetime) -> tuple[int, datetime | None]:
        """How many ``action`` events the account has had since then, and when the first was."""

    def list_for_account(self, account_id: str, limit: int = 100) -> list[SecurityEventRecord]:
        """The account's newest events, newest first."""

    def page(
        self,
        account_id: str,
        *,
        before: Cursor | None = None,
        after: Cursor | None = None,
        limit: int = 50,
    ) -> LogPage:
        """One page of the account's log, newest first (keyset paging)."""

    def prune(self, keep_days: int, *, now: datetime | None = None) -> int:
        """Delete events older than ``keep_days`` days (by their last time); returns how many."""


class WebSessionStore(Protocol):
    """Dashboard sessions, known by the SHA-256 of their cookie value."""

    policy: SessionPolicy

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
        """Start a session (ending ``replaces``); the cookie value is returned here and never again."""

    def find_by_token(
        self,
        token: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> SessionRecord | None:
        """The live session behind a cookie value, its activity noted; None when unknown or expired."""

    def find(self, session_id: str) -> SessionRecord | None: ...

    def list_for_account(self, account_id: str, *, now: datetime | None = None) -> list[SessionRecord]:
        """The account's live sessions, most recently active first."""

    def reauthenticate(self, session_id: str, *, now: datetime | None = None) -> None: ...

    def delete(self, session_id: str, *, account_id: str | None = None) -> bool: ...

    def delete_for_account(self, account_id: str, *, keep: str | None = None) -> int: ...

    def delete_for_passkey(self, passkey_id: str, *, keep: str | None = None) -> int: ...

    def set_flash(self, session_id: str, message: str) -> None: ...

    def pop_flash(self, session_id: str) -> str | None: ...

    def spend_form_token(self, session_id: str, token: str, *, now: datetime | None = None) -> bool:
        """True the first time a one-time form token is spent in a session, False ever after."""

    def prune(self, *, now: datetime | None = None) -> int: ...


class SignInThrottleStore(Protocol):
    """Failed password attempts per account and client address (storage/throttle.py tells how)."""

    pair_rule: ThrottleRule
    address_rule: ThrottleRule
    account_rule: ThrottleRule

    def reserve(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> Attempt:
        """Check and count one password attempt in one step, before the password is checked."""

    def record_success(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> None: ...

    def forget_account(self, email: str) -> None: ...

    def address_retry_after(self, ip_address: str | None, *, now: datetime | None = None) -> int: ...

    def record_address_failure(self, ip_address: str | None, *, now: datetime | None = None) -> int: ...

    def prune(self, *, now: datetime | None = None) -> int: ...


class PasskeyStore(Protocol):
    """WebAuthn credentials; each belongs to one account, which alone can see or change it."""

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
        """Store a verified credential; Conflict when this credential is registered already."""

    def list_for_account(self, account_id: str) -> list[PasskeyRecord]: ...

    def find(self, passkey_id: str, *, account_id: str) -> PasskeyRecord | None: ...

    def find_by_credential_id(self, credential_id: bytes) -> PasskeyRecord | None: ...

    def rename(self, passkey_id: str, name: str, *, account_id: str) -> PasskeyRecord:
        """Raises NotFound unless the account has this passkey."""

    def remove(self, passkey_id: str, *, account_id: str) -> PasskeyRecord:
        """Raises NotFound unless the account has this passkey; its sessions end with it."""

    def record_use(self, passkey_id: str, sign_count: int, *, now: datetime | None = None) -> bool:
        """Note a verified sign-in; False when the counter did not move past the stored one."""


class ChallengeStore(Protocol):
    """The challenges of pending WebAuthn ceremonies: single use, short-lived."""

    def create(
        self,
        purpose: str,
        challenge: bytes,
        *,
        account_id: str | None,
        lifetime: timedelta,
        now: datetime | None = None,
    ) -> ChallengeRecord: ...

    def take(self, challenge_id: str) -> ChallengeRecord | None:
        """Delete a challenge and return it: whoever takes it first is the only one to get it."""


class EmailChangeStore(Protocol):
    """Pending email changes, known by the SHA-256 of their link's token."""

    def create(
        self, account_id: str, new_email: str, *, lifetime: timedelta, now: datetime | None = None
    ) -> tuple[str, PendingEmailChange]:
        """Start an email change (cancelling the account's earlier ones); the token is returned once."""

    def find_pending(self, account_id: str, *, now: datetime | None = None) -> PendingEmailChange | None: ...

    def cancel(self, account_id: str, *, now: datetime | None = None) -> list[str]:
        """Delete the account's pending changes; returns the live ones' new addresses."""

    def apply(
        self,
        token: str,
        *,
        actor: str,
        ip_address: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> AppliedEmailChange:
        """Spend a token: change the email and log it in one step. EmailChangeTokenInvalid, or
        Conflict when another account took the address meanwhile (the token is spent either way)."""


class AccountTokenStore(Protocol):
    """Single-use account links (verification, password reset), known by their token's SHA-256."""

    def create(
        self, account_id: str, purpose: Purpose, *, lifetime: timedelta, now: datetime | None = None
    ) -> tuple[str, AccountLink]:
        """A new link's token, returned here and never again; earlier links for this purpose die."""

    def find(self, token: str, purpose: Purpose, *, now: datetime | None = None) -> AccountLink | None:
        """The live link for this token, without spending it."""

    def take(self, token: str, purpose: Purpose, *, now: datetime | None = None) -> AccountLink | None:
        """Spend the token: of two requests following one link, only one gets it."""

    def find_pending(
        self, account_id: str, purpose: Purpose, *, now: datetime | None = None
    ) -> datetime | None: ...

    def cancel(self, account_id: str, purpose: Purpose) -> int: ...


class QuotaStore(Protocol):
    """How many times an action was taken per bucket, in fixed windows."""

    def hit(self, quota: Quota, value: str, *, now: datetime | None = None) -> int:
        """Count one action; 0 when within the quota, else the seconds until the window ends."""

    def prune(self, older_than: timedelta, *, now: datetime | None = None) -> int: ...


class RateWindowStore(Protocol):
    """The API rate limits' counters, shared by every process: hits per bucket and clock-aligned window."""

    def add(self, hits: Sequence[WindowHits], watch: Sequence[WindowId] = ()) -> dict[WindowId, int]:
        """Add each count to its window, at once; the totals of those windows and of the watched
        ones that were ever counted."""

    def prune(self, ended_before: int) -> int:
        """Forget the windows that ended before ``ended_before`` (Unix seconds)."""


class WebSecretStore(Protocol):
    """Random keys made once and shared by every instance."""

    def ensure(self, name: str) -> bytes:
        """The key called ``name``, created if it is missing; callers racing all get the same one."""


class UsageStore(Protocol):
    """Requests per key and day, each key's User-Agents and hashed client addresses."""

    def write(self, batch: UsageBatch) -> None:
        """Add a batch at once; rows of keys that no longer exist are dropped."""

    def ensure_salts(self, days: Iterable[date]) -> dict[date, bytes]:
        """The salt of each day, created if missing; every instance gets the same ones."""

    def prune(self, keep_since: date, salts_since: date) -> int: ...

    def daily(self, key_id: str, since: date) -> dict[date, int]: ...

    def agents(self, key_id: str) -> list[AgentUsage]: ...

    def key_summary(self, key_id: str, since: date, *, max_agents: int = 50) -> KeyUsageSummary: ...

    def distinct_clients(self, key_id: str, day: date) -> int: ...

    def integrations(self) -> list[KeyAgents]: ...


class FailingStore(Protocol):
    """What the report of failing integrations reads (the requests per key and hour), and each
    account's choice of the daily mail about it."""

    def window(self, since: datetime, until: datetime) -> RequestWindow:
        """The hours from ``since`` up to (not including) ``until`` of every key with at least one
        failed request in them: counts by endpoint and code, User-Agents, and the key's owner."""
        ...

    def integration_mail(self, account_id: str) -> bool:
        """Whether the account gets the daily mail (True unless its owner turned it off)."""
        ...

    def set_integration_mail(self, account_id: str, on: bool) -> bool:
        """Turn the mail on or off; False when there is no such account."""
        ...

    def claim_integration_mail(self, account_id: str, day: date) -> bool:
        """True for exactly one caller per account and day, and only while the mail is on."""
        ...


class RequestLogStore(Protocol):
    """Each key's recent requests and its requests per hour by endpoint and error code."""

    def write(self, batch: RequestLogBatch) -> None:
        """Insert the requests and add the hourly counts, at once; rows of keys that no longer
        exist are dropped."""

    def recent(self, key_id: str, limit: int = 200) -> list[RequestEntry]:
        """The key's newest requests, newest first (by arrival), at most ``limit`` and 200."""

    def errors(self, key_id: str, since: datetime) -> list[ErrorGroup]:
        """Failed requests (a code other than '') in the hours from ``since``'s on, by endpoint
        and code, the most frequent first."""

    def trim(self, key_ids: Iterable[str], keep: int = 200) -> int:
        """Delete all but each key's newest ``keep`` requests; how many were deleted."""

    def prune(self, before: datetime) -> int:
        """Delete requests from before ``before`` and the hours that started before its hour."""
