"""Each key's recent requests and its hourly counts by endpoint and code, on every store backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.factories import make_api_key
from thotbot.services import Services
from thotbot.storage.request_log import ErrorGroup, HourCount, RequestEntry, RequestLogBatch

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = T0.replace(minute=0)


def _entry(
    key_id: str, at: datetime, *, path: str = "/v1/version", status: int = 200, code: str | None = None
) -> RequestEntry:
    return RequestEntry(key_id, at, "GET", path, status, code, "acme/1.0 (ops@acme.example)", 1250)


def _hour(
    key_id: str,
    endpoint: str,
    code: str,
    requests: int,
    first: datetime,
    last: datetime,
    agent: str | None = "a/1",
) -> HourCount:
    return HourCount(
        key_id, first.replace(minute=0, second=0, microsecond=0), endpoint, code, requests, first, last, agent
    )


class TestRequestLog:
    def test_recent_is_newest_first_and_as_written(self, services: Services) -> None:
        _, key = make_api_key(services)
        older = _entry(key.id, T0, path="/v1/me")
        newer = _entry(
            key.id,
            T0 + timedelta(seconds=1),
            path="/v1/keys/key_0000000000000000",
            status=404,
            code="not_found",
        )

        services.request_log.write(RequestLogBatch(requests=[older]))
        services.request_log.write(RequestLogBatch(requests=[newer]))

        assert services.request_log.recent(key.id) == [newer, older]
        assert services.request_log.recent(key.id, 1) == [newer]

    def test_recent_is_one_keys_and_at_most_200(self, services: Services) -> None:
        _, key = make_api_key(services)
        _, other = make_api_key(services)
        rows = [_entry(key.id, T0 + timedelta(seconds=i)) for i in range(205)]

        services.request_log.write(RequestLogBatch(requests=[*rows, _entry(other.id, T0)]))

        recent = services.request_log.recent(key.id, 1000)
        assert len(recent) == 200
        assert recent[0].at == T0 + timedelta(seconds=204)
        assert {r.key_id for r in recent} == {key.id}
        assert services.request_log.recent(other.id) == [_entry(other.id, T0)]

    def test_rows_of_unknown_keys_are_dropped(self, services: Services) -> None:
        _, key = make_api_key(services)

        services.request_log.write(
            RequestLogBatch(
                requests=[_entry("key_0000000000000000", T0), _entry(key.id, T0)],
                hours=[_hour("key_0000000000000000", "GET /v1/me", "not_found", 1, T0, T0)],
            )
        )

        assert services.request_log.recent(key.id) == [_entry(key.id, T0)]
        assert services.request_log.errors("key_0000000000000000", T0 - timedelta(days=1)) == []

    def test_hours_add_up_across_writers_and_group_errors(self, services: Services) -> None:
        _, key = make_api_key(services)
        log = services.request_log
        t1, t2 = T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)
        # Two instances flush counts of the same hour, endpoint and code: they add up.
        log.write(
            RequestLogBatch(
                hours=[_hour(key.id, "GET /v1/keys/{key_id}/requests", "not_found", 2, t1, t2, "late/1")]
            )
        )
        log.write(
            RequestLogBatch(
                hours=[_hour(key.id, "GET /v1/keys/{key_id}/requests", "not_found", 3, T0, t1, "early/1")]
            )
        )
        # The hour before, and other codes and endpoints; successes are not errors.
        before = T0 - timedelta(hours=1)
        log.write(
            RequestLogBatch(
                hours=[
                    _hour(key.id, "GET /v1/keys/{key_id}/requests", "not_found", 4, before, before),
                    _hour(key.id, "DELETE /v1/keys/{key_id}", "insufficient_scope", 1, T0, T0),
                    _hour(key.id, "GET /v1/version", "", 50, T0, t2),
                ]
            )
        )

        assert log.errors(key.id, T0) == [
            ErrorGroup("GET /v1/keys/{key_id}/requests", "not_found", 5, t2),
            ErrorGroup("DELETE /v1/keys/{key_id}", "insufficient_scope", 1, T0),
        ]
        # From a time within an hour: that whole hour counts.
        assert log.errors(key.id, before + timedelta(minutes=30))[0] == ErrorGroup(
            "GET /v1/keys/{key_id}/requests", "not_found", 9, t2
        )

    def test_trim_keeps_each_keys_newest(self, services: Services) -> None:
        _, key = make_api_key(services)
        _, other = make_api_key(services)
        log = services.request_log
        log.write(RequestLogBatch(requests=[_entry(key.id, T0 + timedelta(seconds=i)) for i in range(10)]))
        log.write(RequestLogBatch(requests=[_entry(other.id, T0 + timedelta(seconds=i)) for i in range(3)]))

        assert log.trim([key.id, other.id], keep=4) == 6 + 0

        assert [r.at for r in log.recent(key.id)] == [T0 + timedelta(seconds=i) for i in (9, 8, 7, 6)]
        assert len(log.recent(other.id)) == 3
        assert log.trim([key.id], keep=4) == 0

    def test_prune_deletes_what_is_older(self, services: Services) -> None:
        _, key = make_api_key(services)
        log = services.request_log
        old = T0 - timedelta(days=31)
        log.write(
            RequestLogBatch(
                requests=[_entry(key.id, old), _entry(key.id, T0)],
                hours=[
                    _hour(key.id, "GET /v1/me", "not_found", 1, old, old),
                    _hour(key.id, "GET /v1/me", "not_found", 1, T0, T0),
                ],
            )
        )

        assert log.prune(T0 - timedelta(days=30)) == 2

        assert log.recent(key.id) == [_entry(key.id, T0)]
        assert log.errors(key.id, old) == [ErrorGroup("GET /v1/me", "not_found", 1, T0)]
