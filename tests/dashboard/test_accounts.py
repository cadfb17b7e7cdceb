from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.dashboard.helpers import (
    PASSWORD,
    csrf_token,
    field_errors,
    session_cookie,
    sign_in,
    sign_up,
)
from tests.factories import make_user
from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.core.cookies import SESSION_COOKIE
from thotbot.services import Services, build_services
from thotbot.storage.throttle import ThrottleRule
from thotbot.storage.web_sessions import hash_token


def _post_login(client: TestClient, email: str, password: str, **extra: str) -> httpx2.Response:
    page = client.get("/login").text
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": csrf_token(page), **extra}
    )


class TestHome:
    def test_signed_out_goes_to_login(self, client: TestClient) -> None:
        response = client.get("/", follow_redirects=False)

        assert response.status_code == 303
        assert response.headers["location"] == "/login"

    def test_signed_in_goes_to_dashboard(self, client: TestClient) -> None:
        sign_up(client, "home@example.com")

        response = client.get("/", follow_redirects=False)

        assert response.headers["location"] == "/dashboard"

    def test_dashboard_pages_need_a_session(self, client: TestClient) -> None:
        response = client.get("/dashboard/api-keys", follow_redirects=False)

        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/dashboard/api-keys"


class TestSignUp:
    def test_form_has_the_contract_fields(self, client: TestClient) -> None:
        page = client.get("/signup").text

        for field in (
            'name="email"',
            'name="password"',
            'name="csrf_token"',
            'for="email"',
            'for="password"',
        ):
            assert field in page

    def test_creates_the_account_signed_in(self, client: TestClient, services: Services) -> None:
        page = sign_up(client, "  New.Person@Example.COM ")

        account = services.users.find_by_email("new.person@example.com")
        assert account is not None
        assert "new.person@example.com" in page
        assert "Welcome to Thotbot" in page
        assert "Welcome to Thotbot" not in client.get("/dashboard").text
        actions = [e.action for e in services.security_log.list_for_account(account.id)]
        assert set(actions) == {"account.created", "session.signed_in"}

    def test_password_is_stored_as_argon2id(self, client: TestClient, services: Services) -> None:
        sign_up(client, "hash@example.com")

        account = services.users.get_by_email("hash@example.com")
        stored = services.users.password_hash(account.id)
        assert stored is not None
        assert stored.startswith("$argon2id$")
        assert PASSWORD not in stored

    def test_duplicate_email_in_another_case_is_refused_next_to_the_field(
        self, client_factory: ClientFactory, services: Services
    ) -> None:
        make_user(services, "taken@example.com")
        with client_factory() as client:
            page = client.get("/signup").text
            response = client.post(
                "/signup",
                data={"email": "TAKEN@example.com", "password": PASSWORD, "csrf_token": csrf_token(page)},
            )

        assert response.status_code == 400
        assert field_errors(response.text) == {
            "email": "An account with this email address already exists. Sign in instead."
        }
        assert services.users.count() == 1

    def test_probing_emails_through_sign_up_is_slowed_per_address(
        self, client_factory: ClientFactory, services: Services
    ) -> None:
        services.sign_in_throttle.address_rule = ThrottleRule(free_failures=2, first_delay=timedelta(hours=1))
        for n in range(3):
            make_user(services, f"taken{n}@example.com")
        with client_factory() as client:

            def attempt(email: str) -> int:
                token = csrf_token(client.get("/signup").text)
                data = {"email": email, "password": PASSWORD, "csrf_token": token}
                return client.post("/signup", data=data).status_code

            codes = [attempt(f"taken{n}@example.com") for n in range(3)]
            fresh = client.post(
                "/signup",
                data={
                    "email": "brand.new@example.com",
                    "password": PASSWORD,
                    "csrf_token": csrf_token(client.get("/signup").text),
                },
            )

        assert codes == [400, 400, 400]  # the third one starts the wait
        assert fresh.status_code == 429
        assert "Too many failed attempts" in field_errors(fresh.text)["email"]
        assert services.users.find_by_email("brand.new@example.com") is None

    @pytest.mark.parametrize(
        ("email", "password", "field", "message"),
        [
            ("not-an-email", PASSWORD, "email", "Enter a valid email address"),
            ("", PASSWORD, "email", "Enter your email address."),
            ("short@example.com", "tiny", "password", "at least 10 characters"),
            ("common@example.com", "Password123!", "password", "too easy to guess"),
            ("mirror@example.com", "mirror@example.com", "password", "too easy to guess"),
            ("qwerty@example.com", "qwertyuiop", "password", "too easy to guess"),
        ],
    )
    def test_bad_input_is_explained_next_to_its_field(
        self, client: TestClient, services: Services, email: str, password: str, field: str, message: str
    ) -> None:
        page = client.get("/signup").text

        response = client.post(
            "/signup", data={"email": email, "password": password, "csrf_token": csrf_token(page)}
        )

        assert response.status_code == 400
        assert message in field_errors(response.text)[field]
        assert 'aria-invalid="true"' in response.text
        assert services.users.count() == 0
        if password != email:
            # The password is never sent back into the page.
            assert password not in response.text


