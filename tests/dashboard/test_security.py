"""The Security page's changes on both backends: email (through a real aiosmtpd), password, passkeys
(a software authenticator answering the page's JSON endpoints), and the fresh sign-in they need."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from tests.authenticator import SoftAuthenticator
from tests.conftest import ClientFactory
from tests.dashboard.helpers import (
    PASSWORD,
    create_key,
    csrf_token,
    field_errors,
    form_token,
    raw_key,
    session_cookie,
    sign_in,
    sign_up,
)
from tests.smtp import Inbox, Received
from thotbot.config import Settings, load_settings
from thotbot.core.accounts import verify_password
from thotbot.core.dates import utcnow
from thotbot.services import Services
from thotbot.storage import AccountRecord
from thotbot.storage.throttle import ThrottleRule
from thotbot.storage.web_sessions import SessionRecord

NEW_PASSWORD = "lamp orbit walrus tea"
ORIGIN = "http://localhost:8000"  # THOTBOT_PUBLIC_URL's default: the relying party's origin
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture
def settings(database_url: str, inbox: Inbox) -> Settings:
    return load_settings(database_url=database_url, smtp_url=inbox.url)


def _mail(services: Services, inbox: Inbox, to: str) -> list[Received]:
    """The security mails sent to ``to``; the sign-up's confirmation link is tested on its own."""
    assert services.mailer.flush(10)
    return [m for m in inbox.to(to) if m.message["subject"] != "[Thotbot] Confirm your email address"]


def _account(services: Services, email: str) -> AccountRecord:
    account = services.users.find_by_email(email)
    assert account is not None
    return account


def _session(client: TestClient, services: Services) -> SessionRecord:
    session = services.web_sessions.find_by_token(session_cookie(client) or "")
    assert session is not None
    return session


def _go_stale(client: TestClient, services: Services) -> None:
    """The last sign-in was 11 minutes ago: past the fresh sign-in window."""
    services.web_sessions.reauthenticate(_session(client, services).id, now=utcnow() - timedelta(minutes=11))


def _actions(services: Services, account: AccountRecord) -> list[str]:
    return [e.action for e in services.security_log.list_for_account(account.id)]


def _security(client: TestClient) -> str:
    response = client.get("/dashboard/security")
    assert response.status_code == 200
    return response.text


def _post(client: TestClient, path: str, **fields: str) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(_security(client)), **fields})


def _prompt_fields(prompt: str) -> dict[str, str]:
    """The hidden fields of the "Confirm it is you" form: its CSRF token and what was submitted."""
    assert "Confirm it is you" in prompt
    form = prompt[prompt.index('id="sudo-form"') :]
    form = form[: form.index("</form>")]
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(form)}


def _confirm(client: TestClient, prompt: str, password: str = PASSWORD) -> Any:
    """Answer the "Confirm it is you" page: its form again, with the password."""
    action = re.search(r'<form method="post" action="([^"]+)" id="sudo-form"', prompt)
    assert action
    return client.post(action.group(1), data={**_prompt_fields(prompt), "sudo_password": password})


def _json(client: TestClient, path: str, body: dict[str, object] | None = None, *, page: str = "") -> Any:
    token = csrf_token(page or _security(client))
    return client.post(path, json=body or {}, headers={"X-CSRF-Token": token})


def _sign_in_with_passkey(browser: TestClient, authenticator: SoftAuthenticator) -> Any:
    """The sign-in page's passkey button: a ceremony, answered by this authenticator."""
    login = browser.get("/login").text
    ceremony = _json(browser, "/login/passkey/options", page=login).json()
    body = {"challenge_id": ceremony["challenge_id"], "credential": authenticator.get(ceremony["options"])}
    return _json(browser, "/login/passkey", body, page=login)


def _add_passkey(client: TestClient, authenticator: SoftAuthenticator, name: str = "Laptop") -> Any:
    options = _json(client, "/dashboard/security/passkeys/options")
    assert options.status_code == 200, options.text
    ceremony = options.json()
    credential = authenticator.create(ceremony["options"])
    body = {"challenge_id": ceremony["challenge_id"], "credential": credential, "name": name}
    return _json(client, "/dashboard/security/passkeys", body)


