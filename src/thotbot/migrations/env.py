"""Alembic environment: runs against the connection thotbot.storage.migrate hands it.

The target is ``Base.metadata``, the whole schema: every table is declared in thotbot.storage.models.
The options below are also what Alembic's comparison (``check``, ``revision --autogenerate``) uses;
tests/storage/test_schema.py runs that comparison through this file against a freshly migrated
database, on SQLite and PostgreSQL, and requires it to find nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from thotbot.storage.models import Base, UTCDateTime


def render_item(kind: str, obj: Any, autogen: AutogenContext) -> str | Literal[False]:
    """A new revision uses the frozen copy of UTCDateTime in thotbot.migrations.types, not the live one."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        autogen.imports.add("from thotbot.migrations.types import UTCDateTime")
        return "UTCDateTime()"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    compare_server_default=True,
    render_as_batch=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
