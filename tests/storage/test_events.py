from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.factories import make_user
from thotbot.services import Services


class TestSQLSecurityLog:
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
