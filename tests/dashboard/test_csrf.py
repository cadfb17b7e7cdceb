from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.dashboard.helpers import PASSWORD, csrf_token, form_token, session_cookie, sign_up
from tests.factories import make_api_key, make_user
from thotbot.dashboard.csrf import (
    CSRFFailed,
    check_origin,
    cookie_secret,
    mask_token,
    new_cookie_value,
    plausible_cookie_value,
    verify_token,
)
from thotbot.services import Services

SECRET = "ab" * 32


class TestTokens:
    def test_a_masked_token_verifies(self) -> None:
        verify_token(SECRET, mask_token(SECRET))

    def test_each_rendering_differs(self) -> None:
        assert mask_token(SECRET) != mask_token(SECRET)

    @pytest.mark.parametrize(
        "token",
        [None, "", "not base64!", "AAAA", mask_token("cd" * 32), "x" * 1000, "é"],
        # Named: a masked token differs on each rendering, and each pytest-xdist worker renders it.
        ids=["none", "empty", "not-base64", "short", "another-secret", "long", "non-ascii"],
    )
    def test_anything_else_is_refused(self, token: object) -> None:
        with pytest.raises(CSRFFailed) as exc_info:
            verify_token(SECRET, token)

        assert exc_info.value.status == 403


class TestDoubleSubmit:
    KEY = bytes(range(32))

    def test_a_token_for_the_cookie_verifies(self) -> None:
        cookie = new_cookie_value()

        verify_token(cookie_secret(self.KEY, cookie), mask_token(cookie_secret(self.KEY, cookie)))

    def test_a_token_for_another_cookie_is_refused(self) -> None:
        token = mask_token(cookie_secret(self.KEY, new_cookie_value()))

        with pytest.raises(CSRFFailed):
            verify_token(cookie_secret(self.KEY, new_cookie_value()), token)

    def test_the_secret_depends_on_the_key(self) -> None:
        cookie = new_cookie_value()

        assert cookie_secret(self.KEY, cookie) != cookie_secret(bytes(32), cookie)

    def test_the_secret_is_not_the_cookie(self) -> None:
        cookie = new_cookie_value()

        assert cookie not in cookie_secret(self.KEY, cookie)
        assert cookie.encode().hex() not in cookie_secret(self.KEY, cookie)

    @pytest.mark.parametrize(
        ("value", "plausible"),
        [
            (None, False),
            ("", False),
            ("A" * 42, False),
            ("A" * 44, False),
            ("A" * 42 + "!", False),
            ("A" * 43, True),
        ],
    )
    def test_only_well_formed_cookies_are_used(self, value: str | None, plausible: bool) -> None:
        assert plausible_cookie_value(value) is plausible

    def test_new_cookie_values_are_well_formed_and_fresh(self) -> None:
        values = {new_cookie_value() for _ in range(10)}

        assert len(values) == 10
        assert all(plausible_cookie_value(v) for v in values)


class TestOrigin:
    PUBLIC = "https://thotbot.example"

    @pytest.mark.parametrize(
        ("origin", "site", "host"),
        [
            (None, None, None),
            ("https://thotbot.example", "same-origin", "thotbot.example"),
            ("http://127.0.0.1:8123", "same-origin", "127.0.0.1:8123"),
            (None, "none", "thotbot.example"),
        ],
    )
    def test_same_site_passes(self, origin: str | None, site: str | None, host: str | None) -> None:
        check_origin(origin, site, host, self.PUBLIC)

    @pytest.mark.parametrize(
        ("origin", "site"),
        [
            ("https://evil.example", None),
            ("null", None),
            (None, "cross-site"),
            ("https://thotbot.example", "same-site"),
        ],
    )
    def test_other_sites_are_refused(self, origin: str | None, site: str | None) -> None:
        with pytest.raises(CSRFFailed):
            check_origin(origin, site, "thotbot.example", self.PUBLIC)


class TestForms:
    """A state-changing POST without its token is refused with 403 and changes nothing."""

    def test_sign_up_without_token(self, client: TestClient, services: Services) -> None:
        client.get("/signup")

        response = client.post("/signup", data={"email": "x@example.com", "password": PASSWORD})

        assert response.status_code == 403
        assert "Nothing was changed" in response.text
        assert services.users.count() == 0

    def test_sign_in_without_a_session_at_all(self, client: TestClient, services: Services) -> None:
        make_user(services, "y@example.com", password=PASSWORD)

        response = client.post(
            "/login", data={"email": "y@example.com", "password": PASSWORD, "csrf_token": "x"}
        )

        assert response.status_code == 403
        assert session_cookie(client) is None

    def test_create_key_without_token(self, client: TestClient, services: Services) -> None:
        sign_up(client, "z@example.com")
        page = client.get("/dashboard/api-keys/new").text

        response = client.post(
            "/dashboard/api-keys/new",
            data={"form_token": form_token(page), "name": "n", "expiry": "30", "access": "full"},
        )

        assert response.status_code == 403
        assert services.keys.list_for_account(services.users.get_by_email("z@example.com").id) == []

    def test_revoke_with_another_sessions_token(
        self, client_factory: ClientFactory, services: Services
    ) -> None:
        with client_factory() as attacker:
            attacker_token = csrf_token(attacker.get("/login").text)
        with client_factory() as victim:
            sign_up(victim, "v@example.com")
            account = services.users.get_by_email("v@example.com")
            _, record = make_api_key(services, account)

            response = victim.post(
                f"/dashboard/api-keys/{record.id}/revoke", data={"csrf_token": attacker_token}
            )

        assert response.status_code == 403
        assert services.keys.get(record.id).revoked_at is None

    def test_cross_site_post_with_a_valid_token(self, client: TestClient, services: Services) -> None:
        sign_up(client, "w@example.com")
        page = client.get("/dashboard/security").text

        response = client.post(
            "/logout", data={"csrf_token": csrf_token(page)}, headers={"origin": "https://evil.example"}
        )

        assert response.status_code == 403
        assert client.get("/dashboard", follow_redirects=False).status_code == 200

    def test_sign_out_without_token(self, client: TestClient) -> None:
        sign_up(client, "u@example.com")

        response = client.post("/logout")

        assert response.status_code == 403
        assert client.get("/dashboard", follow_redirects=False).status_code == 200


def test_session_cookie_is_refused_by_the_api(client: TestClient) -> None:
    sign_up(client, "api@example.com")

    response = client.get("/v1/me")

    assert response.status_code == 401
    assert response.json()["code"] == "session_cookie_not_accepted"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\nbroken"),
        ("application/json", b'{"email": "a@example.com"}'),
        ("application/x-www-form-urlencoded", b"%ZZ=%ZZ&" * 100),
    ],
)
def test_a_malformed_body_is_refused_as_a_page_not_an_error(
    client: TestClient, content_type: str, body: bytes
) -> None:
    client.get("/login")

    response = client.post("/login", content=body, headers={"content-type": content_type})

    assert response.status_code in (400, 403)
    assert response.headers["content-type"].startswith("text/html")
