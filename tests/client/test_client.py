"""thotbot.client against a real `thotbot serve`: every method, every refusal as its exception class,
the User-Agent and its warning, and the key kept out of reprs, exceptions and logs."""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import fake_key, make_api_key, make_user
from tests.fakeapi import fake_api, ok
from tests.livecli import EMAIL, Deployment, deploy
from tests.services import free_port
from thotbot import __version__
from thotbot.client import (
    AccountDisabled,
    APIError,
    AsyncClient,
    AuthenticationError,
    BadRequest,
    Client,
    ConfigurationError,
    EmailNotVerified,
    ExpiredAPIKey,
    InsufficientScope,
    InvalidAPIKey,
    Key,
    KeyRequest,
    MalformedAPIKey,
    Me,
    MissingAPIKey,
    NotFound,
    PermissionDenied,
    RestrictedEndpoint,
    RevokedAPIKey,
    SessionCookieNotAccepted,
    TransportError,
    UnsupportedAuthScheme,
    UserAgentWarning,
    ValidationError,
    Version,
    _base,
)
from thotbot.client._base import Call
from thotbot.config import load_settings
from thotbot.core.identity import Actor
from thotbot.services import Services, build_services
from thotbot.storage import AccountRecord

#: Every client in these tests describes itself, as the documentation asks (and as the warning says).
APP: dict[str, Any] = {"app": "client-tests", "version": "1.0", "contact": "tests@example.com"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = deploy(tmp_path_factory.mktemp("client"), {})
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def store(server: Deployment) -> Iterator[Services]:
    """The server's database, through the same stores, to make accounts and keys in process."""
    services = build_services(load_settings(database_url=server.env["THOTBOT_DATABASE_URL"]))
    yield services
    services.engine.dispose()


@pytest.fixture(scope="module")
def account(store: Services) -> AccountRecord:
    return store.users.get_by_email(EMAIL)


def new_key(store: Services, account: AccountRecord, name: str = "client test", **extra: Any) -> str:
    raw, _ = make_api_key(store, account, name=name, **extra)
    return raw


def client_for(server: Deployment, raw: str, **extra: Any) -> Client:
    return Client(api_key=raw, base_url=server.url, **{**APP, **extra})


# Every method


def test_version(server: Deployment, store: Services, account: AccountRecord) -> None:
    with client_for(server, new_key(store, account)) as client:
        assert client.version() == Version(version=__version__, api="v1")


def test_me_is_the_calling_key_and_its_account(
    server: Deployment, store: Services, account: AccountRecord
) -> None:
    raw = new_key(store, account, name="who am i")
    with client_for(server, raw) as client:
        me = client.me()

    assert isinstance(me, Me)
    assert me.account.email == EMAIL
    assert me.account.id == account.id
    assert me.key.name == "who am i"
    assert me.key.hint == f"{raw[:12]}…{raw[-4:]}"
    assert me.key.state == "active"
    assert me.key.read_only is False
    assert me.key.expires_at is None
    assert me.key.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - me.key.created_at) < timedelta(minutes=5)


def test_list_keys_gives_the_accounts_keys_as_the_api_writes_them(
    server: Deployment, store: Services, account: AccountRecord
) -> None:
    raw = new_key(store, account, name="lister", expires_at=datetime.now(UTC) + timedelta(days=30))
    with client_for(server, raw) as client:
        keys = client.list_keys()
        mine = client.me().key
    answer = httpx.get(server.url + "/v1/keys", headers={"Authorization": f"Bearer {raw}"}, timeout=10)

    assert all(isinstance(k, Key) for k in keys)
    [listed] = [k for k in keys if k.id == mine.id]
    assert listed.name == "lister"
    assert listed.expires_at is not None
    assert listed.expires_at.tzinfo is not None

    # Field for field, times included, to_dict() is the API's own JSON; but for last use (time and
    # User-Agent), which the server may have written between the two requests (usage is flushed in
    # the background).
    def settled(listing: dict[str, Any]) -> dict[str, Any]:
        moving = ("last_used_at", "last_user_agent")
        return {"keys": [{k: v for k, v in key.items() if k not in moving} for key in listing["keys"]]}

    assert settled({"keys": [k.to_dict() for k in keys]}) == settled(answer.json())
    assert listed.to_dict().keys() == answer.json()["keys"][0].keys()