def _passkey_ids(page: str) -> list[str]:
    return re.findall(r'data-passkey-id="([^"]+)"', page)


# Email


def test_email_change_end_to_end(client_factory: ClientFactory, services: Services, inbox: Inbox) -> None:
    with client_factory() as client:
        sign_up(client, "ann@example.com")

        response = _post(client, "/dashboard/security/email", email="  Ann.New@Example.com ")

        assert response.url.path == "/dashboard/security"
        assert "Check your inbox at ann.new@example.com" in response.text
        assert "Waiting for confirmation: ann.new@example.com" in response.text
        [mail] = _mail(services, inbox, "ann.new@example.com")
        link = urlsplit(mail.link())
        assert link.path == "/verify-email"

        # Before the link is followed, nothing changed, and opening it (as a mail scanner
        # would) changes nothing either: only the page's button does.
        page = client.get(f"{link.path}?{link.query}")
        assert page.status_code == 200
        assert "Confirm the new email address" in page.text
        assert _account(services, "ann@example.com").email == "ann@example.com"
        assert services.users.find_by_email("ann.new@example.com") is None

        token = html.unescape(re.findall(r'name="token" value="([^"]+)"', page.text)[0])
        confirmed = client.post("/verify-email", data={"csrf_token": csrf_token(page.text), "token": token})

        assert confirmed.url.path == "/dashboard/security"
        assert "Your email address is now ann.new@example.com." in confirmed.text
        assert services.users.find_by_email("ann@example.com") is None
        account = _account(services, "ann.new@example.com")
        assert "email.changed" in _actions(services, account)
        [notice] = _mail(services, inbox, "ann@example.com")
        assert "changed from ann@example.com to ann.new@example.com" in notice.body

        # The link works once.
        again = client.post("/verify-email", data={"csrf_token": csrf_token(page.text), "token": token})
        assert again.status_code == 400
        assert "This link no longer works" in again.text

    with client_factory() as fresh:
        sign_in(fresh, "ann.new@example.com")
        login = fresh.get("/login").text
        old = fresh.post(
            "/login", data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": csrf_token(login)}
        )
        assert old.status_code == 400


def test_the_link_works_signed_out_too(
    client_factory: ClientFactory, services: Services, inbox: Inbox
) -> None:
    with client_factory() as client:
        sign_up(client, "bob@example.com")
        _post(client, "/dashboard/security/email", email="robert@example.com")
    link = urlsplit(_mail(services, inbox, "robert@example.com")[0].link())

    with client_factory() as elsewhere:
        opened = elsewhere.get(f"{link.path}?{link.query}").text
        token = html.unescape(re.findall(r'name="token" value="([^"]+)"', opened)[0])
        response = elsewhere.post("/verify-email", data={"csrf_token": csrf_token(opened), "token": token})

        assert response.url.path == "/login"
        assert "Your email address is now robert@example.com. Sign in with it." in response.text
    assert services.users.find_by_email("robert@example.com") is not None


@pytest.mark.parametrize("token", ["", "nope", "x" * 500])
def test_an_unknown_link_gets_a_clear_page(client: TestClient, token: str) -> None:
    page = client.get(f"/verify-email?token={token}")
    if page.status_code == 200:  # well formed: only the button tells
        page = client.post("/verify-email", data={"csrf_token": csrf_token(page.text), "token": token})

    assert page.status_code == 400
    assert "This link no longer works" in page.text
    assert "ask for a new link" in page.text


