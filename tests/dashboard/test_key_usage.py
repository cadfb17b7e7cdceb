"""A key's Usage section: the 30-day chart drawn on the server, the User-Agents seen, the empty state."""

from __future__ import annotations

import html
import re
from datetime import date, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from tests.dashboard.helpers import create_key, sign_up
from tests.factories import make_api_key
from thotbot.core.dates import utcnow
from thotbot.core.useragents import UAClass
from thotbot.dashboard.views.key_usage import panel, redact
from thotbot.services import Services
from thotbot.storage import KeyRecord, KeyUsage
from thotbot.storage.usage import AgentCount, AgentUsage, DayCount, KeyUsageSummary, UsageBatch
from thotbot.usage.notice import DOCS_URL

EMAIL = "usage@example.com"
DESCRIPTIVE = "acme-sync/2.3.1 (ops@acme.example)"
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
_ROW = re.compile(r'<tr class="agent-row ua-([a-z-]+)">(.*?)</tr>', re.DOTALL)
_CELL = re.compile(r'<td data-label="([^"]+)"[^>]*>(.*?)</td>', re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SVG = re.compile(r"<svg [^>]*>.*?</svg>", re.DOTALL)


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    sign_up(client, EMAIL)
    return client


def _key(services: Services, name: str = "billing server") -> KeyRecord:
    account = services.users.get_by_email(EMAIL)
    _, record = services.keys.create(account.id, name)
    return record


def _rows(page: str) -> list[tuple[str, dict[str, str]]]:
    """Each User-Agent row: its class, and each cell's text by its label."""
    rows = []
    for ua_class, body in _ROW.findall(page):
        cells = {
            label: " ".join(html.unescape(_TAG.sub(" ", text)).split()) for label, text in _CELL.findall(body)
        }
        rows.append((ua_class, cells))
    return rows


def _record_usage(services: Services, key_id: str, now: datetime) -> None:
    """A month and more of traffic from four clients, written through the real store."""
    today = now.date()
    earlier = now - timedelta(days=20)
    services.usage.write(
        UsageBatch(
            days=[
                DayCount(key_id, today - timedelta(days=45), 500),  # before the chart's 30 days
                DayCount(key_id, today - timedelta(days=20), 1_000),
                DayCount(key_id, today - timedelta(days=1), 200),
                DayCount(key_id, today, 40),
            ],
            agents=[
                AgentCount(key_id, DESCRIPTIVE, earlier, now, 1_234),
                AgentCount(key_id, "curl/8.5.0", now - timedelta(days=1), now, 5),
                AgentCount(key_id, BROWSER, now - timedelta(hours=3), now - timedelta(hours=2), 1),
                AgentCount(key_id, None, now - timedelta(days=45), now - timedelta(days=45), 500),
            ],
            last_used={key_id: KeyUsage(now, "curl/8.5.0")},
        )
    )


class TestUsageSection:
    def test_chart_counts_and_user_agents(self, signed_in: TestClient, services: Services) -> None:
        key = _key(services)
        now = utcnow()
        _record_usage(services, key.id, now)

        response = signed_in.get(f"/dashboard/api-keys/{key.id}")

        assert response.status_code == 200
        page = response.text
        assert "1,240 requests in the last 30 days" in page
        [svg] = _SVG.findall(page)
        start = now.date() - timedelta(days=29)
        label = f"Requests per day, {start} to {now.date()}: 1,240 requests, at most 1,000 on"
        assert 'role="img"' in svg
        assert f'aria-label="{label}' in svg
        assert f"<title>{label}" in svg
        assert svg.count("<rect ") == 30
        assert f"<title>{now.date()}: 40 requests</title>" in svg
        assert f"<title>{start}: 0 requests</title>" in svg
        assert 'class="usage-chart"' in svg

        rows = _rows(page)
        assert [ua_class for ua_class, _ in rows] == ["descriptive", "missing", "generic", "browser-like"]
        descriptive, missing, generic, browser = (cells for _, cells in rows)
        assert descriptive["App"] == f"acme-sync {DESCRIPTIVE}"
        assert (descriptive["Version"], descriptive["Contact"], descriptive["Class"]) == (
            "2.3.1",
            "ops@acme.example",
            "Descriptive",
        )
        assert descriptive["Requests"] == "1,234"
        assert descriptive["First seen"].startswith("20 days ago")
        assert descriptive["Last seen"].startswith("just now")
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", descriptive["First seen"])
        assert (generic["App"], generic["Version"], generic["Requests"]) == ("curl curl/8.5.0", "8.5.0", "5")
        assert generic["Class"].startswith("Generic A library's default")
        assert generic["Class"].endswith("Set a descriptive User-Agent")
        assert (missing["App"], missing["Contact"], missing["Requests"]) == (
            "— No User-Agent sent",
            "None",
            "500",
        )
        assert missing["Class"].startswith("Missing No User-Agent was sent")
        assert (browser["App"], browser["Version"], browser["Class"]) == (
            f"Chrome {BROWSER}",
            "126.0.0.0",
            "Browser-like",
        )
        assert page.count(f'<a href="{DOCS_URL}">Set a descriptive User-Agent</a>') == 2
        assert "Some requests have a generic or missing User-Agent" in page

    def test_only_descriptive_agents_get_no_advice(self, signed_in: TestClient, services: Services) -> None:
        key = _key(services)
        now = utcnow()
        services.usage.write(
            UsageBatch(
                days=[DayCount(key.id, now.date(), 1)],
                agents=[AgentCount(key.id, DESCRIPTIVE, now, now, 1)],
            )
        )

        page = signed_in.get(f"/dashboard/api-keys/{key.id}").text

        assert "1 request in the last 30 days" in page
        assert [ua_class for ua_class, _ in _rows(page)] == ["descriptive"]
        assert "generic or missing" not in page
        assert "Set a descriptive User-Agent</a>" not in page

    def test_requests_through_the_api_show_after_the_flush(
        self, signed_in: TestClient, services: Services
    ) -> None:
        raw, _ = create_key(signed_in, "ci runner")
        for user_agent in (DESCRIPTIVE, DESCRIPTIVE, "python-httpx/0.27.0"):
            headers = {"Authorization": f"Bearer {raw}", "User-Agent": user_agent}
            assert signed_in.get("/v1/version", headers=headers).status_code == 200
        signed_in.portal.call(services.usage_recorder.flush)  # type: ignore[union-attr]
        [record] = services.keys.list_for_account(services.users.get_by_email(EMAIL).id)

        listing = signed_in.get("/dashboard/api-keys").text
        page = signed_in.get(f"/dashboard/api-keys/{record.id}").text

        assert "python-httpx/0.27.0" in listing, "the list shows the last User-Agent"
        assert "Never used" not in listing
        assert "3 requests in the last 30 days" in page
        assert [(c, cells["Requests"]) for c, cells in _rows(page)] == [
            ("descriptive", "2"),
            ("generic", "1"),
        ]
        for shown in (listing, page):
            assert raw not in shown
            assert raw[8:] not in shown

    def test_empty_state(self, signed_in: TestClient, services: Services) -> None:
        key = _key(services)

        page = signed_in.get(f"/dashboard/api-keys/{key.id}").text

        assert ">Usage</h2>" in page
        assert "This key has not been used yet." in page
        assert f'<a href="{DOCS_URL}">About User-Agents</a>' in page
        assert "<svg" not in page
        assert 'class="agents"' not in page

    def test_used_before_the_retained_days(self, signed_in: TestClient, services: Services) -> None:
        key = _key(services)
        services.usage.write(
            UsageBatch(last_used={key.id: KeyUsage(utcnow() - timedelta(days=200), "old/1")})
        )

        page = signed_in.get(f"/dashboard/api-keys/{key.id}").text

        assert "No requests recorded in the last 90 days." in page
        assert "<svg" not in page

    def test_more_user_agents_than_listed(self, signed_in: TestClient, services: Services) -> None:
        key = _key(services)
        now = utcnow()
        agents = [AgentCount(key.id, f"app{i:02}/1.0 (a@example.com)", now, now, 100 - i) for i in range(53)]
        services.usage.write(
            UsageBatch(days=[DayCount(key.id, now.date(), 3_700, unitemised=7)], agents=agents)
        )

        page = signed_in.get(f"/dashboard/api-keys/{key.id}").text

        assert len(_rows(page)) == 50
        assert "And 3 more User-Agents with 147 requests, not listed here." in page  # 50 + 49 + 48
        assert "7 more requests came while too many different User-Agents were in use" in page

    def test_another_accounts_key_is_404(self, signed_in: TestClient, services: Services) -> None:
        _, theirs = make_api_key(services, name="theirs")
        now = utcnow()
        services.usage.write(
            UsageBatch(
                days=[DayCount(theirs.id, now.date(), 9)],
                agents=[AgentCount(theirs.id, "secret-partner/1.0 (cto@partner.example)", now, now, 9)],
            )
        )

        response = signed_in.get(f"/dashboard/api-keys/{theirs.id}")

        assert response.status_code == 404
        assert "secret-partner" not in response.text
        assert "<svg" not in response.text

    def test_a_key_sent_as_a_user_agent_is_not_shown(self, signed_in: TestClient, services: Services) -> None:
        raw, _ = create_key(signed_in, "careless")
        headers = {"Authorization": f"Bearer {raw}", "User-Agent": f"my-app/1.0 token={raw}"}
        assert signed_in.get("/v1/version", headers=headers).status_code == 200
        signed_in.portal.call(services.usage_recorder.flush)  # type: ignore[union-attr]
        [record] = services.keys.list_for_account(services.users.get_by_email(EMAIL).id)

        page = signed_in.get(f"/dashboard/api-keys/{record.id}").text

        assert "my-app/1.0 token=thot_ak_[redacted]" in page
        assert raw not in page
        assert raw[8:] not in page

    def test_the_usage_section_stays_on_a_form_error(self, signed_in: TestClient, services: Services) -> None:
        key = _key(services)
        _record_usage(services, key.id, utcnow())
        page = signed_in.get(f"/dashboard/api-keys/{key.id}").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token

        response = signed_in.post(
            f"/dashboard/api-keys/{key.id}/rename", data={"csrf_token": token.group(1), "name": ""}
        )

        assert response.status_code == 400
        assert "1,240 requests in the last 30 days" in response.text


def _agent(user_agent: str | None, ua_class: UAClass, requests: int, at: datetime) -> AgentUsage:
    return AgentUsage(user_agent, None, None, None, ua_class, at, at, requests)


class TestPanel:
    def test_counts_only_the_charts_days(self) -> None:
        today = date(2026, 5, 30)
        at = datetime(2026, 5, 30, tzinfo=utcnow().tzinfo)
        summary = KeyUsageSummary(
            daily={today - timedelta(days=30): 50, today - timedelta(days=29): 2, today: 1},
            agents=(_agent("a/1", UAClass.DESCRIPTIVE, 3, at),),
            agent_count=4,
            agent_requests=10,
        )

        result = panel(summary, today, retention_days=90, recording=True)

        assert (result.start, result.end, result.total) == (date(2026, 5, 1), today, 3)
        assert result.summary == "3 requests in the last 30 days"
        assert (result.more_agents, result.more_requests) == (3, 7)
        assert result.more == "3 more User-Agents with 7 requests"
        assert result.used
        assert not result.needs_better_agent

    def test_an_unused_key(self) -> None:
        result = panel(KeyUsageSummary({}, ()), date(2026, 5, 30), retention_days=90, recording=False)

        assert not result.used
        assert result.summary == "0 requests in the last 30 days"
        assert "0 requests" in result.chart

    @pytest.mark.parametrize(
        ("ua_class", "advised"),
        [
            (UAClass.DESCRIPTIVE, False),
            (UAClass.BROWSER, False),
            (UAClass.GENERIC, True),
            (UAClass.MISSING, True),
        ],
    )
    def test_advice_for_generic_and_missing(self, ua_class: UAClass, advised: bool) -> None:
        at = datetime(2026, 5, 30, tzinfo=utcnow().tzinfo)
        summary = KeyUsageSummary({}, (_agent("x/1", ua_class, 1, at),), 1, 1)

        result = panel(summary, date(2026, 5, 30), retention_days=90, recording=True)

        assert result.needs_better_agent is advised
        assert (result.agents[0].hint is not None) is advised

    def test_redact(self) -> None:
        assert redact(None) is None
        assert redact("acme/1.0") == "acme/1.0"
        assert redact("x THOT_AK_0123abc y") == "x thot_ak_[redacted] y"
