"""The web app's signing keys, shared by every instance (signed double-submit CSRF, flashes).

Revision ID: 0008_web_secret
Revises: 0007_security_log
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_web_secret"
down_revision = "0007_security_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_secrets",
        sa.Column("name", sa.String(32), nullable=False, comment="what the key signs"),
        sa.Column("secret", sa.LargeBinary(32), nullable=False, comment="never shown or logged"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_web_secrets"),
    )


def downgrade() -> None:
    op.drop_table("web_secrets")
