from __future__ import annotations

import json
import logging

import pytest

from thotbot.accesslog import AccessLog


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _info_enabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="thotbot.access")


def test_lines_are_written_in_one_batch_at_flush() -> None:
    writes: list[str] = []
    log = AccessLog("text", write=writes.append)
    log.record("192.0.2.1", "GET", "/v1/version", 200, "key_1", 0.0012)
    log.record("192.0.2.2", "DELETE", "/v1/keys/key_2", 204, "key_2", 0.003)

    assert writes == []  # nothing on the request path
    assert log.flush() == 2

    assert len(writes) == 1
    lines = writes[0].splitlines()
    assert lines[0].endswith('INFO thotbot.access: 192.0.2.1 "GET /v1/version" 200 key_1 1.2ms')
    assert lines[1].endswith('thotbot.access: 192.0.2.2 "DELETE /v1/keys/key_2" 204 key_2 3.0ms')
    assert log.flush() == 0


def test_json_lines_carry_fields() -> None:
    writes: list[str] = []
    log = AccessLog("json", write=writes.append)
    log.record("192.0.2.1", "GET", "/v1/me", 401, "-", 0.0005)

    log.flush()

    entry = json.loads(writes[0])
    assert entry["logger"] == "thotbot.access"
    assert entry["level"] == "info"
    assert entry["status"] == 401
    assert entry["key_id"] is None
    assert entry["path"] == "/v1/me"


def test_pending_lines_are_bounded_and_drops_are_reported() -> None:
    writes: list[str] = []
    log = AccessLog("text", max_pending=3, write=writes.append)
    for _ in range(5):
        log.record("192.0.2.1", "GET", "/v1/version", 200, "key_1", 0.001)

    assert log.flush() == 3

    assert "WARNING thotbot.access: 2 access log lines dropped" in writes[0]


def test_without_a_writer_lines_go_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog()
    log.record("192.0.2.1", "GET", "/v1/version", 200, "key_1", 0.001)

    log.flush()

    assert [r.getMessage() for r in caplog.records] == ['192.0.2.1 "GET /v1/version" 200 key_1 1.0ms']


def test_disabled_logger_writes_nothing() -> None:
    writes: list[str] = []
    logger = logging.getLogger("thotbot.access")
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        log = AccessLog("text", write=writes.append)
        assert not log.enabled
        log.record("192.0.2.1", "GET", "/v1/version", 200, "key_1", 0.001)
        log.flush()
    finally:
        logger.setLevel(previous)

    assert writes == []


def test_json_lines_are_what_json_dumps_would_write() -> None:
    # Built piece by piece for speed: still one valid record a line, with every field as before.
    writes: list[str] = []
    log = AccessLog("json", write=writes.append)
    log.record("192.0.2.1", "GET", '/v1/a"b\\c\u2028\x7f\u202e', 404, "key_1", 0.00125)
    log.record("192.0.2.1", "GET", "/v1/thot_ak_" + "ab12" * 24, 401, "-", 0.5)

    log.flush()

    first, second = writes[0].splitlines()
    assert "\u2028" not in first
    assert "\x7f" not in first
    assert "\u202e" not in first
    entry = json.loads(first)
    assert entry == {
        "time": entry["time"],
        "level": "info",
        "logger": "thotbot.access",
        "message": '192.0.2.1 "GET /v1/a\\x22b\\x5cc\\u2028\\x7f\\u202e" 404 key_1 1.2ms',
        "client": "192.0.2.1",
        "method": "GET",
        "path": '/v1/a"b\\c\u2028\x7f\u202e',
        "status": 404,
        "key_id": "key_1",
        "duration_ms": 1.2,
    }
    assert entry["time"].endswith("+00:00")
    assert "T" in entry["time"]
    assert json.loads(second)["path"] == "/v1/thot_ak_[redacted]"
    assert "ab12ab12" not in second


@pytest.mark.anyio
async def test_drain_writes_a_chunk_at_a_time_and_lets_requests_run_between() -> None:
    import asyncio

    writes: list[str] = []
    log = AccessLog("text", write=writes.append)
    for n in range(25):
        log.record("192.0.2.1", "GET", f"/v1/{n}", 200, "key_1", 0.001)
    seen_by_a_request: list[int] = []

    async def request() -> None:
        seen_by_a_request.append(len(writes))

    task = asyncio.create_task(request())
    assert await log.drain(chunk=10) == 25
    await task

    assert [len(w.splitlines()) for w in writes] == [10, 10, 5]
    # The "request" ran while the lines were being written, not after all of them.
    assert seen_by_a_request == [1]
    assert log.flush() == 0


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_each_line_of_a_batch_is_its_own_whatever_the_lines_before_it_share(log_format: str) -> None:
    # A batch makes each (client, request, status, key) part once and each second's stamp once:
    # every line must still carry its own time, fraction of a second and duration.
    from thotbot.accesslog import _asctime, _iso, _message

    writes: list[str] = []
    log = AccessLog(log_format, write=writes.append)
    entries = [
        (
            1_780_000_000 + n * 0.0371,
            f"192.0.2.{n % 3}",
            "GET",
            f"/v1/{n % 2}",
            (200, 401)[n // 7 % 2],
            "key_1",
            n * 0.00049,
        )
        for n in range(60)
    ]
    for entry in entries:
        log._pending.append(entry)

    log.flush()

    lines = writes[0].splitlines()
    assert len(lines) == len(entries)
    for line, entry in zip(lines, entries, strict=True):
        at, address, method, path, status, key_id, duration = entry
        if log_format == "text":
            assert line == f"{_asctime(at)} INFO thotbot.access: {_message(entry)}"
        else:
            assert json.loads(line) == {
                "time": _iso(at),
                "level": "info",
                "logger": "thotbot.access",
                "message": _message(entry),
                "client": address,
                "method": method,
                "path": path,
                "status": status,
                "key_id": key_id,
                "duration_ms": round(duration * 1000, 1),
            }
