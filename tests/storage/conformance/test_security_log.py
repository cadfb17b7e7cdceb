from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_user
from thotbot.services import Services
from thotbot.storage.security_log import parse_cursor


class TestSecurityLog:
    def test_record_and_list(self, services: Services) -> None:
        account = make_user(services)
        before = datetime.now(UTC)

        services.security_log.record(
            account.id,
            "key.revoked",
            actor="api_key:key_1",
            key_id="key_1",
            detail="revoked 'ci' (thot_ak_abcd…ef01) through the API",
            ip_address="192.0.2.7",
            user_agent="acme/1.0",
        )

        [event] = services.security_log.list_for_account(account.id)
        assert event.account_id == account.id
        assert event.action == "key.revoked"
        assert event.actor == "api_key:key_1"
        assert event.key_id == "key_1"
        assert event.detail == "revoked 'ci' (thot_ak_abcd…ef01) through the API"
        assert event.ip_address == "192.0.2.7"
        assert event.user_agent == "acme/1.0"
        assert event.created_at.tzinfo is not None
        assert event.created_at >= before - timedelta(seconds=1)

    def test_list_is_newest_first_and_limited(self, services: Services) -> None:
        account = make_user(services)
        for n in range(5):
            services.security_log.record(account.id, f"action.{n}", actor="operator")

        events = services.security_log.list_for_account(account.id, limit=3)

        assert [e.action for e in events] == ["action.4", "action.3", "action.2"]

    def test_list_holds_only_that_account(self, services: Services) -> None:
        mine, theirs = make_user(services), make_user(services)
        services.security_log.record(mine.id, "mine", actor="operator")
        services.security_log.record(theirs.id, "theirs", actor="operator")
        services.security_log.record(None, "nobody's", actor="operator")

        assert [e.action for e in services.security_log.list_for_account(mine.id)] == ["mine"]

    def test_defaults_and_truncation(self, services: Services) -> None:
        account = make_user(services)

        services.security_log.record(account.id, "ua.long", actor="operator", user_agent="x" * 5000)
        services.security_log.record(account.id, "ua.empty", actor="operator", user_agent="")

        events = {e.action: e for e in services.security_log.list_for_account(account.id)}
        long_ua, empty_ua = events["ua.long"], events["ua.empty"]
        assert long_ua.user_agent == "x" * 512
        assert empty_ua.user_agent is None
        assert empty_ua.detail == ""
        assert empty_ua.key_id is None
        assert empty_ua.ip_address is None


class TestFolding:
    def test_repeats_of_one_refusal_within_the_hour_are_one_row(self, services: Services) -> None:
        account = make_user(services)
        start = datetime.now(UTC)
        for n in range(105):
            services.security_log.record(
                account.id,
                "restricted.refused",
                actor="api_key:key_1",
                key_id="key_1",
                detail="PUT /v1/account/email refused: insufficient_scope",
                ip_address=f"192.0.2.{n % 3}",
                fold=True,
                now=start + timedelta(seconds=n),
            )

        [event] = services.security_log.list_for_account(account.id)
        assert event.count == 105
        assert event.created_at == start
        assert event.last_at == start + timedelta(seconds=104)
        assert event.ip_address == "192.0.2.2"  # the latest attempt's

    @pytest.mark.parametrize(
        ("change", "rows"),
        [
            ({}, 1),
            ({"detail": "DELETE /v1/account/passkeys/x refused: insufficient_scope"}, 2),
            ({"key_id": "key_2", "actor": "api_key:key_2"}, 2),
            ({"action": "email.change_refused"}, 2),
            ({"fold": False}, 2),
            ({"now": timedelta(hours=1, seconds=1)}, 2),
        ],
    )
    def test_only_the_same_refusal_by_the_same_key_in_the_hour_folds(
        self, services: Services, change: dict[str, object], rows: int
    ) -> None:
        account = make_user(services)
        start = datetime.now(UTC)
        first: dict[str, object] = {
            "actor": "api_key:key_1",
            "key_id": "key_1",
            "detail": "PUT /v1/account/email refused: insufficient_scope",
            "fold": True,
            "now": start,
        }
        change = dict(change)  # the parameter is shared by both backends' runs
        action = str(change.pop("action", "restricted.refused"))
        second = {**first, **change}
        if isinstance(second["now"], timedelta):
            second["now"] = start + second["now"]
        services.security_log.record(account.id, "restricted.refused", **first)  # type: ignore[arg-type]
        services.security_log.record(account.id, action, **second)  # type: ignore[arg-type]

        assert len(services.security_log.list_for_account(account.id)) == rows

    def test_other_accounts_never_fold_together(self, services: Services) -> None:
        mine, theirs = make_user(services), make_user(services)
        for account in (mine, theirs):
            services.security_log.record(account.id, "restricted.refused", actor="api_key:k", fold=True)

        assert [e.count for e in services.security_log.list_for_account(mine.id)] == [1]
        assert [e.count for e in services.security_log.list_for_account(theirs.id)] == [1]


