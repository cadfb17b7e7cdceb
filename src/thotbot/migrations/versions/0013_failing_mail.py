"""Each account's choice of the daily mail about its failing integrations, and the day it was last sent.

Revision ID: 0013_failing_mail
Revises: 0012_expiry_reminders
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_failing_mail"
down_revision = "0012_expiry_reminders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column(
                "integration_mail",
                sa.Boolean(),
                nullable=False,
                server_default=sa.true(),
                comment="the daily mail about failing integrations; the owner may turn it off",
            )
        )
        batch.add_column(
            sa.Column(
                "integration_mail_sent_on",
                sa.Date(),
                nullable=True,
                comment="the UTC day the last such mail reported; claimed before sending",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("integration_mail_sent_on")
        batch.drop_column("integration_mail")
