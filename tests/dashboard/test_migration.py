from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import inspect

from thotbot.config import load_settings
from thotbot.services import build_services
from thotbot.storage.migrate import alembic_config, upgrade

TABLES = {"web_sessions", "used_form_tokens", "sign_in_throttle"}


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    services = build_services(load_settings(database_url=f"sqlite:///{tmp_path / 'm.db'}"))
    upgrade(services.engine)
    assert set(inspect(services.engine).get_table_names()) >= TABLES

    config = alembic_config()
    with services.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001_initial")
    assert not TABLES & set(inspect(services.engine).get_table_names())

    upgrade(services.engine)
    assert set(inspect(services.engine).get_table_names()) >= TABLES
    services.engine.dispose()


def test_0005_keeps_sessions_and_spent_form_tokens(tmp_path: Path) -> None:
    # On SQLite 0005 rebuilds web_sessions; the rebuild must not cascade to used_form_tokens.
    services = build_services(load_settings(database_url=f"sqlite:///{tmp_path / 'k.db'}"))
    upgrade(services.engine, "0004_account_security")
    with services.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO web_sessions (id, token_hash, csrf_secret, created_at, last_seen_at,"
            " idle_expires_at, expires_at) VALUES ('ses_1', x'00', 's', '2026-01-01 00:00:00',"
            " '2026-01-01 00:00:00', '2099-01-01 00:00:00', '2099-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO used_form_tokens (session_id, token, created_at)"
            " VALUES ('ses_1', 'tok', '2026-01-01 00:00:00')"
        )

    upgrade(services.engine)

    with services.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT id, passkey_id FROM web_sessions").all() == [
            ("ses_1", None)
        ]
        assert connection.exec_driver_sql("SELECT token FROM used_form_tokens").scalars().all() == ["tok"]
        assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    services.engine.dispose()
