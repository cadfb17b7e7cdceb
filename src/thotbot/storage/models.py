"""SQLAlchemy 2.0 models: every table of the database is declared here, and only here.

``Base.metadata`` is therefore the whole schema the migrations must produce: Alembic compares it with
the database (``thotbot/migrations/env.py`` imports this module alone), ``tests/storage/test_schema.py``
checks that a freshly migrated database matches it on SQLite and PostgreSQL, and the tests empty
every table it lists. A table declared in another module would be missing from ``Base.metadata``
wherever that module was not imported, and Alembic would propose dropping it; so a new table goes
here, with a new revision in ``thotbot/migrations/versions/``, and the store that uses it imports it.

Times are stored in UTC and always come back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from thotbot.core.dates import utcnow

__all__ = [
    "APIKey",
    "Account",
    "AccountToken",
    "Base",
    "EmailChange",
    "KeyEvent",
    "KeyRequest",
    "KeyRequestHour",
    "Passkey",
    "QuotaCount",
    "RateLimitWindow",
    "SecurityEvent",
    "SignInThrottle",
    "UTCDateTime",
    "UsageAgent",
    "UsageClient",
    "UsageDay",
    "UsageSalt",
    "UsedFormToken",
    "WebAuthnChallenge",
    "WebSecret",
    "WebSession",
]


class UTCDateTime(TypeDecorator[datetime]):
    """SQLite keeps no zone; store UTC and hand back aware datetimes on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Integer on SQLite (so it autoincrements as the rowid), BIGINT on PostgreSQL.
BigID = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - SQLAlchemy reads it as is


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, comment="normalised: lower case")
    password_hash: Mapped[str | None] = mapped_column(String(255), comment="argon2id")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    email_verified_at: Mapped[datetime | None] = mapped_column(comment="null until its link is followed")
    disabled_at: Mapped[datetime | None] = mapped_column(comment="set by the operator: no sign-in, no key")
    integration_mail: Mapped[bool] = mapped_column(
        Boolean,
        default=True,
        server_default=true(),
        comment="the daily mail about failing integrations; the owner may turn it off",
    )
    integration_mail_sent_on: Mapped[date | None] = mapped_column(
        Date, comment="the UTC day the last such mail reported; claimed before sending"
    )


class APIKey(Base):
    __tablename__ = "api_keys"
    # The expiry reminders' query: keys expiring within 7 days (core/reminders.py).
    __table_args__ = (Index("ix_api_keys_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, comment="not secret")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, comment="SHA-256 of the key")
    hint: Mapped[str] = mapped_column(String(32))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    grants: Mapped[str] = mapped_column(String(255), default="", comment="space-separated grants")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None]
    last_user_agent: Mapped[str | None] = mapped_column(String(512))
    expiry_reminder_7d_at: Mapped[datetime | None] = mapped_column(
        comment="when the 7-day expiry reminder was claimed (or passed over); null = not yet"
    )
    expiry_reminder_1d_at: Mapped[datetime | None] = mapped_column(
        comment="when the 1-day expiry reminder was claimed (or passed over); null = not yet"
    )
    allowed_networks: Mapped[str | None] = mapped_column(
        Text, comment="normalised CIDRs, space-separated; null: any address"
    )
    rate_limit: Mapped[str | None] = mapped_column(String(64), comment="limits notation; null: the default")


class KeyEvent(Base):
    """Every change that affects authentication; running servers poll it to evict their caches."""

    __tablename__ = "key_events"

    seq: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SecurityEvent(Base):
    __tablename__ = "security_events"
    __table_args__ = (Index("ix_security_events_account_created", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128), comment="session, key id, or 'operator'")
    key_id: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    count: Mapped[int] = mapped_column(
        Integer,
        default=1,
        server_default="1",
        comment="how many times it happened; more than 1 for folded refusals",
    )
    last_at: Mapped[datetime | None] = mapped_column(comment="the last of a folded row; null if once")


class WebSession(Base):
    """A dashboard session: only the SHA-256 of its cookie value is stored, never the value."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, comment="not secret: shown and logged")
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, comment="SHA-256 of the cookie")
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, comment="null before sign-in"
    )
    csrf_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    authenticated_at: Mapped[datetime | None] = mapped_column(comment="last password or passkey proof")
    idle_expires_at: Mapped[datetime] = mapped_column(index=True, comment="never after expires_at")
    expires_at: Mapped[datetime] = mapped_column(comment="absolute end")
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    flash: Mapped[str | None] = mapped_column(Text, comment="one-time notice; never a secret")
    # Removing the passkey ends the sessions it signed in (the cascade backs up the explicit delete).
    passkey_id: Mapped[str | None] = mapped_column(
        ForeignKey("passkeys.id", ondelete="CASCADE"), index=True, comment="the passkey that signed it in"
    )


class UsedFormToken(Base):
    """One-time form tokens already spent, so a resubmitted form cannot act twice."""

    __tablename__ = "used_form_tokens"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("web_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignInThrottle(Base):
    """Failed sign-ins per bucket (a hashed email address or client address)."""

    __tablename__ = "sign_in_throttle"

    bucket: Mapped[str] = mapped_column(String(80), primary_key=True, comment="kind:sha256-hex")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(index=True)
    blocked_until: Mapped[datetime | None]


class Passkey(Base):
    """A WebAuthn credential (a discoverable one: the browser offers it without an email typed)."""

    __tablename__ = "passkeys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, comment="not secret: shown and logged")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary, comment="COSE_Key, as the authenticator sent it")
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0, comment="the authenticator's counter")
    transports: Mapped[str] = mapped_column(String(255), default="", comment="space-separated hints")
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class WebAuthnChallenge(Base):
    """A pending WebAuthn ceremony's challenge: single use (deleted when taken) and short-lived."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, comment="random; handed to the client")
    purpose: Mapped[str] = mapped_column(String(16), comment="registration or authentication")
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), comment="null for a passkey-only sign-in"
    )
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class EmailChange(Base):
    """A pending email change: only the SHA-256 of the link's token is stored, never the token."""

    __tablename__ = "email_changes"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True, comment="SHA-256 of a token")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    new_email: Mapped[str] = mapped_column(String(320), comment="normalised: lower case")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebSecret(Base):
    """A random key the web app signs with, made once so every instance shares it unconfigured."""

    __tablename__ = "web_secrets"

    name: Mapped[str] = mapped_column(String(32), primary_key=True, comment="what the key signs")
    secret: Mapped[bytes] = mapped_column(LargeBinary(32), comment="never shown or logged")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccountToken(Base):
    """A single-use link's token (sign-up verification, password reset): only its SHA-256 is stored."""

    __tablename__ = "account_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True, comment="SHA-256 of a token")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16), comment="verify_email or reset_password")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class QuotaCount(Base):
    """Actions counted per bucket (a hashed client address or email) in fixed windows."""

    __tablename__ = "quota_counts"

    bucket: Mapped[str] = mapped_column(String(80), primary_key=True, comment="kind:sha256-hex")
    hits: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(index=True)


