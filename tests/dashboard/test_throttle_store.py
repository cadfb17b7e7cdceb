from __future__ import annotations

from datetime import timedelta

import pytest

from thotbot.services import Services
from thotbot.storage.models import utcnow
from thotbot.storage.throttle import SQLSignInThrottle, ThrottleRule

EMAIL = "target@example.com"


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0), (5, 0), (6, 1), (7, 2), (8, 4), (15, 512), (16, 900), (500, 900)],
)
def test_rule_delay_doubles_up_to_its_cap(failures: int, seconds: int) -> None:
    assert ThrottleRule(free_failures=5).delay(failures) == timedelta(seconds=seconds)


class TestSQLSignInThrottle:
    @pytest.fixture
    def throttle(self, services: Services) -> SQLSignInThrottle:
        return SQLSignInThrottle(
            services.sessions,
            account_rule=ThrottleRule(free_failures=2),
            address_rule=ThrottleRule(free_failures=4),
        )

    def test_per_account(self, throttle: SQLSignInThrottle) -> None:
        now = utcnow()
        assert throttle.record_failure(EMAIL, "192.0.2.1", now=now) == 0
        assert throttle.record_failure(EMAIL, "192.0.2.2", now=now) == 0

        assert throttle.record_failure(EMAIL, "192.0.2.3", now=now) == 1
        assert throttle.retry_after(EMAIL, "192.0.2.4", now=now) == 1
        assert throttle.retry_after(EMAIL, "192.0.2.4", now=now + timedelta(seconds=1)) == 0
        assert throttle.retry_after("other@example.com", "192.0.2.4", now=now) == 0

    def test_per_address(self, throttle: SQLSignInThrottle) -> None:
        now = utcnow()
        for n in range(4):
            assert throttle.record_failure(f"user{n}@example.com", "192.0.2.1", now=now) == 0

        assert throttle.record_failure("user9@example.com", "192.0.2.1", now=now) == 1
        assert throttle.retry_after("fresh@example.com", "192.0.2.1", now=now) == 1
        assert throttle.retry_after("fresh@example.com", "192.0.2.2", now=now) == 0

    def test_success_clears_the_account_but_not_the_address(self, throttle: SQLSignInThrottle) -> None:
        now = utcnow()
        for n in range(5):
            throttle.record_failure(EMAIL, "192.0.2.1", now=now + timedelta(seconds=n))

        throttle.record_success(EMAIL)

        assert throttle.retry_after(EMAIL, None, now=now) == 0
        assert throttle.retry_after(EMAIL, "192.0.2.1", now=now + timedelta(seconds=4)) == 1

    def test_failures_are_forgotten_after_a_quiet_hour(self, throttle: SQLSignInThrottle) -> None:
        start = utcnow()
        for _ in range(3):
            throttle.record_failure(EMAIL, None, now=start)

        later = start + timedelta(hours=1, seconds=1)
        assert throttle.record_failure(EMAIL, None, now=later) == 0
        assert throttle.prune(now=later + timedelta(hours=2)) == 1

    def test_stores_no_email_or_address(self, throttle: SQLSignInThrottle, services: Services) -> None:
        throttle.record_failure(EMAIL, "192.0.2.77")

        with services.engine.connect() as connection:
            buckets = connection.exec_driver_sql("SELECT bucket FROM sign_in_throttle").scalars().all()
        assert len(buckets) == 2
        assert not any(EMAIL in b or "192.0.2.77" in b for b in buckets)