def test_email_change_without_a_fresh_sign_in_asks_first(
    client: TestClient, services: Services, inbox: Inbox
) -> None:
    sign_up(client, "cat@example.com")
    _go_stale(client, services)

    prompt = _post(client, "/dashboard/security/email", email="cat.new@example.com")

    assert prompt.status_code == 200
    assert "To change your email address to cat.new@example.com, confirm" in prompt.text
    assert _prompt_fields(prompt.text)["email"] == "cat.new@example.com"
    assert services.account_security.pending_email_change(_account(services, "cat@example.com").id) is None

    wrong = _confirm(client, prompt.text, password="not my password")
    assert wrong.status_code == 400
    assert field_errors(wrong.text) == {"sudo_password": "The password is incorrect."}
    assert _prompt_fields(wrong.text)["email"] == "cat.new@example.com"  # what was typed is kept
    assert _mail(services, inbox, "cat.new@example.com") == []

    done = _confirm(client, wrong.text)

    assert done.url.path == "/dashboard/security"
    assert "Check your inbox at cat.new@example.com" in done.text
    assert len(_mail(services, inbox, "cat.new@example.com")) == 1
    account = _account(services, "cat@example.com")
    assert _actions(services, account)[:3] == [
        "email.change_requested",
        "session.reauthenticated",
        "session.sign_in_failed",
    ]
    # The proof counts for the next ten minutes: no second prompt.
    again = _post(client, "/dashboard/security/email", email="cat.other@example.com")
    assert "Check your inbox at cat.other@example.com" in again.text


def test_an_empty_confirmation_asks_again(client: TestClient, services: Services) -> None:
    sign_up(client, "dan@example.com")
    _go_stale(client, services)
    prompt = _post(client, "/dashboard/security/email", email="dan.new@example.com").text

    response = _confirm(client, prompt, password="")

    assert response.status_code == 400
    assert field_errors(response.text) == {"sudo_password": "Enter your password, or use a passkey."}


def test_email_change_without_csrf_changes_nothing(
    client: TestClient, services: Services, inbox: Inbox
) -> None:
    sign_up(client, "eve@example.com")

    response = client.post("/dashboard/security/email", data={"email": "eve.new@example.com"})

    assert response.status_code == 403
    assert "Nothing was changed" in response.text
    assert services.account_security.pending_email_change(_account(services, "eve@example.com").id) is None
    assert _mail(services, inbox, "eve.new@example.com") == []


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "Enter the new email address."),
        ("not an address", "Enter a valid email address"),
        ("fay\x00@example.com", "control characters"),
        ("fay@example.com", "This is the account's email address already."),
    ],
)
def test_a_bad_new_address_is_shown_next_to_its_field(
    client: TestClient, services: Services, email: str, message: str
) -> None:
    sign_up(client, "fay@example.com")

    response = _post(client, "/dashboard/security/email", email=email)

    assert response.status_code == 400
    assert message in field_errors(response.text)["email"]


def test_an_address_with_an_account_gets_the_same_answer(
    client: TestClient, services: Services, inbox: Inbox
) -> None:
    sign_up(client, "gus@example.com")
    services.users.create("taken@example.com", "x")

    response = _post(client, "/dashboard/security/email", email="taken@example.com")

    assert "Check your inbox at taken@example.com" in response.text
    [notice] = _mail(services, inbox, "taken@example.com")
    assert "/verify-email" not in notice.body
    assert _account(services, "gus@example.com").email == "gus@example.com"


# Password


def test_password_change_ends_the_other_sessions(
    client_factory: ClientFactory, services: Services, inbox: Inbox
) -> None:
    with client_factory() as laptop, client_factory() as phone:
        sign_up(laptop, "hal@example.com")
        sign_in(phone, "hal@example.com")

        response = _post(
            laptop, "/dashboard/security/password", current_password=PASSWORD, new_password=NEW_PASSWORD
        )

        assert response.url.path == "/dashboard/security"
        assert "Password changed. 1 other session was signed out." in response.text
        assert phone.get("/dashboard", follow_redirects=False).status_code == 303
        assert laptop.get("/dashboard", follow_redirects=False).status_code == 200
    account = _account(services, "hal@example.com")
    assert verify_password(services.users.password_hash(account.id), NEW_PASSWORD)
    assert "password.changed" in _actions(services, account)
    [mail] = _mail(services, inbox, "hal@example.com")
    assert "1 other signed-in session(s) were ended" in mail.body
    assert NEW_PASSWORD not in mail.body
    with client_factory() as again:
        sign_in(again, "hal@example.com", NEW_PASSWORD)


