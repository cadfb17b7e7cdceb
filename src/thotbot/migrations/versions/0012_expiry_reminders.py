"""Expiry reminders: when each key's 7-day and 1-day reminder mails were claimed, and an index on
api_keys.expires_at for the reminders' query (keys expiring within 7 days).

Revision ID: 0012_expiry_reminders
Revises: 0011_request_log
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thotbot.migrations.types import UTCDateTime

revision = "0012_expiry_reminders"
down_revision = "0011_request_log"
branch_labels = None
depends_on = None

_COMMENT = "when the {} expiry reminder was claimed (or passed over); null = not yet"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("expiry_reminder_7d_at", UTCDateTime(), nullable=True, comment=_COMMENT.format("7-day"))
        )
        batch.add_column(
            sa.Column("expiry_reminder_1d_at", UTCDateTime(), nullable=True, comment=_COMMENT.format("1-day"))
        )
    op.create_index("ix_api_keys_expires_at", "api_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_expires_at", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expiry_reminder_1d_at")
        batch.drop_column("expiry_reminder_7d_at")
