"""A key's IP allowlist on its dashboard page: shown, edited after a fresh sign-in, CSRF-protected,
logged; and the operator's per-key rate limit shown beside the key."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.dashboard.helpers import PASSWORD, create_key, csrf_token, field_errors, session_cookie, sign_up
from tests.factories import bearer, make_api_key
from thotbot.core import keys
from thotbot.core.dates import utcnow
from thotbot.core.identity import Actor
from thotbot.services import Services
from thotbot.storage import KeyRecord

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture
def key(client: TestClient, services: Services) -> KeyRecord:
    sign_up(client, "nets@example.com")
    raw, _ = create_key(client, "billing server")
    record = services.keys.find_by_hash(keys.hash_key(raw))
    assert record is not None
    return record


def _go_stale(client: TestClient, services: Services) -> None:
    session = services.web_sessions.find_by_token(session_cookie(client) or "")
    assert session is not None
    services.web_sessions.reauthenticate(session.id, now=utcnow() - timedelta(minutes=11))


def _post_networks(client: TestClient, key: KeyRecord, networks: str, *, csrf: bool = True) -> Any:
    page = client.get(f"/dashboard/api-keys/{key.id}").text
    data = {"networks": networks, **({"csrf_token": csrf_token(page)} if csrf else {})}
    return client.post(f"/dashboard/api-keys/{key.id}/networks", data=data)


def _confirm(client: TestClient, prompt: str, password: str = PASSWORD) -> Any:
    assert "Confirm it is you" in prompt
    action = re.search(r'<form method="post" action="([^"]+)" id="sudo-form"', prompt)
    assert action
    form = prompt[prompt.index('id="sudo-form"') :]
    form = form[: form.index("</form>")]
    fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(form)}
    return client.post(action.group(1), data={**fields, "sudo_password": password})


def _changes(services: Services, key: KeyRecord) -> list[tuple[str, str]]:
    events = services.security_log.list_for_account(key.account_id)
    return [(e.actor, e.detail) for e in events if e.action == "key.networks_changed"]


def test_the_page_shows_any_address_and_the_default_limit(client: TestClient, key: KeyRecord) -> None:
    page = client.get(f"/dashboard/api-keys/{key.id}").text

    assert re.search(r'class="allowed-networks"><span class="muted">Any address', page)
    assert re.search(r'class="rate-limit">600/minute <span class="muted">\(the default\)', page)
    assert '<textarea id="networks" name="networks"' in page


def test_a_stale_session_confirms_first_then_the_list_is_saved(
    client: TestClient, services: Services, key: KeyRecord
) -> None:
    _go_stale(client, services)
    seq = services.keys.latest_change()

    prompt = _post_networks(client, key, "192.0.2.0/24\n2001:DB8::/32\n198.51.100.7")

    assert prompt.status_code == 200
    assert "To change where the API key “billing server”" in html.unescape(prompt.text)
    assert services.keys.get(key.id).allowed_networks == ()
    wrong = _confirm(client, prompt.text, password="not my password")
    assert wrong.status_code == 400
    assert services.keys.get(key.id).allowed_networks == ()

    done = _confirm(client, wrong.text)

    assert done.url.path == f"/dashboard/api-keys/{key.id}"
    saved = ("192.0.2.0/24", "198.51.100.7/32", "2001:db8::/32")
    assert services.keys.get(key.id).allowed_networks == saved
    assert "may now be used from 192.0.2.0/24, 198.51.100.7/32, 2001:db8::/32" in html.unescape(done.text)
    assert "<code>198.51.100.7/32</code>" in done.text
    # Numbered, so every server applies it within a second; logged as the session's change.
    assert key.id in services.keys.changes_since(seq)[1]
    [(actor, detail)] = _changes(services, key)
    assert actor.startswith("session:")
    assert detail.endswith("may now be used from 192.0.2.0/24, 198.51.100.7/32, 2001:db8::/32")


def test_any_lifts_the_list(client: TestClient, services: Services, key: KeyRecord) -> None:
    services.key_lifecycle.allow_networks(key.id, ["192.0.2.0/24"], Actor.operator())

    done = _post_networks(client, key, "  Any ")

    assert done.status_code == 200
    assert services.keys.get(key.id).allowed_networks == ()
    assert "may now be used from any address" in html.unescape(done.text)


def test_without_csrf_nothing_changes(client: TestClient, services: Services, key: KeyRecord) -> None:
    response = _post_networks(client, key, "192.0.2.0/24", csrf=False)

    assert response.status_code == 403
    assert "Nothing was changed" in response.text
    assert services.keys.get(key.id).allowed_networks == ()
    assert _changes(services, key) == []


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("192.0.2.0/24\n10.0.0.5/24", "10.0.0.5/24 has host bits set: did you mean 10.0.0.0/24?"),
        ("192.0.2.0/24, office", "office is not an IP address or CIDR network"),
        ("   ", "Enter the networks this key may be used from, one per line, or “any”."),
        ("\n".join(f"10.0.{n}.0/24" for n in range(101)), "an allowlist holds at most 100 networks"),
        ("<script>alert(1)</script>", "is not an IP address"),
    ],
)
def test_a_bad_list_is_shown_on_the_form(
    client: TestClient, services: Services, key: KeyRecord, typed: str, message: str
) -> None:
    response = _post_networks(client, key, typed)

    assert response.status_code == 400
    assert message in html.unescape(field_errors(response.text)["networks"])
    assert "<script>alert" not in response.text
    assert services.keys.get(key.id).allowed_networks == ()


def test_another_accounts_key_is_not_found(client: TestClient, services: Services, key: KeyRecord) -> None:
    _, other = make_api_key(services)
    page = client.get(f"/dashboard/api-keys/{key.id}").text

    response = client.post(
        f"/dashboard/api-keys/{other.id}/networks", data={"networks": "any", "csrf_token": csrf_token(page)}
    )

    assert response.status_code == 404
    assert _changes(services, other) == []


def test_the_operators_limit_and_list_are_shown(
    client: TestClient, services: Services, key: KeyRecord
) -> None:
    services.key_lifecycle.set_rate_limit(key.id, "100 per hour", Actor.operator())
    services.key_lifecycle.allow_networks(key.id, ["192.0.2.0/24"], Actor.operator())

    listing = client.get("/dashboard/api-keys").text
    page = client.get(f"/dashboard/api-keys/{key.id}").text

    assert re.search(r'class="rate-limit">100/hour <span class="badge', listing)
    assert "IP allowlist</span>" in listing
    assert re.search(
        r'class="rate-limit">100/hour <span class="badge badge-grant" title="Set by the operator"', page
    )
    assert re.search(r'class="allowed-networks"><code>192.0.2.0/24</code>', page)
    assert ">192.0.2.0/24</textarea>" in page


def test_the_api_refuses_a_key_from_outside_its_list(
    client: TestClient, services: Services, key: KeyRecord
) -> None:
    """In process the client's address is "testclient", which no list holds."""
    raw, record = make_api_key(services)
    assert client.get("/v1/version", headers=bearer(raw)).status_code == 200
    services.key_lifecycle.allow_networks(record.id, ["127.0.0.1"], Actor.operator())

    refused = client.get("/v1/version", headers=bearer(raw))

    assert refused.status_code == 403
    assert refused.json()["code"] == "ip_not_allowed"
