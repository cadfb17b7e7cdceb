"""`thotbot api version|me|keys [--json]`: for API users, this client with the key in THOTBOT_API_KEY.

The key is read from the environment only, never from an argument, where it would show in the
process list and the shell's history. It lives here, beside the client, rather than in thotbot.cli:
`thotbot api` (thotbot/__main__.py) loads only this package and httpx, not the server, so it starts
in a fraction of the time, and needs no database and no settings but THOTBOT_API_KEY and
THOTBOT_API_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from thotbot import __version__
from thotbot.client._errors import APIError, ThotbotClientError
from thotbot.client._sync import Client

__all__ = ["main"]

_COMMANDS = {
    "version": "the server's version (GET /v1/version)",
    "me": "the key in THOTBOT_API_KEY and its account (GET /v1/me)",
    "keys": "the account's keys, never the keys themselves (GET /v1/keys)",
}


def main(argv: Sequence[str]) -> int:
    """`thotbot api ...`, ``argv`` starting with "api"."""
    parser = argparse.ArgumentParser(prog="thotbot")
    _add_commands(parser.add_subparsers(metavar="COMMAND", required=True))
    return _run(parser.parse_args(argv))


def _add_commands(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base-url",
        metavar="URL",
        help="the server's address (default: THOTBOT_API_URL, else http://localhost:8000)",
    )
    common.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    api = sub.add_parser(
        "api",
        help="for API users: call the API with the key in THOTBOT_API_KEY",
        description="Call the Thotbot API with the key in the environment variable THOTBOT_API_KEY.",
    )
    commands = api.add_subparsers(metavar="COMMAND", required=True)
    for name, text in _COMMANDS.items():
        commands.add_parser(name, parents=[common], help=text, description=text).set_defaults(api=name)


def _run(args: argparse.Namespace) -> int:
    """Run one `thotbot api` command; an error is one line on stderr and exit status 1."""
    if not os.environ.get("THOTBOT_API_KEY", "").strip():
        return _fail(
            "set THOTBOT_API_KEY to your API key (create one on the dashboard under API Keys); "
            "it is never taken as an argument"
        )
    try:
        with Client(base_url=args.base_url, app="thotbot-cli", version=__version__) as client:
            if args.api == "version":
                version = client.version()
                _show(args, version.to_dict(), [f"Thotbot {version.version}, API {version.api}"])
            elif args.api == "me":
                me = client.me()
                _show(args, me.to_dict(), _me_lines(me.to_dict()))
            else:
                keys = [key.to_dict() for key in client.list_keys()]
                _show(args, {"keys": keys}, _key_table(keys))
    except APIError as exc:
        return _fail(f"{exc.code}: {exc.detail}")
    except ThotbotClientError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return 0


def _show(args: argparse.Namespace, body: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(body, indent=2))
        return
    for line in lines:
        print(line)


def _me_lines(me: dict[str, Any]) -> list[str]:
    account, key = me["account"], me["key"]
    rows = [
        ("account", f"{account['email']} (id {account['id']})"),
        ("key", f"{key['name']} (id {key['id']}, {key['hint']})"),
        ("access", "read-only" if key["read_only"] else "full"),
        ("state", key["state"] or "-"),
        ("created", _when(key["created_at"])),
        ("expires", _when(key["expires_at"]) or "never"),
        ("last used", _when(key["last_used_at"]) or "never"),
    ]
    return [f"{label + ':':<11}{value}" for label, value in rows]


def _key_table(keys: list[dict[str, Any]]) -> list[str]:
    header = ("ID", "NAME", "HINT", "CREATED", "LAST USED", "EXPIRES", "STATE", "ACCESS")
    table = [header] + [
        (
            str(k["id"]),
            str(k["name"]),
            str(k["hint"]),
            _when(k["created_at"]),
            _when(k["last_used_at"]) or "never",
            _when(k["expires_at"]) or "never",
            str(k["state"] or "-"),
            "read-only" if k["read_only"] else "full",
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]


def _when(value: str | None) -> str:
    """An API time as `2026-12-03 13:05 UTC`; nothing for None."""
    if value is None:
        return ""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fail(message: str) -> int:
    print(f"thotbot: error: {message}", file=sys.stderr)
    return 1
