"""The /v1 guard through the TestClient: every way a request can fail to authenticate, and how."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.factories import bearer, fake_key, make_api_key
from thotbot.core import keys
from thotbot.services import Services

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
PREFIX = "thot" + "_ak_"
Headers = list[tuple[bytes, bytes]]


def assert_problem(response: httpx2.Response, status: int, code: str) -> dict[str, object]:
    """The response is an RFC 9457 problem with the contract's code, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, object] = response.json()
    assert body.keys() >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == "https://thotbot.cc/problems/" + code.replace("_", "-")
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def server_log(caplog: pytest.LogCaptureFixture, services: Services) -> str:
    """What the server logged (the test client logs its own URLs: those are not the server's)."""
    services.access_log.flush()  # Access lines are written in batches, off the request path.
    return "\n".join(
        caplog.handler.format(r) for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )


def assert_challenge(response: httpx2.Response, error: str | None) -> None:
    """RFC 6750: the realm always; ``error`` when a key was refused or the request malformed, and no
    error information at all when the request carried no credentials (section 3.1)."""
    challenge = response.headers["www-authenticate"]
    if error is None:
        assert challenge == 'Bearer realm="thotbot"'
    else:
        assert challenge.startswith('Bearer realm="thotbot", ')
        assert f'error="{error}"' in challenge


NO_CREDENTIALS = {"missing_api_key", "unsupported_auth_scheme", "session_cookie_not_accepted"}
MISSING, UNSUPPORTED = "missing_api_key", "unsupported_auth_scheme"
MALFORMED, INVALID = "malformed_api_key", "invalid_api_key"
B = b"Bearer " + PREFIX.encode()


def _auth(*values: str | bytes) -> Headers:
    return [(b"Authorization", v.encode("latin-1") if isinstance(v, str) else v) for v in values]


# (id, headers, expected code). Key-shaped values are built at run time.
CORPUS: list[tuple[str, Headers, str]] = [
    ("absent", [], MISSING),
    ("empty", _auth(""), MISSING),
    ("blank", _auth("   "), MISSING),
    ("bearer-alone", _auth("Bearer"), MISSING),
    ("bearer-space", _auth("Bearer   "), MISSING),
    ("basic", _auth("Basic dXNlcjpwYXNzd29yZA=="), UNSUPPORTED),
    ("token", _auth("Token " + fake_key()), UNSUPPORTED),
    ("digest", _auth('Digest username="x"'), UNSUPPORTED),
    ("bare-key", _auth(fake_key()), UNSUPPORTED),
    ("bearer-no-space", _auth("Bearer" + fake_key()), UNSUPPORTED),
    ("short", _auth("Bearer " + PREFIX + "a" * 95), MALFORMED),
    ("long", _auth("Bearer " + PREFIX + "a" * 97), MALFORMED),
    ("uppercase-hex", _auth("Bearer " + PREFIX + "A" * 96), MALFORMED),
    ("uppercase-prefix", _auth("Bearer THOT_AK_" + "a" * 96), MALFORMED),
    ("not-hex", _auth("Bearer " + PREFIX + "z" * 96), MALFORMED),
    ("no-prefix", _auth("Bearer " + "a" * 96), MALFORMED),
    ("stripe", _auth("Bearer sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"), MALFORMED),
    ("github", _auth("Bearer ghp_" + "x" * 36), MALFORMED),
    ("pypi", _auth("Bearer pypi-" + "AgEIcHlwaS5vcmc" * 8), MALFORMED),
    ("jwt", _auth("Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"), MALFORMED),
    ("two-tokens", _auth(f"Bearer {fake_key()} {fake_key('b')}"), MALFORMED),
    ("200kB", _auth("Bearer " + PREFIX + "a" * 200_000), MALFORMED),
    ("control-chars", _auth(B + b"\x01\x02" + b"a" * 94), MALFORMED),
    ("tab-inside", _auth(B + b"a" * 48 + b"\t" + b"a" * 47), MALFORMED),
    ("non-utf8", _auth(B + b"\xff\xfe" * 48), MALFORMED),
    ("latin1", _auth(B + b"\xe9" * 96), MALFORMED),
    ("two-headers", _auth("Bearer " + fake_key(), "Bearer " + fake_key("b")), MALFORMED),
    ("unknown-key", _auth("Bearer " + fake_key()), INVALID),
    ("unknown-lowercase-scheme", _auth("bearer " + fake_key("c")), INVALID),
]


@pytest.mark.parametrize(("headers", "code"), [pytest.param(*c[1:], id=c[0]) for c in CORPUS])
def test_malformed_authorization_corpus(
    client: TestClient, services: Services, caplog: pytest.LogCaptureFixture, headers: Headers, code: str
) -> None:
    caplog.set_level(logging.INFO)

    response = client.get("/v1/version", headers=headers)

    body = assert_problem(response, 401, code)
    if code in NO_CREDENTIALS:
        assert_challenge(response, None)
    elif sum(name.lower() == b"authorization" for name, _ in headers) > 1:
        assert_challenge(response, "invalid_request")  # two headers: malformed as a request
    else:
        assert_challenge(response, "invalid_token")
    assert body["instance"] == "/v1/version"
    for _, value in headers:
        token = value.decode("latin-1").removeprefix("Bearer ").strip()
        if len(token) >= 16:
            assert token not in response.text
            assert token not in server_log(caplog, services)
    # And the server keeps serving.
    assert client.get("/healthz").status_code == 200


