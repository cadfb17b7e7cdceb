"""Settings, read once at start-up from THOTBOT_* variables and an optional .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from limits import parse as parse_limit
from pydantic import Field, PlainValidator, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from thotbot.core.errors import ConfigError
from thotbot.core.proxies import TrustedProxies
from thotbot.core.scanning import GitHubKeys

__all__ = ["Settings", "load_settings"]


def _github_keys(value: object) -> GitHubKeys | None:
    """A path to GitHub's secret-scanning public keys (JSON), read and checked once, at start-up."""
    if isinstance(value, GitHubKeys):
        return value
    if value is None or value == "":
        return None
    if not isinstance(value, str | Path):
        raise ValueError("must be a path to GitHub's secret-scanning public keys file")
    try:
        document = Path(value).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {str(value)!r}: {exc.strerror or 'unreadable'}") from None
    return GitHubKeys.parse(document)  # its ValueError says what is wrong with the file


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THOTBOT_", env_file=".env", extra="ignore", frozen=True)

    # SecretStr masks the URL's password in reprs and tracebacks.
    database_url: SecretStr = SecretStr("sqlite:///./var/thotbot.db")
    redis_url: SecretStr | None = None
    public_url: str = "http://localhost:8000"
    rate_limit: str = "600/minute"
    anon_rate_limit: str = "60/minute"
    smtp_url: SecretStr | None = None
    log_format: Literal["text", "json"] = "text"
    #: Reverse proxies whose X-Forwarded-For / Forwarded names the client: "10.0.0.1, 10.1.0.0/16".
    trusted_proxies: str = ""
    usage_retention_days: int = Field(default=90, ge=1, le=3650)
    # Connections (docs/OPERATING.md): seconds to send a request head, seconds an idle connection is
    # kept, and open connections per worker (unset: derived from the open-file limit).
    header_timeout: int = Field(default=10, ge=1, le=300)
    keepalive_timeout: int = Field(default=5, ge=1, le=300)
    max_connections: int | None = Field(default=None, ge=1, le=1_000_000)
    # Over a year, so last year's events are still there when someone looks back at them.
    security_log_retention_days: int = Field(default=400, ge=30, le=3650)
    # Memory for the cache of verified keys, per process (docs/OPERATING.md): about 0.8 kB a key.
    key_cache_mb: int = Field(default=64, ge=1, le=65536)
    #: How many processes serve this database: `thotbot serve --workers N` sets it for its workers.
    #: Over 1 (or on PostgreSQL), without Redis, rate limits are shared through the database.
    workers: int = Field(default=1, ge=1, le=1024)
    #: GitHub's secret-scanning public keys, from the file this names; None: no report endpoint.
    secret_scanning_keys: Annotated[GitHubKeys | None, PlainValidator(_github_keys)] = None
    # Hidden, for bench/usage_overhead.py only: "off" stops recording usage, to measure its cost.
    usage_recording: Literal["on", "off"] = "on"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: SecretStr) -> SecretStr:
        scheme = v.get_secret_value().split(":", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgresql+psycopg"):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        try:
            make_url(v.get_secret_value())
        except (ValueError, ArgumentError):
            # Never the parser's message: it may quote the URL, password included.
            raise ValueError("is not a valid database URL (check its host, port and escaping)") from None
        return v

    @field_validator("redis_url", "smtp_url", "max_connections", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and urlsplit(v.get_secret_value()).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis:// or rediss:// URL")
        return v

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            parts = urlsplit(v.get_secret_value())
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise ValueError("must look like smtp://host:port")
            parts.port  # noqa: B018 - raises ValueError on a bad port
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an origin such as http://localhost:8000")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be an origin, with no path, such as https://thotbot.example")
        parts.port  # noqa: B018 - raises ValueError on a bad port
        return v.rstrip("/")

    @field_validator("rate_limit", "anon_rate_limit")
    @classmethod
    def _limit(cls, v: str) -> str:
        try:
            parse_limit(v)
        except ValueError:
            raise ValueError("must be in the limits notation, such as 600/minute") from None
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, v: str) -> str:
        TrustedProxies.parse(v)  # its ValueError names the entry that is not an address or CIDR
        return v

    @property
    def proxies(self) -> TrustedProxies:
        return TrustedProxies.parse(self.trusted_proxies)

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def rp_id(self) -> str:
        return urlsplit(self.public_url).hostname or "localhost"

    def database_url_value(self) -> str:
        return self.database_url.get_secret_value()


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning the first bad value into one ConfigError line naming its variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"THOTBOT_{field.upper()}: {message}") from None
