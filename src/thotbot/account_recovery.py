"""Proving an account's address and getting an account back: sign-up verification, password reset,
and the operator's disable, enable and reset.

Each operation checks its input, makes the change, writes the security log and sends its mail.
They are blocking (database, argon2): call them from async code through ``anyio.to_thread.run_sync``.
Links carry a random token; only its SHA-256 is stored (storage/account_tokens.py) and it works once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from thotbot.core.accounts import check_new_password, hash_password, normalize_email
from thotbot.core.clientaddr import address_bucket
from thotbot.core.dates import utcnow
from thotbot.core.errors import NotFound, RateLimited, ValidationFailed
from thotbot.core.identity import Actor
from thotbot.notifications import Notifier
from thotbot.storage import AccountRecord, AccountTokenStore, QuotaStore, SecurityLog, UserStore
from thotbot.storage.account_tokens import AccountLink, Purpose
from thotbot.storage.quotas import Quota

__all__ = [
    "RESET_LIFETIME",
    "SIGN_UPS_PER_ADDRESS",
    "UNVERIFIED_LIFETIME",
    "VERIFICATION_LIFETIME",
    "AccountRecovery",
    "LinkInvalid",
]

VERIFICATION_LIFETIME = timedelta(hours=24)
RESET_LIFETIME = timedelta(hours=1)
#: An account whose address is never proven is deleted this long after sign-up.
UNVERIFIED_LIFETIME = timedelta(days=7)
_HOUR = timedelta(hours=1)
# A household or office shares one address: a few sign-ups an hour is plenty, a script's burst is not.
SIGN_UPS_PER_ADDRESS = Quota("signup-address", 5, _HOUR)
RESETS_PER_ADDRESS = Quota("reset-address", 10, _HOUR)
# Per email, typed or not: a mailbox cannot be flooded with reset mails, and unknown addresses
# are counted the same way, so the limit tells nothing about which addresses have accounts.
RESETS_PER_EMAIL = Quota("reset-email", 3, _HOUR)
RESENDS_PER_ACCOUNT = Quota("verify-resend", 5, _HOUR)


class LinkInvalid(ValidationFailed):
    """A verification or reset link that is unknown, used already, superseded or expired."""

    default_detail = "This link is invalid, expired or was used already."


class SessionRevoker(Protocol):
    def delete_for_account(self, account_id: str, *, keep: str | None = None) -> int: ...


class KeyAnnouncer(Protocol):
    """What disabling an account needs of KeyLifecycle: its keys are read again everywhere."""

    def announce_account_change(self, account_id: str) -> list[str]: ...


class ThrottleReset(Protocol):
    def forget_account(self, email: str) -> None: ...


class EmailChangeCanceller(Protocol):
    """What a reset needs of AccountSecurity: a pending email change dies with the old password."""

    def cancel_email_changes(self, account_id: str, reason: str, actor: Actor) -> int: ...


class AccountRecovery:
    def __init__(
        self,
        *,
        users: UserStore,
        keys: KeyAnnouncer,
        tokens: AccountTokenStore,
        quotas: QuotaStore,
        security_log: SecurityLog,
        notifier: Notifier,
        sessions: SessionRevoker,
        throttle: ThrottleReset,
        email_changes: EmailChangeCanceller,
        public_url: str,
    ) -> None:
        self._users = users
        self._keys = keys
        self._tokens = tokens
        self._quotas = quotas
        self._log = security_log
        self._notifier = notifier
        self._sessions = sessions
        self._throttle = throttle
        self._email_changes = email_changes
        self._public_url = public_url.rstrip("/")

    # Sign-up

    def sign_up_wait(self, ip_address: str | None, *, now: datetime | None = None) -> int:
        """Count a sign-up from this client address; seconds to wait when over the quota (0: go on).

        Expired unverified accounts are deleted here too: sign-up is when their addresses are wanted.
        """
        now = now or utcnow()
        self.prune(now=now)
        return self._quotas.hit(SIGN_UPS_PER_ADDRESS, address_bucket(ip_address or "-"), now=now)

    def send_verification(
        self, account: AccountRecord, actor: Actor, *, now: datetime | None = None
    ) -> AccountLink:
        """Mail the link that proves the account's address; an earlier link stops working."""
        token, link = self._tokens.create(
            account.id, Purpose.VERIFY_EMAIL, lifetime=VERIFICATION_LIFETIME, now=now
        )
        self._notifier.account_verification(
            account.email, self._link("verify-account", token), link.expires_at, actor
        )
        return link

    def resend_verification(self, account_id: str, actor: Actor) -> AccountLink:
        account = self._account(account_id)
        if account.verified:
            raise ValidationFailed("This account's email address is verified already.")
        wait = self._quotas.hit(RESENDS_PER_ACCOUNT, account.id)
        if wait:
            raise RateLimited(
                wait, f"Several links were sent in the last hour. Wait {_duration(wait)}, then ask again."
            )
        link = self.send_verification(account, actor)
        self._log.record(
            account.id,
            "account.verification_sent",
            detail=f"link sent to {account.email}",
            **actor.log_fields(),
        )
        return link

    def verification_pending(self, account_id: str) -> datetime | None:
        return self._tokens.find_pending(account_id, Purpose.VERIFY_EMAIL)

    def verify(self, token: str, actor: Actor) -> AccountRecord:
        """Spend a verification link: the account's address is proven. Raises LinkInvalid."""
        link = self._tokens.take(token, Purpose.VERIFY_EMAIL)
        if link is None:
            raise LinkInvalid(
                "This confirmation link is invalid, expired or was used already. Sign in and send a "
                "new one from the API Keys page."
            )
        account = self._account(link.account_id)
        if self._users.mark_verified(account.id):
            self._log.record(
                account.id, "account.verified", detail=f"{account.email} confirmed", **actor.log_fields()
            )
        return self._account(account.id)

    # Password reset

    def request_password_reset(self, email: str, actor: Actor) -> None:
        """Mail a reset link if the address has an account (not a disabled one).

        Callers answer the same whatever happened, so nobody learns which addresses have accounts.
        Raises RateLimited past the quotas, which count known and unknown addresses alike.
        """
        email = normalize_email(email)
        for quota, value in (
            (RESETS_PER_ADDRESS, address_bucket(actor.ip_address or "-")),
            (RESETS_PER_EMAIL, email),
        ):
            wait = self._quotas.hit(quota, value)
            if wait:
                raise RateLimited(
                    wait, f"Too many password reset requests. Wait {_duration(wait)}, then try again."
                )
        account = self._users.find_by_email(email)
        if account is None or account.disabled:
            return
        self._send_reset(account, actor, "password.reset_requested", "reset link sent")

    def operator_reset(self, email: str) -> AccountRecord:
        """``thotbot users reset-password``: mail a reset link, whatever the quotas."""
        account = self._users.get_by_email(email)
        if account.disabled:
            raise ValidationFailed(f"{account.email} is disabled; enable it first (thotbot users enable)")
        self._send_reset(
            account, Actor.operator(), "password.reset_requested", "reset link sent by the operator"
        )
        return account

    def find_reset(self, token: str) -> AccountRecord | None:
        """The account a live reset link is for, without spending it (to show the form)."""
        link = self._tokens.find(token, Purpose.RESET_PASSWORD)
        account = self._users.find(link.account_id) if link else None
        return account if account is not None and not account.disabled else None

    def reset_password(self, token: str, new_password: str, actor: Actor) -> tuple[AccountRecord, int]:
        """Set the password through a reset link; returns the account and how many sessions ended.

        The new password is checked before the link is spent, so a refused one can be retried. On
        success every session ends, the sign-in throttle of the account is cleared and the address
        counts as verified: the link reached it.
        """
        account = self.find_reset(token)
        if account is None:
            raise LinkInvalid(
                "This password reset link is invalid, expired or was used already. Ask for a new one."
            )
        check_new_password(new_password, account.email)
        password_hash = hash_password(new_password)
        if self._tokens.take(token, Purpose.RESET_PASSWORD) is None:
            raise LinkInvalid("This password reset link was used already. Ask for a new one.")
        self._users.set_password_hash(account.id, password_hash)
        ended = self._sessions.delete_for_account(account.id)
        self._throttle.forget_account(account.email)
        self._email_changes.cancel_email_changes(account.id, "the password was reset", actor)
        self._users.mark_verified(account.id)
        self._log.record(
            account.id,
            "password.reset",
            detail=f"password set with a reset link; {ended} session(s) ended",
            **actor.log_fields(),
        )
        self._notifier.password_reset(account.id, actor, sessions_ended=ended)
        return account, ended

    # The operator

    def disable(self, email: str) -> tuple[AccountRecord, int, list[str]]:
        """Refuse the account's sign-ins and keys; returns it, the sessions ended and its key ids."""
        account = self._users.get_by_email(email)
        changed = self._users.set_disabled(account.id, True)
        ended = self._sessions.delete_for_account(account.id)
        # Every server's key cache drops these keys and reads them again, disabled, within a second.
        key_ids = self._keys.announce_account_change(account.id)
        self._tokens.cancel(account.id, Purpose.RESET_PASSWORD)
        if changed:
            detail = f"disabled by the operator; {ended} session(s) ended, {len(key_ids)} key(s) refused"
            self._log.record(account.id, "account.disabled", detail=detail, actor="operator")
        return self._account(account.id), ended, key_ids

    def enable(self, email: str) -> tuple[AccountRecord, bool]:
        account = self._users.get_by_email(email)
        changed = self._users.set_disabled(account.id, False)
        self._keys.announce_account_change(account.id)
        if changed:
            self._log.record(
                account.id, "account.enabled", detail="enabled by the operator", actor="operator"
            )
        return self._account(account.id), changed

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete accounts never verified within UNVERIFIED_LIFETIME, and spent quota windows."""
        now = now or utcnow()
        self._quotas.prune(_HOUR, now=now)
        return self._users.delete_unverified(now - UNVERIFIED_LIFETIME)

    def _send_reset(self, account: AccountRecord, actor: Actor, action: str, detail: str) -> None:
        token, link = self._tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=RESET_LIFETIME)
        self._log.record(account.id, action, detail=f"{detail}; it expires in 1 hour", **actor.log_fields())
        self._notifier.password_reset_link(
            account.email, self._link("reset-password", token), link.expires_at, actor
        )

    def _link(self, path: str, token: str) -> str:
        return f"{self._public_url}/{path}?token={token}"

    def _account(self, account_id: str) -> AccountRecord:
        account = self._users.find(account_id)
        if account is None:
            raise NotFound("This account does not exist any more.")
        return account


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minutes"
