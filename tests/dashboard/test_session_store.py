"""What the SQL session store keeps: the behaviour is in tests/storage/conformance/test_web_sessions.py."""

from __future__ import annotations

from tests.factories import make_user
from thotbot.services import Services
from thotbot.storage.web_sessions import hash_token


class TestSQLSessionStore:
    def test_create_returns_the_token_once_and_stores_its_hash(self, services: Services) -> None:
        store = services.web_sessions
        account = make_user(services)

        token, record = store.create(account.id, ip_address="192.0.2.1", user_agent="ua")

        assert record.account_id == account.id
        assert record.authenticated_at == record.created_at
        assert token not in repr(record)
        assert record.csrf_secret not in repr(record)
        with services.engine.connect() as connection:
            stored = connection.exec_driver_sql("SELECT token_hash FROM web_sessions").scalar_one()
        assert bytes(stored) == hash_token(token)
