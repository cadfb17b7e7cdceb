from __future__ import annotations

import re

from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.dashboard.helpers import create_key, csrf_token, sign_in, sign_up
from thotbot.services import Services


def _session_ids(page: str) -> list[str]:
    return re.findall(r'data-session-id="([^"]+)"', page)


def test_lists_sessions_and_the_log(client: TestClient, services: Services) -> None:
    sign_up(client, "sec@example.com")
    create_key(client, "ci")

    page = client.get("/dashboard/security")

    assert page.headers["cache-control"] == "no-store"
    for text in ("Passkeys", "Email address", "Password", "Active sessions", "Security log", "This browser"):
        assert text in page.text
    for label in ("Account created", "Signed in", "API key created"):
        assert label in page.text
    assert "testclient" in page.text  # the address the request came from
    assert len(_session_ids(page.text)) == 1


def test_end_another_session(client_factory: ClientFactory, services: Services) -> None:
    with client_factory(headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"}) as laptop:
        sign_up(laptop, "two@example.com")
        with client_factory() as phone:
            sign_in(phone, "two@example.com")
            page = laptop.get("/dashboard/security").text
            ids = _session_ids(page)
            assert len(ids) == 2
            current = laptop.get("/dashboard/security").text
            other = next(i for i in ids if f'sessions/{i}/end"' in current)

            response = laptop.post(
                f"/dashboard/security/sessions/{other}/end", data={"csrf_token": csrf_token(page)}
            )

            assert "that browser is signed out" in response.text
            assert phone.get("/dashboard", follow_redirects=False).status_code == 303
            assert laptop.get("/dashboard", follow_redirects=False).status_code == 200
    account = services.users.get_by_email("two@example.com")
    assert services.security_log.list_for_account(account.id)[0].action == "session.ended"


def test_sign_out_other_sessions(client_factory: ClientFactory, services: Services) -> None:
    with client_factory() as main, client_factory() as second, client_factory() as third:
        sign_up(main, "many@example.com")
        sign_in(second, "many@example.com")
        sign_in(third, "many@example.com")
        page = main.get("/dashboard/security").text
        assert len(_session_ids(page)) == 3

        response = main.post("/dashboard/security/sessions/end-others", data={"csrf_token": csrf_token(page)})

        assert "Signed out everywhere else (2)" in response.text
        assert len(_session_ids(response.text)) == 1
        for other in (second, third):
            assert other.get("/dashboard", follow_redirects=False).status_code == 303
    account = services.users.get_by_email("many@example.com")
    event = services.security_log.list_for_account(account.id)[0]
    assert event.action == "session.ended_others"
    assert event.ip_address == "testclient"


def test_cannot_end_another_accounts_session(client_factory: ClientFactory, services: Services) -> None:
    with client_factory() as mine, client_factory() as theirs:
        sign_up(mine, "me@example.com")
        sign_up(theirs, "them@example.com")
        their_id = _session_ids(theirs.get("/dashboard/security").text)[0]
        page = mine.get("/dashboard/security").text

        response = mine.post(
            f"/dashboard/security/sessions/{their_id}/end", data={"csrf_token": csrf_token(page)}
        )

        assert "already ended" in response.text
        assert theirs.get("/dashboard", follow_redirects=False).status_code == 200
