"""Short security mails: what changed, when, from where, and what to do if it was not you.

Every method is blocking (it may read the account's address) and never raises for a mail or
database problem: the change it reports is made already, so reporting it must not undo the answer.
Call them from async code through ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.exc import SQLAlchemyError

from thotbot.core.dates import utcnow
from thotbot.core.identity import Actor
from thotbot.core.reminders import Reminder, time_left
from thotbot.core.useragents import describe
from thotbot.mail import Mailer
from thotbot.storage import FailingStore, KeyRecord, UserStore
from thotbot.usage.failing import FailingKey, failing_keys, mail_line

__all__ = ["Notifier", "mail_failing_integrations", "when_text"]

log = logging.getLogger("thotbot.notifications")

_SUBJECT = "[Thotbot] "


def when_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class Notifier:
    def __init__(self, mailer: Mailer, users: UserStore, public_url: str) -> None:
        self._mailer = mailer
        self._users = users
        self._public_url = public_url.rstrip("/")

    @property
    def security_page(self) -> str:
        return f"{self._public_url}/dashboard/security"

    def key_created(
        self, account_id: str, key: KeyRecord, actor: Actor, *, when: datetime | None = None
    ) -> None:
        self._notify(
            account_id,
            "A new API key was created",
            f"A new API key was created for your Thotbot account: {key.name!r} ({key.hint}, id {key.id}).",
            actor,
            when or key.created_at,
            f"revoke it at {self._public_url}/dashboard/api-keys, then change your password",
        )

    def key_revoked_as_leaked(
        self,
        account_id: str,
        key: KeyRecord,
        actor: Actor,
        *,
        when: datetime | None = None,
        found_at: str | None = None,
    ) -> None:
        """``found_at``: where the key was seen (GitHub secret scanning's URL and source), as
        ``core.scanning.safe_text`` left it: redacted and escaped, one line."""
        # The mail is plain text: the place is the sender's text, on a line of its own, never a
        # header; safe_text escaped every line break and control character already.
        place = f"\n\nIt was found here:\n  {found_at}\n\n" if found_at else " "
        self._notify(
            account_id,
            "An API key was reported as leaked and revoked",
            f"Your API key {key.name!r} ({key.hint}, id {key.id}) was reported as leaked, so it was "
            f"revoked: requests made with it are refused from now on.{place}Create a new key for the "
            f"programs that used it, at {self._public_url}/dashboard/api-keys, and find out where "
            "the key was exposed (a public repository, a log, a shared file).",
            actor,
            when or key.revoked_at or utcnow(),
            "review the security log and your other keys",
        )

    def key_expires_soon(self, email: str, key: KeyRecord, reminder: Reminder, *, now: datetime) -> None:
        """The 7-day or 1-day reminder that a key expires: its name, hint and when, and where to
        roll it. Never the key: it is not kept, and a mail is no place for it."""
        assert key.expires_at is not None
        left = time_left(key.expires_at, now)
        body = (
            f"Your Thotbot API key {key.name!r} ({key.hint}, id {key.id}) expires {left}, "
            f"on {when_text(key.expires_at)}. From then on, requests made with it are refused.\n\n"
            "If a program still uses it, roll the key: a replacement with the same name and access "
            "is shown to you once, and this key keeps working for the time you choose, so the "
            "program can switch without downtime. Roll it here:\n\n"
            f"  {self.key_page(key.id)}#roll\n\n"
            "If nothing uses it any more, there is nothing to do: it stops working by itself.\n\n"
            f"This is the {'7-day' if reminder is Reminder.WEEK else '1-day'} reminder; each is sent once. "
            f"Your keys: {self._public_url}/dashboard/api-keys\n"
        )
        self._mailer.send(email, _SUBJECT + f"Your API key {key.name!r} expires {left}", body)

    def key_page(self, key_id: str) -> str:
        return f"{self._public_url}/dashboard/api-keys/{key_id}"

    def passkey_added(
        self, account_id: str, passkey_name: str, actor: Actor, *, when: datetime | None = None
    ) -> None:
        self._notify(
            account_id,
            "A passkey was added to your account",
            f"A passkey named {passkey_name!r} was added to your Thotbot account. It can sign in "
            "without your password.",
            actor,
            when or utcnow(),
            "remove it at once on the Security page, then change your password",
        )

    def password_changed(
        self, account_id: str, actor: Actor, *, sessions_ended: int = 0, when: datetime | None = None
    ) -> None:
        ended = f" {sessions_ended} other signed-in session(s) were ended." if sessions_ended else ""
        self._notify(
            account_id,
            "Your password was changed",
            f"The password of your Thotbot account was changed.{ended}",
            actor,
            when or utcnow(),
            f"set a new password at once at {self._public_url}/forgot-password: it signs out every session",
        )

    def password_sign_in_paused(self, account_id: str, actor: Actor, *, until: datetime) -> None:
        """Sent once when the sign-in throttle pauses the account's password sign-in."""
        self._notify(
            account_id,
            "Password sign-in to your account is paused",
            "Too many wrong passwords were tried in a row for your Thotbot account, so signing in "
            f"with its password is paused until {when_text(until)}. Signing in with a passkey still "
            "works. The attempt that paused it is described below.",
            actor,
            utcnow(),
            "someone is guessing your password; if it is long and used nowhere else it will not be "
            "found. Sign in with a passkey, or wait, and consider changing the password",
        )

    def email_changed(
        self, old_email: str, new_email: str, actor: Actor, *, when: datetime | None = None
    ) -> None:
        """Sent to the OLD address, which no longer belongs to the account."""
        self._send(
            old_email,
            "The email address of your account was changed",
            f"The email address of your Thotbot account was changed from {old_email} to "
            f"{new_email}. This address will get no more mail about the account.",
            actor,
            when or utcnow(),
            "contact the operator at once: this address can no longer be used to sign in",
        )

    def email_verification(self, new_email: str, link: str, expires_at: datetime, actor: Actor) -> None:
        """The link that confirms an email change, sent to the NEW address."""
        body = (
            "Someone asked to use this address for a Thotbot account. To confirm, follow this link:\n\n"
            f"  {link}\n\n"
            f"It works once, until {when_text(expires_at)}. The change takes effect only when it is "
            "followed.\n\n"
            f"Asked for: {when_text(utcnow())}, {actor.describe()}{_origin(actor)}.\n\n"
            "If you did not ask for this, ignore this mail: nothing changes.\n"
        )
        self._mailer.send(new_email, _SUBJECT + "Confirm your new email address", body)

    def account_verification(self, email: str, link: str, expires_at: datetime, actor: Actor) -> None:
        """The link that proves a new account's address, sent at sign-up (and when asked again)."""
        body = (
            "Someone created a Thotbot account with this email address. To confirm that it is yours, "
            f"follow this link:\n\n  {link}\n\n"
            f"It works once, until {when_text(expires_at)}. Until it is followed the account cannot "
            "create API keys.\n\n"
            f"Signed up: {when_text(utcnow())}{_origin(actor)}.\n\n"
            "If you did not sign up, ignore this mail: an account whose address is never confirmed is "
            "deleted 7 days after it was made.\n"
        )
        self._mailer.send(email, _SUBJECT + "Confirm your email address", body)

    def password_reset_link(self, email: str, link: str, expires_at: datetime, actor: Actor) -> None:
        """The link that sets a new password, sent to the account's address only."""
        body = (
            "Someone asked to set a new password for the Thotbot account of this address. To choose "
            f"one, follow this link:\n\n  {link}\n\n"
            f"It works once, until {when_text(expires_at)}. Setting a new password signs out every "
            "session of the account.\n\n"
            f"Asked for: {when_text(utcnow())}, {actor.describe()}{_origin(actor)}.\n\n"
            "If you did not ask for this, ignore this mail: your password stays as it is.\n"
        )
        self._mailer.send(email, _SUBJECT + "Set a new password", body)

    def password_reset(self, account_id: str, actor: Actor, *, sessions_ended: int = 0) -> None:
        """After a password was set through a reset link."""
        ended = f" {sessions_ended} signed-in session(s) were ended." if sessions_ended else ""
        self._notify(
            account_id,
            "Your password was reset",
            f"The password of your Thotbot account was set with a password reset link.{ended}",
            actor,
            utcnow(),
            f"set a new password at once at {self._public_url}/forgot-password, and check that "
            "nobody else can read this mailbox",
        )

    def email_in_use(self, new_email: str, actor: Actor) -> None:
        """Instead of a link, when the new address has an account already (the requester is not told)."""
        body = (
            "Someone asked to move a Thotbot account to this address, but this address belongs to a "
            "Thotbot account already, so nothing was changed.\n\n"
            f"Asked for: {when_text(utcnow())}, {actor.describe()}{_origin(actor)}.\n\n"
            "If you did not ask for this, you can ignore this mail.\n"
        )
        self._mailer.send(new_email, _SUBJECT + "Email change not possible", body)

    def failing_integrations(
        self, email: str, day: date, keys: Sequence[FailingKey], *, now: datetime | None = None
    ) -> None:
        """The daily mail about an account's keys whose requests mostly failed on ``day`` (UTC)."""
        now = now or utcnow()
        lines = "\n\n".join(
            f"- {mail_line(k, now)}\n  {self._public_url}/dashboard/api-keys/{k.key.id}" for k in keys
        )
        count = "One of your API keys" if len(keys) == 1 else f"{len(keys)} of your API keys"
        body = (
            f"{count} mostly failed on {day.isoformat()} (UTC): the programs that use them get "
            f"errors instead of answers.\n\n{lines}\n\n"
            "A revoked or expired key can never work again: give the program a new key, or stop it. "
            f"The other error codes are explained at {self._public_url}/docs.\n\n"
            "You get this mail at most once a day, and only when a key mostly fails. To stop it, turn "
            f'off "Mail me about failing keys" at {self._public_url}/dashboard/api-keys#integration-mail\n'
        )
        self._mailer.send(email, _SUBJECT + "API keys that are failing", body)

    def _notify(
        self, account_id: str, subject: str, what: str, actor: Actor, when: datetime, if_not_you: str
    ) -> None:
        try:
            account = self._users.find(account_id)
        except SQLAlchemyError:
            log.warning("cannot read account %s to mail it about %r", account_id, subject, exc_info=True)
            return
        if account is None:
            return
        self._send(account.email, subject, what, actor, when, if_not_you)

    def _send(self, to: str, subject: str, what: str, actor: Actor, when: datetime, if_not_you: str) -> None:
        body = (
            f"{what}\n\n"
            f"When: {when_text(when)}\n"
            f"How:  {actor.describe()}\n"
            f"From: {_origin(actor).removeprefix(', from ') or 'the server itself'}\n\n"
            "If this was you, there is nothing to do.\n"
            f"If it was not you: {if_not_you}. Review the security log at {self.security_page}.\n"
        )
        self._mailer.send(to, _SUBJECT + subject, body)


def _origin(actor: Actor) -> str:
    # The User-Agent is the sender's text: only its parsed, filtered description is shown, never
    # the header itself (no markup, no pasted key, no line break reaches a mail).
    agent = actor.user_agent and f"using {describe(actor.user_agent)}"
    parts = [p for p in (actor.ip_address, agent) if p]
    return ", from " + ", ".join(parts) if parts else ""


def mail_failing_integrations(
    failing: FailingStore, notifier: Notifier, day: date, *, now: datetime | None = None
) -> tuple[int, int]:
    """Mail each account whose keys mostly failed on ``day`` (UTC), once: an account is mailed only
    by the caller that claims it for that day (FailingStore.claim_integration_mail), so several
    instances, or a task run twice, send one mail. Returns how many accounts had such keys, and
    how many of them this caller mailed."""
    now = now or utcnow()
    start = datetime.combine(day, time(), tzinfo=UTC)
    window = failing.window(start, start + timedelta(days=1))
    by_account: dict[str, list[FailingKey]] = {}
    for entry in failing_keys(window, now):
        if not entry.key.account_disabled:
            by_account.setdefault(entry.key.account_id, []).append(entry)
    sent = 0
    for account_id, keys in by_account.items():
        if failing.claim_integration_mail(account_id, day):
            notifier.failing_integrations(keys[0].account_email, day, keys, now=now)
            sent += 1
    return len(by_account), sent
