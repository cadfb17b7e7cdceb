"""create_app(settings): the one place where things are wired together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from importlib.resources import files
from typing import Protocol

import anyio.to_thread
import yaml
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thotbot import dashboard
from thotbot.accesslog import AccessLog, write_stderr
from thotbot.api.dispatch import ExactRoutes
from thotbot.api.problems import http_exception_handler, server_error_handler, thotbot_error_handler
from thotbot.api.routes import routes as api_routes
from thotbot.api.scanning import scanning_routes
from thotbot.auth.refusals import RefusalLog
from thotbot.auth.verifier import KeyVerifier
from thotbot.config import Settings, load_settings
from thotbot.core.dates import utcnow
from thotbot.core.errors import ThotbotError
from thotbot.core.proxies import TrustedProxies
from thotbot.logs import configure_logging
from thotbot.notifications import mail_failing_integrations
from thotbot.ratelimit import SYNC_INTERVAL
from thotbot.services import Services, build_services
from thotbot.web.guard import PUBLIC_ENDPOINTS, APIKeyGuard
from thotbot.web.hsts import StrictTransportSecurity
from thotbot.web.proxies import forwarded_scope
from thotbot.web.slashes import install_slash_redirects

__all__ = ["ThotbotApp", "create_app", "create_app_from_env"]

log = logging.getLogger("thotbot")
POLL_INTERVAL = 0.5  # revocations by other processes are honoured within a second
FLUSH_INTERVAL = 2.0
#: The usage flush's pause is at most five minutes (its duty holds up to ~5 s of CPU a flush, some
#: 100,000 keys in use here); the request log's, a minute (a request shows on its key's page).
MAX_USAGE_FLUSH_INTERVAL = 300.0
MAX_FLUSH_INTERVAL = 60.0
REQUEST_LOG_INTERVAL = 1.0
#: The usage and request-log flushes each take at most 1/FLUSH_DUTY of the process.
FLUSH_DUTY = 60
#: The rate-limit sync at most 1/SYNC_DUTY: its interval bounds what may pass a shared limit, so it
#: is spaced less (every hit of a window it shares is one that others' decisions wait for).
SYNC_DUTY = 20
MAX_SYNC_INTERVAL = 1.0
#: The young generation is collected after 10,000 net new container objects; the middle one after
#: every 2 of those passes, so that each of its passes walks the survivors of two (with 20, a pass
#: walked those of twenty: 20 to 70 ms with 50,000 keys in use, every request waiting; 5 to 25 ms
#: now, for the same work in all); and a full pass after 1,000 of those, as rare as before.
GC_THRESHOLDS = (10_000, 2, 1_000)
#: ... and the young generation also every 100 ms, from the event loop: see _collect_young.
YOUNG_PASS_INTERVAL = 0.1
ACCESS_LOG_INTERVAL = 0.5
PRUNE_INTERVAL = 3600.0  # as usage retention: an hour late is nothing against 400 days
REMINDER_INTERVAL = 600.0  # expiry reminders: ten minutes late is nothing against 7 days or 1 day
FAILING_MAIL_INTERVAL = 3600.0  # the daily mail goes out within an hour of the UTC day's end
MAX_BODY = 1024 * 1024


class ThotbotApp:
    """Sends /v1 to the API stack and everything else (lifespan included) to the web stack."""

    def __init__(
        self,
        api: ASGIApp,
        web: Starlette,
        services: Services,
        proxies: TrustedProxies | None = None,
        api_router: Starlette | None = None,
    ) -> None:
        self.api = api
        #: The Starlette app that holds the /v1 routes, behind the guard (``api``).
        self.api_router = api_router
        self.web = web
        self.services = services
        # None without THOTBOT_TRUSTED_PROXIES: then a request costs one attribute test, no more.
        self.proxies = proxies or None
        # On https, every response says so, errors and the API's included; on http it would be
        # ignored by browsers (RFC 6797 section 8.1) and only mislead.
        https = services.settings.public_url.startswith("https://")
        self._hsts: ASGIApp | None = StrictTransportSecurity(self._dispatch) if https else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._hsts is not None:
            await self._hsts(scope, receive, send)
            return
        # _dispatch's work, inline: one coroutine less on every request (docs/PERFORMANCE.md).
        if self.proxies is not None:
            scope = forwarded_scope(scope, self.proxies)
        await self._route(scope)(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.proxies is not None:
            # ForwardedClientMiddleware's step, inline and first: /v1, the dashboard and the
            # access log all see the same client, and routing stays one call deep.
            scope = forwarded_scope(scope, self.proxies)
        await self._route(scope)(scope, receive, send)

    def _route(self, scope: Scope) -> ASGIApp:
        """The API stack for /v1 and below, the web stack for the rest."""
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1") and (len(path) == 3 or path[3] == "/"):
                return self.api
        return self.web


class _BodyLimit:
    """Refuses /v1 request bodies over ``max_body_size`` with a 413 problem.

    It sits inside the guard, so the refusal carries the API's headers like any other problem
    (Starlette's own limit answers plain text from outside it). GET and HEAD skip it: no /v1
    handler reads their body, and they are most of the traffic.
    """

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        limit = self.max_body_size
        declared = _content_length(scope)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared > limit:
                raise HTTPException(413)
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # Twenty digits are more than any limit; int() refuses very long digit strings.
            return int(value[:20]) if value.isdigit() else 0
    return 0


def create_app_from_env() -> ThotbotApp:
    """Factory for `uvicorn --factory` and for each worker of `thotbot serve --workers N`."""
    settings = load_settings()
    # A worker thread (a usage flush, a cache miss, the key-change poll) holds the interpreter for
    # up to this long before the event loop may run again: 1 ms, not Python's 5 ms, bounds what it
    # adds to a request's latency (docs/PERFORMANCE.md, the tail).
    sys.setswitchinterval(0.001)
    # Python's cyclic garbage collector runs after every 700 net new container objects, and a full
    # pass walks every object the process holds: with 50,000 keys cached and as many rate-limit
    # windows and usage entries, 200 to 400 ms with every request waiting, several times a minute
    # (docs/PERFORMANCE.md, the tail). Almost everything here is freed by reference counting, so
    # the collector may run far less often: its passes then find objects that died young instead
    # of promoting them to the generation that makes the long passes.
    gc.set_threshold(*GC_THRESHOLDS)
    # Each worker of `serve --workers N` is a fresh process: set its logging up like the parent's.
    configure_logging(settings.log_format)
    services = build_services(settings)
    services.access_log = AccessLog(settings.log_format, write=write_stderr)
    return create_app(settings, services)


def create_app(settings: Settings, services: Services | None = None) -> ThotbotApp:
    services = services or build_services(settings)
    routed = Starlette(
        routes=[*api_routes, *scanning_routes(settings)],
        middleware=[Middleware(_BodyLimit, max_body_size=MAX_BODY)],
        exception_handlers={
            ThotbotError: thotbot_error_handler,
            HTTPException: http_exception_handler,
            Exception: server_error_handler,
        },
    )
    routed.state.services = services
    install_slash_redirects(routed)
    # The guard first, on every /v1 request; then reads go straight to their handler (ExactRoutes)
    # and everything else through Starlette's routing.
    api = APIKeyGuard(
        ExactRoutes(routed),
        verifier=KeyVerifier(services.keys, services.key_cache, services.rate_limiter),
        usage_recorder=services.usage_recorder,
        limiter=services.rate_limiter,
        access_log=services.access_log,
        refusals=RefusalLog(services.security_log),
        # The report path is public whether or not it is served: without GitHub's keys
        # (THOTBOT_SECRET_SCANNING_KEYS unset) it answers 404 to anyone, with a key or without.
        public=PUBLIC_ENDPOINTS,
        request_log=services.request_recorder,
    )
    # The request log names each endpoint by its route's template, at flush time.
    services.request_recorder.use_routes(
        (route.methods or (), route.path_regex, route.path_format)
        for route in routed.routes
        if isinstance(route, Route)
    )
    web = Starlette(
        routes=[*_service_routes(services), *dashboard.routes(services)],
        middleware=dashboard.middleware(services),
        exception_handlers=dashboard.exception_handlers(),
        lifespan=_lifespan(services),
        max_body_size=MAX_BODY,
    )
    web.state.services = services
    install_slash_redirects(web)
    return ThotbotApp(api, web, services, settings.proxies, api_router=routed)


@functools.cache
def _openapi_documents() -> tuple[str, str]:
    """The description as YAML and JSON, rendered once a process: PyYAML takes about half a second."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text_ = files("thotbot").joinpath("openapi.yaml").read_text(encoding="utf-8")
    spec = yaml.load(text_, Loader=loader)  # noqa: S506 - a safe loader, C or pure Python
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(spec, Dumper=dumper, sort_keys=False, allow_unicode=True), json.dumps(spec)


def _service_routes(services: Services) -> list[BaseRoute]:
    spec_yaml, spec_json = _openapi_documents()

    async def healthz(request: Request) -> Response:
        try:
            await anyio.to_thread.run_sync(_ping, services)
        except SQLAlchemyError:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})

    async def openapi_yaml(request: Request) -> Response:
        return Response(spec_yaml, media_type="application/yaml")

    async def openapi_json(request: Request) -> Response:
        return Response(spec_json, media_type="application/json")

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi/api.yaml", openapi_yaml, methods=["GET"]),
        Route("/openapi/api.json", openapi_json, methods=["GET"]),
    ]


