"""The security log's actor column gets the comment the model gives it (0001 left it out).

Revision ID: 0009_security_log_actor
Revises: 0008_web_secret
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_security_log_actor"
down_revision = "0008_web_secret"
branch_labels = None
depends_on = None

ACTOR = "session, key id, or 'operator'"


def _comment(comment: str | None, existing: str | None) -> None:
    # SQLite keeps no comments: there is nothing to change, and no reason to rebuild the table.
    if not op.get_bind().dialect.supports_comments:
        return
    op.alter_column(
        "security_events",
        "actor",
        existing_type=sa.String(128),
        existing_nullable=False,
        comment=comment,
        existing_comment=existing,
    )


def upgrade() -> None:
    _comment(ACTOR, None)


def downgrade() -> None:
    _comment(None, ACTOR)
