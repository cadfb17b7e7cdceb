"""Key material in any encoding, in any text: found and replaced; a key in a User-Agent stored nowhere."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import anyio
import httpx
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.factories import make_api_key
from tests.livecli import deploy
from tests.redaction_corpus import encodings, leaks
from tests.smtp import Inbox
from thotbot.core import keys
from thotbot.core.redaction import BARE_MARK, KEY_MARK, holds_key, redact, redact_cut
from thotbot.core.useragents import clean
from thotbot.services import Services

RAW = keys.PREFIX + "0123456789abcdef" * 6  # built at run time: no key-shaped literal in the source
CORPUS = encodings(RAW)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme/1.0", "acme/1.0"),
        ("acme/1.0 thot_ak_0123abcd", "acme/1.0 thot_ak_[redacted]"),
        ("THOT_AK_ABCDEF x", "thot_ak_[redacted] x"),
        # The prefix alone is no secret: help texts say "Bearer thot_ak_...".
        ("thot_ak_", "thot_ak_"),
        ("Bearer thot_ak_...", "Bearer thot_ak_..."),
        ("'ci' (thot_ak_abcd…ef01)", "'ci' (thot_ak_abcd…ef01)"),  # a hint is shown on purpose
        ("thot_ak_abcde…ef01", "thot_ak_[redacted]…ef01"),
        ("/v1/keys/key_0123456789abcdef", "/v1/keys/key_0123456789abcdef"),
        ("/v1/a%20b?c=d&e=%zz&f=&nbsp;&#x110000;\\u12", "/v1/a%20b?c=d&e=%zz&f=&nbsp;&#x110000;\\u12"),
        ("sha256 " + "ab" * 32, "sha256 " + "ab" * 32),  # 64 hex digits: not a key's secret
        ("sha384 " + "a1" * 48, "sha384 [redacted]"),  # 96: it might be one, so it goes
        ("pad " + "a" * 100 + " " + "0" * 100, "pad " + "a" * 100 + " " + "0" * 100),  # no random run
    ],
)
def test_redact(raw: str, expected: str) -> None:
    assert redact(raw) == expected


@pytest.mark.parametrize("name", CORPUS)
def test_every_encoding_is_redacted_in_place(name: str) -> None:
    encoded = CORPUS[name]
    mark = BARE_MARK if name.startswith("bare") else KEY_MARK

    redacted = redact(f"before {encoded} after")

    assert redacted == f"before {mark} after"
    assert leaks(RAW, redacted) == []


@pytest.mark.parametrize("name", CORPUS)
def test_holds_key_sees_every_prefixed_encoding(name: str) -> None:
    assert holds_key("q=" + CORPUS[name]) is not name.startswith("bare")


def test_two_keys_in_one_text_are_both_redacted() -> None:
    other = keys.generate()

    redacted = redact(f"{CORPUS['%255F twice']} and {other[len(keys.PREFIX) :]}.")

    assert redacted == f"{KEY_MARK} and {BARE_MARK}."


def test_a_cut_key_is_redacted_too() -> None:
    assert redact("token=" + RAW[:20] + "&x=1") == "token=" + KEY_MARK + "&x=1"


def test_the_corpus_leaks_are_seen() -> None:
    # The check the end-to-end tests rely on finds each encoding when it is there.
    for name, encoded in CORPUS.items():
        assert leaks(RAW, f"x {encoded} y"), name
    assert leaks(RAW, "nothing here") == []


def test_clean_redacts_a_whole_key() -> None:
    raw = keys.generate()

    cleaned = clean(f"my-app/1.0 ({raw})")

    assert cleaned == "my-app/1.0 (thot_ak_[redacted])"


@pytest.mark.parametrize("name", CORPUS)
def test_clean_redacts_every_encoding(name: str) -> None:
    cleaned = clean(f"my-app/1.0 ({CORPUS[name]})")

    assert cleaned is not None
    assert leaks(RAW, cleaned) == []


def test_key_in_user_agent_is_stored_nowhere(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)
    headers = {"Authorization": f"Bearer {raw}", "User-Agent": f"leaky/1.0 ({raw})"}

    assert client.get("/v1/version", headers=headers).status_code == 200
    assert client.delete(f"/v1/keys/{record.id}", headers=headers).status_code == 204
    anyio.run(services.usage_recorder.flush)

    with services.engine.connect() as connection:
        tables = [
            row[0]
            for row in connection.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                    if connection.dialect.name == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                )
            )
        ]
        dump = "\n".join(
            repr(row)
            for table in tables
            for row in connection.execute(text(f'SELECT * FROM "{table}"'))  # noqa: S608 - names from the catalogue
        )
    assert "leaky/1.0" in dump  # the User-Agent itself was recorded...
    assert raw not in dump  # ...but never the key in it
    assert raw[len(keys.PREFIX) :][:16] not in dump


def test_a_key_in_any_encoding_reaches_no_sink_of_a_real_server(tmp_path: Path, inbox: Inbox) -> None:
    # The JSON log format is the same sink with other framing: tests/test_logsafe.py runs it.
    server = deploy(tmp_path, {"THOTBOT_SMTP_URL": inbox.url})
    try:
        # In a process of its own: the CLI delivers its notice before it exits.
        secret = server.create_key("the secret", process=True)
        owner = server.create_key("owner")
        bodies: list[str] = []
        statuses: list[list[int]] = []
        with httpx.Client(base_url=server.url, timeout=30) as http:
            auth = {"Authorization": f"Bearer {owner}"}
            owner_id = http.get("/v1/me", headers=auth).json()["key"]["id"]
            assert server.cli("keys", "grant", owner_id, "account:security").returncode == 0
            # The server honours a grant within a second: an empty body is 422 once it does (403 before).
            deadline = time.monotonic() + 30
            while http.post("/v1/keys", headers=auth, json={}).status_code == 403:
                assert time.monotonic() < deadline, "the grant was not honoured"
                time.sleep(0.1)
            for encoded in encodings(secret).values():
                in_url = quote(encoded, safe="%&;=:@!$'()*+,")  # the server decodes it back to `encoded`
                as_json = '"' + encoded + '"'  # as sent: \u escapes are JSON's own
                agent = {"User-Agent": f"leaky/1.0 ({encoded})"}
                responses = [
                    http.get(f"/v1/{in_url}", headers=auth),
                    http.delete(f"/v1/keys/{in_url}", headers=auth),
                    http.get(f"/v1/version?q={in_url}", headers=auth),
                    http.get(f"/v1/version?{in_url}", headers=auth),
                    http.get("/v1/me", headers={**auth, **agent}),
                    http.post("/v1/keys/revoke-leaked", headers=agent, content='{"keys": [' + as_json + "]}"),
                    http.post("/v1/keys", headers={**auth, **agent}, content='{"name": ' + as_json + "}"),
                    http.post("/v1/keys", headers={**auth, **agent}, json={"name": "from the API"}),
                ]
                statuses.append([r.status_code for r in responses][-4:])
                bodies += [r.text for r in responses]
        # A notice for each key created (two by the CLI), and one for the secret, revoked when its
        # literal form came.
        expected = 2 + len(encodings(secret)) + 1
        mails = inbox.wait_for(expected, timeout=60)
    finally:
        assert server.stop() in (0, -signal.SIGTERM)

    texts = [m.message.as_string() + m.body for m in mails]
    sinks = {"log": server.log_text(), "database": server.stored(), "problems": "\n".join(bodies)}
    sinks.update({f"mail {n}": t for n, t in enumerate(texts)})
    assert "/v1/[redacted]" in sinks["log"]
    assert "leaky/1.0 (thot_ak_[redacted])" in sinks["database"]
    assert {name: leaks(secret, text) for name, text in sinks.items() if leaks(secret, text)} == {}
    assert any("using leaky 1.0" in t for t in texts)  # the agent was described, never quoted
    assert len(mails) == expected
    # The me, the revoke-leaked, a name holding a key refused, a plain name accepted.
    assert statuses == [[200, 202, 422, 201]] * len(encodings(secret))


@pytest.mark.parametrize(
    "hostile", ["'\\\\' * 100_000", "'%25' * 30_000 + '%'", "'&#x' + '0' * 100_000", "'a1' * 50_000"]
)
def test_hostile_text_is_not_a_denial_of_service(hostile: str) -> None:
    # Backtracking made such text take minutes; a generous bound only proves "not hung". In another
    # process: a regular expression holds the GIL, so a thread could not be given up on.
    script = f"from thotbot.core.redaction import redact; redact({hostile})"
    done = subprocess.run([sys.executable, "-c", script], timeout=60, check=False, capture_output=True)

    assert done.returncode == 0, done.stderr


def test_a_secret_across_the_cut_is_redacted_whole_not_halved() -> None:
    secret = keys.generate()[len(keys.PREFIX) :]
    agent = "a" * 480 + " " + secret + " tail"  # the secret spans the 512th character

    cleaned = clean(agent)

    assert cleaned == "a" * 480 + " " + BARE_MARK + " tail"
    assert redact_cut(agent, 490) == "a" * 480 + " " + BARE_MARK[:9]
    assert secret[:16] not in redact_cut(agent, 490)