def _ping(services: Services) -> None:
    with services.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _lifespan(services: Services):  # type: ignore[no-untyped-def]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        # Where the key changes stand, read before the first request: then nothing is cached before
        # the poller knows its place, and it has no cause to empty the cache under a live request.
        start = await _latest_change(services)
        tasks = [
            asyncio.create_task(_poll_key_changes(services, stop, start), name="thotbot-key-poller"),
            asyncio.create_task(_flush_periodically(services, stop), name="thotbot-usage-flusher"),
            asyncio.create_task(_flush_request_log(services, stop), name="thotbot-request-log"),
            asyncio.create_task(_write_access_log(services, stop), name="thotbot-access-log"),
            asyncio.create_task(_prune_security_log(services, stop), name="thotbot-security-log-pruner"),
            asyncio.create_task(_sync_rate_limits(services, stop), name="thotbot-rate-limit-sync"),
            asyncio.create_task(_collect_young(stop), name="thotbot-young-collector"),
            asyncio.create_task(_send_expiry_reminders(services, stop), name="thotbot-expiry-reminders"),
            asyncio.create_task(_mail_failing_daily(services, stop), name="thotbot-failing-mail"),
            asyncio.create_task(
                services.key_changes.listen(_evict(services), stop), name="thotbot-key-changes"
            ),
        ]
        # What start-up built lives as long as the process: the garbage collector need not walk it
        # again, which keeps its rare full passes short (a pause there is every request's pause).
        gc.freeze()
        try:
            yield
        finally:
            # Stop, not cancel: a worker thread in the middle of a query finishes it first, so
            # no connection is abandoned when the engine is disposed.
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            # A graceful shutdown (SIGTERM) loses no usage data.
            await services.usage_recorder.flush(final=True)
            await services.request_recorder.flush(final=True)
            services.access_log.flush()
            # The other processes count what this one let through in the current windows.
            await _sync_once(services)
            await services.rate_limiter.close()
            services.key_changes.close()
            # Queued mail gets one last try (bounded), and what is still undelivered is logged.
            await anyio.to_thread.run_sync(services.mailer.close)
            services.engine.dispose()

    return lifespan


