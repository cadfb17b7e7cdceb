"""The client's pieces without a server: what it refuses to be built with or to send, what it makes of
answers it does not expect, and how every error code the server has maps to a class."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

from tests.factories import fake_key
from tests.fakeapi import Answer, FakeAPI, fake_api, ok
from tests.services import free_port
from thotbot.client import (
    APIError,
    AsyncClient,
    AuthenticationError,
    BadRequest,
    Client,
    ConfigurationError,
    Conflict,
    Key,
    Me,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
    ValidationError,
)
from thotbot.client._base import retry_after_seconds
from thotbot.client._errors import error_for
from thotbot.core import errors

APP: dict[str, Any] = {"app": "parts-tests", "version": "1.0", "contact": "tests@example.com"}
ACCOUNT = {"id": "acct_1", "email": "e@example.com"}
KEY = {"id": "key_1", "name": "n", "hint": "h", "created_at": "2026-12-03T13:00:00Z"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"base_url": "localhost:8000"}, "http:// or https://"),
        ({"base_url": "ftp://example.com"}, "http:// or https://"),
        ({"base_url": "https://user:pass@example.com"}, "credentials"),
        ({"base_url": "https://example.com/?a=1"}, "query"),
        ({"app": "my app"}, "app must be"),
        ({"app": "acme", "version": "1/2"}, "version must be"),
        ({"contact": "(me)"}, "contact must be"),
        ({"contact": "ops@acme.example\r\nX-Evil: 1"}, "contact must be"),
        ({"max_retries": -1}, "max_retries"),
        ({"api_key": "  "}, "No API key"),
    ],
)
def test_what_a_client_cannot_be_built_with(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Client(**{"api_key": fake_key(), **APP, **arguments})


def test_the_key_is_not_pickled_and_a_foreign_token_has_no_hint() -> None:
    with Client(api_key=fake_key(), **APP) as client, pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(client._key)
    with Client(api_key="sk_live_something", **APP) as client:
        assert "sk_live_something" not in repr(client)
        assert "not of the thot_ak_ format" in repr(client)


def test_what_the_calls_refuse_to_send() -> None:
    with Client(api_key=fake_key(), **APP) as client:
        with pytest.raises(ValueError, match="key's id"):
            client.revoke_key(" ")
        with pytest.raises(TypeError, match="not one key"):
            client.revoke_leaked(fake_key("b"))
        with pytest.raises(TypeError, match="list of strings"):
            client.revoke_leaked([1])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "me is not a JSON object"),
        ({"account": ACCOUNT, "key": {"id": "k", "name": "n", "hint": "h"}}, "created_at"),
        ({"account": {"id": "a", "email": 3}, "key": {}}, "email is not a string"),
        ({"account": ACCOUNT, "key": {**KEY, "grants": "x"}}, "grants"),
        ({"account": ACCOUNT, "key": {**KEY, "allowed_networks": "192.0.2.0/24"}}, "allowed_networks"),
        ({"account": ACCOUNT, "key": {**KEY, "allowed_networks": [24]}}, "allowed_networks"),
        ({"account": ACCOUNT, "key": {**KEY, "created_at": "May"}}, "ISO 8601"),
    ],
)
def test_an_answer_in_another_shape(body: object, message: str) -> None:
    with pytest.raises(UnexpectedResponse, match=message):
        Me.from_json(body)


def test_a_keys_allowlist_is_a_tuple_of_cidrs_and_none_is_empty() -> None:
    listed = Key.from_json({**KEY, "allowed_networks": ["192.0.2.0/24", "2001:db8::/32"]})
    assert listed.allowed_networks == ("192.0.2.0/24", "2001:db8::/32")
    assert listed.to_dict()["allowed_networks"] == ["192.0.2.0/24", "2001:db8::/32"]
    # An older server sends no such field: any address, as the API's [] says.
    assert Key.from_json(KEY).allowed_networks == ()
    assert Key.from_json({**KEY, "allowed_networks": []}).to_dict()["allowed_networks"] == []


def test_a_time_without_a_zone_is_utc() -> None:
    key = Key.from_json({"id": "k", "name": "n", "hint": "h", "created_at": "2026-12-03T13:00:00"})
    assert key.created_at.utcoffset() is not None
    assert key.to_dict()["created_at"] == "2026-12-03T13:00:00Z"


@pytest.fixture
def api() -> Any:
    with fake_api() as api:
        yield api


def test_answers_that_are_not_the_apis(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "_sleep", staticmethod(lambda seconds: None))
    with Client(api_key=fake_key(), base_url=api.url, **APP) as client:
        api.script(Answer(200, b"<html>", {"Content-Type": "text/html"}))
        with pytest.raises(UnexpectedResponse, match="not JSON"):
            client.version()
        api.script(ok({"keys": "none"}))
        with pytest.raises(UnexpectedResponse, match="keys is not a list"):
            client.list_keys()
        api.script(Answer(204))
        with pytest.raises(UnexpectedResponse, match="not a JSON object"):
            client.me()
        # A proxy's busy page: not JSON, retried all the same, then raised by its status.
        api.script(Answer(503, b"<html>busy</html>", {"Content-Type": "text/html"}))
        with pytest.raises(ServerError) as caught:
            client.version()
    assert caught.value.code == "http_503"
    assert caught.value.detail == "Service Unavailable"
    assert len(api.seen) == 3


def test_the_async_client_on_an_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(AsyncClient, "_sleep", staticmethod(record))

    async def version() -> None:
        url = f"http://127.0.0.1:{free_port()}"
        async with AsyncClient(api_key=fake_key(), base_url=url, **APP) as client:
            await client.version()

    with pytest.raises(TransportError, match="ConnectError"):
        asyncio.run(version())
    assert len(waited) == 2


def test_retry_after_in_other_forms() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 -0000", now=1445412480.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412500.0) == 0.0
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds("inf") is None


def _every_code() -> list[tuple[str, int]]:
    """(code, status) of every error the API sends: core/errors.py's, and the HTTP server's own."""
    codes = {(cls.code, cls.status) for cls in _subclasses(errors.ThotbotError)}
    codes |= {("bad_request", 400), ("request_timeout", 408), ("request_header_too_large", 431)}
    codes |= {("too_many_connections", 503)}
    return sorted(codes)


def _subclasses(cls: type[errors.ThotbotError]) -> list[type[errors.ThotbotError]]:
    # A class that names no code of its own (AuthenticationError) groups others and is never sent.
    own = cls.__module__ == errors.__name__ and ("code" in vars(cls) or cls is errors.ThotbotError)
    found = [cls] if own else []
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


FAMILIES = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    429: RateLimited,
    500: ServerError,
    503: ServiceUnavailable,
}


@pytest.mark.parametrize(("code", "status"), _every_code(), ids=lambda value: str(value))
def test_every_code_the_server_sends_has_its_class(code: str, status: int) -> None:
    """Each code maps to the client class of its status; each 401 and 403 code to a class of its own."""
    cls = error_for(code, status)
    assert issubclass(cls, FAMILIES.get(status, APIError))
    if status in (401, 403):
        assert cls.code_name == code, f"no class of its own for {code}"
