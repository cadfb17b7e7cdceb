"""The security log folds repeated refusals into one row: how many times, and when the last was.

Revision ID: 0007_security_log
Revises: 0006_account_recovery
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thotbot.migrations.types import UTCDateTime

revision = "0007_security_log"
down_revision = "0006_account_recovery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("security_events") as batch:
        batch.add_column(
            sa.Column(
                "count",
                sa.Integer(),
                nullable=False,
                server_default="1",
                comment="how many times it happened; more than 1 for folded refusals",
            )
        )
        batch.add_column(
            sa.Column(
                "last_at", UTCDateTime(), nullable=True, comment="the last of a folded row; null if once"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("security_events") as batch:
        batch.drop_column("last_at")
        batch.drop_column("count")