async def _sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _collect_young(stop: asyncio.Event) -> None:
    """A pass of the young generation every YOUNG_PASS_INTERVAL, and of the middle one as Python
    would (after its threshold of young passes); full passes stay Python's own.

    Python starts a young pass when the container objects allocated outnumber those freed by its
    threshold, and freeing an old object counts as much as freeing a young one. With many keys in
    use, each request replaces a key's tuples in the usage and request-log windows: one new object
    each, one old one freed, no growth in the count, and the young generation grows by one object
    a tuple until something else allocates. A pass then walked 80,000 objects at once: 40 to 55 ms
    with every request waiting (docs/PERFORMANCE.md). Every 100 ms, a pass walks a few thousand.
    """
    while not stop.is_set():
        await asyncio.sleep(YOUNG_PASS_INTERVAL)
        middle = gc.get_threshold()[1]
        gc.collect(1 if gc.get_count()[1] > middle else 0)


async def _latest_change(services: Services) -> int | None:
    try:
        latest: int = await anyio.to_thread.run_sync(services.keys.latest_change)
    except Exception:
        # The edge of start-up: with the database down the server still starts, and the poller
        # finds its place (emptying the cache then) once the database answers.
        log.warning("cannot read the key changes at start; the poller will retry", exc_info=True)
        return None
    return latest


