"""The /v1 guard, pure ASGI: refuses keys in URLs, has the bearer key verified, marks no-store.

It sits on the request path of every API call, so it does no database write and, when the key is
cached, no I/O and no thread hop. Who the key is, is ``thotbot.auth.verifier``'s to say; the guard
is the glue around it: reading the scope, rate limits, usage, the access log and the problem.
"""

from __future__ import annotations

import logging
import time

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thotbot.accesslog import AccessLog
from thotbot.auth.cache import CachedKey
from thotbot.auth.refusals import RefusalLog
from thotbot.auth.verifier import Authorization, KeyVerifier, check_key, refuse_key_in_query
from thotbot.core import keys
from thotbot.core.errors import (
    AccountDisabled,
    APIKeyInURL,
    AuthenticationError,
    InsufficientScope,
    IPNotAllowed,
    MissingAPIKey,
    RateLimited,
    ThotbotError,
)
from thotbot.core.identity import is_restricted
from thotbot.core.memo import Memo
from thotbot.core.problems import NO_STORE, send_problem
from thotbot.core.redaction import holds_key
from thotbot.ratelimit import RateLimiter
from thotbot.usage import RequestLogRecorder, UsageRecorder, user_agent_notice
from thotbot.web.cors import is_preflight, refuse_preflight

__all__ = ["PUBLIC_ENDPOINTS", "SECRET_SCANNING", "APIKeyGuard"]

log = logging.getLogger("thotbot.api")

#: GitHub's secret-scanning reports: no key; a 404 when THOTBOT_SECRET_SCANNING_KEYS is unset.
SECRET_SCANNING = ("POST", "/v1/secret-scanning/report")
#: (method, path) pairs under /v1 that need no key.
PUBLIC_ENDPOINTS = frozenset({("POST", "/v1/keys/revoke-leaked"), SECRET_SCANNING})
# Longer than the 512 characters kept: a key across that limit is redacted whole before the cut.
_MAX_UA = 512 + keys.KEY_LENGTH
#: User-Agent header values seen lately (see _AGENTS below).
_MAX_AGENTS = 1024


