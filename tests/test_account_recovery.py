"""Account recovery operations on both backends, with their security log and mail (a real aiosmtpd)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

from tests.factories import PASSWORD, make_api_key, make_user, security_actions
from tests.smtp import Inbox, Received, mail_to
from thotbot.account_recovery import RESETS_PER_EMAIL, SIGN_UPS_PER_ADDRESS, LinkInvalid
from thotbot.config import Settings
from thotbot.core.accounts import verify_password
from thotbot.core.dates import utcnow
from thotbot.core.errors import NotFound, RateLimited, ValidationFailed
from thotbot.core.identity import Actor
from thotbot.core.keys import hash_key
from thotbot.services import Services
from thotbot.storage import AccountRecord
from thotbot.storage.models import Account

NEW_PASSWORD = "lamp orbit walrus tea"
VISITOR = Actor.anonymous("203.0.113.9", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")


pytestmark = pytest.mark.usefixtures("mailing")  # every mail a test sends is delivered


@pytest.fixture
def settings(mail_settings: Settings) -> Settings:
    return mail_settings


def _token(mail: Received, path: str) -> str:
    link = mail.link()
    assert link.startswith(f"https://thotbot.example/{path}?token=")
    return parse_qs(urlsplit(link).query)["token"][0]


def _reset_token(services: Services, inbox: Inbox, account: AccountRecord) -> str:
    services.account_recovery.request_password_reset(account.email, VISITOR)
    *_, mail = mail_to(services, inbox, account.email)
    assert mail.message["subject"] == "[Thotbot] Set a new password"
    return _token(mail, "reset-password")


def test_a_refused_new_password_leaves_the_link_usable(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    token = _reset_token(services, inbox, account)

    with pytest.raises(ValidationFailed, match="at least 10 characters"):
        services.account_recovery.reset_password(token, "short", VISITOR)

    assert verify_password(services.users.password_hash(account.id), PASSWORD)
    assert services.account_recovery.find_reset(token) == account


def test_reset_password_does_everything_once(services: Services, inbox: Inbox) -> None:
    account = services.users.create("late@example.com", "x", verified=False)
    services.web_sessions.create(account.id)
    services.web_sessions.create(account.id)
    for _ in range(8):
        services.sign_in_throttle.reserve(account.email, "198.51.100.1")
    assert services.sign_in_throttle.reserve(account.email, "198.51.100.1").retry_after > 0
    token = _reset_token(services, inbox, account)

    _, ended = services.account_recovery.reset_password(token, NEW_PASSWORD, VISITOR)

    assert ended == 2
    assert services.web_sessions.list_for_account(account.id) == []
    assert verify_password(services.users.password_hash(account.id), NEW_PASSWORD)
    assert services.sign_in_throttle.reserve(account.email, "198.51.100.1").retry_after == 0
    refreshed = services.users.find(account.id)
    assert refreshed is not None
    assert refreshed.verified  # the link reached the mailbox
    assert security_actions(services, account)[:2] == ["password.reset", "password.reset_requested"]
    notice = mail_to(services, inbox, account.email)[-1]
    assert notice.message["subject"] == "[Thotbot] Your password was reset"
    assert "2 signed-in session(s) were ended" in notice.body
    with pytest.raises(LinkInvalid):
        services.account_recovery.reset_password(token, "another long passphrase", VISITOR)


def test_an_unknown_or_disabled_address_gets_no_mail_and_is_counted_alike(
    services: Services, inbox: Inbox
) -> None:
    disabled = make_user(services)
    services.account_recovery.disable(disabled.email)

    for _ in range(RESETS_PER_EMAIL.limit):
        services.account_recovery.request_password_reset("nobody@example.com", VISITOR)
        services.account_recovery.request_password_reset(disabled.email, VISITOR)

    with pytest.raises(RateLimited) as refused:
        services.account_recovery.request_password_reset("Nobody@Example.com", VISITOR)
    assert 0 < refused.value.retry_after <= 3600
    assert mail_to(services, inbox, "nobody@example.com") == []
    assert mail_to(services, inbox, disabled.email) == []


def test_sign_up_quota_counts_per_address_and_prunes_stale_unverified_accounts(services: Services) -> None:
    stale = services.users.create("stale@example.com", None, verified=False)
    fresh = services.users.create("fresh@example.com", None, verified=False)
    old = make_user(services)
    with services.db.begin() as session:
        session.execute(
            update(Account)
            .where(Account.id.in_([stale.id, old.id]))
            .values(created_at=utcnow() - timedelta(days=8))
        )

    waits = [services.account_recovery.sign_up_wait("2001:db8::1") for _ in range(SIGN_UPS_PER_ADDRESS.limit)]

    assert waits == [0] * SIGN_UPS_PER_ADDRESS.limit
    assert services.account_recovery.sign_up_wait("2001:db8::2") > 0  # the same /64
    assert services.account_recovery.sign_up_wait("2001:db8:1::1") == 0
    assert services.users.find(stale.id) is None
    assert services.users.find(fresh.id) is not None
    assert services.users.find(old.id) is not None  # verified: kept


def test_verify_marks_the_address_once(services: Services, inbox: Inbox) -> None:
    account = services.users.create("new@example.com", None, verified=False)
    services.account_recovery.send_verification(account, VISITOR)
    [mail] = mail_to(services, inbox, account.email)
    assert "using Firefox 140 on Linux" in mail.body

    verified = services.account_recovery.verify(_token(mail, "verify-account"), VISITOR)

    assert verified.verified
    assert security_actions(services, account) == ["account.verified"]
    with pytest.raises(LinkInvalid):
        services.account_recovery.verify(_token(mail, "verify-account"), VISITOR)
    with pytest.raises(ValidationFailed, match="verified already"):
        services.account_recovery.resend_verification(account.id, VISITOR)


def test_disable_announces_every_key_and_lookups_see_it(services: Services) -> None:
    account = make_user(services)
    raw_one, one = make_api_key(services, account)
    _, two = make_api_key(services, account)
    seq = services.keys.latest_change()

    disabled, _, key_ids = services.account_recovery.disable(account.email)

    assert disabled.disabled
    assert sorted(key_ids) == sorted([one.id, two.id])
    assert sorted(services.keys.changes_since(seq)[1]) == sorted(key_ids)
    found = services.keys.find_by_hash(hash_key(raw_one))
    assert found is not None
    assert found.account_disabled
    with pytest.raises(ValidationFailed, match="disabled"):
        services.account_recovery.operator_reset(account.email)

    enabled, changed = services.account_recovery.enable(account.email)
    assert changed
    assert not enabled.disabled
    found = services.keys.find_by_hash(hash_key(raw_one))
    assert found is not None
    assert not found.account_disabled
    assert security_actions(services, account)[:2] == ["account.enabled", "account.disabled"]


def test_the_operator_needs_a_real_account(services: Services) -> None:
    with pytest.raises(NotFound):
        services.account_recovery.disable("ghost@example.com")
    with pytest.raises(NotFound):
        services.account_recovery.operator_reset("ghost@example.com")


def test_a_reset_cancels_a_pending_email_change(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.account_security.request_email_change(account.id, "thief@example.com", VISITOR)
    token = _reset_token(services, inbox, account)

    services.account_recovery.reset_password(token, NEW_PASSWORD, VISITOR)

    assert services.email_changes.find_pending(account.id) is None
    assert "email.change_cancelled" in security_actions(services, account)
