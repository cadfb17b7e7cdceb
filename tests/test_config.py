from __future__ import annotations

from pathlib import Path

import pytest

from thotbot.config import Settings, load_settings
from thotbot.core.errors import ConfigError
from thotbot.core.proxies import TrustedProxies

# The contract's settings (section 2); others may be added, never these renamed.
CONTRACT_VARIABLES = [
    "THOTBOT_DATABASE_URL",
    "THOTBOT_REDIS_URL",
    "THOTBOT_PUBLIC_URL",
    "THOTBOT_RATE_LIMIT",
    "THOTBOT_ANON_RATE_LIMIT",
    "THOTBOT_SMTP_URL",
    "THOTBOT_LOG_FORMAT",
    "THOTBOT_TRUSTED_PROXIES",
]


def test_defaults() -> None:
    settings = load_settings()

    assert settings.database_url_value() == "sqlite:///./var/thotbot.db"
    assert settings.redis_url is None
    assert settings.public_url == "http://localhost:8000"
    assert settings.smtp_url is None
    assert settings.log_format == "text"
    assert settings.rate_limit
    assert settings.anon_rate_limit
    assert settings.secure_cookies is False
    assert settings.rp_id == "localhost"
    assert settings.security_log_retention_days == 400


def test_every_contract_variable_is_a_setting() -> None:
    fields = {"THOTBOT_" + name.upper() for name in Settings.model_fields}

    assert set(CONTRACT_VARIABLES) <= fields


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        (
            "THOTBOT_DATABASE_URL",
            "sqlite:////srv/thotbot.db",
            "database_url_value",
            "sqlite:////srv/thotbot.db",
        ),
        (
            "THOTBOT_DATABASE_URL",
            "postgresql+psycopg://app:pw@db:5432/thotbot",
            "database_url_value",
            "postgresql+psycopg://app:pw@db:5432/thotbot",
        ),
        ("THOTBOT_DATABASE_URL", "postgresql://db/thotbot", "database_url_value", "postgresql://db/thotbot"),
        ("THOTBOT_PUBLIC_URL", "https://thotbot.example/", "public_url", "https://thotbot.example"),
        ("THOTBOT_PUBLIC_URL", "http://localhost:8000", "rp_id", "localhost"),
        ("THOTBOT_PUBLIC_URL", "https://api.thotbot.example", "secure_cookies", True),
        ("THOTBOT_RATE_LIMIT", "10/second", "rate_limit", "10/second"),
        ("THOTBOT_ANON_RATE_LIMIT", "5 per minute", "anon_rate_limit", "5 per minute"),
        ("THOTBOT_LOG_FORMAT", "json", "log_format", "json"),
        ("THOTBOT_SECURITY_LOG_RETENTION_DAYS", "30", "security_log_retention_days", 30),
        ("THOTBOT_REDIS_URL", "", "redis_url", None),
        ("THOTBOT_SMTP_URL", "", "smtp_url", None),
        ("THOTBOT_HEADER_TIMEOUT", "30", "header_timeout", 30),
        ("THOTBOT_KEEPALIVE_TIMEOUT", "2", "keepalive_timeout", 2),
        ("THOTBOT_MAX_CONNECTIONS", "500", "max_connections", 500),
        ("THOTBOT_MAX_CONNECTIONS", "", "max_connections", None),
        ("THOTBOT_TRUSTED_PROXIES", "", "proxies", TrustedProxies(())),
        (
            "THOTBOT_TRUSTED_PROXIES",
            "127.0.0.1, 10.0.0.0/8,::1",
            "proxies",
            TrustedProxies.parse("127.0.0.1/32,10.0.0.0/8,::1/128"),
        ),
    ],
)
def test_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)

    settings = load_settings()

    got = getattr(settings, attribute)
    assert (got() if callable(got) else got) == expected


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THOTBOT_DATABASE_URL", "postgresql+psycopg://app:hunter2hunter2@db/thotbot")
    monkeypatch.setenv("THOTBOT_REDIS_URL", "redis://:redispass99@cache:6379/0")
    monkeypatch.setenv("THOTBOT_SMTP_URL", "smtp://mailer:smtppass77@mail:25")

    settings = load_settings()

    for text in (repr(settings), str(settings)):
        assert "hunter2hunter2" not in text
        assert "redispass99" not in text
        assert "smtppass77" not in text