def test_password_change_needs_no_other_proof_than_the_current_password(
    client: TestClient, services: Services
) -> None:
    sign_up(client, "ida@example.com")
    _go_stale(client, services)

    response = _post(
        client, "/dashboard/security/password", current_password=PASSWORD, new_password=NEW_PASSWORD
    )

    assert "Password changed. No other session was signed in." in response.text
    authenticated_at = _session(client, services).authenticated_at
    assert authenticated_at is not None
    assert utcnow() - authenticated_at < timedelta(minutes=1)  # it was a fresh proof


@pytest.mark.parametrize(
    ("current", "new", "field", "message"),
    [
        ("not my password", NEW_PASSWORD, "current_password", "The current password is incorrect."),
        ("", NEW_PASSWORD, "current_password", "Enter your current password."),
        (PASSWORD, "", "new_password", "Enter a new password."),
        (PASSWORD, "Password123!", "new_password", "among the first ones attackers try"),
        (PASSWORD, "short", "new_password", "at least 10 characters"),
        (PASSWORD, "jay.smith2024", "new_password", "made from your email address"),
    ],
)
def test_a_refused_password_change_changes_nothing(
    client: TestClient, services: Services, inbox: Inbox, current: str, new: str, field: str, message: str
) -> None:
    sign_up(client, "jay.smith@example.com")

    response = _post(client, "/dashboard/security/password", current_password=current, new_password=new)

    assert response.status_code == 400
    assert message in field_errors(response.text)[field]
    assert current not in response.text or not current
    account = _account(services, "jay.smith@example.com")
    assert verify_password(services.users.password_hash(account.id), PASSWORD)
    assert _mail(services, inbox, "jay.smith@example.com") == []


def test_password_change_without_csrf_changes_nothing(client: TestClient, services: Services) -> None:
    sign_up(client, "kim@example.com")

    response = client.post(
        "/dashboard/security/password", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )

    assert response.status_code == 403
    account = _account(services, "kim@example.com")
    assert verify_password(services.users.password_hash(account.id), PASSWORD)


# Passkeys


def test_add_rename_and_remove_a_passkey(client: TestClient, services: Services, inbox: Inbox) -> None:
    sign_up(client, "lee@example.com")
    authenticator = SoftAuthenticator(ORIGIN)

    added = _add_passkey(client, authenticator, "  Work   laptop ")

    assert added.status_code == 200, added.text
    assert added.json() == {"redirect": "/dashboard/security#passkeys"}
    page = _security(client)
    assert "Passkey “Work laptop” added." in page
    [passkey_id] = _passkey_ids(page)
    assert "Work laptop" in page
    assert "Never used" in page
    [mail] = _mail(services, inbox, "lee@example.com")
    assert "A passkey named 'Work laptop' was added" in mail.body

    renamed = _post(client, f"/dashboard/security/passkeys/{passkey_id}/rename", name="Old laptop")
    assert "Renamed the passkey to “Old laptop”." in renamed.text

    removed = _post(client, f"/dashboard/security/passkeys/{passkey_id}/remove")
    assert "Removed the passkey “Old laptop”." in removed.text
    assert _passkey_ids(removed.text) == []
    account = _account(services, "lee@example.com")
    assert _actions(services, account)[:3] == ["passkey.removed", "passkey.renamed", "passkey.added"]


