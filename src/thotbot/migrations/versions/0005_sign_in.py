"""Sessions remember the passkey that signed them in, so removing it ends them.

Revision ID: 0005_sign_in
Revises: 0004_account_security
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sign_in"
down_revision = "0004_account_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite cannot add a named foreign key in place, so batch mode rebuilds the table; dropping
        # the old one deletes, by cascade, the spent form tokens that refer to it: keep them aside.
        op.execute("CREATE TEMPORARY TABLE saved_form_tokens AS SELECT * FROM used_form_tokens")
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(
            sa.Column("passkey_id", sa.String(32), nullable=True, comment="the passkey that signed it in")
        )
        batch.create_foreign_key(
            "fk_web_sessions_passkey_id_passkeys", "passkeys", ["passkey_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_web_sessions_passkey_id", ["passkey_id"])
    if sqlite:
        op.execute("INSERT OR IGNORE INTO used_form_tokens SELECT * FROM saved_form_tokens")
        op.execute("DROP TABLE saved_form_tokens")


def downgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_index("ix_web_sessions_passkey_id")
        batch.drop_constraint("fk_web_sessions_passkey_id_passkeys", type_="foreignkey")
        batch.drop_column("passkey_id")
