"""Account mail: sent through THOTBOT_SMTP_URL in the background, or written to the log in full.

``Mailer.send`` never blocks and never fails the caller's request. With an SMTP URL, messages go
to one background thread that delivers them with smtplib and retries failures (after 2 s, 10 s,
then 60 s); a message still undelivered after the last try, or at process exit, is logged in
full at ERROR. Without one, each message is logged in full at INFO on the ``thotbot.mail``
logger. Either way nothing is lost silently. Subject and body are redacted first
(``redaction.redact``), and the log's formatters escape control characters.
"""

from __future__ import annotations

import atexit
import heapq
import ipaddress
import itertools
import logging
import smtplib
import ssl
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import SplitResult, unquote, urlsplit

from thotbot.config import Settings
from thotbot.core.redaction import redact
from thotbot.logs import TextFormatter

__all__ = ["RETRY_DELAYS", "Mailer", "from_address", "show_mail_log"]

log = logging.getLogger("thotbot.mail")

#: Seconds to wait before each retry of a failed delivery.
RETRY_DELAYS: tuple[float, ...] = (2.0, 10.0, 60.0)
#: How long process exit waits for messages still queued.
EXIT_TIMEOUT = 15.0
_live: weakref.WeakSet[Mailer] = weakref.WeakSet()


def from_address(public_url: str) -> str:
    """``Thotbot <no-reply@HOST>``, HOST being THOTBOT_PUBLIC_URL's host name."""
    host = urlsplit(public_url).hostname or "localhost"
    try:
        ipaddress.ip_address(host)
        host = f"[{host}]"  # An address literal, as RFC 5321 writes it.
    except ValueError:
        pass
    return f"Thotbot <no-reply@{host}>"


def show_mail_log() -> None:
    """For a command that sets up no logging: show this logger (mail written to it) on stderr."""
    if logging.getLogger().handlers or log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


@dataclass(order=True)
class _Outgoing:
    due: float
    seq: int
    message: EmailMessage = field(compare=False)
    to: str = field(compare=False)
    attempt: int = field(default=0, compare=False)


