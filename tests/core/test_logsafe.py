"""Log text: one record a line, no raw control character, whatever a client sends."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.livecli import deploy
from tests.redaction_corpus import leaks
from thotbot.accesslog import AccessLog
from thotbot.core import keys
from thotbot.core.logsafe import CONTINUATION, field, json_line, record_text
from thotbot.logs import JSONFormatter, TextFormatter

# Everything that ends a line somewhere, steers a terminal, or reorders what a reader sees.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
FORGED = '2026-01-01 00:00:00,000 INFO thotbot.access: 203.0.113.9 "GET /v1/admin" 200 key_x 1.0ms'
# Each decoded by the server into the path: a line break, a carriage return, an escape sequence,
# a Unicode line separator, NEL (C1), a right-to-left override, NUL, DEL, a quote and a backslash.
PAYLOADS = ["\n", "\r", "\x1b[31m", "\u2028", "\x85", "\u202e", "\x00", "\x7f", '"', "\\"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/v1/version", "/v1/version"),
        ("/v1/a\nb", "/v1/a\\nb"),
        ("/v1/\r\t\x1b[2J", "/v1/\\r\\t\\x1b[2J"),
        ("/v1/\x00\x7f\x85\x9b", "/v1/\\x00\\x7f\\x85\\x9b"),
        ("/v1/\u2028\u2029\u202e\u2066", "/v1/\\u2028\\u2029\\u202e\\u2066"),
        ('/v1/"a"\\', "/v1/\\x22a\\x22\\x5c"),
        ("/v1/caf\u00e9/\u65e5\u672c", "/v1/caf\u00e9/\u65e5\u672c"),  # printable text stays as it is
    ],
)
def test_field_escapes_what_could_forge_or_steer(raw: str, expected: str) -> None:
    assert field(raw) == expected


def test_field_redacts_key_material() -> None:
    raw = keys.generate()

    assert field("/v1/thot%5Fak_" + raw[len(keys.PREFIX) :]) == "/v1/thot_ak_[redacted]"


def test_record_text_keeps_lines_but_indents_all_after_the_first() -> None:
    text = record_text("mail:\nTo: a@example.com\r\n" + FORGED + "\x1b[0m")

    assert text.splitlines() == [
        "mail:",
        CONTINUATION + "To: a@example.com\\r",
        CONTINUATION + FORGED + "\\x1b[0m",
    ]


def test_json_line_escapes_what_json_leaves_raw_and_parses_back() -> None:
    entry = {"message": "a\nb\x1b\x7f\x85\u2028\u202e z"}

    line = json_line(entry)

    assert json.loads(line) == entry
    assert UNSAFE.search(line) is None
    assert "\n" not in line


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_access_lines_are_one_a_request(log_format: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="thotbot.access")
    writes: list[str] = []
    log = AccessLog(log_format, write=writes.append)
    for n, payload in enumerate(PAYLOADS):
        log.record("192.0.2.1", "GET", f"/v1/forge-{n}{payload}{FORGED}", 401, "-", 0.001)

    log.flush()

    lines = writes[0].split("\n")[:-1]
    assert len(lines) == len(PAYLOADS)
    assert UNSAFE.search(writes[0].replace("\n", "")) is None


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_real_server_writes_one_line_a_request_and_no_control_character(
    tmp_path: Path, log_format: str
) -> None:
    # No THOTBOT_SMTP_URL: the leaked-key notice, which quotes the User-Agent, goes to the log too.
    server = deploy(tmp_path, {"THOTBOT_LOG_FORMAT": log_format})
    try:
        victim = server.create_key("victim")
        hidden = keys.generate()  # a key the client misplaced, double-encoded in the path
        for n, payload in enumerate(PAYLOADS):
            path = f"/v1/forge-{n}" + quote(payload + FORGED, safe="/")
            status = _raw_request(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert status == 401
        path = "/v1/forge-key/thot%255Fak_" + hidden[len(keys.PREFIX) :]
        refused = _raw_request(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # Header values may hold a tab and bytes 0x80-0xff (obs-text): NEL, CSI and RLO arrive so.
        body = json.dumps({"keys": [victim]}).encode()
        agent = b"forger/1.0\t\x85\x9b[31m \xe2\x80\xae " + FORGED.encode()
        request = (
            b"POST /v1/keys/revoke-leaked HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"User-Agent: " + agent + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        assert _raw_request(server.port, request) == 202
        assert (
            httpx.get(server.url + "/v1/version", headers={"Authorization": f"Bearer {victim}"}).status_code
            == 401
        )
    finally:
        assert server.stop() in (0, -signal.SIGTERM)

    log = server.log.read_bytes().decode("utf-8")
    lines = log.splitlines()  # splits at \r, \x85, \u2028 and the rest too: none may be there
    assert lines == log.split("\n")[:-1]
    assert UNSAFE.search(log.replace("\n", "")) is None
    for n in range(len(PAYLOADS)):
        assert len([line for line in lines if f"forge-{n}" in line]) == 1, n
    assert leaks(hidden, log) == []
    assert refused == 400  # api_key_in_url: the guard sees the key however it is encoded
    assert len([line for line in lines if "/v1/[redacted]" in line]) == 1
    assert "reported as leaked" in log  # the mail, with the User-Agent in it, was logged
    if log_format == "json":
        # serve's start-up banner is plain text; every record, and every client's text, is JSON.
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert [line for line in lines if "forge" in line and not line.startswith("{")] == []
        assert any("using forger 1.0" in r["message"] for r in records)  # the mail log, described
    else:
        record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")
        # A client's text is only ever inside a record's line or a continuation of it, never at
        # the start of a line of its own (the lines that are neither are serve's start-up banner).
        strays = [line for line in lines if not record.match(line) and not line.startswith(CONTINUATION)]
        assert [line for line in strays if "forge" in line or "203.0.113.9" in line] == []
        assert not any(line.startswith(FORGED[:10]) for line in lines)


def _raw_request(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return int(received.split(b" ", 2)[1])


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("thotbot.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_text_formatter_redacts_and_escapes_message_arguments_and_traceback() -> None:
    raw = keys.generate()
    try:
        raise ValueError(f"bad token {raw}\n{FORGED}")
    except ValueError as caught:
        error = caught

    text = TextFormatter().format(
        _record("path %s from %s", f"/v1/x\n{FORGED}", f"ua\x1b[2J {raw}", exc=error)
    )

    lines = text.split("\n")
    # A line break in a value continues the record, indented: it cannot start a forged one.
    assert lines[0].endswith("ERROR thotbot.test: path /v1/x")
    assert lines[1] == CONTINUATION + FORGED + " from ua\\x1b[2J thot_ak_[redacted]"
    assert all(line.startswith(CONTINUATION) for line in lines[1:])
    assert "\x1b" not in text
    assert leaks(raw, text) == []


def test_json_formatter_redacts_message_and_traceback_on_one_line() -> None:
    raw = keys.generate()
    try:
        raise ValueError(f"bad token thot%255Fak_{raw[len(keys.PREFIX) :]}")
    except ValueError as caught:
        error = caught

    line = JSONFormatter().format(_record("ua %s\u2028%s", raw, "\x85", exc=error))

    entry = json.loads(line)
    assert entry["message"] == "ua thot_ak_[redacted]\u2028\x85"
    assert "thot_ak_[redacted]" in entry["exception"]
    assert "\n" not in line
    assert UNSAFE.search(line) is None
    assert leaks(raw, line) == []
