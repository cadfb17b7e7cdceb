"""The restricted API: each endpoint refused to keys unless granted, and working where granted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from tests.authenticator import SoftAuthenticator
from tests.factories import PASSWORD, bearer, make_api_key, make_user
from tests.smtp import Inbox
from thotbot.config import Settings, load_settings
from thotbot.core.accounts import verify_password
from thotbot.core.identity import Actor
from thotbot.passkey_ceremonies import PasskeyRefused
from thotbot.services import Services
from thotbot.storage import AccountRecord

ORIGIN = "http://localhost:8000"  # THOTBOT_PUBLIC_URL, the relying party
NEW_PASSWORD = "a different long passphrase"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"


pytestmark = pytest.mark.usefixtures("mailing")  # every mail a test sends is delivered


@pytest.fixture
def settings(database_url: str, inbox: Inbox) -> Settings:
    return load_settings(
        database_url=database_url,
        smtp_url=inbox.url,
        public_url=ORIGIN,
        rate_limit="100000/minute",
        anon_rate_limit="100000/minute",
    )


@dataclass
class World:
    account: AccountRecord
    passkey_id: str
    headers: dict[str, dict[str, str]]


def _register_passkey(services: Services, account: AccountRecord, authenticator: SoftAuthenticator) -> str:
    ceremony = services.passkey_ceremonies.registration_options(account)
    credential = authenticator.create(ceremony.options)
    return services.passkey_ceremonies.register(
        account.id, ceremony.challenge_id, credential, name="laptop"
    ).id


@pytest.fixture
def world(services: Services) -> World:
    account = make_user(services)
    passkey_id = _register_passkey(services, account, SoftAuthenticator(ORIGIN))
    plain, _ = make_api_key(services, account, name="plain")
    read_only, _ = make_api_key(services, account, name="read-only", read_only=True)
    granted, record = make_api_key(services, account, name="granted")
    services.keys.grant(record.id, "account:security")
    cookie, _ = services.web_sessions.create(account.id)
    return World(
        account,
        passkey_id,
        {
            "plain key": bearer(plain),
            "read-only key": bearer(read_only),
            "granted key": bearer(granted),
            "session cookie": {"Cookie": f"thotbot_session={cookie}"},
        },
    )


ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("PUT", "/v1/account/email", {"email": "new@example.com"}, 202),
    ("PUT", "/v1/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, 204),
    ("GET", "/v1/account/passkeys", None, 200),
    ("POST", "/v1/account/passkeys", {}, 200),
    ("DELETE", "/v1/account/passkeys/{passkey_id}", None, 204),
    ("POST", "/v1/keys", {"name": "minted"}, 201),
]


def _state(services: Services, account: AccountRecord, inbox: Inbox) -> dict[str, object]:
    assert services.mailer.flush(10)
    return {
        "account": services.users.find(account.id),
        "password": services.users.password_hash(account.id),
        "passkeys": services.account_security.list_passkeys(account.id),
        "keys": [k.id for k in services.keys.list_for_account(account.id)],
        "pending": services.account_security.pending_email_change(account.id),
        "sessions": [s.id for s in services.web_sessions.list_for_account(account.id)],
        "mail": len(inbox.received),
    }


@pytest.mark.parametrize(("method", "path", "body", "granted_status"), ENDPOINTS)
@pytest.mark.parametrize("caller", ["plain key", "read-only key", "granted key", "session cookie"])
def test_each_restricted_endpoint_answers_each_caller(
    client: TestClient,
    services: Services,
    inbox: Inbox,
    world: World,
    caller: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    granted_status: int,
) -> None:
    before = _state(services, world.account, inbox)

    response = client.request(
        method, path.format(passkey_id=world.passkey_id), json=body, headers=world.headers[caller]
    )

    assert response.headers["cache-control"] == "no-store"
    if caller == "granted key":
        assert response.status_code == granted_status, response.text
        return
    problem = response.json()
    if caller == "session cookie":
        assert (response.status_code, problem["code"]) == (401, "session_cookie_not_accepted")
    elif caller == "read-only key" and method != "GET":
        assert (response.status_code, problem["code"]) == (403, "insufficient_scope")
    else:
        assert (response.status_code, problem["code"]) == (403, "restricted_endpoint")
        assert "dashboard" in problem["detail"]
        assert "operator" in problem["detail"]
        refused = services.security_log.list_for_account(world.account.id)[0]
        assert (refused.action, refused.detail) == (
            "restricted.refused",
            f"{method} {urlsplit(str(response.url)).path} refused: restricted_endpoint",
        )
    assert _state(services, world.account, inbox) == before  # nothing changed


def test_every_granted_call_is_logged(client: TestClient, services: Services, world: World) -> None:
    response = client.get("/v1/account/passkeys", headers=world.headers["granted key"])

    assert response.status_code == 200
    event = services.security_log.list_for_account(world.account.id)[0]
    assert (event.action, event.detail) == ("restricted.allowed", "GET /v1/account/passkeys")


# Email


def test_email_change_end_to_end(client: TestClient, services: Services, inbox: Inbox, world: World) -> None:
    headers = {**world.headers["granted key"], "User-Agent": "ops-script/2.1 (ops@example.com)"}
    old = world.account.email

    response = client.put("/v1/account/email", json={"email": "New@Example.com"}, headers=headers)

    assert response.status_code == 202
    assert response.json()["status"] == "verification_sent"
    assert services.mailer.flush(10)
    (mail,) = inbox.to("new@example.com")
    link = mail.link()
    assert link.startswith(f"{ORIGIN}/verify-email?token=")
    assert "using ops-script 2.1" in mail.body  # parsed, never the raw header
    # Before the link is followed, nothing changed.
    assert client.get("/v1/me", headers=headers).json()["account"]["email"] == old
    assert inbox.to(old) == []

    # What the dashboard's GET /verify-email does with the token.
    token = parse_qs(urlsplit(link).query)["token"][0]
    services.account_security.confirm_email_change(token, Actor("email-link", "192.0.2.9", BROWSER_UA))

    assert client.get("/v1/me", headers=headers).json()["account"]["email"] == "new@example.com"
    assert services.mailer.flush(10)
    (notice,) = inbox.to(old)
    assert "new@example.com" in notice.body
    actions = [e.action for e in services.security_log.list_for_account(world.account.id)]
    assert "email.change_requested" in actions
    assert actions[0] == "email.changed"


def test_email_change_to_a_taken_address_answers_the_same(
    client: TestClient, services: Services, inbox: Inbox, world: World
) -> None:
    other = make_user(services)

    response = client.put(
        "/v1/account/email", json={"email": other.email}, headers=world.headers["granted key"]
    )

    assert response.status_code == 202
    pending = services.account_security.pending_email_change(world.account.id)
    assert pending is not None  # as for a free address: the requester cannot tell
    assert pending.new_email == other.email
    assert services.mailer.flush(10)
    assert "verify-email" not in inbox.to(other.email)[0].body


@pytest.mark.parametrize(
    "body", [None, {}, {"email": ""}, {"email": 7}, {"email": "nope"}, {"email": "a@" + "b" * 400 + ".c"}]
)
def test_email_change_validates_its_body(client: TestClient, world: World, body: object) -> None:
    response = client.put("/v1/account/email", json=body, headers=world.headers["granted key"])

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# Password


def test_password_change_through_the_api(
    client: TestClient, services: Services, inbox: Inbox, world: World
) -> None:
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    response = client.put("/v1/account/password", json=body, headers=world.headers["granted key"])

    assert response.status_code == 204
    assert verify_password(services.users.password_hash(world.account.id), NEW_PASSWORD)
    assert services.web_sessions.list_for_account(world.account.id) == []  # every session ended
    assert services.mailer.flush(10)
    (mail,) = inbox.to(world.account.email)
    assert "password" in mail.message["Subject"]


def test_a_wrong_current_password_is_a_validation_error(
    client: TestClient, services: Services, inbox: Inbox, world: World
) -> None:
    before = _state(services, world.account, inbox)
    body = {"current_password": "not it at all", "new_password": NEW_PASSWORD}

    response = client.put("/v1/account/password", json=body, headers=world.headers["granted key"])

    assert response.status_code == 422
    assert (response.json()["code"], response.json()["field"]) == ("validation_error", "current_password")
    assert "not it at all" not in response.text
    assert _state(services, world.account, inbox) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"new_password": NEW_PASSWORD}, "current_password"),
        ({"current_password": PASSWORD}, "new_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, "new_password"),
        ({"current_password": PASSWORD, "new_password": ["x"]}, "new_password"),
    ],
)
def test_password_change_validates_its_body(
    client: TestClient, world: World, body: object, field: str
) -> None:
    response = client.put("/v1/account/password", json=body, headers=world.headers["granted key"])

    assert response.status_code == 422
    assert response.json()["field"] == field


# Passkeys


def test_passkey_ceremony_through_the_api(
    client: TestClient, services: Services, inbox: Inbox, world: World
) -> None:
    headers = world.headers["granted key"]
    authenticator = SoftAuthenticator(ORIGIN)

    step_one = client.post("/v1/account/passkeys", headers=headers)
    assert step_one.status_code == 200, step_one.text
    begun = step_one.json()
    assert begun["options"]["authenticatorSelection"]["residentKey"] == "required"
    assert len(begun["options"]["excludeCredentials"]) == 1  # the passkey the account has
    credential = authenticator.create(begun["options"])
    step_two = client.post(
        "/v1/account/passkeys",
        json={"challenge_id": begun["challenge_id"], "credential": credential, "name": "YubiKey"},
        headers=headers,
    )

    assert step_two.status_code == 201, step_two.text
    added = step_two.json()
    assert added["name"] == "YubiKey"
    assert added["last_used_at"] is None
    listed = client.get("/v1/account/passkeys", headers=headers).json()["passkeys"]
    assert [p["name"] for p in listed] == ["laptop", "YubiKey"]
    assert services.mailer.flush(10)
    assert "'YubiKey'" in inbox.to(world.account.email)[0].body
    # It signs in alone; once removed, it does not.
    ceremony = services.passkey_ceremonies.authentication_options()
    assert (
        services.passkey_ceremonies.authenticate(
            ceremony.challenge_id, authenticator.get(ceremony.options)
        ).id
        == added["id"]
    )
    assert client.delete(f"/v1/account/passkeys/{added['id']}", headers=headers).status_code == 204
    ceremony = services.passkey_ceremonies.authentication_options()
    with pytest.raises(PasskeyRefused):
        services.passkey_ceremonies.authenticate(ceremony.challenge_id, authenticator.get(ceremony.options))
    assert client.delete(f"/v1/account/passkeys/{added['id']}", headers=headers).status_code == 404


def test_a_replayed_registration_is_refused(client: TestClient, services: Services, world: World) -> None:
    headers = world.headers["granted key"]
    begun = client.post("/v1/account/passkeys", json={}, headers=headers).json()
    body = {
        "challenge_id": begun["challenge_id"],
        "credential": SoftAuthenticator(ORIGIN).create(begun["options"]),
    }
    assert client.post("/v1/account/passkeys", json=body, headers=headers).status_code == 201

    again = client.post("/v1/account/passkeys", json=body, headers=headers)

    assert again.status_code == 422
    assert again.json()["field"] == "challenge_id"


@pytest.mark.parametrize(
    "credential",
    [
        "garbage",
        {"id": "x"},
        {"id": "AA", "rawId": "AA", "type": "public-key", "response": {"clientDataJSON": "e30"}},
    ],
)
def test_a_bad_credential_is_a_validation_error(
    client: TestClient, services: Services, world: World, credential: object
) -> None:
    headers = world.headers["granted key"]
    begun = client.post("/v1/account/passkeys", headers=headers).json()

    response = client.post(
        "/v1/account/passkeys",
        json={"challenge_id": begun["challenge_id"], "credential": credential},
        headers=headers,
    )

    assert response.status_code == 422
    assert response.json()["field"] == "credential"
    assert len(services.account_security.list_passkeys(world.account.id)) == 1


def test_another_accounts_passkey_cannot_be_removed(
    client: TestClient, services: Services, world: World
) -> None:
    other = make_user(services)
    theirs = _register_passkey(services, other, SoftAuthenticator(ORIGIN))

    response = client.delete(f"/v1/account/passkeys/{theirs}", headers=world.headers["granted key"])

    assert response.status_code == 404
    assert len(services.account_security.list_passkeys(other.id)) == 1


# Notifications from the key endpoints


def test_a_key_minted_through_the_api_is_notified_without_the_key(
    client: TestClient, services: Services, inbox: Inbox, world: World
) -> None:
    response = client.post("/v1/keys", json={"name": "ci"}, headers=world.headers["granted key"])

    assert response.status_code == 201
    assert services.mailer.flush(10)
    (mail,) = inbox.to(world.account.email)
    assert mail.message["Subject"] == "[Thotbot] A new API key was created"
    assert response.json()["hint"] in mail.body
    assert response.json()["key"] not in mail.message.as_string()


def test_a_key_revoked_as_leaked_is_notified(client: TestClient, services: Services, inbox: Inbox) -> None:
    account = make_user(services)
    raw, record = make_api_key(services, account, name="leaky")

    response = client.post(
        "/v1/keys/revoke-leaked", json={"keys": [raw]}, headers={"User-Agent": "scanner/1"}
    )

    assert response.status_code == 202
    assert services.mailer.flush(10)
    (mail,) = inbox.to(account.email)
    assert mail.message["Subject"] == "[Thotbot] An API key was reported as leaked and revoked"
    assert record.hint in mail.body
    assert "using scanner 1" in mail.body
    assert raw not in mail.message.as_string()


# Input PostgreSQL would refuse with an error (NUL) must be a 4xx, never a 500.


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/v1/account/email", {"email": "a\u0000b@example.com"}, 422),
        ("POST", "/v1/account/passkeys", {"challenge_id": "ab\u0000cd", "credential": {"id": "x"}}, 422),
        ("DELETE", "/v1/account/passkeys/psk_%00", None, 404),
        ("DELETE", "/v1/account/passkeys/%C3%A9t%C3%A9", None, 404),
    ],
)
def test_nul_and_odd_input_is_refused_cleanly(
    client: TestClient, world: World, method: str, path: str, body: object, status: int
) -> None:
    response = client.request(method, path, json=body, headers=world.headers["granted key"])

    assert response.status_code == status, response.text


def test_a_passkey_name_with_nul_adds_nothing(client: TestClient, services: Services, world: World) -> None:
    headers = world.headers["granted key"]
    begun = client.post("/v1/account/passkeys", headers=headers).json()
    credential = SoftAuthenticator(ORIGIN).create(begun["options"])

    response = client.post(
        "/v1/account/passkeys",
        json={"challenge_id": begun["challenge_id"], "credential": credential, "name": "a\u0000b"},
        headers=headers,
    )

    assert response.status_code == 422
    assert response.json()["field"] == "name"
    assert len(services.account_security.list_passkeys(world.account.id)) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": {"a": 1}}, id="object-name"),
        pytest.param({"name": ["Laptop"]}, id="list-name"),
        pytest.param({"name": 7}, id="number-name"),
        pytest.param({"name": "x" * 101}, id="long-name"),
        pytest.param({"challenge_id": 5}, id="number-challenge"),
        pytest.param({"credential": None}, id="null-credential"),
        pytest.param({"credential": "{}"}, id="text-credential"),
        pytest.param({"credential": [1]}, id="list-credential"),
    ],
)
def test_a_passkey_body_of_the_wrong_shape_is_refused_in_step_one(
    client: TestClient, world: World, body: dict[str, object]
) -> None:
    # Step one reads none of these, but the description refuses them: so does the server.
    response = client.post("/v1/account/passkeys", json=body, headers=world.headers["granted key"])

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert response.json()["field"] == next(iter(body))


@pytest.mark.parametrize("body", [{}, {"name": None}, {"name": ""}, {"name": "Laptop"}], ids=repr)
def test_step_one_takes_what_the_description_allows(
    client: TestClient, world: World, body: dict[str, object]
) -> None:
    response = client.post("/v1/account/passkeys", json=body, headers=world.headers["granted key"])

    assert response.status_code == 200, response.text
    assert set(response.json()) == {"challenge_id", "expires_at", "options"}