class TestSignIn:
    def test_signs_in_with_a_new_session_id(self, client: TestClient, services: Services) -> None:
        make_user(services, "ann@example.com", password=PASSWORD)
        # A session id planted before sign-in (fixation), e.g. one left from an older release.
        before, _ = services.web_sessions.create(None)
        client.cookies.set(SESSION_COOKIE, before, domain="localhost.local")

        sign_in(client, "Ann@Example.com")

        after = session_cookie(client)
        assert after is not None
        assert after != before
        # The session planted before sign-in is gone, not promoted.
        with services.db() as db:
            from thotbot.storage.models import WebSession

            hashes = {row.token_hash for row in db.query(WebSession)}
        assert hash_token(before) not in hashes
        assert hash_token(after) in hashes

    def test_wrong_password_and_unknown_email_get_the_same_answer(
        self, client: TestClient, services: Services
    ) -> None:
        make_user(services, "bea@example.com", password=PASSWORD)

        wrong = _post_login(client, "bea@example.com", "not the password")
        unknown = _post_login(client, "nobody@example.com", "not the password")

        for response in (wrong, unknown):
            assert response.status_code == 400
            assert field_errors(response.text) == {"password": "The email address or password is incorrect."}
        account = services.users.get_by_email("bea@example.com")
        [event] = services.security_log.list_for_account(account.id)
        assert event.action == "session.sign_in_failed"
        assert event.actor == "anonymous"
        assert event.ip_address == "testclient"

    def test_repeated_failures_are_slowed_down(self, client: TestClient, services: Services) -> None:
        make_user(services, "cy@example.com", password=PASSWORD)
        # A first wait long enough that no slow machine sees it pass during the test.
        services.sign_in_throttle.pair_rule = ThrottleRule(free_failures=3, first_delay=timedelta(hours=1))
        for _ in range(3):
            assert _post_login(client, "cy@example.com", "guess").status_code == 400

        slowed = _post_login(client, "cy@example.com", "guess")
        # Even the right password waits its turn, so guessing cannot race the throttle.
        still_slowed = _post_login(client, "cy@example.com", PASSWORD)

        assert slowed.status_code == 429
        assert "Too many failed attempts" in field_errors(slowed.text)["password"]
        assert still_slowed.status_code == 429
        assert session_cookie(client) is None  # not signed in, so no session exists at all
        assert client.get("/dashboard", follow_redirects=False).status_code == 303

    def test_next_brings_the_visitor_back(self, client: TestClient, services: Services) -> None:
        make_user(services, "dee@example.com", password=PASSWORD)
        page = client.get("/login?next=/dashboard/security").text
        assert 'name="next" value="/dashboard/security"' in page

        response = client.post(
            "/login",
            data={
                "email": "dee@example.com",
                "password": PASSWORD,
                "csrf_token": csrf_token(page),
                "next": "/dashboard/security",
            },
            follow_redirects=False,
        )

        assert response.headers["location"] == "/dashboard/security"

    @pytest.mark.parametrize(
        "target", ["https://evil.example/", "//evil.example/dashboard", "/dashboard\\@x"]
    )
    def test_next_never_leaves_the_dashboard(
        self, client: TestClient, services: Services, target: str
    ) -> None:
        make_user(services, "eve@example.com", password=PASSWORD)

        response = _post_login(client, "eve@example.com", PASSWORD, next=target)

        assert response.url.path == "/dashboard"