def test_two_authorization_headers_are_refused_even_when_both_are_valid(
    client: TestClient, services: Services
) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/version", headers=[("Authorization", f"Bearer {raw}")] * 2)

    body = assert_problem(response, 401, "malformed_api_key")
    assert "exactly one" in str(body["detail"])


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_case_insensitive(client: TestClient, services: Services, scheme: str) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/version", headers={"Authorization": f"{scheme} {raw}"})

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


def test_surrounding_spaces_are_tolerated(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/version", headers={"Authorization": f"  Bearer   {raw}  "})

    assert response.status_code == 200


def test_a_valid_key_is_never_echoed_nor_logged(
    client: TestClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw, record = make_api_key(services)

    ok = client.get("/v1/me", headers={**bearer(raw), "User-Agent": "acme/1.0 (ops@example.com)"})

    assert ok.status_code == 200
    assert raw not in ok.text
    assert raw not in server_log(caplog, services)
    assert record.id in server_log(caplog, services)  # the access log names the key by its id


def test_expired_key(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services, expires_at=datetime.now(UTC) - timedelta(seconds=1))

    response = client.get("/v1/version", headers=bearer(raw))

    assert_problem(response, 401, "expired_api_key")
    assert_challenge(response, "invalid_token")


def test_a_key_expires_while_cached(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services, expires_at=datetime.now(UTC) + timedelta(days=1))
    assert client.get("/v1/version", headers=bearer(raw)).status_code == 200

    # Expiry is checked on every request, not only when the key is loaded.
    services.keys.set_expiry(record.id, datetime.now(UTC) - timedelta(seconds=1))
    services.key_cache.evict(record.id)
    response = client.get("/v1/version", headers=bearer(raw))

    assert_problem(response, 401, "expired_api_key")


def test_revoked_key(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)
    services.keys.revoke(record.id)

    response = client.get("/v1/version", headers=bearer(raw))

    assert_problem(response, 401, "revoked_api_key")
    assert_challenge(response, "invalid_token")


def test_revoked_beats_expired(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services, expires_at=datetime.now(UTC) - timedelta(days=1))
    services.keys.revoke(record.id)

    assert_problem(client.get("/v1/version", headers=bearer(raw)), 401, "revoked_api_key")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/keys/key_0000000000000000"),
        ("POST", "/v1/keys"),
        ("PUT", "/v1/account/email"),
        ("POST", "/v1/account/passkeys"),
        ("PATCH", "/v1/version"),
    ],
)
def test_read_only_key_may_not_write(client: TestClient, services: Services, method: str, path: str) -> None:
    raw, record = make_api_key(services, read_only=True)

    response = client.request(method, path, headers=bearer(raw), json={"name": "x"})

    body = assert_problem(response, 403, "insufficient_scope")
    assert_challenge(response, "insufficient_scope")
    assert "read-only" in str(body["detail"])
    assert services.keys.get(record.id).revoked_at is None
    assert len(services.keys.list_for_account(record.account_id)) == 1


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_read_only_key_may_read(client: TestClient, services: Services, method: str) -> None:
    raw, _ = make_api_key(services, read_only=True)

    response = client.request(method, "/v1/keys", headers=bearer(raw))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("cookie", "authorization", "code"),
    [
        ("thotbot_session=abc123", None, "session_cookie_not_accepted"),
        ("theme=dark; thotbot_session=abc123", None, "session_cookie_not_accepted"),
        ("thotbot_session=abc123", "", "session_cookie_not_accepted"),
        ("thotbot_session=abc123", "Bearer", "session_cookie_not_accepted"),
        # On an https deployment the cookie is __Host-prefixed; either spelling is refused alike.
        ("__Host-thotbot_session=abc123", None, "session_cookie_not_accepted"),
        ("theme=dark; __Host-thotbot_session=abc123", "", "session_cookie_not_accepted"),
        ("__Host-thotbot_csrf=abc123", None, "missing_api_key"),
        ("theme=dark", None, "missing_api_key"),
        ("thotbot_session_old=abc123", None, "missing_api_key"),
        ("thotbot_session=abc123", "Basic dXNlcjpwYXNz", "unsupported_auth_scheme"),
    ],
)
def test_session_cookie_is_not_accepted(
    client: TestClient, cookie: str, authorization: str | None, code: str
) -> None:
    headers = {"Cookie": cookie}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = client.get("/v1/me", headers=headers)

    body = assert_problem(response, 401, code)
    assert_challenge(response, None)
    if code == "session_cookie_not_accepted":
        assert "API key" in str(body["detail"])


