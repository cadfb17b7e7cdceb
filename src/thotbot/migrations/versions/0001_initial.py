"""Accounts, API keys, key change events and the security log.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thotbot.migrations.types import BigID, UTCDateTime

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, comment="normalised: lower case"),
        sa.Column("password_hash", sa.String(255), nullable=True, comment="argon2id"),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("email", name="uq_accounts_email"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False, comment="not secret"),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(32), nullable=False, comment="SHA-256 of the key"),
        sa.Column("hint", sa.String(32), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("grants", sa.String(255), nullable=False, comment="space-separated grants"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_reason", sa.String(64), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("last_user_agent", sa.String(512), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_api_keys_account_id_accounts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_account_id", "api_keys", ["account_id"])
    op.create_table(
        "key_events",
        sa.Column("seq", BigID, autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_key_events"),
    )
    op.create_table(
        "security_events",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(32), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("ip_address", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_security_events_account_id_accounts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_security_events"),
    )
    op.create_index("ix_security_events_account_created", "security_events", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_table("security_events")
    op.drop_table("key_events")
    op.drop_table("api_keys")
    op.drop_table("accounts")