async def _poll_key_changes(services: Services, stop: asyncio.Event, seq: int | None = None) -> None:
    """Evict keys that any process changed (revoked, granted, expired) from this process's cache."""
    failing = False
    while not stop.is_set():
        try:
            if seq is None:
                seq = await anyio.to_thread.run_sync(services.keys.latest_change)
                # Anything cached before the poller knew where it stood may be stale.
                services.key_cache.clear()
            else:
                latest, changed = await anyio.to_thread.run_sync(services.keys.changes_since, seq)
                if latest < seq:
                    # The change log went back: a backup was restored under this running server.
                    # Whatever is cached may be newer than the database now, and the changes made
                    # since reuse numbers already seen: forget every key.
                    log.warning(
                        "the key changes went back from %d to %d (a restore?): key cache emptied", seq, latest
                    )
                    services.key_cache.clear()
                seq = latest
                for key_id in changed:
                    services.key_cache.evict(key_id)
            if failing:
                log.info("key change poller reconnected to the database")
            failing = False
        except Exception:
            # The edge of a background task: keep polling whatever went wrong. Changes are
            # durable in key_events, so the first poll that succeeds applies all it missed.
            if not failing:
                log.warning("key change poller cannot reach the database; retrying", exc_info=True)
            failing = True
        await _sleep_unless_stopped(stop, POLL_INTERVAL)


def _evict(services: Services) -> Callable[[list[str]], None]:
    def evict(key_ids: list[str]) -> None:
        for key_id in key_ids:
            services.key_cache.evict(key_id)

    return evict


async def _flush_periodically(services: Services, stop: asyncio.Event) -> None:
    recorder = services.usage_recorder
    while not stop.is_set():
        # Flushing first loads the day's shared address-hash salt as soon as the server starts.
        await recorder.flush()
        await until_due(recorder, stop, flush_pause)


async def _flush_request_log(services: Services, stop: asyncio.Event) -> None:
    """Write each key's recent requests and hourly counts every second or so, so that a request
    shows on its key's page within a few seconds; paced as the usage flush when it costs more."""
    recorder = services.request_recorder
    pause = functools.partial(_paced, least=REQUEST_LOG_INTERVAL, most=MAX_FLUSH_INTERVAL)
    while not stop.is_set():
        await until_due(recorder, stop, pause)
        await recorder.flush()


class _Pending(Protocol):
    @property
    def next_flush_cpu(self) -> float: ...


async def until_due(recorder: _Pending, stop: asyncio.Event, pause: Callable[[float], float]) -> None:
    """Wait until ``recorder``'s next flush is due: ``pause`` of what flushing all it holds now
    would cost (``next_flush_cpu``), looked at again every ``pause(0)`` seconds (the least pause,
    that of a flush that costs nothing) as that grows.

    Paced by what the next flush will cost, not by what the last one cost: when many keys come
    into use at once (a server's first minute with 50,000 of them), the flush waits until the
    time since the last one pays for it, where it came two seconds after a cheap flush and took
    a quarter of the process for 15 s (docs/PERFORMANCE.md, eighth pass).
    """
    started = time.monotonic()
    least = wait = pause(0.0)
    while not stop.is_set():
        await _sleep_unless_stopped(stop, wait)
        elapsed = time.monotonic() - started
        due = pause(recorder.next_flush_cpu)
        if elapsed >= due:
            return
        wait = min(due - elapsed, least)


def flush_pause(took: float) -> float:
    """Seconds between two usage flushes when the second costs ``took`` seconds of CPU.

    Every 2 s while flushes are quick. A flush costs one row per key (and User-Agent, and client)
    used since the last one, so with tens of thousands of keys in use it can take a large part of
    the process's CPU away from requests. The pause then grows so that flushing takes at most a
    sixtieth of the time (the two flushes together a thirtieth), and each later flush
    carries more requests per row; the cost per request stays bounded however many keys are in
    use. Last-used times are then up to five minutes late (MAX_USAGE_FLUSH_INTERVAL).
    CPU time, not the time taken: a flush that waits for a locked or distant database costs the
    process nothing meanwhile, and must not push the next one (the retry after an outage) back.
    """
    return _paced(took, FLUSH_INTERVAL, MAX_USAGE_FLUSH_INTERVAL)