class TestCookie:
    def _set_cookies(self, client: TestClient) -> SimpleCookie:
        """The cookies set by the sign-up page (the CSRF one) and by signing up (the session)."""
        cookie: SimpleCookie = SimpleCookie()
        page = client.get("/signup")
        response = client.post(
            "/signup",
            data={"email": "c@example.com", "password": PASSWORD, "csrf_token": csrf_token(page.text)},
            follow_redirects=False,
        )
        for value in [*page.headers.get_list("set-cookie"), *response.headers.get_list("set-cookie")]:
            cookie.load(value)
        return cookie

    def test_flags_over_http(self, client: TestClient) -> None:
        cookies = self._set_cookies(client)

        for name in ("thotbot_session", "thotbot_csrf"):
            morsel = cookies[name]
            assert morsel["httponly"] is True
            assert morsel["samesite"].lower() == "lax"
            assert not morsel["secure"]
            assert morsel["path"] == "/"
            assert not morsel["domain"]

    def test_secure_when_the_public_url_is_https(self, database_url: str, services: Services) -> None:
        settings = load_settings(database_url=database_url, public_url="https://thotbot.example")
        secure_services = build_services(settings)
        with TestClient(create_app(settings, secure_services), base_url="https://thotbot.example") as client:
            cookies = self._set_cookies(client)
        secure_services.engine.dispose()

        # __Host-: Secure, Path=/ and no Domain, so no subdomain or http page can plant them.
        assert "thotbot_session" not in cookies
        for name in ("__Host-thotbot_session", "__Host-thotbot_csrf"):
            morsel = cookies[name]
            assert morsel["secure"] is True
            assert morsel["path"] == "/"
            assert not morsel["domain"]

    def test_the_value_is_opaque_and_only_its_hash_is_stored(
        self, client: TestClient, services: Services
    ) -> None:
        sign_up(client, "opaque@example.com")
        token = session_cookie(client)
        assert token is not None
        assert len(token) >= 43  # 256 bits, base64url

        with services.engine.connect() as connection:
            dump = "".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM web_sessions"))
        assert token not in dump


class TestSignOut:
    def test_ends_the_session(self, client: TestClient, services: Services) -> None:
        sign_up(client, "bye@example.com")
        old = session_cookie(client)
        page = client.get("/logout").text

        response = client.post("/logout", data={"csrf_token": csrf_token(page)})

        assert response.url.path == "/login"
        assert "You have signed out." in response.text
        assert session_cookie(client) != old
        assert client.get("/dashboard", follow_redirects=False).status_code == 303
        account = services.users.get_by_email("bye@example.com")
        assert "session.signed_out" in [e.action for e in services.security_log.list_for_account(account.id)]

    def test_the_old_cookie_is_dead(self, client_factory: ClientFactory, services: Services) -> None:
        with client_factory() as client:
            sign_up(client, "zombie@example.com")
            old = session_cookie(client)
            assert old is not None
            page = client.get("/dashboard").text
            client.post("/logout", data={"csrf_token": csrf_token(page)})
        assert services.web_sessions.find_by_token(old) is None
