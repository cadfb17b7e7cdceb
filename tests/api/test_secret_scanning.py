"""POST /v1/secret-scanning/report: GitHub secret scanning's signed reports, against a real server.

A P-256 key pair made here stands in for GitHub's: its public half goes in the keys file named by
THOTBOT_SECRET_SCANNING_KEYS, its private half signs the reports. A forged report (another key, a
body changed after signing, an unknown identifier, no headers) must change nothing at all.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from tests.dashboard.helpers import sign_in
from tests.factories import PASSWORD, make_api_key, make_user
from tests.live import LiveServer, start_server
from tests.smtp import Inbox
from thotbot.app import create_app
from thotbot.cli import main
from thotbot.config import Settings, load_settings
from thotbot.core.errors import ConfigError
from thotbot.core.identity import Actor
from thotbot.core.revocation import RevokedReason
from thotbot.core.scanning import parse_reports
from thotbot.services import Services

PATH = "/v1/secret-scanning/report"
KEY_ID = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"
#: Attacker-influenced text, as GitHub would pass it on: markup, a line break, a forged mail line.
URL = "https://github.com/octo/leak/blob/0123abc/config.py<script>alert(1)</script>\n[Thotbot] forged line"
UA = {"User-Agent": "GitHub-Secret-Scanning/1.0"}
RACERS = 8


def _pem(private: ec.EllipticCurvePrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def github_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def keys_file(tmp_path: Path, github_key: ec.EllipticCurvePrivateKey) -> Path:
    path = tmp_path / "github-keys.json"
    document = {"public_keys": [{"key_identifier": KEY_ID, "key": _pem(github_key), "is_current": True}]}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _signed(private: ec.EllipticCurvePrivateKey, body: bytes, identifier: str = KEY_ID) -> dict[str, str]:
    signature = base64.b64encode(private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    return {
        **UA,
        "Content-Type": "application/json",
        "Github-Public-Key-Identifier": identifier,
        "Github-Public-Key-Signature": signature,
    }


def _report(*tokens: str, url: str = URL) -> bytes:
    entries = [{"token": t, "type": "thotbot_api_key", "url": url, "source": "content"} for t in tokens]
    return json.dumps(entries).encode()


@pytest.fixture
def live(tmp_path: Path, database_url: str, inbox: Inbox, keys_file: Path) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path,
        {
            "THOTBOT_DATABASE_URL": database_url,
            "THOTBOT_SMTP_URL": inbox.url,
            "THOTBOT_SECRET_SCANNING_KEYS": str(keys_file),
        },
    )
    try:
        yield server
    finally:
        server.stop()


def test_a_signed_report_revokes_logs_mails_and_labels(
    live: LiveServer, services: Services, inbox: Inbox, github_key: ec.EllipticCurvePrivateKey
) -> None:
    account = make_user(services)
    live_raw, live_key = make_api_key(services, account, name="ci")
    old_raw, old_key = make_api_key(services, account, name="old")
    services.keys.revoke(old_key.id)
    unknown = "thot" + "_ak_" + "0" * 96  # the key format, but no such key
    body = _report(live_raw, old_raw, unknown, "ghp_not_ours")

    with httpx.Client(base_url=live.url, timeout=30) as client:
        assert client.get("/v1/me", headers={"Authorization": f"Bearer {live_raw}", **UA}).status_code == 200
        response = client.post(PATH, content=body, headers=_signed(github_key, body))
        after = client.get("/v1/me", headers={"Authorization": f"Bearer {live_raw}", **UA})

    assert response.status_code == 200, response.text
    assert response.json() == [
        {"token_raw": live_raw, "token_type": "thotbot_api_key", "label": "true_positive"},
        {"token_raw": old_raw, "token_type": "thotbot_api_key", "label": "true_positive"},
        {"token_raw": unknown, "token_type": "thotbot_api_key", "label": "false_positive"},
        {"token_raw": "ghp_not_ours", "token_type": "thotbot_api_key", "label": "false_positive"},
    ]
    # Revoked for every instance: this one refuses it on the very next request.
    assert after.status_code == 401
    assert after.json()["code"] == "revoked_api_key"
    assert services.keys.get(live_key.id).revoked_reason == RevokedReason.LEAKED
    # Logged once, for the key that changed, with the place found, escaped: no raw line break.
    [event] = services.security_log.list_for_account(account.id)
    assert (event.action, event.key_id, event.actor) == ("key.revoked_leaked", live_key.id, "secret-scanning")
    assert "https://github.com/octo/leak/blob/0123abc/config.py<script>" in event.detail
    assert "\\n[Thotbot] forged line (content)" in event.detail
    assert "\n" not in event.detail
    # The owner is mailed the place; the line break in it stayed an escape.
    [mail] = inbox.wait_for(1)
    assert mail.rcpt_tos == [account.email]
    assert mail.message["Subject"] == "[Thotbot] An API key was reported as leaked and revoked"
    assert "It was found here:\n  https://github.com/octo/leak/blob/0123abc/config.py" in mail.body
    assert not any(line.startswith("[Thotbot] forged") for line in mail.body.splitlines())
    assert "by GitHub secret scanning" in mail.body
    # No key in the server's log lines.
    assert live_raw not in live.log_text()
    assert old_raw not in live.log_text()


@pytest.mark.parametrize(
    "forgery", ["another_key", "body_changed", "unknown_identifier", "no_headers", "not_base64"]
)
def test_a_forged_report_changes_nothing(
    live: LiveServer,
    services: Services,
    inbox: Inbox,
    github_key: ec.EllipticCurvePrivateKey,
    forgery: str,
) -> None:
    account = make_user(services)
    raw, record = make_api_key(services, account)
    body = _report(raw)
    if forgery == "another_key":
        headers = _signed(ec.generate_private_key(ec.SECP256R1()), body)
    elif forgery == "body_changed":
        headers = _signed(github_key, body)
        body = _report(raw, url="https://github.com/other/place")
    elif forgery == "unknown_identifier":
        headers = _signed(github_key, body, identifier="0" * 64)
    elif forgery == "no_headers":
        headers = {**UA, "Content-Type": "application/json"}
    else:
        headers = {**_signed(github_key, body), "Github-Public-Key-Signature": "not base64!"}
    # A control: a real report about another account's key, sent after the forgery; its mail
    # arriving shows that the forgery would have been mailed by then, had it been acted on.
    other = make_user(services)
    control_raw, _ = make_api_key(services, other)
    control = _report(control_raw)

    with httpx.Client(base_url=live.url, timeout=30) as client:
        forged = client.post(PATH, content=body, headers=headers)
        still = client.get("/v1/me", headers={"Authorization": f"Bearer {raw}", **UA})
        assert client.post(PATH, content=control, headers=_signed(github_key, control)).status_code == 200

    assert forged.status_code == 401
    assert forged.headers["content-type"] == "application/problem+json"
    assert forged.json()["code"] == "invalid_signature"
    assert raw not in forged.text
    assert still.status_code == 200
    assert services.keys.get(record.id).revoked_at is None
    assert services.security_log.list_for_account(account.id) == []
    assert [m.rcpt_tos for m in inbox.wait_for(1)] == [[other.email]]
    assert raw not in live.log_text()


@pytest.fixture
def settings(database_url: str, keys_file: Path, inbox: Inbox) -> Settings:
    return load_settings(database_url=database_url, secret_scanning_keys=str(keys_file), smtp_url=inbox.url)


def test_github_and_another_reporter_at_once_revoke_log_and_mail_once(
    services: Services, inbox: Inbox
) -> None:
    account = make_user(services)
    raw, record = make_api_key(services, account)
    leak = parse_reports(_report(raw))
    barrier = threading.Barrier(RACERS)
    known: list[list[bool]] = []

    def report(turn: int) -> None:
        barrier.wait(10)
        if turn % 2:
            known.append(services.key_lifecycle.revoke_reported(leak, Actor("secret-scanning")))
        else:
            services.key_lifecycle.revoke_leaked([raw], Actor("revoke-leaked"))

    threads = [threading.Thread(target=report, args=(turn,)) for turn in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert known == [[True]] * (RACERS // 2)  # a real key, whoever revoked it first
    assert [e.action for e in services.security_log.list_for_account(account.id)] == ["key.revoked_leaked"]
    assert services.keys.get(record.id).revoked_reason == RevokedReason.LEAKED
    assert services.mailer.flush(10)
    assert len(inbox.to(account.email)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b'{"token": "x"}', None),
        (b'[{"token": "x", "type": "t", "url": 1, "source": "content"}]', "0"),
        (b'["x"]', "0"),
        (json.dumps([{"token": "x", "type": "t", "url": "u", "source": "s"}] * 1001).encode(), None),
    ],
    ids=["not_json", "not_array", "url_not_string", "entry_not_object", "too_many"],
)
def test_a_signed_but_invalid_body_is_422_and_changes_nothing(
    client: TestClient,
    services: Services,
    github_key: ec.EllipticCurvePrivateKey,
    body: bytes,
    field: str | None,
) -> None:
    account = make_user(services)
    _, record = make_api_key(services, account)

    response = client.post(PATH, content=body, headers=_signed(github_key, body))

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json().get("field") == field
    assert services.keys.get(record.id).revoked_at is None


def test_an_oversized_report_is_413_before_its_signature_is_checked(client: TestClient) -> None:
    response = client.post(PATH, content=b"[" + b" " * (1024 * 1024) + b"]", headers=UA)

    assert response.status_code == 413
    assert response.json()["code"] == "content_too_large"


def test_the_place_is_shown_escaped_on_the_dashboard(
    client: TestClient, services: Services, github_key: ec.EllipticCurvePrivateKey
) -> None:
    account = make_user(services)
    raw, _ = make_api_key(services, account)
    body = _report(raw)

    assert client.post(PATH, content=body, headers=_signed(github_key, body)).status_code == 200
    sign_in(client, account.email, PASSWORD)
    page = client.get("/dashboard/security").text

    assert "config.py&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert "GitHub secret scanning" in page


def test_without_the_setting_the_report_path_is_a_404(tmp_path: Path, sqlite_url: str) -> None:
    """Unset, nothing answers there: 404 not_found to GitHub (no key) and to a key alike, and no
    report is read."""
    app = create_app(load_settings(database_url=sqlite_url))
    with TestClient(app, base_url="http://localhost") as client:
        services = app.services
        raw, _ = make_api_key(services, make_user(services))
        auth = {"Authorization": f"Bearer {raw}", **UA}
        anonymous = client.post(PATH, content=_report(raw), headers=UA)
        with_key = client.post(PATH, content=_report(raw), headers=auth)
        after = client.get("/v1/me", headers=auth)

    for answer in (anonymous, with_key):
        assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read"),
        ("not json", "is not a JSON document"),
        ('{"public_keys": []}', 'holds no "public_keys" list'),
        ('{"public_keys": [{"key_identifier": "k", "key": "-----BEGIN PUBLIC KEY-----"}]}', "not a PEM"),
    ],
)
def test_a_bad_keys_file_stops_serve_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    says: str,
) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("THOTBOT_SECRET_SCANNING_KEYS", str(path))

    assert main(["serve", "--port", "1"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(r"thotbot: error: THOTBOT_SECRET_SCANNING_KEYS: [^\n]+\n", err), err
    assert says in err


def test_an_rsa_key_in_the_keys_file_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"public_keys": [{"key_identifier": "k", "key": pem}]}), encoding="utf-8")

    with pytest.raises(ConfigError, match="THOTBOT_SECRET_SCANNING_KEYS: public key 1 is not an ECDSA P-256"):
        load_settings(secret_scanning_keys=str(path))