def _paced(took: float, least: float, most: float, duty: int = FLUSH_DUTY) -> float:
    """The pause before background work that costs ``took`` seconds of CPU: ``least`` while it is
    cheap, then long enough that it takes at most 1/``duty`` of the process, up to ``most``."""
    return min(most, max(least, took * (duty - 1)))


async def _sync_rate_limits(services: Services, stop: asyncio.Event) -> None:
    """Share the rate limits' counts with the other processes through the database, every 100 ms
    (ratelimit.py); nothing to do when this process counts alone or Redis holds the counts."""
    if services.rate_limiter.mode != "database":
        return
    while not stop.is_set():
        await _sync_once(services)
        # As the usage flush: a sync that costs much CPU (thousands of keys hit since the last
        # one) spaces the next ones, so sharing takes at most a twentieth of the process.
        pause = _paced(services.rate_limiter.sync_cpu, SYNC_INTERVAL, MAX_SYNC_INTERVAL, SYNC_DUTY)
        await _sleep_unless_stopped(stop, pause)


async def _sync_once(services: Services) -> None:
    try:
        await services.rate_limiter.sync()
    except Exception:  # The edge of a background task: the next sync tries again.
        log.warning("could not share the rate limits' counts", exc_info=True)


async def _write_access_log(services: Services, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await _sleep_unless_stopped(stop, ACCESS_LOG_INTERVAL)
        try:
            await services.access_log.drain()
        except Exception:  # The edge of a background task: a full disk must not stop the loop.
            log.warning("could not write the access log", exc_info=True)


async def _prune_security_log(services: Services, stop: asyncio.Event) -> None:
    """Delete security events past THOTBOT_SECURITY_LOG_RETENTION_DAYS, at start-up and hourly.

    Every instance does it; a second DELETE of the same rows finds nothing, so none coordinate.
    """
    days = services.settings.security_log_retention_days
    while not stop.is_set():
        try:
            deleted = await anyio.to_thread.run_sync(lambda: services.security_log.prune(days))
            if deleted:
                log.info("pruned %d security log events older than %d days", deleted, days)
        except SQLAlchemyError:
            # The edge of a background task: the next hour tries again.
            log.warning("could not prune the security log", exc_info=True)
        await _sleep_unless_stopped(stop, PRUNE_INTERVAL)


async def _send_expiry_reminders(services: Services, stop: asyncio.Event) -> None:
    """Mail the keys' 7-day and 1-day expiry reminders (expiry_reminders.py), at start-up and every
    ten minutes. Every instance does it; each reminder is claimed by one UPDATE, so none twice."""
    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(lambda: services.expiry_reminders.run())
        except Exception:  # The edge of a background task: the next round tries again.
            log.warning("could not send the API key expiry reminders", exc_info=True)
        await _sleep_unless_stopped(stop, REMINDER_INTERVAL)


async def _mail_failing_daily(services: Services, stop: asyncio.Event) -> None:
    """At start-up and hourly: mail each account whose keys mostly failed on the previous UTC day.

    Every instance does it; each account is claimed for the day by one conditional UPDATE before
    its mail is sent, so it gets one mail however many instances try, and however often.
    """
    reported: date | None = None  # the day this instance last logged about: once a day, not every hour
    while not stop.is_set():
        day = utcnow().date() - timedelta(days=1)
        try:
            accounts, sent = await anyio.to_thread.run_sync(
                mail_failing_integrations, services.failing, services.notifier, day
            )
            if accounts and (sent or day != reported):
                reported = day
                log.info(
                    "%d account(s) had keys that mostly failed on %s; this instance mailed %d "
                    "(the others were mailed already or turned the mail off)",
                    accounts,
                    day,
                    sent,
                )
        except Exception:  # The edge of a background task: the next hour tries again.
            log.warning("could not mail about failing keys", exc_info=True)
        await _sleep_unless_stopped(stop, FAILING_MAIL_INTERVAL)
