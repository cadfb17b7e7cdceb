"""The Mailer against a real aiosmtpd server, and its log fallback when THOTBOT_SMTP_URL is unset."""

from __future__ import annotations

import logging

import anyio
import pytest

from tests.redaction_corpus import leaks
from tests.services import free_port
from tests.smtp import Inbox
from thotbot.core import keys
from thotbot.mail import Mailer, from_address

PUBLIC_URL = "https://thotbot.example"
LINK = "https://thotbot.example/verify-email?token=abc=def-ghi_123"
# Long enough to be sent quoted-printable: the link must still come out whole.
BODY = (
    f"Hello,\n\nfollow this link to go on, it is long on purpose and full of = signs:\n  {LINK}\n\n… thanks\n"
)


def _mailer(url: str | None, **kwargs: object) -> Mailer:
    return Mailer(url, PUBLIC_URL, **kwargs)  # type: ignore[arg-type]


def test_send_delivers_through_smtp(inbox: Inbox) -> None:
    mailer = _mailer(inbox.url)

    mailer.send("Someone@Example.com", "[Thotbot] Hello", BODY)

    assert mailer.flush(10)
    (received,) = inbox.wait_for(1)
    assert received.mail_from == "no-reply@thotbot.example"
    assert received.rcpt_tos == ["Someone@Example.com"]
    assert received.message["From"] == "Thotbot <no-reply@thotbot.example>"
    assert received.message["To"] == "Someone@Example.com"
    assert received.message["Subject"] == "[Thotbot] Hello"
    assert received.message["Auto-Submitted"] == "auto-generated"
    assert received.message["Message-ID"].endswith("@thotbot.example>")
    assert received.body == BODY
    assert received.link() == LINK


def test_send_from_async_code_returns_at_once_and_delivers(inbox: Inbox) -> None:
    mailer = _mailer(inbox.url)

    async def handler() -> None:
        # As a request handler would: the SMTP exchange happens on the mailer's own thread.
        mailer.send("a@example.com", "one", "1")
        mailer.send("b@example.com", "two", "2")

    anyio.run(handler)

    assert mailer.flush(10)
    assert sorted(r.message["Subject"] for r in inbox.wait_for(2)) == ["one", "two"]


def test_without_smtp_url_the_whole_message_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    mailer = _mailer(None)
    caplog.set_level(logging.INFO, logger="thotbot.mail")

    mailer.send("someone@example.com", "[Thotbot] Hello", BODY)

    (record,) = [r for r in caplog.records if r.name == "thotbot.mail"]
    assert record.levelno == logging.INFO
    text = record.getMessage()
    assert "To: someone@example.com" in text
    assert "From: Thotbot <no-reply@thotbot.example>" in text
    assert "Subject: [Thotbot] Hello" in text
    assert BODY in text  # decoded: the link is whole, not quoted-printable
    assert not mailer.enabled


def test_a_temporary_failure_is_retried_until_delivered(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    inbox.refuse = ["451 4.3.0 try again later", "451 4.3.0 try again later"]
    mailer = _mailer(inbox.url, retry_delays=(0.01, 0.01, 0.01))

    mailer.send("someone@example.com", "retried", BODY)

    assert mailer.flush(10)
    assert inbox.attempts == 3
    assert [r.message["Subject"] for r in inbox.wait_for(1)] == ["retried"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "thotbot.mail"]
    assert len(warnings) == 2
    assert all("retry" in w and BODY not in w for w in warnings)


def test_a_permanent_refusal_is_not_retried_and_is_logged_in_full(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    inbox.refuse = ["554 5.7.1 no thanks"]
    mailer = _mailer(inbox.url, retry_delays=(0.01, 0.01))

    mailer.send("someone@example.com", "refused", BODY)

    assert mailer.flush(10)
    assert inbox.attempts == 1
    assert inbox.received == []
    (record,) = [r for r in caplog.records if r.name == "thotbot.mail"]
    assert record.levelno == logging.ERROR
    assert "554" in record.getMessage()
    assert BODY in record.getMessage()


def test_an_unreachable_server_never_fails_the_sender_and_nothing_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailer = _mailer(f"smtp://127.0.0.1:{free_port()}", retry_delays=(0.01, 0.01))

    mailer.send("someone@example.com", "lost?", BODY)  # does not raise

    assert mailer.flush(30)
    records = [r for r in caplog.records if r.name == "thotbot.mail"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING, logging.ERROR]
    assert BODY in records[-1].getMessage()


def test_close_tries_once_more_at_once_then_logs_what_is_left(caplog: pytest.LogCaptureFixture) -> None:
    # Retries far in the future: at shutdown they are not waited for.
    mailer = _mailer(f"smtp://127.0.0.1:{free_port()}", retry_delays=(3600.0,))
    mailer.send("someone@example.com", "at exit", BODY)
    assert not mailer.flush(0.5)

    mailer.close(timeout=30)

    errors = [r for r in caplog.records if r.name == "thotbot.mail" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert BODY in errors[0].getMessage()
    assert mailer.flush(0)


@pytest.mark.parametrize("address", ["a,evil@example.com", "a\r\nBcc: evil@example.com", "not an address"])
def test_a_bad_address_is_logged_not_sent_and_never_raises(
    address: str, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    mailer = _mailer(inbox.url)

    mailer.send(address, "bad", BODY)

    assert mailer.flush(10)
    assert inbox.attempts == 0
    (record,) = [r for r in caplog.records if r.name == "thotbot.mail"]
    assert record.levelno == logging.ERROR
    assert BODY in record.getMessage()


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://thotbot.example", "Thotbot <no-reply@thotbot.example>"),
        ("http://localhost:8000", "Thotbot <no-reply@localhost>"),
        ("http://127.0.0.1:8000", "Thotbot <no-reply@[127.0.0.1]>"),
    ],
)
def test_from_address_is_no_reply_at_the_public_host(public_url: str, expected: str) -> None:
    assert from_address(public_url) == expected
    assert Mailer(None, public_url).sender == expected


def test_repr_never_shows_the_smtp_password() -> None:
    mailer = _mailer("smtp://user:s3cret-pass@127.0.0.1:2525")

    assert "s3cret-pass" not in repr(mailer)
    assert "127.0.0.1" in repr(mailer)


def test_key_material_is_redacted_from_subject_and_body_sent_or_logged(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    raw = keys.generate()
    body = f"From User-Agent 'x/1.0 ({raw})', or thot%255Fak_{raw[len(keys.PREFIX) :]}.\n"
    caplog.set_level(logging.INFO, logger="thotbot.mail")

    sender = _mailer(inbox.url)
    sender.send("someone@example.com", f"[Thotbot] {raw}", body)
    assert sender.flush(30)
    _mailer(None).send("someone@example.com", f"[Thotbot] {raw}", body)

    [received] = inbox.wait_for(1)
    logged = caplog.records[-1].getMessage()
    for text in (received.message.as_string() + received.body, logged):
        assert "x/1.0 (thot_ak_[redacted])', or thot_ak_[redacted]." in text
        assert leaks(raw, text) == []
