"""A real SMTP server for tests: aiosmtpd on a free loopback port, keeping every message it accepts."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from aiosmtpd.controller import Controller

from tests.services import free_port

if TYPE_CHECKING:
    from thotbot.services import Services

__all__ = ["Inbox", "Received", "mail_to", "smtp_server"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def body(self) -> str:
        content = self.message.get_content()
        assert isinstance(content, str)
        return content.replace("\r\n", "\n")  # as sent on the wire, lines end in CRLF

    def link(self) -> str:
        match = re.search(r"https?://\S+", self.body)
        assert match, self.body
        return match.group(0)


@dataclass
class Inbox:
    """The server's handler. ``refuse`` holds SMTP replies to give to the next DATA commands."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)
    attempts: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        with self._cond:
            self.attempts += 1
            if self.refuse:
                return self.refuse.pop(0)
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
            self._cond.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def to(self, address: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if address in r.rcpt_tos]


@contextmanager
def smtp_server() -> Iterator[Inbox]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.url = f"smtp://127.0.0.1:{port}"
    try:
        yield inbox
    finally:
        controller.stop()


def mail_to(services: Services, inbox: Inbox, to: str) -> list[Received]:
    """What reached ``to``, once the services' mailer has sent all it queued."""
    assert services.mailer.flush(10)
    return inbox.to(to)
