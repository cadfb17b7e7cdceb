"""The SQL sign-in throttle under concurrent guesses, and what its table holds; the behaviour every
backend shares is in tests/storage/conformance/test_sign_in_throttle.py."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from thotbot.services import Services
from thotbot.storage.models import SignInThrottle
from thotbot.storage.throttle import Attempt, SQLSignInThrottle, ThrottleRule, bucket_for

EMAIL = "target@example.com"
LONG = timedelta(hours=1)  # a first wait no slow machine sees pass during a test


class TestSQLSignInThrottle:
    def test_stores_no_email_or_address(self, services: Services) -> None:
        throttle = services.sign_in_throttle
        throttle.reserve(EMAIL, "192.0.2.77")

        with services.engine.connect() as connection:
            buckets = connection.exec_driver_sql("SELECT bucket FROM sign_in_throttle").scalars().all()
        assert len(buckets) == 3
        assert not any(EMAIL in b or "192.0.2.77" in b for b in buckets)


class TestConcurrentReservations:
    """The check and the count are one step: concurrent guesses cannot all pass one check."""

    THREADS = 16

    def _race(self, throttle: SQLSignInThrottle, ips: list[str | None]) -> list[Attempt]:
        start = threading.Barrier(len(ips))

        def attempt(ip: str | None) -> Attempt:
            start.wait(timeout=30)
            return throttle.reserve(EMAIL, ip)

        with ThreadPoolExecutor(len(ips)) as pool:
            return list(pool.map(attempt, ips))

    def test_only_the_allowed_number_get_through(self, services: Services) -> None:
        rule = ThrottleRule(free_failures=3, first_delay=LONG)
        throttle = SQLSignInThrottle(services.db, pair_rule=rule)
        assert throttle.reserve(EMAIL, "192.0.2.1").allowed

        attempts = self._race(throttle, ["192.0.2.1"] * self.THREADS)

        # Three free failures, then the fourth starts the wait: four are checked, no more.
        assert sum(a.allowed for a in attempts) == 3
        assert _failures(services, bucket_for("account", EMAIL)) == 4

    def test_the_account_pauses_exactly_once_under_a_distributed_burst(self, services: Services) -> None:
        throttle = SQLSignInThrottle(
            services.db, account_rule=ThrottleRule(free_failures=4, first_delay=LONG)
        )

        attempts = self._race(throttle, [f"198.51.100.{n}" for n in range(self.THREADS)])

        assert sum(a.allowed for a in attempts) == 5
        assert sum(a.pauses_account for a in attempts) == 1


def _failures(services: Services, bucket: str) -> int | None:
    with services.db() as session:
        row = session.get(SignInThrottle, bucket)
        return row.failures if row else None