def test_revoke_key_revokes_and_is_idempotent(
    server: Deployment, store: Services, account: AccountRecord
) -> None:
    doomed, keeper = new_key(store, account, name="doomed"), new_key(store, account, name="keeper")
    with client_for(server, doomed) as client:
        doomed_id = client.me().key.id
    with client_for(server, keeper) as client:
        client.revoke_key(doomed_id)
        client.revoke_key(doomed_id)  # a second time: nothing changes, no error
        [listed] = [k for k in client.list_keys() if k.id == doomed_id]
    assert listed.state == "revoked"
    assert listed.revoked_at is not None

    with client_for(server, doomed) as client, pytest.raises(RevokedAPIKey):
        client.version()


def test_a_key_may_revoke_itself(server: Deployment, store: Services, account: AccountRecord) -> None:
    with client_for(server, new_key(store, account)) as client:
        client.revoke_key(client.me().key.id)
        with pytest.raises(RevokedAPIKey):
            client.me()


def test_revoke_leaked_revokes_the_keys_given(
    server: Deployment, store: Services, account: AccountRecord
) -> None:
    leaked = new_key(store, account, name="pasted in a gist")
    with client_for(server, new_key(store, account)) as client:
        client.revoke_leaked([leaked, fake_key("b"), "not a key"])
    with client_for(server, leaked) as client, pytest.raises(RevokedAPIKey):
        client.me()


def test_revoke_key_refuses_a_key_in_place_of_an_id(
    server: Deployment, store: Services, account: AccountRecord
) -> None:
    raw = new_key(store, account)
    with client_for(server, raw) as client, pytest.raises(ValueError, match="revoke_leaked") as caught:
        client.revoke_key(raw)
    assert raw not in str(caught.value)


def _requests_shown(client: Client, key_id: str, count: int) -> list[KeyRequest]:
    """The key's recent requests once ``count`` show: they are written about every second."""
    deadline = time.monotonic() + 30
    while True:
        shown = client.key_requests(key_id)
        if len(shown) >= count or time.monotonic() > deadline:
            return shown
        time.sleep(0.2)


def test_key_requests_gives_the_keys_recent_requests_as_the_api_writes_them(
    server: Deployment, store: Services, account: AccountRecord
) -> None:
    raw = new_key(store, account, name="watched")
    with client_for(server, raw) as client:
        key_id = client.me().key.id
        with pytest.raises(NotFound):
            client.revoke_key("key_0000000000000000")
        shown = _requests_shown(client, key_id, 2)
        limited = client.key_requests(key_id, limit=1)
        with pytest.raises(NotFound):
            client.key_requests("key_0000000000000000")
        with pytest.raises(ValueError, match="limit"):
            client.key_requests(key_id, limit=0)
        with pytest.raises(ValueError, match="not the key itself") as caught:
            client.key_requests(raw)
    answer = httpx.get(
        f"{server.url}/v1/keys/{key_id}/requests", headers={"Authorization": f"Bearer {raw}"}, timeout=10
    )

    assert all(isinstance(r, KeyRequest) for r in shown)
    me, refused = shown[-1], shown[-2]  # newest first: the oldest two, before the listings
    assert (me.method, me.path, me.status, me.code) == ("GET", "/v1/me", 200, None)
    assert (refused.method, refused.status, refused.code) == ("DELETE", 404, "not_found")
    assert refused.at.tzinfo is not None
    assert refused.at >= me.at
    assert me.user_agent is not None
    assert me.user_agent.startswith("client-tests/1.0")
    assert me.duration_ms >= 0
    assert len(limited) == 1
    assert [r.to_dict() for r in shown][-2:] == answer.json()["requests"][-2:]
    assert raw not in str(caught.value)


# Every refusal the server makes, as its class


def _refusal(server: Deployment, raw: str, call: Call[Any]) -> APIError:
    with client_for(server, raw) as client, pytest.raises(APIError) as caught:
        client._run(call)
    return caught.value


def _me(**extra: Any) -> Call[Me]:
    return Call("GET", "/v1/me", Me.from_json, **extra)


def _check(error: APIError, cls: type[APIError], family: type[APIError], code: str, status: int) -> None:
    assert type(error) is cls
    assert isinstance(error, family)
    assert (error.code, error.status) == (code, status)
    assert error.detail
    assert error.title
    assert error.type is not None
    assert error.type.startswith("https://")
    assert str(error) == f"{code} ({status}): {error.detail}"