def test_sign_in_with_a_passkey_alone(client_factory: ClientFactory, services: Services) -> None:
    authenticator = SoftAuthenticator(ORIGIN)
    with client_factory() as client:
        sign_up(client, "max@example.com")
        assert _add_passkey(client, authenticator).status_code == 200

    with client_factory() as browser:
        login = browser.get("/login").text
        before = session_cookie(browser)
        ceremony = _json(browser, "/login/passkey/options", page=login).json()
        assert "allowCredentials" not in ceremony["options"]  # no email typed: any passkey here
        answer = authenticator.get(ceremony["options"])

        response = _json(
            browser,
            "/login/passkey",
            {"challenge_id": ceremony["challenge_id"], "credential": answer, "next": "/dashboard/api-keys"},
            page=login,
        )

        assert response.status_code == 200, response.text
        assert response.json() == {"redirect": "/dashboard/api-keys"}
        assert session_cookie(browser) != before  # a new session id, as for a password
        assert browser.get("/dashboard", follow_redirects=False).status_code == 200
        session = _session(browser, services)
        assert session.account_id == _account(services, "max@example.com").id
        assert session.authenticated_at is not None
        assert utcnow() - session.authenticated_at < timedelta(minutes=1)
        [event] = [
            e
            for e in services.security_log.list_for_account(session.account_id)
            if e.actor.endswith(session.id)
        ]
        assert event.action == "session.signed_in"
        assert event.detail.startswith("passkey 'Laptop'")
        page = _security(browser)
        assert "Never used" not in page  # last used: just now

        # Removed, the passkey signs in no more.
        [passkey_id] = _passkey_ids(page)
        _post(browser, f"/dashboard/security/passkeys/{passkey_id}/remove")
    with client_factory() as browser:
        refused = _sign_in_with_passkey(browser, authenticator)

        assert refused.status_code == 422
        assert refused.json()["code"] == "validation_error"
        assert "not registered with Thotbot" in refused.json()["detail"]
        assert browser.get("/dashboard", follow_redirects=False).status_code == 303


def test_a_disabled_account_cannot_sign_in_with_its_passkey(
    client_factory: ClientFactory, services: Services
) -> None:
    authenticator = SoftAuthenticator(ORIGIN)
    with client_factory() as client:
        sign_up(client, "gone@example.com")
        assert _add_passkey(client, authenticator).status_code == 200
    services.account_recovery.disable("gone@example.com")

    with client_factory() as browser:
        refused = _sign_in_with_passkey(browser, authenticator)

        assert refused.status_code == 403
        assert refused.json()["code"] == "account_disabled"
        assert "Contact the operator" in refused.json()["detail"]
        assert browser.get("/dashboard", follow_redirects=False).status_code == 303


def test_passkey_sign_in_without_javascript_says_so(client: TestClient) -> None:
    login = client.get("/login").text

    response = client.post("/login/passkey", data={"csrf_token": csrf_token(login)})

    assert response.status_code == 400
    assert "Signing in with a passkey needs JavaScript" in response.text
    assert "Sign in to Thotbot" in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/login/passkey/options",
        "/login/passkey",
        "/dashboard/security/passkeys/options",
        "/dashboard/security/passkeys",
        "/dashboard/sudo/passkey/options",
        "/dashboard/sudo/passkey",
    ],
)
def test_passkey_endpoints_need_the_csrf_header(client: TestClient, services: Services, path: str) -> None:
    sign_up(client, "ned@example.com")

    response = client.post(path, json={})

    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert services.account_security.list_passkeys(_account(services, "ned@example.com").id) == []


def test_adding_a_passkey_without_a_fresh_sign_in_asks_first(client: TestClient, services: Services) -> None:
    sign_up(client, "oli@example.com")
    _go_stale(client, services)

    options = _json(client, "/dashboard/security/passkeys/options")
    assert options.status_code == 403
    assert options.json()["code"] == "sudo_required"

    # The page's script then posts the form itself: the server asks, then carries on.
    prompt = _post(client, "/dashboard/security/passkeys/new", passkey_name="Phone")
    assert "To add the passkey “Phone”, confirm with your password." in prompt.text
    page = _confirm(client, prompt.text)

    assert page.status_code == 200
    assert "Add the passkey “Phone”" in page.text
    assert "data-autostart" in page.text
    assert _add_passkey(client, SoftAuthenticator(ORIGIN), "Phone").status_code == 200


@pytest.mark.parametrize("action", ["rename", "remove"])
def test_changing_a_passkey_without_a_fresh_sign_in_asks_first(
    client: TestClient, services: Services, action: str
) -> None:
    sign_up(client, "pam@example.com")
    assert _add_passkey(client, SoftAuthenticator(ORIGIN), "Tablet").status_code == 200
    [passkey_id] = _passkey_ids(_security(client))
    _go_stale(client, services)

    prompt = _post(client, f"/dashboard/security/passkeys/{passkey_id}/{action}", name="Kitchen tablet")

    assert "Confirm it is you" in prompt.text
    assert "or a passkey" in prompt.text  # the account has one to offer
    [passkey] = services.account_security.list_passkeys(_account(services, "pam@example.com").id)
    assert passkey.name == "Tablet"
    done = _confirm(client, prompt.text)
    if action == "rename":
        assert "Renamed the passkey to “Kitchen tablet”." in done.text
    else:
        assert _passkey_ids(done.text) == []


