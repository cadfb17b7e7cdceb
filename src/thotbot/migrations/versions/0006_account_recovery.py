"""Email verification, disabled accounts, single-use account links and action quotas.

Revision ID: 0006_account_recovery
Revises: 0005_sign_in
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thotbot.migrations.types import UTCDateTime

revision = "0006_account_recovery"
down_revision = "0005_sign_in"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column(
                "email_verified_at", UTCDateTime(), nullable=True, comment="null until its link is followed"
            )
        )
        batch.add_column(
            sa.Column(
                "disabled_at", UTCDateTime(), nullable=True, comment="set by the operator: no sign-in, no key"
            )
        )
    # Accounts made before verification existed were made by people who could already create keys.
    op.execute("UPDATE accounts SET email_verified_at = created_at")
    op.create_table(
        "account_tokens",
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False, comment="SHA-256 of a token"),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False, comment="verify_email or reset_password"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_account_tokens_account_id_accounts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_account_tokens"),
    )
    op.create_index("ix_account_tokens_account_id", "account_tokens", ["account_id"])
    op.create_index("ix_account_tokens_expires_at", "account_tokens", ["expires_at"])
    op.create_table(
        "quota_counts",
        sa.Column("bucket", sa.String(80), nullable=False, comment="kind:sha256-hex"),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_quota_counts"),
    )
    op.create_index("ix_quota_counts_window_started_at", "quota_counts", ["window_started_at"])


def downgrade() -> None:
    op.drop_table("quota_counts")
    op.drop_table("account_tokens")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("email_verified_at")