def test_the_401_refusals(server: Deployment, store: Services, account: AccountRecord) -> None:
    raw = new_key(store, account)
    cases = [
        (_refusal(server, raw, _me(auth=False)), MissingAPIKey, "missing_api_key"),
        (
            _refusal(server, raw, _me(auth=False, headers={"Authorization": "Basic dXNlcjpwYXNz"})),
            UnsupportedAuthScheme,
            "unsupported_auth_scheme",
        ),
        (
            _refusal(server, raw, _me(auth=False, headers={"Cookie": "thotbot_session=abc"})),
            SessionCookieNotAccepted,
            "session_cookie_not_accepted",
        ),
        (_refusal(server, "thot_ak_0123", _me()), MalformedAPIKey, "malformed_api_key"),
        (_refusal(server, fake_key("c"), _me()), InvalidAPIKey, "invalid_api_key"),
        (
            _refusal(
                server,
                new_key(store, account, expires_at=datetime.now(UTC) - timedelta(days=1)),
                _me(),
            ),
            ExpiredAPIKey,
            "expired_api_key",
        ),
    ]
    for error, cls, code in cases:
        _check(error, cls, AuthenticationError, code, 401)
        assert error.headers["www-authenticate"].startswith('Bearer realm="thotbot"')


def test_the_403_refusals(server: Deployment, store: Services, account: AccountRecord) -> None:
    read_only = new_key(store, account, read_only=True)
    with client_for(server, read_only) as client, pytest.raises(InsufficientScope) as scope:
        client.revoke_key(client.me().key.id)
    _check(scope.value, InsufficientScope, PermissionDenied, "insufficient_scope", 403)

    restricted = _refusal(
        server, new_key(store, account), Call("GET", "/v1/account/passkeys", lambda body: body)
    )
    _check(restricted, RestrictedEndpoint, PermissionDenied, "restricted_endpoint", 403)
    assert "operator" in restricted.detail

    # Disabled before its key is ever used: the server reads the key, and its account, afresh.
    leaving = make_user(store, "leaving@example.com")
    leaving_key = new_key(store, leaving)
    store.account_recovery.disable(leaving.email)
    _check(_refusal(server, leaving_key, _me()), AccountDisabled, PermissionDenied, "account_disabled", 403)

    unverified = store.users.create("unverified@example.com", None, verified=False)
    granted, record = make_api_key(store, unverified)
    store.key_lifecycle.grant(record.id, "account:security", Actor.operator())  # before its first use
    create = Call("POST", "/v1/keys", lambda body: body, body={"name": "more"})
    _check(_refusal(server, granted, create), EmailNotVerified, PermissionDenied, "email_not_verified", 403)


def test_the_other_refusals(server: Deployment, store: Services, account: AccountRecord) -> None:
    raw = new_key(store, account)
    with client_for(server, raw) as client:
        with pytest.raises(NotFound) as missing:
            client.revoke_key("no-such-key")
        with pytest.raises(ValidationError) as invalid:
            client.revoke_leaked(["x"] * 101)
    _check(missing.value, NotFound, APIError, "not_found", 404)
    _check(invalid.value, ValidationError, APIError, "validation_error", 422)

    in_url = _refusal(server, raw, Call("GET", "/v1/me?key=" + fake_key("d"), Me.from_json))
    _check(in_url, BadRequest, APIError, "api_key_in_url", 400)


def test_an_unreachable_server_is_a_transport_error(store: Services, account: AccountRecord) -> None:
    raw = new_key(store, account)
    client = Client(api_key=raw, base_url=f"http://127.0.0.1:{free_port()}", max_retries=0, **APP)
    with client, pytest.raises(TransportError) as caught:
        client.version()
    assert "ConnectError" in str(caught.value)
    assert "/v1/version" in str(caught.value)


# The key stays a secret