def test_reads_a_dotenv_file(tmp_path: Path) -> None:
    # The autouse fixture has made tmp_path the working directory.
    (tmp_path / ".env").write_text("THOTBOT_LOG_FORMAT=json\n")

    assert load_settings().log_format == "json"


def test_the_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("THOTBOT_LOG_FORMAT=json\n")
    monkeypatch.setenv("THOTBOT_LOG_FORMAT", "text")

    assert load_settings().log_format == "text"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("THOTBOT_DATABASE_URL", "mysql://db/thotbot"),
        ("THOTBOT_DATABASE_URL", ""),
        ("THOTBOT_DATABASE_URL", "not a url"),
        ("THOTBOT_DATABASE_URL", "postgresql+psycopg://app:hunter2hunter2@db:notaport/thotbot"),
        ("THOTBOT_DATABASE_URL", "postgresql+asyncpg://db/thotbot"),
        ("THOTBOT_REDIS_URL", "http://cache:6379"),
        ("THOTBOT_PUBLIC_URL", "localhost:8000"),
        ("THOTBOT_PUBLIC_URL", "ftp://thotbot.example"),
        ("THOTBOT_PUBLIC_URL", "https://thotbot.example/app"),
        ("THOTBOT_PUBLIC_URL", "https://thotbot.example?x=1"),
        ("THOTBOT_PUBLIC_URL", "http://localhost:99999"),
        ("THOTBOT_RATE_LIMIT", "lots"),
        ("THOTBOT_RATE_LIMIT", ""),
        ("THOTBOT_ANON_RATE_LIMIT", "60/fortnight"),
        ("THOTBOT_SMTP_URL", "mail.example:25"),
        ("THOTBOT_SMTP_URL", "smtp://"),
        ("THOTBOT_SMTP_URL", "smtp://mailer:smtppass77@mail:port"),
        ("THOTBOT_LOG_FORMAT", "xml"),
        ("THOTBOT_LOG_FORMAT", "JSON"),
        ("THOTBOT_HEADER_TIMEOUT", "0"),
        ("THOTBOT_HEADER_TIMEOUT", "ten"),
        ("THOTBOT_KEEPALIVE_TIMEOUT", "-1"),
        ("THOTBOT_KEEPALIVE_TIMEOUT", "3600"),
        ("THOTBOT_MAX_CONNECTIONS", "0"),
        ("THOTBOT_MAX_CONNECTIONS", "many"),
        ("THOTBOT_TRUSTED_PROXIES", "nginx"),
        ("THOTBOT_TRUSTED_PROXIES", "127.0.0.1 10.0.0.1"),
        ("THOTBOT_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("THOTBOT_SECURITY_LOG_RETENTION_DAYS", "forever"),
        ("THOTBOT_SECURITY_LOG_RETENTION_DAYS", "0"),
        ("THOTBOT_SECURITY_LOG_RETENTION_DAYS", "29"),
        ("THOTBOT_SECURITY_LOG_RETENTION_DAYS", "3651"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as exc_info:
        load_settings()

    message = str(exc_info.value)
    assert message.startswith(variable + ": ")
    assert "\n" not in message
    assert len(message) < 200
    for secret in ("hunter2hunter2", "smtppass77"):
        assert secret not in message
    assert exc_info.value.__cause__ is None
    assert exc_info.value.__suppress_context__


def test_overrides_are_validated_too() -> None:
    with pytest.raises(ConfigError) as exc_info:
        load_settings(log_format="yaml")

    assert str(exc_info.value).startswith("THOTBOT_LOG_FORMAT: ")


def test_settings_are_frozen() -> None:
    settings = load_settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.log_format = "json"
