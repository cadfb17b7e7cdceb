"""What Client and AsyncClient share, without I/O: settings, requests, retries, answers and errors.

Each call is a generator (``_Base._exchange``) that yields what to do next, a request to send or a
number of seconds to wait, and is sent back what came of it; the sync and async clients only drive
it, with their own transport and sleep. So the retry rules exist once.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import re
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from thotbot import __version__
from thotbot.client._errors import (
    APIError,
    ConfigurationError,
    TransportError,
    UnexpectedResponse,
    error_for,
)
from thotbot.client._models import Key, KeyRequest, Me, Version, keys_from_json, requests_from_json

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "Call",
    "Outcome",
    "Step",
    "UserAgentWarning",
]

log = logging.getLogger("thotbot.client")

T = TypeVar("T")

DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 2
#: The first retry waits up to this many seconds, each next one twice as long, at most BACKOFF_CAP.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
#: A Retry-After longer than this is not waited out: the error is raised at once, for the caller to decide.
MAX_RETRY_AFTER = 60.0
#: Answers worth another try: the request was refused before it did anything, or the server is busy.
RETRY_STATUSES = frozenset({429, 503})
#: Methods that may be sent twice with the effect of once (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_KEY = re.compile(r"thot_ak_[0-9a-f]{96}")
#: What a header value may hold: printable ASCII, so that nothing is refused (and echoed) by httpx.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_TEXT_SAFE = re.compile(r"[\x20-\x7e]*")

#: Step: a request to send, or seconds to wait. Outcome: what sending gave (nothing after a wait).
Step = httpx.Request | float
Outcome = httpx.Response | httpx.RequestError | None


class UserAgentWarning(UserWarning):
    """The client was built without ``app``: its requests are hard to tell apart from anyone else's."""


_warned_user_agent = False


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: method, path, body, whether it carries the key, and how to read the answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Any = None
    auth: bool = True
    #: Whether sending it twice has the effect of sending it once; by default, as its method says.
    idempotent: bool | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def retryable(self) -> bool:
        return self.method in IDEMPOTENT_METHODS if self.idempotent is None else self.idempotent


class _Secret:
    """The API key; its repr and str are the key's hint (``thot_ak_1a2b…9f0e``), never the key."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        value = self._value
        if _KEY.fullmatch(value):
            return f"{value[:12]}…{value[-4:]}"
        return "<API key, not of the thot_ak_ format>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("the API key is not pickled")


def resolve_key(api_key: str | None) -> _Secret:
    source = "api_key"
    if api_key is None:
        api_key, source = os.environ.get("THOTBOT_API_KEY"), "THOTBOT_API_KEY"
    if not api_key or not api_key.strip():
        raise ConfigurationError(
            "No API key: pass Client(api_key=...) or set THOTBOT_API_KEY. Create a key on the "
            "dashboard under API Keys."
        )
    value = api_key.strip()
    if not _HEADER_SAFE.fullmatch(value):
        # Never echo it: a header value httpx refuses would otherwise show up in its error.
        raise ConfigurationError(f"{source} holds spaces or characters that no API key has")
    return _Secret(value)


def resolve_base_url(base_url: str | None) -> str:
    url = (base_url or os.environ.get("THOTBOT_API_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"base_url must be an http:// or https:// URL, such as {DEFAULT_BASE_URL}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigurationError("base_url must have no query, fragment or credentials")
    return url


def user_agent(app: str | None, version: str | None, contact: str | None) -> str:
    """``app/version (contact) thotbot-python/X``; the parts not given are left out."""
    for name, value, pattern in (("app", app, _HEADER_SAFE), ("version", version, _HEADER_SAFE)):
        if value is not None and (not pattern.fullmatch(value) or "/" in value):
            raise ConfigurationError(f"{name} must be printable ASCII without spaces or '/'")
    if contact is not None and (not _TEXT_SAFE.fullmatch(contact) or set("()") & set(contact)):
        raise ConfigurationError("contact must be printable ASCII without parentheses")
    if app is None:
        _warn_once()
    parts = []
    if app:
        parts.append(f"{app}/{version}" if version else app)
    if contact:
        parts.append(f"({contact.strip()})")
    parts.append(f"thotbot-python/{__version__}")
    return " ".join(parts)


def _warn_once() -> None:
    global _warned_user_agent  # once per process, as promised
    if _warned_user_agent:
        return
    _warned_user_agent = True
    warnings.warn(
        "Describe your integration: Client(app='my-app', version='1.0.0', contact='you@example.com') "
        "sends the User-Agent 'my-app/1.0.0 (you@example.com) thotbot-python/...', which lets the "
        "operator tell your requests apart and reach you if something goes wrong.",
        UserAgentWarning,
        stacklevel=4,  # _warn_once, user_agent, _Base.__init__, then the caller's line
    )


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delay-seconds, or an HTTP-date (RFC 9110 section 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class _Base(ABC):
    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        app: str | None = None,
        version: str | None = None,
        contact: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        if max_retries < 0:
            raise ConfigurationError("max_retries must be 0 or more")
        self._key = resolve_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self.user_agent = user_agent(app, version, contact)
        self.timeout = timeout
        self.max_retries = max_retries
        self._connect()

    @abstractmethod
    def _connect(self) -> None:
        """Open the httpx client (sync or async) that sends the requests."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, api_key={self._key!r}, "
            f"user_agent={self.user_agent!r})"
        )

    # The calls

    def _version(self) -> Call[Version]:
        return Call("GET", "/v1/version", Version.from_json)

    def _me(self) -> Call[Me]:
        return Call("GET", "/v1/me", Me.from_json)

    def _list_keys(self) -> Call[list[Key]]:
        return Call("GET", "/v1/keys", keys_from_json)

    def _revoke_key(self, key_id: str) -> Call[None]:
        return Call("DELETE", _key_path(key_id, "revoke_key"), _nothing)

    def _key_requests(self, key_id: str, limit: int | None) -> Call[list[KeyRequest]]:
        path = _key_path(key_id, "key_requests") + "/requests"
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_REQUESTS:
                raise ValueError(f"limit must be a whole number from 1 to {MAX_REQUESTS}")
            path += f"?limit={limit}"
        return Call("GET", path, requests_from_json)

    def _revoke_leaked(self, keys: Iterable[str]) -> Call[None]:
        if isinstance(keys, str):
            raise TypeError("revoke_leaked takes a list of keys, not one key")
        listed = list(keys)
        if not all(isinstance(k, str) for k in listed):
            raise TypeError("revoke_leaked takes a list of strings")
        # No Authorization: the endpoint needs none, and a report should not name the reporter's key.
        # Revoking a key twice revokes it once: safe to retry although it is a POST.
        return Call(
            "POST", "/v1/keys/revoke-leaked", _nothing, body={"keys": listed}, auth=False, idempotent=True
        )

    # One exchange, retries included

    def _exchange(self, call: Call[T]) -> Generator[Step, Outcome, T]:
        headers = dict(call.headers)
        if call.auth:
            headers["Authorization"] = "Bearer " + self._key.reveal()
        request = httpx.Request(
            call.method,
            self.base_url + call.path,
            headers={"User-Agent": self.user_agent, "Accept": "application/json", **headers},
            json=call.body,
            extensions={"timeout": httpx.Timeout(self.timeout).as_dict()},
        )
        attempt = 0
        while True:
            outcome = yield request
            delay = self._retry_delay(call, attempt, outcome)
            if delay is None:
                break
            assert outcome is not None  # nothing is retried without having been sent
            attempt += 1
            log.info(
                "%s %s: %s; retry %d of %d in %.2f s",
                call.method,
                call.path,
                _describe(outcome),
                attempt,
                self.max_retries,
                delay,
            )
            yield delay
        if isinstance(outcome, httpx.RequestError):
            raise TransportError(
                f"{call.method} {self.base_url}{call.path}: {_describe(outcome)}"
            ) from outcome
        assert isinstance(outcome, httpx.Response)
        return call.parse(_answer(outcome))

    def _retry_delay(self, call: Call[Any], attempt: int, outcome: Outcome) -> float | None:
        """Seconds to wait before sending the call again, or None to stop here."""
        if attempt >= self.max_retries or not call.retryable:
            return None
        backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
        if isinstance(outcome, httpx.TransportError):
            return random.uniform(backoff / 2, backoff)  # noqa: S311 - jitter, not a secret
        if not isinstance(outcome, httpx.Response) or outcome.status_code not in RETRY_STATUSES:
            return None
        retry_after = retry_after_seconds(outcome.headers.get("retry-after"))
        if retry_after is None:
            return random.uniform(backoff / 2, backoff)  # noqa: S311
        if retry_after > MAX_RETRY_AFTER:
            return None
        # At least what the server asked for; a little more at random, so that clients refused
        # together do not all come back in the same instant.
        return retry_after + random.uniform(0, max(0.1, retry_after / 10))  # noqa: S311