def test_session_cookie_beside_a_valid_key_is_ignored(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/me", headers={**bearer(raw), "Cookie": "thotbot_session=abc123"})

    assert response.status_code == 200


def _query_cases() -> list[object]:
    key = fake_key()
    encoded = "".join(f"%{b:02X}" for b in key.encode())
    return [
        pytest.param(f"api_key={key}", id="api_key"),
        pytest.param(f"token={key}&x=1", id="token"),
        pytest.param(f"x=1&key={key}", id="second-param"),
        pytest.param(f"q={key[:12]}", id="prefix-only"),
        pytest.param(f"q={key.upper()}", id="uppercase"),
        pytest.param(f"q={encoded}", id="percent-encoded"),
        pytest.param("q=thot%5Fak%5F" + "a" * 96, id="underscores-encoded"),
        pytest.param("q=thot%5fak%5f", id="lowercase-escapes"),
        pytest.param(f"q=Bearer+{key}", id="plus-encoded"),
        pytest.param(f"{key}=1", id="as-a-name"),
        pytest.param(f"{key}", id="bare"),
    ]


@pytest.mark.parametrize("query", _query_cases())
def test_api_key_in_url(
    client: TestClient, services: Services, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    caplog.set_level(logging.DEBUG)
    raw, _ = make_api_key(services)

    # Checked before authentication: even a valid key in the header does not help.
    response = client.get(f"/v1/version?{query}", headers=bearer(raw))

    body = assert_problem(response, 400, "api_key_in_url")
    assert body["instance"] == "/v1/version"
    assert_challenge(response, "invalid_request")  # RFC 6750: a request malformed as such
    assert query not in response.text
    assert fake_key() not in server_log(caplog, services)
    assert query not in server_log(caplog, services)


def test_api_key_in_url_is_checked_before_authentication(client: TestClient) -> None:
    response = client.get(f"/v1/version?api_key={fake_key()}")

    assert_problem(response, 400, "api_key_in_url")


def test_api_key_in_url_on_the_public_endpoint(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)

    response = client.post(f"/v1/keys/revoke-leaked?key={raw}", json={"keys": [raw]})

    assert_problem(response, 400, "api_key_in_url")
    assert services.keys.get(record.id).revoked_at is None


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_api_key_in_the_path_is_refused_and_never_echoed(
    client: TestClient, services: Services, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    caplog.set_level(logging.DEBUG)
    raw, record = make_api_key(services)

    response = client.request(method, f"/v1/keys/{raw}", headers=bearer(raw))

    body = assert_problem(response, 400, "api_key_in_url")
    assert raw not in response.text
    assert raw[len(PREFIX) :] not in str(body)
    assert raw not in server_log(caplog, services)
    assert services.keys.get(record.id).revoked_at is None


def test_a_query_without_a_key_is_fine(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/version?q=thot&ak=1&x=thot_a", headers=bearer(raw))

    assert response.status_code == 200


def test_unknown_path_and_method(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)

    assert_problem(client.get("/v1/nowhere", headers=bearer(raw)), 404, "not_found")
    assert_problem(client.patch("/v1/version", headers=bearer(raw)), 405, "method_not_allowed")
    # Authentication comes first: nothing about the API's shape is told to strangers.
    assert_problem(client.get("/v1/nowhere"), 401, "missing_api_key")


def test_too_large_a_body_is_a_problem_not_a_500(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)

    def chunks() -> object:
        for _ in range(3):
            yield b" " * (1024 * 1024)

    response = client.post(
        "/v1/keys/revoke-leaked",
        content=chunks(),  # type: ignore[arg-type]
        headers={"content-type": "application/json"},
    )

    assert_problem(response, 413, "content_too_large")
    assert client.get("/v1/version", headers=bearer(raw)).status_code == 200


def test_success_headers(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/version", headers=bearer(raw))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    assert "www-authenticate" not in response.headers


def test_every_error_body_holds_no_key_material(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)
    services.keys.revoke(record.id)

    response = client.get("/v1/version", headers=bearer(raw))

    assert_problem(response, 401, "revoked_api_key")
    assert raw[len(PREFIX) :][:8] not in response.text
    assert keys.hash_key(raw).hex() not in response.text


def test_a_failure_inside_the_guard_is_a_500_problem_with_the_api_headers(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    raw, _ = make_api_key(services)

    def broken(*args: object) -> None:
        raise RuntimeError("the usage recorder broke")

    monkeypatch.setattr(services.usage_recorder, "record", broken)
    with caplog.at_level(logging.ERROR, logger="thotbot.api"):
        response = client.get("/v1/version", headers=bearer(raw))

    assert_problem(response, 500, "internal_error")
    assert response.headers["cache-control"] == "no-store"
    assert "broke" not in response.text
    assert any(r.exc_info and "broke" in str(r.exc_info[1]) for r in caplog.records)