def test_a_passkey_confirms_it_is_you(client: TestClient, services: Services) -> None:
    sign_up(client, "quinn@example.com")
    authenticator = SoftAuthenticator(ORIGIN)
    assert _add_passkey(client, authenticator).status_code == 200
    _go_stale(client, services)
    prompt = _post(client, "/dashboard/security/email", email="quinn.new@example.com").text

    ceremony = _json(client, "/dashboard/sudo/passkey/options", page=prompt).json()
    assert len(ceremony["options"]["allowCredentials"]) == 1  # only this account's passkeys
    answer = authenticator.get(ceremony["options"])
    confirmed = _json(
        client,
        "/dashboard/sudo/passkey",
        {"challenge_id": ceremony["challenge_id"], "credential": answer},
        page=prompt,
    )
    assert confirmed.json() == {"status": "confirmed"}
    # The script then sends the prompt's form without a password.
    done = client.post("/dashboard/security/email", data=_prompt_fields(prompt))

    assert "Check your inbox at quinn.new@example.com" in done.text
    account = _account(services, "quinn@example.com")
    event = services.security_log.list_for_account(account.id)[1]
    assert (event.action, event.detail.split(" (")[0]) == ("session.reauthenticated", "passkey 'Laptop'")


def test_the_passkey_prompt_without_javascript_says_so(client: TestClient, services: Services) -> None:
    sign_up(client, "ray@example.com")
    assert _add_passkey(client, SoftAuthenticator(ORIGIN)).status_code == 200
    _go_stale(client, services)
    prompt = _post(client, "/dashboard/security/email", email="ray.new@example.com").text

    response = client.post("/dashboard/security/email", data={**_prompt_fields(prompt), "sudo_passkey": "1"})

    assert response.status_code == 400
    assert "Passkeys need JavaScript" in field_errors(response.text)["sudo_password"]


def test_a_passkey_of_another_account_cannot_confirm(
    client_factory: ClientFactory, services: Services
) -> None:
    theirs = SoftAuthenticator(ORIGIN)
    with client_factory() as other:
        sign_up(other, "sam@example.com")
        assert _add_passkey(other, theirs).status_code == 200
    with client_factory() as client:
        sign_up(client, "tia@example.com")
        assert _add_passkey(client, SoftAuthenticator(ORIGIN)).status_code == 200
        _go_stale(client, services)
        prompt = _post(client, "/dashboard/security/email", email="tia.new@example.com").text
        ceremony = _json(client, "/dashboard/sudo/passkey/options", page=prompt).json()

        refused = _json(
            client,
            "/dashboard/sudo/passkey",
            {"challenge_id": ceremony["challenge_id"], "credential": theirs.get(ceremony["options"])},
            page=prompt,
        )

        assert refused.status_code == 422
        session = _session(client, services)
        assert session.authenticated_at is not None
        assert utcnow() - session.authenticated_at > timedelta(minutes=10)


# API keys: creating and rolling need a fresh sign-in too, and each new key is mailed about.


