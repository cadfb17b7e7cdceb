"""The stores and in-memory state one process shares: built once by create_app or the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from thotbot.auth.cache import KeyCache
from thotbot.auth.usage import LastUsedRecorder
from thotbot.config import Settings
from thotbot.ratelimit import RateLimiter
from thotbot.storage.db import SessionFactory, make_engine, make_session_factory
from thotbot.storage.events import SQLSecurityLog
from thotbot.storage.keys import SQLKeyStore
from thotbot.storage.users import SQLUserStore

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: SessionFactory
    keys: SQLKeyStore
    users: SQLUserStore
    security_log: SQLSecurityLog
    key_cache: KeyCache = field(default_factory=KeyCache)
    last_used: LastUsedRecorder = field(init=False)
    rate_limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.last_used = LastUsedRecorder(self.keys.record_usage)
        redis_url = self.settings.redis_url.get_secret_value() if self.settings.redis_url else None
        self.rate_limiter = RateLimiter(self.settings.rate_limit, self.settings.anon_rate_limit, redis_url)


def build_services(settings: Settings) -> Services:
    engine = make_engine(settings.database_url_value())
    sessions = make_session_factory(engine)
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        keys=SQLKeyStore(sessions),
        users=SQLUserStore(sessions),
        security_log=SQLSecurityLog(sessions),
    )