class Mailer:
    def __init__(
        self,
        smtp_url: str | None,
        public_url: str,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        timeout: float = 10.0,
    ) -> None:
        # The URL may hold a password: keep its parts, and never put them in a repr or a log line.
        self._smtp: SplitResult | None = urlsplit(smtp_url) if smtp_url else None
        self.sender = from_address(public_url)
        self._sender_addr = self.sender.split("<", 1)[1].rstrip(">")
        self._helo = urlsplit(public_url).hostname or "localhost"
        self._retry_delays = tuple(retry_delays)
        self._timeout = timeout
        self._cond = threading.Condition()
        self._queue: list[_Outgoing] = []
        self._in_flight = 0
        self._worker: threading.Thread | None = None
        self._closing = False
        self._seq = itertools.count()

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        smtp_url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
        return cls(smtp_url, settings.public_url)

    def __repr__(self) -> str:
        target = f"{self._smtp.scheme}://{self._smtp.hostname}" if self._smtp else "the log"
        return f"<Mailer to {target}>"

    @property
    def enabled(self) -> bool:
        """True when mail goes out through SMTP, False when it is written to the log."""
        return self._smtp is not None

    def send(self, to: str, subject: str, body: str) -> None:
        """Queue one plain-text message; returns at once and never raises for a delivery problem."""
        # A notice quotes what a client sent (a key's name, a User-Agent): key material in it is
        # redacted here, so neither the mail nor its copy in the log carries it.
        subject, body = redact(subject), redact(body)
        try:
            message = self._compose(to, subject, body)
        except (ValueError, TypeError) as exc:
            log.error("cannot mail %r (%s); the message, not sent:\n%s\n\n%s", to, exc, subject, body)
            return
        if self._smtp is None:
            log.info(
                "THOTBOT_SMTP_URL is unset, so this mail is written here, not sent:\n%s", _render(message)
            )
            return
        with self._cond:
            heapq.heappush(self._queue, _Outgoing(time.monotonic(), next(self._seq), message, to))
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="thotbot-mailer", daemon=True)
                self._worker.start()
                _live.add(self)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued message is delivered or given up; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def close(self, timeout: float = EXIT_TIMEOUT) -> None:
        """Try what is queued once more without waiting out the retry delays; log what is left."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.flush(timeout)
        with self._cond:
            left, self._queue = self._queue, []
        for item in left:
            log.error(
                "mail to %s undelivered at shutdown; here it is in full:\n%s", item.to, _render(item.message)
            )

    def _compose(self, to: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        # Address() refuses what is not one address (commas, line breaks), so no header injection.
        message["To"] = Address(addr_spec=to)
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self._sender_addr.split("@", 1)[1].strip("[]"))
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(body)
        return message

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._queue:
                        self._worker = None  # Idle: end; the next send starts a new thread.
                        self._cond.notify_all()
                        return
                    wait = self._queue[0].due - time.monotonic()
                    if wait <= 0 or self._closing:
                        break
                    self._cond.wait(wait)
                item = heapq.heappop(self._queue)
                self._in_flight += 1
            error = self._deliver(item)
            with self._cond:
                self._in_flight -= 1
                if error is not None:
                    self._failed(item, error)
                self._cond.notify_all()

    def _deliver(self, item: _Outgoing) -> smtplib.SMTPException | OSError | None:
        assert self._smtp is not None
        try:
            self._transmit(item)
        except (smtplib.SMTPException, OSError) as exc:
            return exc
        return None

    def _transmit(self, item: _Outgoing) -> None:
        assert self._smtp is not None
        host, secure = self._smtp.hostname or "localhost", self._smtp.scheme == "smtps"
        port = self._smtp.port or (465 if secure else 25)
        smtp: smtplib.SMTP
        if secure:
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(
                host, port, local_hostname=self._helo, timeout=self._timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(host, port, local_hostname=self._helo, timeout=self._timeout)
        with smtp:
            if self._smtp.username:
                smtp.login(unquote(self._smtp.username), unquote(self._smtp.password or ""))
            smtp.send_message(item.message, from_addr=self._sender_addr, to_addrs=[item.to])

    def _failed(self, item: _Outgoing, error: smtplib.SMTPException | OSError) -> None:
        """Called holding the lock: schedule a retry, or give up and log the message in full."""
        reason = _describe(error)
        if item.attempt < len(self._retry_delays) and not _permanent(error) and not self._closing:
            delay = self._retry_delays[item.attempt]
            log.warning(
                "mail to %s failed (%s); retry %d of %d in %g s",
                item.to,
                reason,
                item.attempt + 1,
                len(self._retry_delays),
                delay,
            )
            item.attempt += 1
            item.due = time.monotonic() + delay
            heapq.heappush(self._queue, item)
            return
        log.error(
            "mail to %s failed for good (%s); here it is in full:\n%s", item.to, reason, _render(item.message)
        )


def _render(message: EmailMessage) -> str:
    """The message as a person reads it: headers, then the body decoded (links intact)."""
    headers = "".join(
        f"{name}: {value}\n" for name, value in message.items() if name != "Content-Transfer-Encoding"
    )
    return f"{headers}\n{message.get_content()}"


def _permanent(error: smtplib.SMTPException | OSError) -> bool:
    """A 5xx answer will not change on a retry."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPResponseException) and error.smtp_code >= 500


def _describe(error: smtplib.SMTPException | OSError) -> str:
    # An SMTP login failure may echo the server's text, never our password; keep it to one line.
    return (f"{type(error).__name__}: {error}".splitlines() or [""])[0][:300]


@atexit.register
def _close_all() -> None:
    for mailer in list(_live):
        mailer.close()
