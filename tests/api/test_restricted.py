"""The restricted endpoints: 403 to every key unless the operator granted it account:security."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.api.test_auth import assert_problem, server_log
from tests.factories import PASSWORD, bearer, make_api_key, make_user
from thotbot.api.routes import routes as api_routes
from thotbot.core import keys
from thotbot.core.accounts import verify_password
from thotbot.core.identity import is_restricted
from thotbot.services import Services
from thotbot.storage import KeyRecord

RESTRICTED = [
    ("POST", "/v1/keys", {"name": "minted"}),
    ("PUT", "/v1/account/email", {"email": "new@example.com"}),
    ("PUT", "/v1/account/password", {"current_password": PASSWORD, "new_password": "a brand new password"}),
    ("GET", "/v1/account/passkeys", None),
    ("POST", "/v1/account/passkeys", {}),
    ("DELETE", "/v1/account/passkeys/pk_0123456789abcdef", None),
]
IDS = [f"{method} {path}" for method, path, _ in RESTRICTED]


def _granted(services: Services) -> tuple[str, KeyRecord]:
    raw, record = make_api_key(services)
    return raw, services.keys.grant(record.id, "account:security").record


def _state(services: Services, record: KeyRecord) -> tuple[object, ...]:
    account = services.users.find(record.account_id)
    return (
        account,
        services.users.password_hash(record.account_id),
        [k.id for k in services.keys.list_for_account(record.account_id)],
    )


@pytest.mark.parametrize(("method", "path", "body"), RESTRICTED, ids=IDS)
def test_a_plain_key_is_refused_and_the_call_logged(
    client: TestClient, services: Services, method: str, path: str, body: dict[str, object] | None
) -> None:
    raw, record = make_api_key(services)
    before = _state(services, record)

    response = client.request(method, path, headers=bearer(raw), json=body)

    problem = assert_problem(response, 403, "restricted_endpoint")
    detail = str(problem["detail"]).lower()
    assert "dashboard" in detail
    assert "operator" in detail
    assert "www-authenticate" not in response.headers
    assert _state(services, record) == before
    [event] = services.security_log.list_for_account(record.account_id)
    assert event.action == "restricted.refused"
    assert event.key_id == record.id
    assert event.actor == f"api_key:{record.id}"
    assert event.detail == f"{method} {path} refused: restricted_endpoint"


@pytest.mark.parametrize(("method", "path", "body"), RESTRICTED, ids=IDS)
def test_a_granted_key_gets_through_and_the_call_is_logged(
    client: TestClient, services: Services, method: str, path: str, body: dict[str, object] | None
) -> None:
    raw, record = _granted(services)

    response = client.request(method, path, headers=bearer(raw), json=body)

    # Every restricted endpoint is built: never the refusal, never a server error.
    assert response.status_code not in (401, 403), response.text
    assert response.status_code < 500, response.text
    assert response.headers["cache-control"] == "no-store"
    actions = [e.action for e in services.security_log.list_for_account(record.account_id)]
    assert "restricted.allowed" in actions
    assert "restricted.refused" not in actions


def test_a_granted_key_mints_a_key_returned_once(
    client: TestClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw, granter = _granted(services)
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)

    response = client.post(
        "/v1/keys", headers=bearer(raw), json={"name": "  deploy bot ", "expires_at": expires.isoformat()}
    )

    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    minted = body.pop("key")
    parsed = keys.parse(minted)
    assert body["name"] == "deploy bot"
    assert body["hint"] == parsed.hint
    assert body["expires_at"] == expires.isoformat().replace("+00:00", "Z")
    # The same metadata as /v1/me shows for that key.
    me = client.get("/v1/me", headers=bearer(minted))
    assert me.status_code == 200
    assert me.json()["key"] == {**body, "last_used_at": me.json()["key"]["last_used_at"]}
    assert me.json()["account"]["id"] == granter.account_id
    # Never shown again, never granted on by default, never logged.
    assert minted not in client.get("/v1/keys", headers=bearer(raw)).text
    assert services.keys.get(body["id"]).grants == frozenset()
    assert minted not in server_log(caplog, services)
    events = services.security_log.list_for_account(granter.account_id)
    assert {"restricted.allowed", "key.created"} <= {e.action for e in events}
    assert all(minted not in e.detail for e in events)


def test_a_granted_key_mints_a_read_only_key(client: TestClient, services: Services) -> None:
    raw, _ = _granted(services)

    response = client.post("/v1/keys", headers=bearer(raw), json={"name": "reader", "read_only": True})

    assert response.status_code == 201
    minted = response.json()["key"]
    assert client.get("/v1/keys", headers=bearer(minted)).status_code == 200
    assert_problem(client.delete("/v1/keys/key_0", headers=bearer(minted)), 403, "insufficient_scope")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-name"),
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": "   "}, id="blank-name"),
        pytest.param({"name": 7}, id="number-name"),
        pytest.param({"name": "x" * 101}, id="long-name"),
        pytest.param({"name": "a\x00b"}, id="nul-name"),
        pytest.param({"name": "a\nb"}, id="newline-name"),
        pytest.param({"name": "ok\x1f"}, id="trailing-unit-separator"),  # a space to str.strip
        pytest.param({"name": "ok\x85"}, id="trailing-next-line"),
        pytest.param({"name": "a\u2028b"}, id="line-separator-name"),
        pytest.param({"name": "\u202eevil"}, id="bidi-override-name"),
        pytest.param({"name": "\ufeffname"}, id="bom-name"),
        pytest.param({"name": "x" * 100 + " "}, id="long-before-trimming"),
        pytest.param({"name": "ok", "expires_at": "yesterday"}, id="bad-date"),
        pytest.param({"name": "ok", "expires_at": "2001-01-01T00:00:00Z"}, id="past-date"),
        pytest.param({"name": "ok", "expires_at": "9999-12-31T23:59:59-01:00"}, id="overflow-date"),
        pytest.param({"name": "ok", "expires_at": 1893456000}, id="number-date"),
        pytest.param({"name": "ok", "read_only": "yes"}, id="read-only-string"),
        pytest.param(["name"], id="array"),
    ],
)
def test_minting_validation_errors(client: TestClient, services: Services, body: object) -> None:
    raw, record = _granted(services)

    response = client.post("/v1/keys", headers=bearer(raw), json=body)

    assert_problem(response, 422, "validation_error")
    assert [k.id for k in services.keys.list_for_account(record.account_id)] == [record.id]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (" padded ", "padded"),
        ("naïve ✓ 名前", "naïve ✓ 名前"),
        ("no\u00a0break", "no\u00a0break"),
        ("x" * 100, "x" * 100),
    ],
)
def test_a_name_the_description_allows_is_accepted(
    client: TestClient, services: Services, sent: str, stored: str
) -> None:
    raw, _ = _granted(services)

    response = client.post("/v1/keys", headers=bearer(raw), json={"name": sent})

    assert response.status_code == 201, response.text
    assert response.json()["name"] == stored


def test_a_grant_made_elsewhere_is_honoured_at_once_after_eviction(
    client: TestClient, services: Services
) -> None:
    raw, record = make_api_key(services)
    assert_problem(
        client.post("/v1/keys", headers=bearer(raw), json={"name": "x"}), 403, "restricted_endpoint"
    )

    services.keys.grant(record.id, "account:security")
    services.key_cache.evict(record.id)  # what the key change poller does

    assert client.post("/v1/keys", headers=bearer(raw), json={"name": "x"}).status_code == 201


def test_the_password_stays_when_refused(client: TestClient, services: Services) -> None:
    account = make_user(services)
    raw, _ = make_api_key(services, account)

    client.put(
        "/v1/account/password",
        headers=bearer(raw),
        json={"current_password": PASSWORD, "new_password": "an attacker's password"},
    )

    assert verify_password(services.users.password_hash(account.id), PASSWORD)


def test_every_restricted_route_is_known_to_the_guard() -> None:
    """The guard logs its refusals of restricted calls by identity.is_restricted: it must know them all."""
    # routes.restricted wraps its handler with functools.wraps: the wrapper keeps the original.
    wrapped = [r for r in api_routes if isinstance(r, Route) and hasattr(r.endpoint, "__wrapped__")]

    assert len(wrapped) == len(RESTRICTED)
    for route in wrapped:
        path = route.path.replace("{passkey_id}", "pk_1")
        assert all(is_restricted(method, path) for method in route.methods or ())
