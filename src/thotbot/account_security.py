"""Account security operations, shared by the dashboard and the restricted API.

Each operation checks its input, makes the change, writes the security log and sends its mail.
They are blocking (database, argon2): call them from async code through ``anyio.to_thread.run_sync``.
Who asks and from where travels in an ``Actor``. Fresh sign-in ("sudo mode") is the dashboard's
check to make before calling these; the API's own gate is the operator's ``account:security`` grant.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Protocol

from thotbot.core.accounts import check_new_password, hash_password, normalize_email, verify_password
from thotbot.core.dates import utcnow
from thotbot.core.errors import NotFound, RateLimited, ValidationFailed
from thotbot.core.identity import Actor
from thotbot.notifications import Notifier, when_text
from thotbot.passkey_ceremonies import Ceremony, PasskeyCeremonies
from thotbot.storage import AccountRecord, EmailChangeStore, SecurityLog, UserStore
from thotbot.storage.email_changes import PendingEmailChange
from thotbot.storage.passkeys import PasskeyRecord
from thotbot.storage.throttle import Attempt

__all__ = [
    "EMAIL_CHANGES_PER_HOUR",
    "EMAIL_CHANGE_LIFETIME",
    "AccountSecurity",
    "Actor",
    "SessionRevoker",
    "WrongPassword",
]

EMAIL_CHANGE_LIFETIME = timedelta(hours=24)
EMAIL_CHANGE_REQUESTED = "email.change_requested"
#: Requests per account per window: enough for typos, too few to probe addresses or flood one.
EMAIL_CHANGES_PER_HOUR = 5
EMAIL_CHANGE_WINDOW = timedelta(hours=1)
MAX_PASSKEY_NAME = 100


class WrongPassword(ValidationFailed):
    default_detail = "The current password is incorrect."


class SessionRevoker(Protocol):
    """What ending sessions needs of the dashboard's session store (storage.WebSessionStore)."""

    def delete_for_account(self, account_id: str, *, keep: str | None = None) -> int: ...

    def delete_for_passkey(self, passkey_id: str, *, keep: str | None = None) -> int: ...


