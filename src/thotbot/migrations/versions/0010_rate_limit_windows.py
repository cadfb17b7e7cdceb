"""The API rate limits' counters, shared through the database by several workers or instances.

Revision ID: 0010_rate_limit_windows
Revises: 0009_security_log_actor
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_rate_limit_windows"
down_revision = "0009_security_log_actor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_windows",
        sa.Column(
            "bucket", sa.String(64), nullable=False, comment="key/<key id> or anon/<hashed client address>"
        ),
        sa.Column(
            "window_start",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="Unix seconds, a multiple of the period",
        ),
        sa.Column("expires_at", sa.BigInteger(), nullable=False, comment="Unix seconds: the window's end"),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name="pk_rate_limit_windows"),
    )
    op.create_index("ix_rate_limit_windows_expires_at", "rate_limit_windows", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_windows_expires_at", table_name="rate_limit_windows")
    op.drop_table("rate_limit_windows")
