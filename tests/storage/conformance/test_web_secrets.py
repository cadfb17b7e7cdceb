from __future__ import annotations

from thotbot.services import Services
from thotbot.storage.web_secrets import SharedKey


class TestWebSecretStore:
    def test_ensure_creates_once_then_returns_the_same_key(self, services: Services) -> None:
        store = services.web_secrets

        first = store.ensure("web")

        assert len(first) == 32
        assert store.ensure("web") == first
        assert store.ensure("other") != first


class TestSharedKey:
    def test_loads_once_and_keeps_it_in_memory(self, services: Services) -> None:
        shared = SharedKey(services.web_secrets, "web")
        assert shared.cached is None

        key = shared.get()

        assert shared.cached == key
        assert key == services.web_key.get()  # another process-level cache, the same key

    def test_the_key_never_shows_in_its_repr(self, services: Services) -> None:
        shared = SharedKey(services.web_secrets, "web")
        key = shared.get()

        assert key.hex() not in repr(shared)
        assert repr(key) not in repr(shared)
