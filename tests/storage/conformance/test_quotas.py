"""Action quotas, on every store backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from thotbot.services import Services
from thotbot.storage import QuotaStore
from thotbot.storage.quotas import Quota

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def quotas(services: Services) -> QuotaStore:
    return services.quotas


class TestQuotaStore:
    QUOTA = Quota("test", 3, HOUR)

    def test_hit_counts_up_to_the_limit(self, quotas: QuotaStore) -> None:
        assert [quotas.hit(self.QUOTA, "198.51.100.7", now=T0) for _ in range(3)] == [0, 0, 0]

        assert quotas.hit(self.QUOTA, "198.51.100.7", now=T0 + timedelta(minutes=15)) == 45 * 60
        assert quotas.hit(self.QUOTA, "198.51.100.8", now=T0) == 0  # another bucket

    def test_a_new_window_starts_afresh(self, quotas: QuotaStore) -> None:
        for _ in range(4):
            quotas.hit(self.QUOTA, "a", now=T0)

        assert quotas.hit(self.QUOTA, "a", now=T0 + HOUR) == 0

    def test_prune_forgets_old_windows(self, quotas: QuotaStore) -> None:
        quotas.hit(self.QUOTA, "old", now=T0)
        quotas.hit(self.QUOTA, "new", now=T0 + HOUR)

        assert quotas.prune(HOUR, now=T0 + HOUR + timedelta(seconds=1)) == 1
