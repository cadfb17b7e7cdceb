"""Failing integrations: the keys whose requests in a window mostly fail, who owns them, and which
program sends them. Pure: it reads a RequestWindow (storage/failing.py) and returns records, JSON,
text lines and the sentences of the daily mail.

"Mostly fail", in a window:

- a key refused as revoked or expired (``revoked_api_key``, ``expired_api_key``) that was used at
  all: one such request is enough, since nothing it sends can succeed any more;
- any other key with at least ``MIN_REQUESTS`` requests of which more than ``MIN_FAILED_SHARE``
  (half) failed, that is, were answered with a problem code (a refusal, ``rate_limited``, a 4xx or
  5xx of a route).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from thotbot.core.dates import iso
from thotbot.core.useragents import describe, parse
from thotbot.storage import KeyRecord
from thotbot.storage.failing import RequestWindow

__all__ = [
    "DEAD_KEY_CODES",
    "MIN_FAILED_SHARE",
    "MIN_REQUESTS",
    "FailingAgent",
    "FailingKey",
    "failing_json",
    "failing_keys",
    "failing_lines",
    "mail_line",
    "parse_since",
]

MIN_REQUESTS = 10
MIN_FAILED_SHARE = 0.5
#: A key refused with one of these can never succeed again: any use of it counts.
DEAD_KEY_CODES = frozenset({"revoked_api_key", "expired_api_key"})
TOP_CODES = 3
MAX_SINCE = timedelta(days=400)

_SINCE = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str) -> timedelta:
    """``30m``, ``24h``, ``7d``: a positive whole number of minutes, hours or days, at most 400 days."""
    match = _SINCE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"--since {value!r}: give a number and m, h or d, such as 30m, 24h or 7d")
    since = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if since > MAX_SINCE:
        raise ValueError(f"--since {value!r}: at most {MAX_SINCE.days}d")
    return since


@dataclass(frozen=True, slots=True)
class FailingAgent:
    user_agent: str | None
    app: str | None
    version: str | None
    contact: str | None
    requests: int
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class FailingKey:
    account_email: str
    key: KeyRecord
    #: active, revoked or expired, at the time of the report.
    state: str
    #: When it was revoked or expired (None while active).
    state_at: datetime | None
    requests: int
    failed: int
    #: The most frequent problem codes, most first, at most TOP_CODES.
    top_codes: tuple[tuple[str, int], ...]
    #: The endpoint with the most failed requests, and how many.
    top_endpoint: tuple[str, int]
    first_seen: datetime
    last_seen: datetime
    #: Busiest first.
    agents: tuple[FailingAgent, ...]

    @property
    def failed_share(self) -> float:
        return self.failed / self.requests if self.requests else 0.0


def failing_keys(
    window: RequestWindow,
    now: datetime,
    *,
    min_requests: int = MIN_REQUESTS,
    min_failed_share: float = MIN_FAILED_SHARE,
) -> list[FailingKey]:
    """The keys of ``window`` whose requests mostly fail (see the module), most failed requests first."""
    requests: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    codes: dict[str, Counter[str]] = {}
    endpoints: dict[str, Counter[str]] = {}
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for count in window.counts:
        key_id = count.key_id
        requests[key_id] += count.requests
        first[key_id] = min(first.get(key_id, count.first_seen), count.first_seen)
        last[key_id] = max(last.get(key_id, count.last_seen), count.last_seen)
        if count.code:
            failed[key_id] += count.requests
            codes.setdefault(key_id, Counter())[count.code] += count.requests
            endpoints.setdefault(key_id, Counter())[count.endpoint] += count.requests
    agents: dict[str, list[FailingAgent]] = {}
    for agent in window.agents:
        parsed = parse(agent.user_agent)
        agents.setdefault(agent.key_id, []).append(
            FailingAgent(
                agent.user_agent, parsed.app, parsed.version, parsed.contact, agent.requests, agent.last_seen
            )
        )
    report: list[FailingKey] = []
    for key_id, owner in window.owners.items():
        total, bad = requests[key_id], failed[key_id]
        key_codes = codes.get(key_id, Counter())
        dead = any(code in DEAD_KEY_CODES for code in key_codes)
        if not bad or not (dead or (total >= min_requests and bad > total * min_failed_share)):
            continue
        state = owner.key.state(now)
        report.append(
            FailingKey(
                account_email=owner.account_email,
                key=owner.key,
                state=state,
                state_at=owner.key.revoked_at
                if state == "revoked"
                else owner.key.expires_at
                if state == "expired"
                else None,
                requests=total,
                failed=bad,
                top_codes=tuple(sorted(key_codes.items(), key=lambda c: (-c[1], c[0]))[:TOP_CODES]),
                top_endpoint=sorted(endpoints[key_id].items(), key=lambda e: (-e[1], e[0]))[0],
                first_seen=first[key_id],
                last_seen=last[key_id],
                agents=tuple(sorted(agents.get(key_id, ()), key=lambda a: (-a.requests, a.user_agent or ""))),
            )
        )
    return sorted(report, key=lambda k: (-k.failed, -k.requests, k.account_email, k.key.id))


def failing_json(keys: Sequence[FailingKey], since: datetime, until: datetime) -> dict[str, object]:
    """The shape of ``thotbot integrations --failing --json`` (docs/OPERATING.md)."""
    return {
        "since": iso(since),
        "until": iso(until),
        "rule": {
            "min_requests": MIN_REQUESTS,
            "min_failed_share": MIN_FAILED_SHARE,
            "any_use_of": sorted(DEAD_KEY_CODES),
        },
        "keys": [
            {
                "account_id": k.key.account_id,
                "account_email": k.account_email,
                "key_id": k.key.id,
                "name": k.key.name,
                "hint": k.key.hint,
                "state": k.state,
                "state_at": iso(k.state_at),
                "requests": k.requests,
                "failed": k.failed,
                "failed_share": round(k.failed_share, 4),
                "top_codes": [{"code": code, "requests": n} for code, n in k.top_codes],
                "top_failing_endpoint": {"endpoint": k.top_endpoint[0], "requests": k.top_endpoint[1]},
                "first_seen": iso(k.first_seen),
                "last_seen": iso(k.last_seen),
                "user_agents": [
                    {
                        "user_agent": a.user_agent,
                        "app": a.app,
                        "version": a.version,
                        "contact": a.contact,
                        "requests": a.requests,
                        "last_seen": iso(a.last_seen),
                    }
                    for a in k.agents
                ],
            }
            for k in keys
        ],
    }


def failing_lines(keys: Sequence[FailingKey]) -> list[str]:
    """A block per key, for people: who, which key, what fails, which program sends it."""
    lines: list[str] = []
    for k in keys:
        state = k.state + (f" {_short(k.state_at)}" if k.state_at else "")
        lines.append(f"{k.account_email}  {k.key.id}  {k.key.name!r}  {k.key.hint}  {state}")
        lines.append(
            f"  {k.failed:,} of {k.requests:,} requests failed ({k.failed_share:.0%}), "
            f"first {_short(k.first_seen)}, last {_short(k.last_seen)}"
        )
        lines.append("  errors: " + ", ".join(f"{code} {n:,}" for code, n in k.top_codes))
        lines.append(f"  failing most: {k.top_endpoint[0]} ({k.top_endpoint[1]:,})")
        for a in k.agents:
            who = " ".join(p for p in (a.app, a.version) if p) or "-"
            contact = a.contact or "no contact"
            lines.append(
                f"  user-agent: {a.user_agent if a.user_agent is not None else '(none)'}"
                f"  [{who}; {contact}; {a.requests:,} requests]"
            )
        lines.append("")
    return lines[:-1]


def mail_line(k: FailingKey, now: datetime) -> str:
    """One sentence of the daily mail: "'nightly-sync' was revoked 3 days ago and was used 1,200
    times yesterday by nightly-sync 3.1". Only the parsed description of a User-Agent is shown, never
    the header itself (no markup, no pasted key, no line break reaches a mail)."""
    agent = describe(k.agents[0].user_agent) if k.agents else ""
    if k.state in ("revoked", "expired") and k.state_at is not None:
        by = f" by {agent}" if agent else ""
        times = "time" if k.requests == 1 else "times"
        verb = "was revoked" if k.state == "revoked" else "expired"
        return (
            f"{k.key.name!r} {verb} {_ago(k.state_at, now)} and was used {k.requests:,} {times} "
            f"yesterday{by}."
        )
    code = k.top_codes[0][0]
    by = f", sent by {agent}" if agent else ""
    return (
        f"{k.key.name!r}: {k.failed:,} of its {k.requests:,} requests failed yesterday "
        f"({k.failed_share:.0%}, mostly {code}){by}."
    )


def _ago(moment: datetime, now: datetime) -> str:
    days = (now - moment).days
    if days < 1:
        return "today" if moment.date() == now.date() else "yesterday"
    return "1 day ago" if days == 1 else f"{days:,} days ago"


def _short(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M")
