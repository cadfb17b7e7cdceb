"""The stores and in-memory state one process shares: built once, by build_services (SQL) or
build_memory_services (the in-memory stores, for pure tests and quick experiments).

Either gives a whole working Services: ``create_app(settings, build_memory_services(settings))``,
with ``settings = load_settings()``, serves the API and the dashboard with no database at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from thotbot.accesslog import AccessLog
from thotbot.account_recovery import AccountRecovery
from thotbot.account_security import AccountSecurity
from thotbot.auth.cache import KeyCache
from thotbot.config import Settings
from thotbot.expiry_reminders import ExpiryReminders
from thotbot.key_lifecycle import KeyLifecycle
from thotbot.keychanges import KeyChangeBus
from thotbot.mail import Mailer
from thotbot.notifications import Notifier
from thotbot.passkey_ceremonies import PasskeyCeremonies
from thotbot.ratelimit import RateLimiter
from thotbot.storage import (
    AccountTokenStore,
    ChallengeStore,
    EmailChangeStore,
    ExpiryReminderStore,
    FailingStore,
    KeyStore,
    PasskeyStore,
    QuotaStore,
    RateWindowStore,
    RequestLogStore,
    SecurityLog,
    SignInThrottleStore,
    UsageStore,
    UserStore,
    WebSecretStore,
    WebSessionStore,
    memory,
)
from thotbot.storage.account_tokens import SQLAccountTokenStore
from thotbot.storage.db import SessionFactory, make_engine, make_session_factory
from thotbot.storage.email_changes import SQLEmailChangeStore
from thotbot.storage.expiry_reminders import SQLExpiryReminderStore
from thotbot.storage.failing import SQLFailingStore
from thotbot.storage.keys import SQLKeyStore
from thotbot.storage.passkeys import SQLChallengeStore, SQLPasskeyStore
from thotbot.storage.quotas import SQLQuotaStore
from thotbot.storage.rate_windows import SQLRateWindowStore
from thotbot.storage.request_log import SQLRequestLog
from thotbot.storage.security_log import SQLSecurityLog
from thotbot.storage.throttle import SQLSignInThrottle
from thotbot.storage.usage import SQLUsageStore
from thotbot.storage.users import SQLUserStore
from thotbot.storage.web_secrets import SharedKey, SQLWebSecretStore
from thotbot.storage.web_sessions import SQLWebSessionStore
from thotbot.usage import DisabledRecorder, RequestLogRecorder, UsageRecorder

__all__ = ["Services", "build_memory_services", "build_services"]


@dataclass
class Services:
    """The stores, typed by their Protocols (storage/__init__.py), and what is built on them."""

    settings: Settings
    #: The SQL database. Memory services have an empty in-memory SQLite here, which no store uses:
    #: it only keeps the health check and the shutdown of the app the same.
    engine: Engine
    #: Opens database sessions (SQLAlchemy); every SQL store is built on it.
    db: SessionFactory
    users: UserStore
    keys: KeyStore
    security_log: SecurityLog
    web_sessions: WebSessionStore
    sign_in_throttle: SignInThrottleStore
    passkeys: PasskeyStore
    challenges: ChallengeStore
    email_changes: EmailChangeStore
    account_tokens: AccountTokenStore
    quotas: QuotaStore
    web_secrets: WebSecretStore
    usage: UsageStore
    #: The rate limits' counters, when several processes share them through the database.
    rate_windows: RateWindowStore
    #: Which expiring keys were mailed their 7-day and 1-day reminders.
    reminder_marks: ExpiryReminderStore
    #: The requests per key and hour as the report of failing integrations reads them, and the
    #: accounts' choice of the daily mail about it.
    failing: FailingStore
    #: Each key's recent requests and its requests per hour by endpoint and code.
    request_log: RequestLogStore
    key_changes: KeyChangeBus = field(default_factory=lambda: KeyChangeBus(None))
    key_cache: KeyCache = field(init=False)
    #: Counts requests and last use per key in memory; flushed in batches off the request path.
    usage_recorder: UsageRecorder = field(init=False)
    #: Holds each key's recent requests in bounded memory; flushed in batches off the request path.
    request_recorder: RequestLogRecorder = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    access_log: AccessLog = field(init=False)
    #: Signs what the web app hands visitors who are not signed in (CSRF cookies, flashes).
    web_key: SharedKey = field(init=False)
    mailer: Mailer = field(init=False)
    notifier: Notifier = field(init=False)
    passkey_ceremonies: PasskeyCeremonies = field(init=False)
    account_security: AccountSecurity = field(init=False)
    account_recovery: AccountRecovery = field(init=False)
    #: Every change to a key goes through it: the change, its log entry and its mail.
    key_lifecycle: KeyLifecycle = field(init=False)
    #: Mails each expiring key's owner 7 days and 1 day before it expires (a background task).
    expiry_reminders: ExpiryReminders = field(init=False)

    def __post_init__(self) -> None:
        self.key_cache = KeyCache(max_bytes=self.settings.key_cache_mb * 1024 * 1024)
        recorder = UsageRecorder if self.settings.usage_recording == "on" else DisabledRecorder
        self.usage_recorder = recorder(self.usage, retention_days=self.settings.usage_retention_days)
        self.request_recorder = RequestLogRecorder(self.request_log)
        self.web_key = SharedKey(self.web_secrets, "web")
        self._build_account_security()
        redis_url = self.settings.redis_url.get_secret_value() if self.settings.redis_url else None
        self.rate_limiter = RateLimiter(
            self.settings.rate_limit,
            self.settings.anon_rate_limit,
            redis_url,
            self.rate_windows if self._several_processes() else None,
        )
        self.access_log = AccessLog(self.settings.log_format)

    def _several_processes(self) -> bool:
        """Whether other processes may serve this database: `serve --workers N` says so (through
        THOTBOT_WORKERS), and a PostgreSQL database may serve several instances."""
        return self.settings.workers > 1 or self.engine.dialect.name == "postgresql"

    def _build_account_security(self) -> None:
        self.mailer = Mailer.from_settings(self.settings)
        self.notifier = Notifier(self.mailer, self.users, self.settings.public_url)
        self.key_lifecycle = KeyLifecycle(keys=self.keys, cache=self.key_cache, notifier=self.notifier)
        self.expiry_reminders = ExpiryReminders(self.reminder_marks, self.notifier)
        self.passkey_ceremonies = PasskeyCeremonies.from_settings(
            self.settings, self.passkeys, self.challenges
        )
        self.account_security = AccountSecurity(
            users=self.users,
            security_log=self.security_log,
            email_changes=self.email_changes,
            passkeys=self.passkey_ceremonies,
            notifier=self.notifier,
            sessions=self.web_sessions,
            throttle=self.sign_in_throttle,
            public_url=self.settings.public_url,
        )
        self.account_recovery = AccountRecovery(
            users=self.users,
            keys=self.key_lifecycle,
            tokens=self.account_tokens,
            quotas=self.quotas,
            security_log=self.security_log,
            notifier=self.notifier,
            sessions=self.web_sessions,
            throttle=self.sign_in_throttle,
            email_changes=self.account_security,
            public_url=self.settings.public_url,
        )


def build_services(settings: Settings) -> Services:
    """The SQL stores on the database of ``settings`` (SQLite or PostgreSQL), migrated already."""
    engine = make_engine(settings.database_url_value())
    sessions = make_session_factory(engine)
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    key_changes = KeyChangeBus(redis_url)
    return Services(
        settings=settings,
        engine=engine,
        db=sessions,
        users=SQLUserStore(sessions),
        keys=SQLKeyStore(sessions, on_change=key_changes.publish),
        security_log=SQLSecurityLog(sessions),
        web_sessions=SQLWebSessionStore(sessions),
        sign_in_throttle=SQLSignInThrottle(sessions),
        passkeys=SQLPasskeyStore(sessions),
        challenges=SQLChallengeStore(sessions),
        email_changes=SQLEmailChangeStore(sessions),
        account_tokens=SQLAccountTokenStore(sessions),
        quotas=SQLQuotaStore(sessions),
        web_secrets=SQLWebSecretStore(sessions),
        usage=SQLUsageStore(sessions),
        rate_windows=SQLRateWindowStore(sessions),
        reminder_marks=SQLExpiryReminderStore(sessions),
        failing=SQLFailingStore(sessions),
        request_log=SQLRequestLog(sessions),
        key_changes=key_changes,
    )


def build_memory_services(settings: Settings) -> Services:
    """The in-memory stores, empty: nothing is kept when the process ends. Mail, rate limits and
    Redis follow ``settings`` as for build_services; the database URL is not used."""
    db = memory.MemoryDatabase()
    engine = make_engine("sqlite://")
    return Services(
        settings=settings,
        engine=engine,
        db=make_session_factory(engine),
        users=memory.MemoryUserStore(db),
        keys=memory.MemoryKeyStore(db),
        security_log=memory.MemorySecurityLog(db),
        web_sessions=memory.MemoryWebSessionStore(db),
        sign_in_throttle=memory.MemorySignInThrottle(db),
        passkeys=memory.MemoryPasskeyStore(db),
        challenges=memory.MemoryChallengeStore(db),
        email_changes=memory.MemoryEmailChangeStore(db),
        account_tokens=memory.MemoryAccountTokenStore(db),
        quotas=memory.MemoryQuotaStore(db),
        web_secrets=memory.MemoryWebSecretStore(db),
        usage=memory.MemoryUsageStore(db),
        rate_windows=memory.MemoryRateWindowStore(db),
        reminder_marks=memory.MemoryExpiryReminderStore(db),
        failing=memory.MemoryFailingStore(db),
        request_log=memory.MemoryRequestLog(db),
    )
