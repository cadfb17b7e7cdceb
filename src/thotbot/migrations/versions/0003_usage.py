"""Usage: requests per key and day, each key's User-Agents, hashed client addresses, daily salts.

Revision ID: 0003_usage
Revises: 0002_dashboard
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thotbot.migrations.types import UTCDateTime

revision = "0003_usage"
down_revision = "0002_dashboard"
branch_labels = None
depends_on = None


def _key_id() -> sa.Column[str]:
    return sa.Column("key_id", sa.String(32), nullable=False)


def _key_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["key_id"], ["api_keys.id"], name=f"fk_{table}_key_id_api_keys", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "usage_days",
        _key_id(),
        sa.Column("day", sa.Date(), nullable=False, comment="UTC"),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column(
            "unitemised",
            sa.BigInteger(),
            nullable=False,
            comment="requests whose User-Agent was over the in-memory cap",
        ),
        _key_fk("usage_days"),
        sa.PrimaryKeyConstraint("key_id", "day", name="pk_usage_days"),
    )
    op.create_index("ix_usage_days_day", "usage_days", ["day"])
    op.create_table(
        "usage_agents",
        _key_id(),
        sa.Column("user_agent", sa.String(512), nullable=False, comment="'' when none was sent"),
        sa.Column("app", sa.String(64), nullable=True),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("contact", sa.String(254), nullable=True),
        sa.Column(
            "ua_class", sa.String(16), nullable=False, comment="descriptive, generic, browser-like, missing"
        ),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        _key_fk("usage_agents"),
        sa.PrimaryKeyConstraint("key_id", "user_agent", name="pk_usage_agents"),
    )
    op.create_index("ix_usage_agents_last_seen", "usage_agents", ["last_seen"])
    op.create_table(
        "usage_clients",
        _key_id(),
        sa.Column("day", sa.Date(), nullable=False, comment="UTC"),
        sa.Column(
            "client_hash",
            sa.LargeBinary(16),
            nullable=False,
            comment="keyed BLAKE2b of the address with the day's salt",
        ),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        _key_fk("usage_clients"),
        sa.PrimaryKeyConstraint("key_id", "day", "client_hash", name="pk_usage_clients"),
    )
    op.create_index("ix_usage_clients_day", "usage_clients", ["day"])
    op.create_table(
        "usage_salts",
        sa.Column("day", sa.Date(), nullable=False, comment="UTC"),
        sa.Column("salt", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_usage_salts"),
    )


def downgrade() -> None:
    op.drop_table("usage_salts")
    op.drop_table("usage_clients")
    op.drop_table("usage_agents")
    op.drop_table("usage_days")