class RateLimitWindow(Base):
    """The API rate limits' counters, shared by the processes of one deployment (thotbot.ratelimit):
    hits per bucket and clock-aligned window, added to in batches by storage.rate_windows."""

    __tablename__ = "rate_limit_windows"

    bucket: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="key/<key id> or anon/<hashed client address>"
    )
    window_start: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, comment="Unix seconds, a multiple of the period"
    )
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True, comment="Unix seconds: the window's end")
    hits: Mapped[int] = mapped_column(BigInteger, default=0)


# Usage: written in batches by thotbot.storage.usage.SQLUsageStore.


class UsageDay(Base):
    __tablename__ = "usage_days"
    __table_args__ = (Index("ix_usage_days_day", "day"),)

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, comment="UTC")
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    unitemised: Mapped[int] = mapped_column(
        BigInteger, default=0, comment="requests whose User-Agent was over the in-memory cap"
    )


class UsageAgent(Base):
    __tablename__ = "usage_agents"
    __table_args__ = (Index("ix_usage_agents_last_seen", "last_seen"),)

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    user_agent: Mapped[str] = mapped_column(String(512), primary_key=True, comment="'' when none was sent")
    app: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(32))
    contact: Mapped[str | None] = mapped_column(String(254))
    ua_class: Mapped[str] = mapped_column(String(16), comment="descriptive, generic, browser-like, missing")
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageClient(Base):
    __tablename__ = "usage_clients"
    __table_args__ = (Index("ix_usage_clients_day", "day"),)

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, comment="UTC")
    client_hash: Mapped[bytes] = mapped_column(
        LargeBinary(16), primary_key=True, comment="keyed BLAKE2b of the address with the day's salt"
    )
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageSalt(Base):
    """The random key of each day's client-address hash; deleted after two days, so old hashes
    cannot be reversed by hashing every possible address."""

    __tablename__ = "usage_salts"

    day: Mapped[date] = mapped_column(Date, primary_key=True, comment="UTC")
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The request log: written in batches by the request log's flush, never on the request path.


class KeyRequest(Base):
    """One of a key's recent requests; the newest 200 per key are kept."""

    __tablename__ = "key_requests"
    __table_args__ = (Index("ix_key_requests_key_id_at", "key_id", "at"), Index("ix_key_requests_at", "at"))

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(comment="when the request arrived")
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(512), comment="no query string; a key in it redacted")
    status: Mapped[int] = mapped_column(SmallInteger)
    code: Mapped[str | None] = mapped_column(String(64), comment="the problem's code; null on success")
    user_agent: Mapped[str | None] = mapped_column(String(512))
    duration_us: Mapped[int] = mapped_column(Integer, comment="microseconds")


class KeyRequestHour(Base):
    """A key's requests in one hour, by endpoint and error code: what the error views and the
    operator's outreach list add up."""

    __tablename__ = "key_request_hours"
    __table_args__ = (Index("ix_key_request_hours_hour", "hour"),)

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True, comment="the hour's start, UTC")
    endpoint: Mapped[str] = mapped_column(
        String(128), primary_key=True, comment="method and route, e.g. GET /v1/keys/{id}"
    )
    code: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="the problem's code; '' on success"
    )
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    user_agent: Mapped[str | None] = mapped_column(String(512), comment="the last one seen")