def test_creating_a_key_without_a_fresh_sign_in_asks_first(
    client: TestClient, services: Services, inbox: Inbox
) -> None:
    sign_up(client, "uma@example.com")
    _go_stale(client, services)
    page = client.get("/dashboard/api-keys/new").text
    form = {
        "csrf_token": csrf_token(page),
        "form_token": form_token(page),
        "name": "billing <server>",
        "expiry": "30",
        "expiry_date": "",
        "access": "read_only",
    }

    prompt = client.post("/dashboard/api-keys/new", data=form)

    assert "To create the API key “billing &lt;server&gt;”, confirm" in prompt.text
    assert services.keys.list_for_account(_account(services, "uma@example.com").id) == []
    assert "thot_ak_" not in prompt.text
    created = _confirm(client, prompt.text)

    raw = raw_key(created.text)
    [record] = services.keys.list_for_account(_account(services, "uma@example.com").id)
    assert (record.name, record.read_only) == ("billing <server>", True)
    [mail] = _mail(services, inbox, "uma@example.com")
    assert "A new API key was created" in mail.body
    assert record.hint in mail.body
    assert raw not in mail.body
    # The one-time form token was spent by the confirmed form: resending it creates nothing.
    assert _confirm(client, prompt.text).status_code == 409


def test_rolling_a_key_without_a_fresh_sign_in_asks_first(
    client: TestClient, services: Services, inbox: Inbox
) -> None:
    sign_up(client, "val@example.com")
    old_raw, _ = create_key(client, "deploy")
    account = _account(services, "val@example.com")
    [old] = services.keys.list_for_account(account.id)
    _go_stale(client, services)
    page = client.get(f"/dashboard/api-keys/{old.id}").text

    prompt = client.post(
        f"/dashboard/api-keys/{old.id}/roll",
        data={"csrf_token": csrf_token(page), "form_token": form_token(page), "old_expires": "1h"},
    )

    assert "To roll the API key “deploy”" in prompt.text
    assert len(services.keys.list_for_account(account.id)) == 1
    rolled = _confirm(client, prompt.text)
    new_raw = raw_key(rolled.text)
    assert new_raw != old_raw
    assert len(services.keys.list_for_account(account.id)) == 2
    mails = _mail(services, inbox, "val@example.com")
    assert [m.message["subject"] for m in mails] == ["[Thotbot] A new API key was created"] * 2
    assert all(old_raw not in m.body and new_raw not in m.body for m in mails)


def test_grants_are_shown_next_to_the_key(client: TestClient, services: Services) -> None:
    sign_up(client, "wes@example.com")
    create_key(client, "automation")
    [record] = services.keys.list_for_account(_account(services, "wes@example.com").id)
    services.keys.grant(record.id, "account:security")

    listing = client.get("/dashboard/api-keys").text
    detail = client.get(f"/dashboard/api-keys/{record.id}").text

    for page in (listing, detail):
        assert (
            '<span class="badge badge-grant" title="Granted by the operator">account:security</span>' in page
        )


def test_the_security_page_says_when_changes_will_ask(client: TestClient, services: Services) -> None:
    sign_up(client, "xan@example.com")
    assert "first ask for your password" not in _security(client)

    _go_stale(client, services)

    assert "first ask for your password" in _security(client)


@pytest.mark.parametrize("action", ["rename", "remove"])
def test_changing_a_passkey_without_csrf_changes_nothing(
    client: TestClient, services: Services, action: str
) -> None:
    sign_up(client, "yas@example.com")
    assert _add_passkey(client, SoftAuthenticator(ORIGIN), "Desk").status_code == 200
    [passkey_id] = _passkey_ids(_security(client))

    response = client.post(f"/dashboard/security/passkeys/{passkey_id}/{action}", data={"name": "Renamed"})

    assert response.status_code == 403
    [passkey] = services.account_security.list_passkeys(_account(services, "yas@example.com").id)
    assert passkey.name == "Desk"


def test_a_paused_password_cannot_confirm_a_change_and_says_so(
    client: TestClient, services: Services
) -> None:
    sign_up(client, "paused.sudo@example.com")
    _go_stale(client, services)
    services.sign_in_throttle.account_rule = ThrottleRule(free_failures=0, first_delay=timedelta(hours=1))
    prompt = _post(client, "/dashboard/security/email", email="new.sudo@example.com")
    wrong = _confirm(client, prompt.text, password="not my password")  # pauses the account

    right = _confirm(client, wrong.text)

    assert right.status_code == 429
    assert "Use a passkey instead" in field_errors(right.text)["sudo_password"]
    assert (
        services.account_security.pending_email_change(_account(services, "paused.sudo@example.com").id)
        is None
    )