#: The most recent requests the server keeps, and answers, per key.
MAX_REQUESTS = 200


def _key_path(key_id: str, method: str) -> str:
    """``/v1/keys/{key_id}``, refusing what is not a key id (a key itself above all) before sending."""
    if not isinstance(key_id, str) or not key_id.strip():
        raise ValueError("key_id must be a key's id, such as the id in list_keys()")
    if key_id.strip().startswith("thot_ak_"):
        # In the path it would travel in a URL: refused here, and not echoed.
        hint = (
            "to revoke a key you hold, call revoke_leaked([key])"
            if method == "revoke_key"
            else "see list_keys()"
        )
        raise ValueError(f"{method} takes a key's id, not the key itself; {hint}")
    return "/v1/keys/" + quote(key_id.strip(), safe="")


def _nothing(_: object) -> None:
    return None


def _describe(outcome: httpx.Response | httpx.RequestError) -> str:
    if isinstance(outcome, httpx.RequestError):
        # httpx's messages name the failure ("[Errno 111] Connection refused"), never a header.
        return f"{type(outcome).__name__}: {outcome}".rstrip(": ")
    code = _problem(outcome).get("code")
    return f"{outcome.status_code} {code}" if isinstance(code, str) else str(outcome.status_code)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _answer(response: httpx.Response) -> Any:
    """The JSON of a success (None for an empty one); an APIError for a problem."""
    status = response.status_code
    if status >= 400:
        raise _error(response)
    if not 200 <= status < 300:
        where = response.headers.get("location", "")
        raise UnexpectedResponse(
            f"the server answered {status}" + (f", to {where}: set base_url to it" if where else "")
        )
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        raise UnexpectedResponse(f"the server answered {status} with a body that is not JSON") from None


def _error(response: httpx.Response) -> APIError:
    problem = _problem(response)
    status = response.status_code

    def text(name: str) -> str | None:
        value = problem.get(name)
        return value if isinstance(value, str) else None

    code = text("code") or f"http_{status}"
    detail = text("detail") or response.reason_phrase or f"HTTP {status}"
    return error_for(code, status)(
        code,
        status,
        detail,
        title=text("title"),
        type=text("type"),
        instance=text("instance"),
        headers=dict(response.headers),
        retry_after=retry_after_seconds(response.headers.get("retry-after"), time.time()),
    )
