"""Usage per key: counts per day, User-Agents, client addresses and last use, on every store backend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tests.factories import make_api_key, make_user
from thotbot.core.useragents import UAClass
from thotbot.services import Services
from thotbot.storage import KeyUsage
from thotbot.storage.usage import AgentCount, ClientCount, DayCount, UsageBatch

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DAY = date(2026, 5, 1)


def _batch(
    key_id: str, *, requests: int = 3, at: datetime = T0, user_agent: str | None = "acme/1.0"
) -> UsageBatch:
    return UsageBatch(
        days=[DayCount(key_id, at.date(), requests)],
        agents=[AgentCount(key_id, user_agent, at, at + timedelta(seconds=1), requests)],
        clients=[ClientCount(key_id, at.date(), b"\x01" * 16, requests)],
        last_used={key_id: KeyUsage(at + timedelta(seconds=1), user_agent)},
    )


class TestUsageStore:
    def test_write_adds_to_what_is_there(self, services: Services) -> None:
        _, key = make_api_key(services)

        services.usage.write(_batch(key.id, requests=3, at=T0))
        services.usage.write(_batch(key.id, requests=2, at=T0 - timedelta(hours=1)))

        assert services.usage.daily(key.id, DAY) == {DAY: 5}
        [agent] = services.usage.agents(key.id)
        assert agent.requests == 5
        assert agent.first_seen == T0 - timedelta(hours=1)
        assert agent.last_seen == T0 + timedelta(seconds=1)
        assert services.usage.distinct_clients(key.id, DAY) == 1

    def test_write_stores_the_parsed_user_agent(self, services: Services) -> None:
        _, key = make_api_key(services)

        services.usage.write(_batch(key.id, user_agent="acme-sync/2.3.1 (ops@acme.example)"))

        [agent] = services.usage.agents(key.id)
        assert (agent.user_agent, agent.app, agent.version, agent.contact, agent.ua_class) == (
            "acme-sync/2.3.1 (ops@acme.example)",
            "acme-sync",
            "2.3.1",
            "ops@acme.example",
            UAClass.DESCRIPTIVE,
        )

    def test_missing_and_blank_user_agents_are_one_row(self, services: Services) -> None:
        _, key = make_api_key(services)
        batch = UsageBatch(
            agents=[
                AgentCount(key.id, None, T0, T0, 1),
                AgentCount(key.id, "", T0, T0, 2),
                AgentCount(key.id, "  ", T0, T0, 4),
            ]
        )

        services.usage.write(batch)

        [agent] = services.usage.agents(key.id)
        assert (agent.user_agent, agent.ua_class, agent.requests) == (None, UAClass.MISSING, 7)

    def test_write_cleans_control_characters(self, services: Services) -> None:
        _, key = make_api_key(services)

        services.usage.write(_batch(key.id, user_agent="acme/1.0\x00\x1b[31m"))

        [agent] = services.usage.agents(key.id)
        assert agent.user_agent == "acme/1.0\ufffd\ufffd[31m"
        assert services.keys.get(key.id).last_user_agent == "acme/1.0\ufffd\ufffd[31m"

    def test_a_key_pasted_into_the_user_agent_is_not_kept_among_its_agents(self, services: Services) -> None:
        raw, record = make_api_key(services)

        services.usage.write(_batch(record.id, user_agent=f"acme/1.0 {raw}"))

        [agent] = services.usage.agents(record.id)
        assert agent.user_agent is not None
        assert agent.user_agent.startswith("acme/1.0 ")
        assert raw not in agent.user_agent
        assert raw[len("thot_ak_") :][4:-4] not in agent.user_agent

    def test_write_updates_last_used_only_forward(self, services: Services) -> None:
        _, key = make_api_key(services)

        services.usage.write(_batch(key.id, at=T0, user_agent="new/2"))
        services.usage.write(_batch(key.id, at=T0 - timedelta(minutes=5), user_agent="old/1"))

        record = services.keys.get(key.id)
        assert record.last_used_at == T0 + timedelta(seconds=1)
        assert record.last_user_agent == "new/2"

    def test_write_drops_rows_of_unknown_keys(self, services: Services) -> None:
        _, key = make_api_key(services)
        batch = UsageBatch(
            days=[DayCount(key.id, DAY, 1), DayCount("key_gone", DAY, 1)],
            agents=[AgentCount("key_gone", "x/1", T0, T0, 1)],
            clients=[ClientCount("key_gone", DAY, b"\x02" * 16, 1)],
            last_used={"key_gone": KeyUsage(T0, "x/1")},
        )

        services.usage.write(batch)

        assert services.usage.daily(key.id, DAY) == {DAY: 1}
        assert services.usage.daily("key_gone", DAY) == {}

    def test_write_of_many_rows_in_chunks(self, services: Services) -> None:
        _, key = make_api_key(services)
        agents = [AgentCount(key.id, f"app{i}/1.0", T0, T0, 1) for i in range(1_200)]

        services.usage.write(UsageBatch(agents=agents, days=[DayCount(key.id, DAY, 1_200)]))

        assert len(services.usage.agents(key.id)) == 1_200

    def test_a_batch_may_hold_the_same_row_twice(self, services: Services) -> None:
        # PostgreSQL refuses an INSERT ... ON CONFLICT DO UPDATE that meets one row twice: the
        # store merges such rows first, adding their counts.
        _, key = make_api_key(services)
        hour = timedelta(hours=1)
        batch = UsageBatch(
            days=[DayCount(key.id, DAY, 2, unitemised=1), DayCount(key.id, DAY, 3, unitemised=1)],
            agents=[
                AgentCount(key.id, "acme/1.0", T0, T0, 1),
                AgentCount(key.id, "  acme/1.0 ", T0 - hour, T0 - hour, 2),  # the same once cleaned
                AgentCount(key.id, "acme/1.0", T0 + hour, T0 + hour, 4),
            ],
            clients=[
                ClientCount(key.id, DAY, b"\x01" * 16, 1),
                ClientCount(key.id, DAY, b"\x01" * 16, 5),
                ClientCount(key.id, DAY, b"\x02" * 16, 1),
            ],
            last_used={key.id: KeyUsage(T0, "acme/1.0")},
        )

        services.usage.write(batch)
        services.usage.write(batch)  # and again, onto the rows the first one made

        summary = services.usage.key_summary(key.id, DAY)
        assert (summary.daily, summary.unitemised) == ({DAY: 10}, 4)
        [agent] = summary.agents
        assert (agent.user_agent, agent.requests) == ("acme/1.0", 14)
        assert (agent.first_seen, agent.last_seen) == (T0 - hour, T0 + hour)
        assert services.usage.distinct_clients(key.id, DAY) == 2

    def test_user_agents_are_stored_as_sent_whatever_their_punctuation(self, services: Services) -> None:
        # On PostgreSQL the rows travel as array literals: quotes, backslashes, commas, braces and
        # the word NULL must come back as they were sent.
        _, key = make_api_key(services)
        sent = [
            'acme/1.0 (ops@acme.example) "quoted", {braced}',
            "back\\slash\\ end\\",
            "NULL",
            "a,b",
            "}{",
            '"',
        ]
        agents = [AgentCount(key.id, ua, T0, T0, 1) for ua in sent]

        services.usage.write(UsageBatch(agents=agents, last_used={key.id: KeyUsage(T0, sent[0])}))

        stored = {a.user_agent: a for a in services.usage.agents(key.id)}
        assert set(stored) == set(sent)
        assert stored[sent[0]].contact == "ops@acme.example"
        assert services.keys.get(key.id).last_user_agent == sent[0]

    def test_daily_from_a_day_on(self, services: Services) -> None:
        _, key = make_api_key(services)
        days = [DayCount(key.id, DAY - timedelta(days=n), n + 1) for n in range(5)]

        services.usage.write(UsageBatch(days=days))

        assert services.usage.daily(key.id, DAY - timedelta(days=1)) == {DAY - timedelta(days=1): 2, DAY: 1}

    def test_key_summary(self, services: Services) -> None:
        _, key = make_api_key(services)
        _, other = make_api_key(services)
        services.usage.write(
            UsageBatch(
                days=[
                    DayCount(key.id, DAY - timedelta(days=40), 4),
                    DayCount(key.id, DAY - timedelta(days=1), 6, unitemised=1),
                    DayCount(key.id, DAY, 9, unitemised=2),
                    DayCount(other.id, DAY, 50),
                ],
                agents=[
                    AgentCount(key.id, "small/1", T0, T0, 2),
                    AgentCount(key.id, "big/1", T0, T0, 8),
                    AgentCount(key.id, None, T0, T0, 5),
                    AgentCount(other.id, "theirs/1", T0, T0, 50),
                ],
            )
        )

        summary = services.usage.key_summary(key.id, DAY - timedelta(days=29), max_agents=2)

        assert summary.daily == {DAY - timedelta(days=1): 6, DAY: 9}
        assert [a.user_agent for a in summary.agents] == ["big/1", None]
        assert (summary.agent_count, summary.agent_requests, summary.unitemised) == (3, 15, 3)

    def test_key_summary_of_an_unused_key(self, services: Services) -> None:
        _, key = make_api_key(services)

        summary = services.usage.key_summary(key.id, DAY)

        assert (summary.daily, summary.agents, summary.agent_count, summary.agent_requests) == ({}, (), 0, 0)
        assert summary.unitemised == 0

    def test_ensure_salts_gives_every_caller_the_same_salt(self, services: Services) -> None:
        first = services.usage.ensure_salts([DAY, DAY + timedelta(days=1)])
        again = services.usage.ensure_salts([DAY])

        assert again == {DAY: first[DAY]}
        assert len(first[DAY]) == 32
        assert first[DAY] != first[DAY + timedelta(days=1)]

    def test_prune(self, services: Services) -> None:
        _, key = make_api_key(services)
        old, recent = DAY - timedelta(days=100), DAY - timedelta(days=10)
        old_at = datetime(old.year, old.month, old.day, 12, tzinfo=UTC)
        services.usage.write(_batch(key.id, at=old_at, user_agent="old/1"))
        services.usage.write(_batch(key.id, at=T0 - timedelta(days=10), user_agent="recent/1"))
        yesterday = DAY - timedelta(days=1)
        services.usage.ensure_salts([old, yesterday, DAY])

        deleted = services.usage.prune(keep_since=DAY - timedelta(days=89), salts_since=yesterday)

        assert deleted == 4  # one day, one client, one agent and one salt
        assert services.usage.daily(key.id, old) == {recent: 3}
        assert [a.user_agent for a in services.usage.agents(key.id)] == ["recent/1"]
        assert services.usage.distinct_clients(key.id, old) == 0
        assert set(services.usage.ensure_salts([yesterday, DAY])) == {yesterday, DAY}

    def test_integrations_busiest_first(self, services: Services) -> None:
        quiet_user = make_user(services, "quiet@example.com")
        busy_user = make_user(services, "busy@example.com")
        _, quiet = make_api_key(services, quiet_user)
        _, busy = make_api_key(services, busy_user)
        _, unused = make_api_key(services, busy_user)
        services.usage.write(_batch(quiet.id, requests=1, user_agent="curl/8.5.0"))
        services.usage.write(
            UsageBatch(
                days=[DayCount(busy.id, DAY, 12, unitemised=2)],
                agents=[
                    AgentCount(busy.id, "small/1", T0, T0, 3),
                    AgentCount(busy.id, "big/1", T0, T0, 7),
                ],
            )
        )

        report = services.usage.integrations()

        assert [(k.account_email, k.key.id, k.requests) for k in report] == [
            ("busy@example.com", busy.id, 12),
            ("quiet@example.com", quiet.id, 1),
        ]
        assert [a.user_agent for a in report[0].agents] == ["big/1", "small/1"]
        assert report[0].unitemised == 2
        assert unused.id not in {k.key.id for k in report}

    def test_integrations_include_keys_with_only_unitemised_requests(self, services: Services) -> None:
        _, key = make_api_key(services)

        services.usage.write(UsageBatch(days=[DayCount(key.id, DAY, 5, unitemised=5)]))

        [entry] = services.usage.integrations()
        assert (entry.key.id, entry.agents, entry.requests) == (key.id, (), 5)


def _last_used(usage: dict[str, KeyUsage]) -> UsageBatch:
    return UsageBatch(last_used=usage)


class TestLastUsed:
    """Each key's last use and User-Agent, which the usage recorder flushes with its counts."""

    def test_last_used(self, services: Services) -> None:
        _, record = make_api_key(services)

        services.usage.write(_last_used({record.id: KeyUsage(T0, "acme/1.0")}))

        stored = services.keys.get(record.id)
        assert stored.last_used_at == T0
        assert stored.last_user_agent == "acme/1.0"

    def test_last_used_never_moves_backwards(self, services: Services) -> None:
        _, record = make_api_key(services)
        services.usage.write(_last_used({record.id: KeyUsage(T0, "new/2.0")}))

        services.usage.write(_last_used({record.id: KeyUsage(T0 - timedelta(minutes=5), "old/1.0")}))

        stored = services.keys.get(record.id)
        assert stored.last_used_at == T0
        assert stored.last_user_agent == "new/2.0"

    def test_last_used_moves_forwards(self, services: Services) -> None:
        _, record = make_api_key(services)
        services.usage.write(_last_used({record.id: KeyUsage(T0, "old/1.0")}))

        services.usage.write(_last_used({record.id: KeyUsage(T0 + timedelta(microseconds=1), None)}))

        stored = services.keys.get(record.id)
        assert stored.last_used_at == T0 + timedelta(microseconds=1)
        assert stored.last_user_agent is None

    def test_last_used_of_many_and_unknown_keys(self, services: Services) -> None:
        _, a = make_api_key(services)
        _, b = make_api_key(services)

        services.usage.write(
            _last_used(
                {
                    a.id: KeyUsage(T0, "a/1"),
                    b.id: KeyUsage(T0 + timedelta(seconds=1), "b/1"),
                    "key_missing": KeyUsage(T0, None),
                }
            )
        )
        services.usage.write(_last_used({}))

        assert services.keys.get(a.id).last_used_at == T0
        assert services.keys.get(b.id).last_used_at == T0 + timedelta(seconds=1)

    def test_last_used_is_not_a_key_change(self, services: Services) -> None:
        _, record = make_api_key(services)

        services.usage.write(_last_used({record.id: KeyUsage(T0, None)}))

        assert services.keys.latest_change() == 0

    def test_a_key_pasted_into_the_user_agent_is_not_stored(self, services: Services) -> None:
        raw, record = make_api_key(services)

        services.usage.write(_last_used({record.id: KeyUsage(T0, f"acme/1.0 {raw}")}))

        stored = services.keys.get(record.id).last_user_agent
        assert stored is not None
        assert stored.startswith("acme/1.0 ")
        assert raw not in stored
        assert raw[len("thot_ak_") :][4:-4] not in stored
