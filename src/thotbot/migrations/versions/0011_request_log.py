"""Each key's recent requests (the last 200 kept) and its requests per hour by endpoint and error code.

Revision ID: 0011_request_log
Revises: 0010_rate_limit_windows
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thotbot.migrations.types import BigID, UTCDateTime

revision = "0011_request_log"
down_revision = "0010_rate_limit_windows"
branch_labels = None
depends_on = None


def _key_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["key_id"], ["api_keys.id"], name=f"fk_{table}_key_id_api_keys", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "key_requests",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False, comment="when the request arrived"),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(512), nullable=False, comment="no query string; a key in it redacted"),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("code", sa.String(64), nullable=True, comment="the problem's code; null on success"),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("duration_us", sa.Integer(), nullable=False, comment="microseconds"),
        _key_fk("key_requests"),
        sa.PrimaryKeyConstraint("id", name="pk_key_requests"),
    )
    op.create_index("ix_key_requests_key_id_at", "key_requests", ["key_id", "at"])
    op.create_index("ix_key_requests_at", "key_requests", ["at"])
    op.create_table(
        "key_request_hours",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("hour", UTCDateTime(), nullable=False, comment="the hour's start, UTC"),
        sa.Column(
            "endpoint", sa.String(128), nullable=False, comment="method and route, e.g. GET /v1/keys/{id}"
        ),
        sa.Column("code", sa.String(64), nullable=False, comment="the problem's code; '' on success"),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=True, comment="the last one seen"),
        _key_fk("key_request_hours"),
        sa.PrimaryKeyConstraint("key_id", "hour", "endpoint", "code", name="pk_key_request_hours"),
    )
    op.create_index("ix_key_request_hours_hour", "key_request_hours", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_key_request_hours_hour", table_name="key_request_hours")
    op.drop_table("key_request_hours")
    op.drop_index("ix_key_requests_at", table_name="key_requests")
    op.drop_index("ix_key_requests_key_id_at", table_name="key_requests")
    op.drop_table("key_requests")
