"""Account security operations, their security log and their mail (a real aiosmtpd).

They run on the in-memory stores: what is tested here is AccountSecurity, and every store backend is
held to the same behaviour by tests/storage/conformance/. The few tests that look into a table, or
need the key store, run on SQLite and PostgreSQL (``sql_services``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from tests.authenticator import SoftAuthenticator
from tests.factories import PASSWORD, make_api_key, make_user, security_actions
from tests.smtp import Inbox, mail_to
from thotbot.account_security import Actor, WrongPassword
from thotbot.config import Settings, load_settings
from thotbot.core.accounts import verify_password
from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, NotFound, RateLimited, ValidationFailed
from thotbot.core.revocation import RevokedReason
from thotbot.services import Services, build_memory_services, build_services
from thotbot.storage import AccountRecord
from thotbot.storage.email_changes import EmailChangeTokenInvalid
from thotbot.storage.models import EmailChange
from thotbot.storage.throttle import ThrottleRule

pytestmark = pytest.mark.usefixtures("mailing")  # every mail a test sends is delivered
PUBLIC_URL = "https://thotbot.example"
NEW_PASSWORD = "a different long passphrase"
BROWSER = Actor.session("ses_0123456789abcdef", "203.0.113.7", "Mozilla/5.0 (X11; Linux) Firefox/140.0")


@pytest.fixture
def settings(inbox: Inbox) -> Settings:
    return load_settings(smtp_url=inbox.url, public_url=PUBLIC_URL)


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_memory_services(settings)


@pytest.fixture
def sql_services(database_url: str, inbox: Inbox) -> Iterator[Services]:
    services = build_services(
        load_settings(database_url=database_url, smtp_url=inbox.url, public_url=PUBLIC_URL)
    )
    yield services
    assert services.mailer.flush(10)
    services.engine.dispose()


def _token(link: str) -> str:
    assert link.startswith("https://thotbot.example/verify-email?token=")
    return parse_qs(urlsplit(link).query)["token"][0]


# Password


def test_change_password(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    _, mine = services.web_sessions.create(account.id)
    services.web_sessions.create(account.id)
    services.web_sessions.create(account.id)
    me = Actor.session(mine.id, "203.0.113.7", "Firefox")

    ended = services.account_security.change_password(account.id, PASSWORD, NEW_PASSWORD, me)

    assert ended == 2
    assert verify_password(services.users.password_hash(account.id), NEW_PASSWORD)
    assert [s.id for s in services.web_sessions.list_for_account(account.id)] == [mine.id]
    (event,) = services.security_log.list_for_account(account.id)
    assert (event.action, event.actor, event.ip_address) == (
        "password.changed",
        f"session:{mine.id}",
        "203.0.113.7",
    )
    (mail,) = mail_to(services, inbox, account.email)
    assert mail.message["Subject"] == "[Thotbot] Your password was changed"
    assert "From: 203.0.113.7, using Firefox" in mail.body
    assert "How:  on the dashboard" in mail.body
    assert "2 other signed-in session(s) were ended" in mail.body
    assert "https://thotbot.example/dashboard/security" in mail.body
    assert PASSWORD not in mail.body
    assert NEW_PASSWORD not in mail.body


def test_change_password_through_the_api_ends_every_session(services: Services) -> None:
    account = make_user(services)
    services.web_sessions.create(account.id)
    actor = Actor.api_key("key_0123456789abcdef", "198.51.100.1", "deploy-bot/1.0")

    assert services.account_security.change_password(account.id, PASSWORD, NEW_PASSWORD, actor) == 1
    assert services.web_sessions.list_for_account(account.id) == []


def test_a_wrong_current_password_changes_nothing(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.web_sessions.create(account.id)

    with pytest.raises(WrongPassword) as exc_info:
        services.account_security.change_password(account.id, "not the password", NEW_PASSWORD, BROWSER)

    assert exc_info.value.status == 422
    assert exc_info.value.code == "validation_error"
    assert exc_info.value.extra == {"field": "current_password"}
    assert verify_password(services.users.password_hash(account.id), PASSWORD)
    assert len(services.web_sessions.list_for_account(account.id)) == 1
    assert security_actions(services, account) == ["password.change_refused"]
    assert mail_to(services, inbox, account.email) == []


@pytest.mark.parametrize("new", ["short", "x" * 2000, PASSWORD, "Password123!", "qwertyuiop2024"])
def test_a_weak_or_unchanged_new_password_is_refused(services: Services, new: str) -> None:
    account = make_user(services)

    with pytest.raises(ValidationFailed) as exc_info:
        services.account_security.change_password(account.id, PASSWORD, new, BROWSER)

    assert exc_info.value.extra == {"field": "new_password"}
    assert verify_password(services.users.password_hash(account.id), PASSWORD)


def test_wrong_current_passwords_are_slowed_like_failed_sign_ins(services: Services) -> None:
    account = make_user(services)
    # A first wait long enough that no slow machine sees it pass during the test.
    services.sign_in_throttle.pair_rule = ThrottleRule(free_failures=5, first_delay=timedelta(hours=1))
    for _ in range(6):
        with pytest.raises(WrongPassword):
            services.account_security.change_password(account.id, "guess", NEW_PASSWORD, BROWSER)

    with pytest.raises(RateLimited) as exc_info:
        services.account_security.change_password(account.id, PASSWORD, NEW_PASSWORD, BROWSER)

    assert exc_info.value.retry_after >= 1
    assert verify_password(services.users.password_hash(account.id), PASSWORD)


# Email


def test_request_email_change_sends_a_link_and_changes_nothing_yet(
    sql_services: Services, inbox: Inbox
) -> None:
    services = sql_services  # the link's token is looked for in the table
    account = make_user(services)

    pending = services.account_security.request_email_change(account.id, "  New.Me@Example.COM ", BROWSER)

    assert pending is not None
    assert pending.new_email == "new.me@example.com"
    assert timedelta(hours=23) < pending.expires_at - utcnow() <= timedelta(hours=24)
    assert services.users.find(account.id) == account  # unchanged
    (mail,) = mail_to(services, inbox, "new.me@example.com")
    assert mail.message["Subject"] == "[Thotbot] Confirm your new email address"
    token = _token(mail.link())
    assert mail_to(services, inbox, account.email) == []
    assert security_actions(services, account) == ["email.change_requested"]
    with services.db() as session:
        stored = session.scalars(select(EmailChange.token_hash)).all()
    assert stored == [hashlib.sha256(token.encode()).digest()]  # only its hash is kept
    assert services.account_security.pending_email_change(account.id) == pending


def test_confirm_email_change_applies_it_and_tells_the_old_address(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.account_security.request_email_change(account.id, "new@example.com", BROWSER)
    token = _token(mail_to(services, inbox, "new@example.com")[0].link())
    follower = Actor("email-link", "192.0.2.5", "Thunderbird")

    updated = services.account_security.confirm_email_change(token, follower)

    assert updated.email == "new@example.com"
    assert services.users.find_by_email(account.email) is None
    assert security_actions(services, account)[0] == "email.changed"
    (notice,) = mail_to(services, inbox, account.email)
    assert notice.message["Subject"] == "[Thotbot] The email address of your account was changed"
    assert f"from {account.email} to new@example.com" in notice.body
    assert "192.0.2.5" in notice.body
    assert services.account_security.pending_email_change(account.id) is None


def test_a_link_works_once(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.account_security.request_email_change(account.id, "new@example.com", BROWSER)
    token = _token(mail_to(services, inbox, "new@example.com")[0].link())
    services.account_security.confirm_email_change(token, BROWSER)

    with pytest.raises(EmailChangeTokenInvalid) as exc_info:
        services.account_security.confirm_email_change(token, BROWSER)

    assert exc_info.value.status == 422


def test_an_expired_link_is_refused(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.account_security.request_email_change(account.id, "new@example.com", BROWSER)
    token = _token(mail_to(services, inbox, "new@example.com")[0].link())

    with pytest.raises(EmailChangeTokenInvalid):
        services.account_security.confirm_email_change(token, BROWSER, now=utcnow() + timedelta(hours=25))

    assert services.users.find(account.id) == account
    with pytest.raises(EmailChangeTokenInvalid):  # and it is gone
        services.account_security.confirm_email_change(token, BROWSER)


def test_only_the_newest_link_works(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.account_security.request_email_change(account.id, "first@example.com", BROWSER)
    services.account_security.request_email_change(account.id, "second@example.com", BROWSER)
    first = _token(mail_to(services, inbox, "first@example.com")[0].link())
    second = _token(mail_to(services, inbox, "second@example.com")[0].link())

    with pytest.raises(EmailChangeTokenInvalid):
        services.account_security.confirm_email_change(first, BROWSER)
    assert services.account_security.confirm_email_change(second, BROWSER).email == "second@example.com"


@pytest.mark.parametrize("token", ["", "nope", "x" * 5000])
def test_unknown_tokens_are_refused(services: Services, token: str) -> None:
    with pytest.raises(EmailChangeTokenInvalid):
        services.account_security.confirm_email_change(token, BROWSER)


def test_an_address_of_another_account_gets_a_notice_not_a_link(services: Services, inbox: Inbox) -> None:
    account, other, free = make_user(services), make_user(services), make_user(services)

    taken = services.account_security.request_email_change(account.id, other.email.upper(), BROWSER)
    available = services.account_security.request_email_change(free.id, "free@example.com", BROWSER)

    (notice,) = mail_to(services, inbox, other.email)
    assert notice.message["Subject"] == "[Thotbot] Email change not possible"
    assert "verify-email" not in notice.body
    assert "nothing was changed" in notice.body
    # The requester sees exactly what a free address gives: a pending change, the same log line.
    assert taken.new_email == other.email
    assert services.account_security.pending_email_change(account.id) == taken
    [taken_event] = services.security_log.list_for_account(account.id)
    [free_event] = services.security_log.list_for_account(free.id)
    assert (taken_event.action, taken_event.detail.replace(other.email, "X")) == (
        free_event.action,
        free_event.detail.replace(available.new_email, "X"),
    )
    assert taken_event.action == "email.change_requested"


def test_the_sixth_email_change_in_an_hour_is_refused(services: Services, inbox: Inbox) -> None:
    account, other = make_user(services), make_user(services)
    start = utcnow()
    for n in range(5):
        services.account_security.request_email_change(
            account.id, f"try{n}@example.com", BROWSER, now=start + timedelta(minutes=n)
        )

    with pytest.raises(RateLimited) as exc_info:  # taken or free: the same count
        services.account_security.request_email_change(
            account.id, other.email, BROWSER, now=start + timedelta(minutes=10)
        )

    assert 49 * 60 <= exc_info.value.retry_after <= 50 * 60 + 1  # when the first leaves the hour
    assert "at most 5 an hour" in exc_info.value.detail
    assert services.account_security.pending_email_change(account.id).new_email == "try4@example.com"  # type: ignore[union-attr]
    assert mail_to(services, inbox, other.email) == []
    assert security_actions(services, account)[0] == "email.change_refused"
    later = start + timedelta(minutes=61)
    assert services.account_security.request_email_change(account.id, "late@example.com", BROWSER, now=later)


def test_cancel_email_changes_kills_the_link_and_logs_it(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.account_security.request_email_change(account.id, "new@example.com", BROWSER)
    token = _token(mail_to(services, inbox, "new@example.com")[0].link())

    assert services.account_security.cancel_email_changes(account.id, "cancelled by the owner", BROWSER) == 1

    assert services.account_security.pending_email_change(account.id) is None
    with pytest.raises(EmailChangeTokenInvalid):
        services.account_security.confirm_email_change(token, BROWSER)
    [event] = [
        e for e in services.security_log.list_for_account(account.id) if e.action == "email.change_cancelled"
    ]
    assert event.detail == "pending change to new@example.com cancelled: cancelled by the owner"
    assert services.account_security.cancel_email_changes(account.id, "again", BROWSER) == 0
    assert security_actions(services, account).count("email.change_cancelled") == 1


def test_a_password_change_cancels_a_pending_email_change(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.account_security.request_email_change(account.id, "new@example.com", BROWSER)
    token = _token(mail_to(services, inbox, "new@example.com")[0].link())

    services.account_security.change_password(account.id, PASSWORD, NEW_PASSWORD, BROWSER)

    with pytest.raises(EmailChangeTokenInvalid):
        services.account_security.confirm_email_change(token, BROWSER)
    assert "email.change_cancelled" in security_actions(services, account)


def test_an_address_taken_before_the_link_is_followed(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    services.account_security.request_email_change(account.id, "wanted@example.com", BROWSER)
    token = _token(mail_to(services, inbox, "wanted@example.com")[0].link())
    make_user(services, "wanted@example.com")

    with pytest.raises(Conflict):
        services.account_security.confirm_email_change(token, BROWSER)

    assert services.users.find(account.id) == account
    with pytest.raises(EmailChangeTokenInvalid):  # spent all the same
        services.account_security.confirm_email_change(token, BROWSER)


@pytest.mark.parametrize("email", ["not an address", "", "a@b", "you\x00@example.com", "you@example.com\x00"])
def test_an_invalid_new_address_is_refused(services: Services, email: str) -> None:
    account = make_user(services)

    with pytest.raises(ValidationFailed) as exc_info:
        services.account_security.request_email_change(account.id, email, BROWSER)

    assert exc_info.value.extra == {"field": "email"}


def test_the_current_address_is_refused(services: Services) -> None:
    account = make_user(services)

    with pytest.raises(ValidationFailed):
        services.account_security.request_email_change(account.id, account.email, BROWSER)


# Passkeys


def _add(services: Services, account: AccountRecord, name: object = "Laptop") -> str:
    ceremony = services.account_security.begin_passkey_registration(account.id)
    credential = SoftAuthenticator("https://thotbot.example").create(ceremony.options)
    return services.account_security.add_passkey(
        account.id, ceremony.challenge_id, credential, name, BROWSER
    ).id


def test_add_passkey_logs_and_tells_the_account(services: Services, inbox: Inbox) -> None:
    account = make_user(services)

    passkey_id = _add(services, account, "  Work   laptop ")

    (passkey,) = services.account_security.list_passkeys(account.id)
    assert (passkey.id, passkey.name) == (passkey_id, "Work laptop")
    (event,) = services.security_log.list_for_account(account.id)
    assert event.action == "passkey.added"
    assert passkey_id in event.detail
    (mail,) = mail_to(services, inbox, account.email)
    assert mail.message["Subject"] == "[Thotbot] A passkey was added to your account"
    assert "'Work laptop'" in mail.body


@pytest.mark.parametrize("name", [None, ""])
def test_a_passkey_without_a_name_gets_one(services: Services, name: object) -> None:
    account = make_user(services)
    _add(services, account, name)

    assert [p.name for p in services.account_security.list_passkeys(account.id)] == ["Passkey"]


@pytest.mark.parametrize("name", ["   ", 7, "x" * 101])
def test_a_bad_passkey_name_adds_nothing(services: Services, name: object) -> None:
    account = make_user(services)

    with pytest.raises(ValidationFailed):
        _add(services, account, name)

    assert services.account_security.list_passkeys(account.id) == []


def test_rename_and_remove_passkey(services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    passkey_id = _add(services, account)

    renamed = services.account_security.rename_passkey(account.id, passkey_id, "Phone", BROWSER)
    removed = services.account_security.remove_passkey(account.id, passkey_id, BROWSER)

    assert renamed.name == removed.name == "Phone"
    assert services.account_security.list_passkeys(account.id) == []
    assert security_actions(services, account) == ["passkey.removed", "passkey.renamed", "passkey.added"]


def test_removing_a_passkey_ends_the_sessions_it_signed_in(services: Services) -> None:
    account = make_user(services)
    passkey_id, other_id = _add(services, account), _add(services, account, "Phone")
    sessions = services.web_sessions
    _, by_it = sessions.create(account.id, passkey_id=passkey_id)
    _, own = sessions.create(account.id, passkey_id=passkey_id)
    _, by_other = sessions.create(account.id, passkey_id=other_id)
    _, by_password = sessions.create(account.id)
    actor = Actor.session(own.id, "203.0.113.7", None)

    services.account_security.remove_passkey(account.id, passkey_id, actor)

    assert sessions.find(by_it.id) is None
    kept = [sessions.find(s.id) for s in (own, by_other, by_password)]
    assert [s.id if s else None for s in kept] == [own.id, by_other.id, by_password.id]
    assert kept[0] is not None
    assert kept[0].passkey_id is None  # detached, so the cascade spares it
    assert "1 session(s) it signed in ended" in services.security_log.list_for_account(account.id)[0].detail


def test_an_unknown_passkey_ends_no_session(services: Services) -> None:
    account, intruder = make_user(services), make_user(services)
    passkey_id = _add(services, account)
    _, session = services.web_sessions.create(account.id, passkey_id=passkey_id)

    with pytest.raises(NotFound):
        services.account_security.remove_passkey(intruder.id, passkey_id, Actor.operator())

    assert services.web_sessions.find(session.id) is not None


def test_another_accounts_passkey_is_not_found(services: Services) -> None:
    account, intruder = make_user(services), make_user(services)
    passkey_id = _add(services, account)

    with pytest.raises(NotFound):
        services.account_security.rename_passkey(intruder.id, passkey_id, "mine now", BROWSER)
    with pytest.raises(NotFound):
        services.account_security.remove_passkey(intruder.id, passkey_id, BROWSER)

    assert [p.name for p in services.account_security.list_passkeys(account.id)] == ["Laptop"]


# Notifications sent by other calling sites


def test_key_notifications_never_hold_the_key(sql_services: Services, inbox: Inbox) -> None:
    services = sql_services  # the in-memory key store comes with the key-lifecycle service
    account = make_user(services)
    raw, record = make_api_key(services, account, name="deploy")
    revoked = services.keys.revoke(record.id, reason=RevokedReason.LEAKED).record

    services.notifier.key_created(account.id, record, Actor.operator())
    services.notifier.key_revoked_as_leaked(
        account.id, revoked, Actor("revoke-leaked", "192.0.2.1", "scanner/2")
    )

    created, leaked = mail_to(services, inbox, account.email)
    assert created.message["Subject"] == "[Thotbot] A new API key was created"
    assert f"'deploy' ({record.hint}, id {record.id})" in created.body
    assert "by the operator" in created.body
    assert leaked.message["Subject"] == "[Thotbot] An API key was reported as leaked and revoked"
    assert "How:  by a leaked-key report" in leaked.body
    assert "From: 192.0.2.1, using scanner 2" in leaked.body
    for mail in (created, leaked):
        assert raw not in mail.message.as_string()
        assert raw[8:] not in mail.body
