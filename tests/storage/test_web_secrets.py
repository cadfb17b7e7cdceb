"""Instances racing to make the first web secret in one database; the behaviour every backend
shares is in tests/storage/conformance/test_web_secrets.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from thotbot.services import Services
from thotbot.storage.web_secrets import SQLWebSecretStore


class TestSQLWebSecretStore:
    def test_racing_instances_agree(self, services: Services) -> None:
        stores = [SQLWebSecretStore(services.db) for _ in range(4)]

        with ThreadPoolExecutor(4) as pool:
            keys = set(pool.map(lambda store: store.ensure("race"), stores))

        assert len(keys) == 1
