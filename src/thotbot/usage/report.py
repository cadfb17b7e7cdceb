"""The operator's integrations report: who uses which key with which client, and how to reach them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from thotbot.core.dates import iso
from thotbot.core.useragents import UAClass
from thotbot.storage.usage import AgentUsage, KeyAgents

__all__ = ["generic_json", "generic_lines", "integrations_json", "integrations_lines", "only_generic"]

_UNREACHABLE = (UAClass.GENERIC, UAClass.MISSING)
_HEADER = ("REQUESTS", "CLASS", "APP", "VERSION", "CONTACT", "FIRST SEEN", "LAST SEEN", "USER-AGENT")


def only_generic(keys: Sequence[KeyAgents]) -> list[KeyAgents]:
    """The keys whose every known User-Agent is a library default or missing."""
    return [k for k in keys if k.agents and all(a.ua_class in _UNREACHABLE for a in k.agents)]


def integrations_json(keys: Sequence[KeyAgents], now: datetime) -> dict[str, object]:
    return {
        "accounts": [
            {
                "id": group[0].key.account_id,
                "email": group[0].account_email,
                "requests": sum(k.requests for k in group),
                "keys": [_key_json(k, now) for k in group],
            }
            for group in _by_account(keys)
        ]
    }


def generic_json(keys: Sequence[KeyAgents], now: datetime) -> dict[str, object]:
    return {
        "keys": [
            {"account_id": k.key.account_id, "account_email": k.account_email, **_key_json(k, now)}
            for k in only_generic(keys)
        ]
    }


def integrations_lines(keys: Sequence[KeyAgents], now: datetime) -> list[str]:
    lines: list[str] = []
    for group in _by_account(keys):
        total = sum(k.requests for k in group)
        lines.append(f"{group[0].account_email} ({group[0].key.account_id}): {_requests(total)}")
        for entry in group:
            key = entry.key
            lines.append(f"  {key.id} {key.name!r} {key.hint} {key.state(now)}: {_requests(entry.requests)}")
            rows = [_HEADER, *(_agent_row(agent) for agent in entry.agents)]
            if entry.unitemised:
                rows.append(
                    (f"{entry.unitemised:,}", "-", "-", "-", "-", "-", "-", "(not itemised: over the cap)")
                )
            lines += ["    " + line for line in _table(rows)]
    return lines


def generic_lines(keys: Sequence[KeyAgents], now: datetime) -> list[str]:
    rows: list[tuple[str, ...]] = [("EMAIL", "KEY", "NAME", "STATE", "REQUESTS", "LAST USED", "USER-AGENTS")]
    for entry in only_generic(keys):
        agents = ", ".join(a.user_agent or "(none)" for a in entry.agents)
        rows.append(
            (
                entry.account_email,
                entry.key.id,
                entry.key.name,
                entry.key.state(now),
                f"{entry.requests:,}",
                _short(entry.key.last_used_at),
                agents,
            )
        )
    return _table(rows) if len(rows) > 1 else []


def _key_json(entry: KeyAgents, now: datetime) -> dict[str, object]:
    key = entry.key
    return {
        "id": key.id,
        "name": key.name,
        "hint": key.hint,
        "state": key.state(now),
        "last_used_at": iso(key.last_used_at),
        "last_user_agent": key.last_user_agent,
        "requests": entry.requests,
        "unitemised_requests": entry.unitemised,
        "user_agents": [_agent_json(agent) for agent in entry.agents],
    }


def _agent_json(agent: AgentUsage) -> dict[str, object]:
    return {
        "user_agent": agent.user_agent,
        "app": agent.app,
        "version": agent.version,
        "contact": agent.contact,
        "class": agent.ua_class.value,
        "first_seen": iso(agent.first_seen),
        "last_seen": iso(agent.last_seen),
        "requests": agent.requests,
    }


def _agent_row(agent: AgentUsage) -> tuple[str, ...]:
    return (
        f"{agent.requests:,}",
        agent.ua_class.value,
        agent.app or "-",
        agent.version or "-",
        agent.contact or "-",
        _short(agent.first_seen),
        _short(agent.last_seen),
        agent.user_agent if agent.user_agent is not None else "(none)",
    )


def _by_account(keys: Sequence[KeyAgents]) -> list[list[KeyAgents]]:
    """Accounts busiest first, each with its keys busiest first."""
    groups: dict[str, list[KeyAgents]] = {}
    for entry in sorted(keys, key=lambda k: (-k.requests, k.key.id)):
        groups.setdefault(entry.key.account_id, []).append(entry)
    return sorted(groups.values(), key=lambda g: (-sum(k.requests for k in g), g[0].account_email))


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _short(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"


def _requests(count: int) -> str:
    return f"{count:,} request" + ("" if count == 1 else "s")
