"""The `thotbot` command for operators (and `thotbot api` for API users): one function per command,
one clear line per error."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from thotbot import __version__
from thotbot.api.serializers import key_json
from thotbot.config import Settings, load_settings
from thotbot.core.accounts import check_new_password, hash_password
from thotbot.core.dates import parse_expiry, utcnow
from thotbot.core.errors import ThotbotError, ValidationFailed
from thotbot.core.identity import Actor
from thotbot.core.names import key_name_problem, tidy_key_name
from thotbot.core.revocation import revocation_phrase
from thotbot.mail import show_mail_log
from thotbot.services import Services, build_services
from thotbot.storage import KeyRecord
from thotbot.storage.db import redacted_url
from thotbot.storage.migrate import upgrade
from thotbot.usage import failing, report

__all__ = ["main"]

Command = Callable[[argparse.Namespace, Settings], int]
#: Engines opened by this run of main(): closed before it returns, also when called in process.
_opened: list[Services] = []


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["api"]:
        # For API users: the client alone, no settings, no database (`thotbot api` from the shell
        # goes there straight from thotbot/__main__.py, without loading this module).
        from thotbot.client._cli import main as api

        return api(given)
    parser = _parser()
    args = parser.parse_args(given)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        settings = load_settings()
        return int(args.func(args, settings))
    except ThotbotError as exc:
        return _fail(exc.detail)
    except SQLAlchemyError as exc:
        url = redacted_url(settings.database_url_value())
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        password = make_url(settings.database_url_value()).password
        if password:
            reason = reason.replace(str(password), "***")
        return _fail(f"database error ({url}): {reason}")
    except KeyboardInterrupt:
        return 130
    finally:
        while _opened:
            opened = _opened.pop()
            opened.engine.dispose()
            opened.key_changes.close()


def _fail(message: str) -> int:
    print(f"thotbot: error: {message}", file=sys.stderr)
    return 1


def _services(settings: Settings) -> Services:
    services = build_services(settings)
    _opened.append(services)
    upgrade(services.engine)  # idempotent: a fresh checkout works without a separate step
    return services


# Seconds the parent of `--workers N` waits for a worker to answer its health check before it kills
# the worker and starts another. uvicorn's 5 s killed workers that were still starting (a new
# interpreter answers only once it has loaded uvicorn) on a machine busy enough to take 6 s for that,
# and started them again, as busy; gunicorn's worker timeout is 30 s too.
WORKER_HEALTHCHECK_TIMEOUT = 30


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from thotbot.cli._http import ProblemHttpToolsProtocol
    from thotbot.cli._limits import ConnectionLimits, default_max_connections
    from thotbot.logs import configure_logging

    configure_logging(settings.log_format)
    services = _services(settings)
    has_accounts = services.users.count() > 0
    services.engine.dispose()
    _say(
        f"Thotbot {__version__} on http://{args.host}:{args.port} (database: "
        f"{redacted_url(settings.database_url_value())})"
    )
    if not has_accounts:
        _say(
            f"No accounts yet: sign up at {settings.public_url}/signup, or from a shell:\n"
            "  printf '%s' 'a-long-password' |"
            " .venv/bin/thotbot users create you@example.com --password-stdin"
        )
    limits = ConnectionLimits(
        header_timeout=settings.header_timeout,
        keep_alive_timeout=settings.keepalive_timeout,
        max_connections=settings.max_connections or default_max_connections(),
    )
    if args.workers > 1:
        # uvicorn calls create_app_from_env in each worker, a fresh process that reads the
        # environment: this tells it that it shares the database (and so the rate limits).
        os.environ["THOTBOT_WORKERS"] = str(args.workers)
    notice = _rate_limits_notice(args.workers, settings)
    if notice:
        _say(notice)
    uvicorn.run(
        "thotbot.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_config=None,
        server_header=False,
        # Only THOTBOT_TRUSTED_PROXIES decides whose X-Forwarded-For counts (thotbot.core.proxies):
        # uvicorn's own default believes any process on 127.0.0.1.
        proxy_headers=False,
        # Bounded heads, timeouts and connections, and a problem body for what is refused there.
        # A partial of a module-level class: each worker process unpickles it with its limits.
        http=functools.partial(ProblemHttpToolsProtocol, limits=limits),  # type: ignore[arg-type]
        timeout_keep_alive=settings.keepalive_timeout,
        timeout_graceful_shutdown=10,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT,
    )
    return 0


def _rate_limits_notice(workers: int, settings: Settings) -> str | None:
    """Several workers without Redis share the rate limits through the database: say so."""
    if workers <= 1 or settings.redis_url is not None:
        return None
    return (
        f"rate limits: the {workers} workers share them through the database, every 100 ms"
        " (THOTBOT_REDIS_URL is unset)"
    )


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    _services(settings)
    _say("database is up to date")
    return 0


def cmd_users_create(args: argparse.Namespace, settings: Settings) -> int:
    if not args.password_stdin:
        raise ValidationFailed("pass --password-stdin and give the password on standard input")
    password = sys.stdin.readline().rstrip("\r\n")
    check_new_password(password, args.email)
    services = _services(settings)
    account = services.users.create(args.email, hash_password(password), is_admin=args.admin)
    services.security_log.record(
        account.id, "account.created", actor="operator", detail="created with the CLI"
    )
    print(account.id)
    _say(f"created account {account.email}" + (" (admin)" if args.admin else ""))
    return 0


def cmd_users_reset_password(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    show_mail_log()  # Without THOTBOT_SMTP_URL the link goes to the log: show it on stderr.
    account = services.account_recovery.operator_reset(args.email)
    _say(f"mailed a password reset link to {account.email}; it works once, for 1 hour")
    return 0


def cmd_users_disable(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    account, ended, key_ids = services.account_recovery.disable(args.email)
    _say(
        f"disabled {account.email}: {ended} session(s) ended; its {len(key_ids)} key(s) and its "
        "sign-ins are refused (running servers refuse the keys within a second)"
    )
    return 0


def cmd_users_enable(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    account, changed = services.account_recovery.enable(args.email)
    _say(f"enabled {account.email}" if changed else f"{account.email} was not disabled")
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    name = tidy_key_name(args.name)
    problem = key_name_problem(name)
    if problem is not None:
        raise ValidationFailed(f"--name: {problem}")
    expires_at = parse_expiry(args.expires_at, utcnow(), field="--expires-at")
    services = _services(settings)
    account = services.users.get_by_email(args.user)
    show_mail_log()  # Without THOTBOT_SMTP_URL the notice goes to the log: show it on stderr.
    raw, record = services.key_lifecycle.create(
        account.id, name, Actor.operator(), expires_at=expires_at, read_only=args.read_only
    )
    print(raw)
    _say(f"created key {record.id} ({record.hint}) for {account.email}; it will not be shown again")
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    account = services.users.get_by_email(args.user)
    now = utcnow()
    records = services.keys.list_for_account(account.id)
    rows = [key_json(r, now) for r in records]
    if args.json:
        print(json.dumps({"keys": rows}, indent=2))
        return 0
    if not rows:
        _say(f"{account.email} has no keys")
        return 0
    header = (
        "ID",
        "NAME",
        "HINT",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATE",
        "RATE LIMIT",
        "LAST USER-AGENT",
    )
    table = [header] + [
        (
            str(r["id"]),
            str(r["name"]),
            str(r["hint"]),
            _short(r["created_at"]),
            _short(r["last_used_at"]) or "never",
            _short(r["expires_at"]) or "never",
            _state(record, now),
            record.rate_limit or "default",
            _clip(r["last_user_agent"]) or "-",
        )
        for r, record in zip(rows, records, strict=True)
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    change = services.key_lifecycle.revoke_as_operator(args.key_id)
    record = change.record
    if change.changed:
        _say(f"revoked {record.id} ({record.hint})")
    else:
        _say(f"{record.id} ({record.hint}) was already revoked")
    return 0


def cmd_keys_grant(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    record = services.key_lifecycle.grant(args.key_id, args.grant, Actor.operator()).record
    _say(f"granted {args.grant} to {record.id} ({record.hint})")
    return 0


def cmd_keys_allow(args: argparse.Namespace, settings: Settings) -> int:
    if args.any == bool(args.networks):
        raise ValidationFailed("give the networks (CIDRs or addresses) the key may be used from, or --any")
    services = _services(settings)
    change = services.key_lifecycle.allow_networks(args.key_id, args.networks, Actor.operator())
    record = change.record
    shown = ", ".join(record.allowed_networks) or "any address"
    if change.changed:
        _say(
            f"{record.id} ({record.hint}) may now be used from {shown};"
            " running servers apply it within a second"
        )
    else:
        _say(f"{record.id} ({record.hint}) could already be used from {shown}")
    return 0


def cmd_keys_limit(args: argparse.Namespace, settings: Settings) -> int:
    rate = None if args.rate.strip().lower() == "default" else args.rate
    services = _services(settings)
    change = services.key_lifecycle.set_rate_limit(args.key_id, rate, Actor.operator())
    record = change.record
    shown = record.rate_limit or f"the server's default ({settings.rate_limit})"
    if change.changed:
        _say(
            f"{record.id} ({record.hint}) is now limited to {shown}; running servers apply it within a second"
        )
    else:
        _say(f"{record.id} ({record.hint}) was already limited to {shown}")
    return 0


def cmd_integrations(args: argparse.Namespace, settings: Settings) -> int:
    if args.failing:
        return _failing_integrations(args, settings)
    if args.since is not None:
        return _fail("--since goes with --failing")
    services = _services(settings)
    try:
        keys, now = services.usage.integrations(), utcnow()
    finally:
        services.engine.dispose()
    if args.json:
        body = report.generic_json(keys, now) if args.generic else report.integrations_json(keys, now)
        print(json.dumps(body, indent=2))
        return 0
    lines = report.generic_lines(keys, now) if args.generic else report.integrations_lines(keys, now)
    if not lines:
        _say("no keys send only generic or missing User-Agents" if args.generic else "no usage recorded yet")
    for line in lines:
        print(line)
    return 0


def _failing_integrations(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since = failing.parse_since(args.since or "24h")
    except ValueError as exc:
        return _fail(str(exc))
    services = _services(settings)
    now = utcnow()
    # Whole hours, as the rows are kept: from the start of the hour that holds now - since.
    start = (now - since).replace(minute=0, second=0, microsecond=0)
    window = services.failing.window(start, now + timedelta(hours=1))
    keys = failing.failing_keys(window, now)
    if args.json:
        print(json.dumps(failing.failing_json(keys, start, now.replace(microsecond=0)), indent=2))
        return 0
    if not keys:
        _say(f"no key mostly failed since {start:%Y-%m-%d %H:%M} UTC")
    for line in failing.failing_lines(keys):
        print(line)
    return 0


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _state(record: KeyRecord, now: datetime) -> str:
    state = record.state(now)
    return revocation_phrase(record.revoked_reason, to_owner=False) if state == "revoked" else state


def _clip(value: object, width: int = 48) -> str:
    if not isinstance(value, str):
        return ""
    return value if len(value) <= width else value[: width - 1] + "…"


def _short(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thotbot", description="Operate the Thotbot API platform.")
    parser.add_argument("--version", action="version", version=f"thotbot {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="apply migrations, then serve the API and the dashboard")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(metavar="COMMAND", required=True)
    db.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)

    users = sub.add_parser("users", help="accounts").add_subparsers(metavar="COMMAND", required=True)
    create_user = users.add_parser("create", help="create an account")
    create_user.add_argument("email")
    create_user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    create_user.add_argument("--admin", action="store_true")
    create_user.set_defaults(func=cmd_users_create)
    reset = users.add_parser("reset-password", help="mail the account a password reset link")
    reset.add_argument("email")
    reset.set_defaults(func=cmd_users_reset_password)
    disable = users.add_parser("disable", help="end every session; refuse the account's keys and sign-ins")
    disable.add_argument("email")
    disable.set_defaults(func=cmd_users_disable)
    enable = users.add_parser("enable", help="undo disable: the account may sign in and use its keys again")
    enable.add_argument("email")
    enable.set_defaults(func=cmd_users_enable)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(metavar="COMMAND", required=True)
    create_key = keys.add_parser("create", help="create a key and print it once on stdout")
    create_key.add_argument("--user", required=True, metavar="EMAIL")
    create_key.add_argument("--name", required=True)
    create_key.add_argument("--expires-at", metavar="ISO8601")
    create_key.add_argument("--read-only", action="store_true")
    create_key.set_defaults(func=cmd_keys_create)
    list_keys = keys.add_parser("list", help="list an account's keys (never the keys themselves)")
    list_keys.add_argument("--user", required=True, metavar="EMAIL")
    list_keys.add_argument("--json", action="store_true")
    list_keys.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key; running servers refuse it within a second")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(func=cmd_keys_revoke)
    grant = keys.add_parser("grant", help="let one key call the restricted endpoints")
    grant.add_argument("key_id", metavar="KEY_ID")
    grant.add_argument("grant", metavar="GRANT", help="account:security")
    grant.set_defaults(func=cmd_keys_grant)
    allow = keys.add_parser(
        "allow", help="let a key be used only from these networks (CIDRs or addresses); --any lifts it"
    )
    allow.add_argument("key_id", metavar="KEY_ID")
    allow.add_argument(
        "networks", metavar="CIDR", nargs="*", help="such as 192.0.2.0/24, 2001:db8::/32, 198.51.100.7"
    )
    allow.add_argument("--any", action="store_true", help="any address again (clears the list)")
    allow.set_defaults(func=cmd_keys_allow)
    limit = keys.add_parser("limit", help="set a key's own rate limit, or `default` for THOTBOT_RATE_LIMIT")
    limit.add_argument("key_id", metavar="KEY_ID")
    limit.add_argument("rate", metavar="RATE", help="limits notation, such as 100/minute, or default")
    limit.set_defaults(func=cmd_keys_limit)

    integrations = sub.add_parser(
        "integrations", help="per account and key, each User-Agent seen: app, version, contact, counts"
    )
    integrations.add_argument("--json", action="store_true")
    integrations.add_argument(
        "--generic", action="store_true", help="only keys sending generic or missing User-Agents"
    )
    integrations.add_argument(
        "--failing",
        action="store_true",
        help="only keys whose requests mostly fail: who owns them, what fails, which program sends them",
    )
    integrations.add_argument(
        "--since", metavar="AGE", help="with --failing: the window, such as 30m, 24h (the default) or 7d"
    )
    integrations.set_defaults(func=cmd_integrations)

    # Listed here; `thotbot api ...` itself is parsed and run by thotbot.client._cli (see main).
    sub.add_parser("api", help="for API users: call the API with the key in THOTBOT_API_KEY")
    return parser