class TestPaging:
    def test_pages_reach_the_oldest_and_come_back(self, services: Services) -> None:
        account = make_user(services)
        start = datetime.now(UTC) - timedelta(days=1)
        for n in range(7):
            services.security_log.record(
                account.id, f"a.{n}", actor="operator", now=start + timedelta(minutes=n)
            )

        first = services.security_log.page(account.id, limit=3)
        second = services.security_log.page(account.id, before=first.older, limit=3)
        third = services.security_log.page(account.id, before=second.older, limit=3)
        back = services.security_log.page(account.id, after=third.newer, limit=3)

        assert [e.action for e in first.events] == ["a.6", "a.5", "a.4"]
        assert first.newer is None
        assert [e.action for e in second.events] == ["a.3", "a.2", "a.1"]
        assert [e.action for e in third.events] == ["a.0"]
        assert third.older is None
        assert [e.action for e in back.events] == ["a.3", "a.2", "a.1"]
        assert back.newer is not None
        assert back.older is not None
        newest = services.security_log.page(account.id, after=back.newer, limit=3)
        assert [e.action for e in newest.events] == ["a.6", "a.5", "a.4"]
        assert newest.newer is None

    def test_same_time_events_are_ordered_by_id(self, services: Services) -> None:
        account = make_user(services)
        moment = datetime.now(UTC)
        for n in range(4):
            services.security_log.record(account.id, f"a.{n}", actor="operator", now=moment)

        first = services.security_log.page(account.id, limit=2)
        second = services.security_log.page(account.id, before=first.older, limit=2)

        assert [e.action for e in first.events + second.events] == ["a.3", "a.2", "a.1", "a.0"]

    def test_a_cursor_round_trips_through_its_text(self, services: Services) -> None:
        account = make_user(services)
        for n in range(3):
            services.security_log.record(account.id, f"a.{n}", actor="operator")
        older = services.security_log.page(account.id, limit=1).older
        assert older is not None

        assert parse_cursor(str(older)) == older

    @pytest.mark.parametrize(
        "text", ["", "x", "1", "1.", ".1", "-1.2", "1.2.3", "9" * 70, "１.2", "99999999999999999999.1"]
    )
    def test_a_bad_cursor_is_none(self, text: str) -> None:
        assert parse_cursor(text) is None


class TestRetention:
    def test_prune_deletes_only_events_past_the_retention(self, services: Services) -> None:
        account = make_user(services)
        now = datetime.now(UTC)
        services.security_log.record(account.id, "old", actor="operator", now=now - timedelta(days=401))
        services.security_log.record(account.id, "kept", actor="operator", now=now - timedelta(days=399))
        # A folded row whose last repeat is recent is kept, even if its first is old.
        for at in (now - timedelta(days=400, minutes=30), now - timedelta(days=399, hours=23, minutes=50)):
            services.security_log.record(account.id, "folded", actor="api_key:k", fold=True, now=at)

        assert services.security_log.prune(400, now=now) == 1

        assert sorted(e.action for e in services.security_log.list_for_account(account.id)) == [
            "folded",
            "kept",
        ]
        assert services.security_log.prune(400, now=now) == 0