class APIKeyGuard:
    def __init__(
        self,
        app: ASGIApp,
        verifier: KeyVerifier,
        usage_recorder: UsageRecorder,
        limiter: RateLimiter,
        access_log: AccessLog,
        refusals: RefusalLog | None = None,
        public: frozenset[tuple[str, str]] = PUBLIC_ENDPOINTS,
        request_log: RequestLogRecorder | None = None,
    ) -> None:
        self.app = app
        #: PUBLIC_ENDPOINTS less those not served here: an unserved one needs a key like any path.
        self.public = public
        self.refusals = refusals
        self.verifier = verifier
        self.usage_recorder = usage_recorder
        self.limiter = limiter
        self.access_log = access_log
        self.request_log = request_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # This runs on every API request: keep it to dict lookups and one SHA-256 when the key
        # is cached, and no coroutine it does not need (docs/PERFORMANCE.md has the measurements).
        started = time.perf_counter()
        status = 0  # until the response starts
        key_id = "-"
        extra_headers = [NO_STORE]

        async def send_no_store(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        path: str = scope["path"]
        method: str = scope["method"]
        # Cheap unless the path holds %, & or a backslash: then every encoding is decoded.
        key_in_path = holds_key(path)
        if key_in_path:
            # Never echoed in a problem's instance nor written to the access log.
            path = "/v1/[redacted]"
        address = _client(scope)
        #: The key presented, once known: a refused call to a restricted endpoint is logged for it.
        entry: CachedKey | None = None
        user_agent: str | None = None
        passed = False
        code: str | None = None  # the problem's, when the guard answers one
        arrived = 0.0  # wall-clock time, read when usage is recorded
        limiter = self.limiter
        public = self.public
        try:
            try:
                if key_in_path:
                    raise APIKeyInURL
                if (method, path) in public:
                    refuse_key_in_query(scope["query_string"])
                    decision = await limiter.hit_anon(address)
                else:
                    authorization, cookie, agent = _credentials(scope["headers"])
                    found = self.verifier.cached(authorization, cookie, scope["query_string"])
                    entry = (
                        found if isinstance(found, CachedKey) else await self.verifier.load(found, address)
                    )
                    key_id = entry.key_id
                    if agent is not None:
                        user_agent, notice = _AGENTS[agent[:_MAX_UA]]
                    else:
                        notice = user_agent_notice(None)
                    check_key(entry, method, address)
                    state = scope.get("state")
                    if state is None:
                        scope["state"] = {"identity": entry.identity}
                    else:
                        state["identity"] = entry.identity
                    arrived = time.time()
                    self.usage_recorder.record(key_id, arrived, user_agent, address)
                    if notice is not None:
                        extra_headers.append(notice)
                    limit = entry.rate_limit
                    decision = limiter.hit_key_now(
                        key_id, limit, entry.bucket, entry
                    ) or await limiter.hit_key(key_id, limit)
            except (
                AuthenticationError,
                APIKeyInURL,
                InsufficientScope,
                AccountDisabled,
                IPNotAllowed,
            ) as refusal:
                if isinstance(refusal, MissingAPIKey) and is_preflight(method, scope["headers"]):
                    # A browser's CORS preflight carries no key: refused as such, at no cost.
                    await refuse_preflight(send_no_store)
                    return
                # Failed attempts count against the client's address, not against any key.
                decision = await limiter.hit_anon(address)
                extra_headers.extend(decision.headers())
                if not decision.allowed:
                    raise RateLimited(decision.reset_after) from None
                raise
            extra_headers.extend(decision.headers())
            if not decision.allowed:
                raise RateLimited(decision.reset_after)
            passed = True
            await self.app(scope, receive, send_no_store)
        except ThotbotError as exc:
            # A 429 is not written: it changes nothing, and a flood past the limit must not cost
            # a database write per request. What came before the limit was logged (folded).
            code = exc.code
            refused = entry is not None and not passed and not isinstance(exc, RateLimited)
            if refused and entry is not None and is_restricted(method, path):
                await self._log_refusal(entry, method, path, exc.code, address, user_agent)
            await send_problem(send_no_store, exc, path)
        except Exception:
            # The edge of the API: whatever broke, the client gets a problem, never a traceback.
            log.exception("unhandled error on %s %s", method, path)
            code = ThotbotError.code
            if status:
                raise  # the response is under way: let the server end the connection
            await send_problem(send_no_store, ThotbotError(), path)
        finally:
            elapsed = time.perf_counter() - started
            if self.access_log.enabled:
                # The query string is never logged: it is where a misplaced key would be.
                self.access_log.record(address, method, path, status or 500, key_id, elapsed)
            if entry is not None and self.request_log is not None:
                # The key's request log, in memory (a deque append): flushed in batches later.
                if code is None and status >= 400:
                    state = scope.get("state")
                    code = state.get("problem_code") if state is not None else None
                # When it arrived: read once for usage already, unless the key was refused first.
                at = arrived or time.time() - elapsed
                self.request_log.record(key_id, at, method, path, status or 500, code, user_agent, elapsed)

    async def _log_refusal(
        self, entry: CachedKey, method: str, path: str, code: str, address: str, user_agent: str | None
    ) -> None:
        """Write a refused restricted call to the account's security log, on refusals only."""
        if self.refusals is None:
            return
        refusals = self.refusals
        try:
            await anyio.to_thread.run_sync(
                lambda: refusals.record(
                    entry.account_id,
                    entry.key_id,
                    method,
                    path,
                    code,
                    ip_address=None if address == "-" else address,
                    user_agent=user_agent,
                )
            )
        except SQLAlchemyError:
            # The refusal stands whatever happens to its log line.
            logging.getLogger("thotbot.auth").warning(
                "could not log a refused restricted call", exc_info=True
            )


def _credentials(headers: list[tuple[bytes, bytes]]) -> tuple[Authorization, bytes, bytes | None]:
    """In one pass: the Authorization value, every Cookie header joined, and the User-Agent."""
    authorization: Authorization = None
    cookie = b""
    user_agent: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            if authorization is None:
                authorization = value
            else:
                # Sent more than once: the verifier is handed every value, and refuses them.
                earlier = authorization if isinstance(authorization, tuple) else (authorization,)
                authorization = (*earlier, value)
        elif name == b"user-agent":
            user_agent = value
        elif name == b"cookie":
            cookie += b";" + value
    return authorization, cookie, user_agent


def _user_agent(raw: bytes) -> tuple[str, tuple[bytes, bytes] | None]:
    """The User-Agent as recorded (``raw``, its first _MAX_UA bytes, decoded) and the notice it gets."""
    user_agent = raw.decode("latin-1")
    return user_agent, user_agent_notice(user_agent)


#: The User-Agent header values seen lately, cut to _MAX_UA bytes, decoded, with the notice each
#: gets: a client sends the same one on every request. The same string each time also keeps its
#: hash, and compares as itself in the usage windows. At most _MAX_AGENTS of them.
_AGENTS: Memo[bytes, tuple[str, tuple[bytes, bytes] | None]] = Memo(_user_agent, limit=_MAX_AGENTS)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "-"
