"""Each store Protocol declares every public method of its stores, and nothing they lack.

That each store's signatures fit its Protocol is checked by mypy, where build_services and
build_memory_services hand the stores to the Protocol-typed fields of Services.
"""

from __future__ import annotations

import inspect

import pytest

from thotbot import storage
from thotbot.storage import memory
from thotbot.storage.account_tokens import SQLAccountTokenStore
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
from thotbot.storage.web_secrets import SQLWebSecretStore
from thotbot.storage.web_sessions import SQLWebSessionStore

STORES: list[tuple[type, type, type]] = [
    (storage.UserStore, SQLUserStore, memory.MemoryUserStore),
    (storage.KeyStore, SQLKeyStore, memory.MemoryKeyStore),
    (storage.SecurityLog, SQLSecurityLog, memory.MemorySecurityLog),
    (storage.WebSessionStore, SQLWebSessionStore, memory.MemoryWebSessionStore),
    (storage.SignInThrottleStore, SQLSignInThrottle, memory.MemorySignInThrottle),
    (storage.PasskeyStore, SQLPasskeyStore, memory.MemoryPasskeyStore),
    (storage.ChallengeStore, SQLChallengeStore, memory.MemoryChallengeStore),
    (storage.EmailChangeStore, SQLEmailChangeStore, memory.MemoryEmailChangeStore),
    (storage.AccountTokenStore, SQLAccountTokenStore, memory.MemoryAccountTokenStore),
    (storage.QuotaStore, SQLQuotaStore, memory.MemoryQuotaStore),
    (storage.RateWindowStore, SQLRateWindowStore, memory.MemoryRateWindowStore),
    (storage.WebSecretStore, SQLWebSecretStore, memory.MemoryWebSecretStore),
    (storage.UsageStore, SQLUsageStore, memory.MemoryUsageStore),
    (storage.ExpiryReminderStore, SQLExpiryReminderStore, memory.MemoryExpiryReminderStore),
    (storage.FailingStore, SQLFailingStore, memory.MemoryFailingStore),
    (storage.RequestLogStore, SQLRequestLog, memory.MemoryRequestLog),
]


def _methods(cls: type) -> set[str]:
    return {name for name, value in inspect.getmembers(cls) if not name.startswith("_") and callable(value)}


@pytest.mark.parametrize(("protocol", "sql", "in_memory"), STORES, ids=lambda c: getattr(c, "__name__", ""))
def test_the_protocol_declares_exactly_the_stores_public_methods(
    protocol: type, sql: type, in_memory: type
) -> None:
    declared = _methods(protocol)

    assert _methods(sql) == declared
    assert _methods(in_memory) == declared


def test_every_store_protocol_is_checked() -> None:
    protocols = {name for name in storage.__all__ if name.endswith(("Store", "Log"))}

    assert protocols == {protocol.__name__ for protocol, _, _ in STORES}