class PasswordThrottle(Protocol):
    """What slowing password guesses needs of the sign-in throttle (storage.SignInThrottleStore)."""

    def reserve(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> Attempt: ...

    def record_success(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> None: ...


class AccountSecurity:
    def __init__(
        self,
        *,
        users: UserStore,
        security_log: SecurityLog,
        email_changes: EmailChangeStore,
        passkeys: PasskeyCeremonies,
        notifier: Notifier,
        sessions: SessionRevoker,
        throttle: PasswordThrottle | None = None,
        public_url: str,
    ) -> None:
        self._users = users
        self._log = security_log
        self._email_changes = email_changes
        self._passkeys = passkeys
        self._notifier = notifier
        self._sessions = sessions
        self._throttle = throttle
        self._public_url = public_url.rstrip("/")

    # Password

    def change_password(self, account_id: str, current: str, new: str, actor: Actor) -> int:
        """Change the password; ends every other dashboard session, returns how many ended.

        The new password follows the sign-up rules (accounts.check_new_password: long enough, not
        a common one, not made from the email address). The actor's own session
        (``actor.session_id``) stays signed in; a change through the API has none, so every session
        ends. A wrong current password counts as a failed sign-in for the account (the sign-in
        throttle), and raises WrongPassword (422, field current_password).
        """
        account = self._account(account_id)
        attempt = self._reserve(account, actor)
        if not verify_password(self._users.password_hash(account.id), current):
            self._log.record(
                account.id, "password.change_refused", detail="wrong current password", **actor.log_fields()
            )
            if attempt is not None and attempt.pauses_account:
                self.password_paused(account.id, actor, until=attempt.paused_until)
            raise WrongPassword(field="current_password")
        if self._throttle is not None:
            self._throttle.record_success(account.email, actor.ip_address)
        try:
            check_new_password(new, account.email)
        except ValidationFailed as exc:
            raise ValidationFailed(exc.detail, field="new_password") from None
        if new == current:
            raise ValidationFailed("Choose a password different from the current one.", field="new_password")
        self._users.set_password_hash(account.id, hash_password(new))
        ended = self._sessions.delete_for_account(account.id, keep=actor.session_id)
        self._log.record(
            account.id,
            "password.changed",
            detail=f"password changed; {ended} other session(s) ended",
            **actor.log_fields(),
        )
        self.cancel_email_changes(account.id, "the password was changed", actor)
        self._notifier.password_changed(account.id, actor, sessions_ended=ended)
        return ended

    def password_paused(self, account_id: str, actor: Actor, *, until: datetime | None) -> None:
        """The sign-in throttle just paused password sign-in for the account (too many wrong
        passwords in a row, from anywhere): log it and tell the owner, once per pause."""
        until = until or utcnow()
        self._log.record(
            account_id,
            "password.sign_in_paused",
            detail=f"too many wrong passwords in a row; password sign-in paused until {when_text(until)}",
            **actor.log_fields(),
        )
        self._notifier.password_sign_in_paused(account_id, actor, until=until)

    # Email

    def request_email_change(
        self, account_id: str, new_email: str, actor: Actor, *, now: datetime | None = None
    ) -> PendingEmailChange:
        """Mail a verification link to the new address; nothing changes until it is followed.

        The requester gets the same answer, the same pending change and the same log line whether
        or not the address has an account, so this cannot be used to find out which have one.
        When it has, its owner is told instead (someone asked to move another account there;
        nothing changes), and no link exists: the pending change's token is never sent anywhere.
        At most EMAIL_CHANGES_PER_HOUR requests per account, counted in the security log (the
        database: every instance shares it); more raise RateLimited (429).
        """
        now = now or utcnow()
        account = self._account(account_id)
        email = normalize_email(new_email)  # refuses NUL, which PostgreSQL would refuse with an error
        if email == account.email:
            raise ValidationFailed("This is the account's email address already.", field="email")
        self._check_email_change_rate(account.id, actor, now)
        taken = self._users.find_by_email(email) is not None
        token, pending = self._email_changes.create(
            account.id, email, lifetime=EMAIL_CHANGE_LIFETIME, now=now
        )
        self._log.record(
            account.id,
            EMAIL_CHANGE_REQUESTED,
            detail=f"asked to change the email address to {email}; that address was mailed",
            now=now,
            **actor.log_fields(),
        )
        if taken:
            self._notifier.email_in_use(email, actor)
        else:
            self._notifier.email_verification(email, self.verification_link(token), pending.expires_at, actor)
        return pending

    def cancel_email_changes(self, account_id: str, reason: str, actor: Actor) -> int:
        """Cancel the account's pending email change, so its link stops working; logs it if any.

        Called by the owner (the Security page's Cancel button) and by every password change or
        reset: whoever knew the old password must not keep a way into the account after it.
        Returns how many pending changes were cancelled (0 or 1).
        """
        cancelled = self._email_changes.cancel(account_id)
        for new_email in cancelled:
            self._log.record(
                account_id,
                "email.change_cancelled",
                detail=f"pending change to {new_email} cancelled: {reason}",
                **actor.log_fields(),
            )
        return len(cancelled)

    def _check_email_change_rate(self, account_id: str, actor: Actor, now: datetime) -> None:
        since = now - EMAIL_CHANGE_WINDOW
        count, first = self._log.count_since(account_id, EMAIL_CHANGE_REQUESTED, since)
        if count < EMAIL_CHANGES_PER_HOUR or first is None:
            return
        self._log.record(
            account_id,
            "email.change_refused",
            detail=f"more than {EMAIL_CHANGES_PER_HOUR} email change requests in an hour",
            fold=True,
            now=now,
            **actor.log_fields(),
        )
        wait = max(1, math.ceil((first + EMAIL_CHANGE_WINDOW - now).total_seconds()))
        raise RateLimited(
            wait,
            f"Too many email change requests: at most {EMAIL_CHANGES_PER_HOUR} an hour. "
            f"Try again in {_minutes(wait)}.",
        )

    def verification_link(self, token: str) -> str:
        return f"{self._public_url}/verify-email?token={token}"

    def confirm_email_change(self, token: str, actor: Actor, *, now: datetime | None = None) -> AccountRecord:
        """Follow a verification link: change the email, log it, and tell the OLD address.

        Raises EmailChangeTokenInvalid (422) for an unknown, used, superseded or expired token,
        and Conflict (409) when another account took the address meanwhile. Whoever follows the
        link needs no session: holding the token sent to the new address is the proof.
        """
        applied = self._email_changes.apply(
            token, actor=actor.who, ip_address=actor.ip_address, user_agent=actor.user_agent, now=now
        )
        self._notifier.email_changed(applied.old_email, applied.new_email, actor)
        return self._account(applied.account_id)

    def pending_email_change(self, account_id: str) -> PendingEmailChange | None:
        return self._email_changes.find_pending(account_id)

    # Passkeys

    def list_passkeys(self, account_id: str) -> list[PasskeyRecord]:
        return self._passkeys.passkeys.list_for_account(account_id)

    def begin_passkey_registration(self, account_id: str) -> Ceremony:
        """Step one of adding a passkey: options for navigator.credentials.create()."""
        return self._passkeys.registration_options(self._account(account_id))

    def add_passkey(
        self, account_id: str, challenge_id: object, credential: object, name: object, actor: Actor
    ) -> PasskeyRecord:
        """Step two: verify the new credential, store it, log it and tell the account."""
        label = _passkey_name(name, default="Passkey")
        passkey = self._passkeys.register(account_id, challenge_id, credential, name=label)
        self._log.record(
            account_id,
            "passkey.added",
            detail=f"added passkey {label!r} ({passkey.id})",
            **actor.log_fields(),
        )
        self._notifier.passkey_added(account_id, label, actor, when=passkey.created_at)
        return passkey

    def rename_passkey(self, account_id: str, passkey_id: str, name: object, actor: Actor) -> PasskeyRecord:
        label = _passkey_name(name)
        before = self._passkeys.passkeys.find(passkey_id, account_id=account_id)
        passkey = self._passkeys.passkeys.rename(passkey_id, label, account_id=account_id)
        old = f"{before.name!r} " if before else ""
        self._log.record(
            account_id,
            "passkey.renamed",
            detail=f"renamed passkey {old}({passkey.id}) to {label!r}",
            **actor.log_fields(),
        )
        return passkey

    def remove_passkey(self, account_id: str, passkey_id: str, actor: Actor) -> PasskeyRecord:
        """Remove a passkey and end the sessions it signed in, but the actor's own.

        Whoever held the passkey (a lost or stolen device) is signed out with it. The database
        ends any session it signs in meanwhile too (web_sessions.passkey_id cascades).
        """
        if self._passkeys.passkeys.find(passkey_id, account_id=account_id) is None:
            raise NotFound(f"You have no passkey with id {passkey_id!r}.")
        ended = self._sessions.delete_for_passkey(passkey_id, keep=actor.session_id)
        passkey = self._passkeys.passkeys.remove(passkey_id, account_id=account_id)
        self._log.record(
            account_id,
            "passkey.removed",
            detail=f"removed passkey {passkey.name!r} ({passkey.id}); {ended} session(s) it signed in ended",
            **actor.log_fields(),
        )
        return passkey

    def _account(self, account_id: str) -> AccountRecord:
        account = self._users.find(account_id)
        if account is None:
            raise NotFound("This account does not exist any more.")
        return account

    def _reserve(self, account: AccountRecord, actor: Actor) -> Attempt | None:
        """Count the password attempt before it is checked (one atomic step with the check)."""
        if self._throttle is None:
            return None
        attempt = self._throttle.reserve(account.email, actor.ip_address, now=utcnow())
        if not attempt.allowed:
            raise RateLimited(attempt.retry_after, "Too many wrong passwords; wait before trying again.")
        return attempt


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _passkey_name(value: object, *, default: str | None = None) -> str:
    if (value is None or value == "") and default is not None:
        return default
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ValidationFailed("'name' must be a non-empty string of printable characters.", field="name")
    name = " ".join(value.split())
    if len(name) > MAX_PASSKEY_NAME:
        raise ValidationFailed(f"'name' must be at most {MAX_PASSKEY_NAME} characters.", field="name")
    return name
