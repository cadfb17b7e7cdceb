"""Per-key IP allowlists and rate limits, set by the operator (`thotbot keys allow`, `keys limit`).

Revision ID: 0014_key_policies
Revises: 0013_failing_mail
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_key_policies"
down_revision = "0013_failing_mail"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without a default: SQLite adds them without rebuilding the table.
    op.add_column(
        "api_keys",
        sa.Column(
            "allowed_networks",
            sa.Text(),
            nullable=True,
            comment="normalised CIDRs, space-separated; null: any address",
        ),
    )
    op.add_column(
        "api_keys",
        sa.Column("rate_limit", sa.String(64), nullable=True, comment="limits notation; null: the default"),
    )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rate_limit")
        batch.drop_column("allowed_networks")
