"""The Usage section of a key's page: requests per day as server-rendered SVG, and its User-Agents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from markupsafe import Markup

from thotbot.core import redaction
from thotbot.core.dates import utcnow
from thotbot.core.useragents import UAClass
from thotbot.dashboard.web import Visit, run
from thotbot.storage import KeyRecord
from thotbot.storage.usage import AgentUsage, KeyUsageSummary
from thotbot.usage.chart import requests_chart
from thotbot.usage.notice import DOCS_URL

__all__ = ["CHART_DAYS", "MAX_AGENTS", "AgentRow", "KeyUsagePanel", "key_usage", "panel", "redact"]

CHART_DAYS = 30
#: User-Agents listed on the page; the operator's `thotbot integrations` lists them all.
MAX_AGENTS = 50

_CLASS_LABELS = {
    UAClass.DESCRIPTIVE: "Descriptive",
    UAClass.GENERIC: "Generic",
    UAClass.BROWSER: "Browser-like",
    UAClass.MISSING: "Missing",
}
_CLASS_HINTS = {
    UAClass.GENERIC: "A library's default: we cannot tell who to contact.",
    UAClass.MISSING: "No User-Agent was sent: we cannot tell who to contact.",
}


def redact(text: str | None) -> str | None:
    # Stored User-Agents are redacted already (useragents.clean); rows written before that was so
    # are redacted here, so a client that put its key in its User-Agent never sees it on a page.
    return redaction.redact(text) if text else text


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class AgentRow:
    user_agent: str | None
    app: str | None
    version: str | None
    contact: str | None
    ua_class: str
    label: str
    #: Advice for a generic or missing User-Agent, else None.
    hint: str | None
    first_seen: datetime
    last_seen: datetime
    requests: int

    @classmethod
    def of(cls, agent: AgentUsage) -> AgentRow:
        return cls(
            user_agent=redact(agent.user_agent),
            app=redact(agent.app),
            version=redact(agent.version),
            contact=redact(agent.contact),
            ua_class=agent.ua_class.value,
            label=_CLASS_LABELS[agent.ua_class],
            hint=_CLASS_HINTS.get(agent.ua_class),
            first_seen=agent.first_seen,
            last_seen=agent.last_seen,
            requests=agent.requests,
        )


@dataclass(frozen=True, slots=True)
class KeyUsagePanel:
    chart: Markup
    start: date
    end: date
    total: int
    agents: tuple[AgentRow, ...]
    #: User-Agents not listed (past MAX_AGENTS), and their requests.
    more_agents: int
    more_requests: int
    unitemised: int
    retention_days: int
    recording: bool
    #: The key's last User-Agent, as the page may show it.
    last_user_agent: str | None = None
    docs_url: str = DOCS_URL
    days: int = CHART_DAYS

    @property
    def used(self) -> bool:
        return bool(self.total or self.agents or self.more_agents or self.unitemised)

    @property
    def summary(self) -> str:
        return f"{_plural(self.total, 'request')} in the last {self.days} days"

    @property
    def needs_better_agent(self) -> bool:
        return any(row.hint for row in self.agents)

    @property
    def more(self) -> str:
        return f"{_plural(self.more_agents, 'more User-Agent')} with {_plural(self.more_requests, 'request')}"


def panel(
    summary: KeyUsageSummary,
    today: date,
    *,
    retention_days: int,
    recording: bool,
    last_user_agent: str | None = None,
) -> KeyUsagePanel:
    """The section's content from the stored counts; pure."""
    start = today - timedelta(days=CHART_DAYS - 1)
    daily = {day: n for day, n in summary.daily.items() if start <= day <= today}
    shown = sum(agent.requests for agent in summary.agents)
    return KeyUsagePanel(
        chart=Markup(requests_chart(daily, end=today, days=CHART_DAYS)),  # noqa: S704 (the chart escapes its text)
        start=start,
        end=today,
        total=sum(daily.values()),
        agents=tuple(AgentRow.of(agent) for agent in summary.agents),
        more_agents=max(0, summary.agent_count - len(summary.agents)),
        more_requests=max(0, summary.agent_requests - shown),
        unitemised=summary.unitemised,
        retention_days=retention_days,
        recording=recording,
        last_user_agent=redact(last_user_agent),
    )


async def key_usage(visit: Visit, record: KeyRecord) -> KeyUsagePanel:
    today = utcnow().date()
    start = today - timedelta(days=CHART_DAYS - 1)
    key_id = record.id
    summary = await run(lambda: visit.services.usage.key_summary(key_id, start, max_agents=MAX_AGENTS))
    settings = visit.services.settings
    return panel(
        summary,
        today,
        retention_days=settings.usage_retention_days,
        recording=settings.usage_recording == "on",
        last_user_agent=record.last_user_agent,
    )
