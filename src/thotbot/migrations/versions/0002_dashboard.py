"""Dashboard sessions, spent one-time form tokens and the failed sign-in throttle.

Revision ID: 0002_dashboard
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thotbot.migrations.types import UTCDateTime

revision = "0002_dashboard"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(32), nullable=False, comment="not secret: shown and logged"),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False, comment="SHA-256 of the cookie"),
        sa.Column("account_id", sa.String(32), nullable=True, comment="null before sign-in"),
        sa.Column("csrf_secret", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("authenticated_at", UTCDateTime(), nullable=True, comment="last password or passkey proof"),
        sa.Column("idle_expires_at", UTCDateTime(), nullable=False, comment="never after expires_at"),
        sa.Column("expires_at", UTCDateTime(), nullable=False, comment="absolute end"),
        sa.Column("ip_address", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("flash", sa.Text(), nullable=True, comment="one-time notice; never a secret"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_web_sessions_account_id_accounts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),
    )
    op.create_index("ix_web_sessions_account_id", "web_sessions", ["account_id"])
    op.create_index("ix_web_sessions_idle_expires_at", "web_sessions", ["idle_expires_at"])
    op.create_table(
        "used_form_tokens",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["web_sessions.id"],
            name="fk_used_form_tokens_session_id_web_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "token", name="pk_used_form_tokens"),
    )
    op.create_table(
        "sign_in_throttle",
        sa.Column("bucket", sa.String(80), nullable=False, comment="kind:sha256-hex"),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", UTCDateTime(), nullable=False),
        sa.Column("blocked_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("bucket", name="pk_sign_in_throttle"),
    )
    op.create_index("ix_sign_in_throttle_last_failure_at", "sign_in_throttle", ["last_failure_at"])


def downgrade() -> None:
    op.drop_table("sign_in_throttle")
    op.drop_table("used_form_tokens")
    op.drop_table("web_sessions")