def test_the_key_is_in_no_repr_exception_or_log_line(
    server: Deployment, store: Services, account: AccountRecord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore too, at their most talkative
    raw = new_key(store, account)
    seen: list[str] = []
    with client_for(server, raw) as client:
        seen += [repr(client), str(client), repr(client._key), str(client._key), repr(vars(client))]
        me = client.me()
        seen += [repr(me), repr(client.list_keys()), repr(client.version())]
        client.revoke_key(me.key.id)
        for call in (client.me, client.list_keys, client.version):
            with pytest.raises(RevokedAPIKey) as caught:
                call()
            seen += _exception_texts(caught.value)
    unreachable = Client(api_key=raw, base_url=f"http://127.0.0.1:{free_port()}", max_retries=1, **APP)
    unreachable._sleep = lambda seconds: None
    with unreachable, pytest.raises(TransportError) as transport:
        unreachable.me()
    seen += _exception_texts(transport.value)
    seen += [record.getMessage() for record in caplog.records]

    assert raw[:12] + "…" + raw[-4:] in repr(client)  # the hint stands in for it
    assert any("retry 1 of 1" in line for line in seen)  # the retry was logged...
    leaks = [text for text in seen if raw in text or raw[8:] in text]
    assert not leaks  # ...and nothing anywhere holds the key


def _exception_texts(error: BaseException) -> list[str]:
    texts: list[str] = []
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return texts


def test_a_key_that_cannot_be_a_header_is_refused_without_echoing_it() -> None:
    secret = "thot_ak_" + "e" * 96
    with pytest.raises(ConfigurationError) as caught:
        Client(api_key=secret + "\n" + secret, **APP)
    assert secret not in str(caught.value)
    assert "api_key" in str(caught.value)


# Construction: the key from the environment, the User-Agent and its warning


def test_the_key_and_the_url_come_from_the_environment(
    server: Deployment, store: Services, account: AccountRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THOTBOT_API_KEY", new_key(store, account, name="from env"))
    monkeypatch.setenv("THOTBOT_API_URL", server.url)
    with Client(**APP) as client:
        assert client.me().key.name == "from env"


def test_no_key_anywhere_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="THOTBOT_API_KEY"):
        Client(**APP)


def test_the_user_agent_describes_the_app_then_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_base, "_warned_user_agent", False)
    with fake_api() as api:
        api.script(ok({"version": "9.9.9", "api": "v1"}))
        with Client(api_key=fake_key(), base_url=api.url, **APP) as client:
            client.version()
        with Client(api_key=fake_key(), base_url=api.url, app="acme-sync", version="2.3.1") as client:
            client.version()
        with pytest.warns(UserAgentWarning):
            bare = Client(api_key=fake_key(), base_url=api.url)
        with bare:
            bare.version()
    agents = [seen.headers["User-Agent"] for seen in api.seen]
    assert agents == [
        f"client-tests/1.0 (tests@example.com) thotbot-python/{__version__}",
        f"acme-sync/2.3.1 thotbot-python/{__version__}",
        f"thotbot-python/{__version__}",
    ]


def test_without_an_app_it_works_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_base, "_warned_user_agent", False)
    with pytest.warns(UserAgentWarning, match="app='my-app'") as first:
        Client(api_key=fake_key()).close()
    assert len(first) == 1
    assert first[0].filename == __file__  # it points at the caller's line
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        Client(api_key=fake_key()).close()
        AsyncClient(api_key=fake_key())
    assert later == []


def test_revoke_leaked_sends_no_key() -> None:
    with fake_api() as api:
        api.script(ok({"status": "accepted"}), ok({"version": "9.9.9", "api": "v1"}))
        with Client(api_key=fake_key(), base_url=api.url, **APP) as client:
            client.revoke_leaked([fake_key("f")])
            client.version()
    leaked, version = api.seen
    assert "Authorization" not in leaked.headers
    assert version.headers["Authorization"] == f"Bearer {fake_key()}"


# AsyncClient: the same calls, awaited


def test_async_client(server: Deployment, store: Services, account: AccountRecord) -> None:
    raw, leaked = new_key(store, account, name="async"), new_key(store, account, name="async leak")

    async def scenario() -> tuple[Version, Me, list[Key]]:
        async with AsyncClient(api_key=raw, base_url=server.url, **APP) as client:
            version, me, keys = await asyncio.gather(client.version(), client.me(), client.list_keys())
            await client.revoke_leaked([leaked])
            async with AsyncClient(api_key=leaked, base_url=server.url, **APP) as other:
                with pytest.raises(RevokedAPIKey):
                    await other.me()
            while not (recent := await client.key_requests(me.key.id, limit=5)):
                await asyncio.sleep(0.2)  # written about every second
            assert all(isinstance(r, KeyRequest) for r in recent)
            await client.revoke_key(me.key.id)
            with pytest.raises(RevokedAPIKey) as caught:
                await client.version()
            assert raw not in repr(client) + str(caught.value) + repr(caught.value)
            return version, me, keys

    version, me, keys = asyncio.run(scenario())
    assert version == Version(__version__, "v1")
    assert me.key.name == "async"
    assert me.key.id in {k.id for k in keys}
