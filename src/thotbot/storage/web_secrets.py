"""SQLWebSecretStore: random keys made once in the database, so every instance signs alike.

`make run` needs no secret configured, and a second instance, or a restart, verifies what the
first signed: the first instance to ask creates the key, and every one after reads it.
"""

from __future__ import annotations

import secrets
import threading

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite

from thotbot.core.dates import utcnow
from thotbot.storage import WebSecretStore
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import WebSecret

__all__ = ["SQLWebSecretStore", "SharedKey"]

_KEY_BYTES = 32


class SQLWebSecretStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def ensure(self, name: str) -> bytes:
        """The key called ``name``, created if it is missing; instances racing all get the same one."""
        table = WebSecret.__table__
        assert isinstance(table, Table)
        row = {"name": name, "secret": secrets.token_bytes(_KEY_BYTES), "created_at": utcnow()}
        with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
            session.execute(insert.values(row).on_conflict_do_nothing(index_elements=["name"]))
            return bytes(session.scalars(select(WebSecret.secret).where(WebSecret.name == name)).one())


class SharedKey:
    """One named key, read from the database once per process and then kept in memory."""

    def __init__(self, store: WebSecretStore, name: str) -> None:
        self._store = store
        self._name = name
        self._lock = threading.Lock()
        #: None until loaded; then the key, which never changes while the process runs.
        self.cached: bytes | None = None

    def __repr__(self) -> str:
        return f"SharedKey({self._name!r})"

    def get(self) -> bytes:
        """The key (blocking the first time: call it off the event loop)."""
        if self.cached is None:
            with self._lock:
                if self.cached is None:
                    self.cached = self._store.ensure(self._name)
        return self.cached
