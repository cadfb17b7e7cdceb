from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.factories import bearer, make_api_key
from thotbot.core.memo import Memo
from thotbot.services import Services
from thotbot.usage import NOTICE_HEADER, user_agent_notice

NOTICE = NOTICE_HEADER[1].decode()


@pytest.mark.parametrize(
    ("user_agent", "noticed"),
    [
        ("acme-sync/2.3.1 (ops@acme.example)", False),
        ("bot/1.0 (+https://acme.example/bot)", False),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", False),
        ("curl/8.5.0", True),
        ("python-requests/2.32.3", True),
        ("node", True),
        ("", True),
        (None, True),
    ],
)
def test_user_agent_notice(user_agent: str | None, noticed: bool) -> None:
    assert (user_agent_notice(user_agent) is not None) is noticed


@pytest.mark.parametrize(
    ("user_agent", "noticed"),
    [("acme-sync/2.3.1 (ops@acme.example)", False), ("curl/8.5.0", True), ("Go-http-client/1.1", True)],
)
def test_authenticated_responses_carry_the_notice(
    client: TestClient, services: Services, user_agent: str, noticed: bool
) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/version", headers={**bearer(raw), "User-Agent": user_agent})

    assert response.status_code == 200
    assert response.headers.get("thotbot-notice") == (NOTICE if noticed else None)


def test_a_request_without_user_agent_gets_the_notice(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)
    client.headers.pop("user-agent")

    response = client.get("/v1/version", headers=bearer(raw))

    assert "user-agent" not in response.request.headers
    assert response.status_code == 200
    assert "https://thotbot.cc/docs/authentication#user-agent" in response.headers["thotbot-notice"]


def test_errors_after_authentication_carry_it_too(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/nowhere", headers={**bearer(raw), "User-Agent": "curl/8.5.0"})

    assert response.status_code == 404
    assert response.headers["thotbot-notice"] == NOTICE


def test_unauthenticated_requests_get_no_notice(client: TestClient) -> None:
    response = client.get("/v1/version", headers={"User-Agent": "curl/8.5.0"})

    assert response.status_code == 401
    assert "thotbot-notice" not in response.headers


def test_remembered_user_agents_are_bounded_and_each_answered_right(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard remembers the User-Agents it decoded (at most _MAX_AGENTS, each cut to the bytes it
    keeps): past that bound, and for one longer than it keeps, every answer is still the right one."""
    from thotbot.web import guard

    monkeypatch.setattr(guard, "_MAX_AGENTS", 40)
    monkeypatch.setattr(guard, "_AGENTS", Memo(guard._user_agent, limit=guard._MAX_AGENTS))
    raw, _ = make_api_key(services)
    long_agent = "acme-sync/2.3.1 (ops@acme.example) " + "x" * 2_000
    for n in range(100):
        agent = f"acme-sync/{n}.0 (ops@acme.example)" if n % 2 else f"curl/{n}.0"
        response = client.get("/v1/version", headers={**bearer(raw), "User-Agent": agent})
        assert response.headers.get("thotbot-notice") == (None if n % 2 else NOTICE)
        assert len(guard._AGENTS) <= guard._MAX_AGENTS
    response = client.get("/v1/version", headers={**bearer(raw), "User-Agent": long_agent})
    assert response.headers.get("thotbot-notice") is None
    assert all(len(agent) <= guard._MAX_UA for agent in guard._AGENTS)
