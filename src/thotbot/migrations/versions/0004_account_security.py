"""Passkeys, pending WebAuthn challenges and pending email changes.

Revision ID: 0004_account_security
Revises: 0003_usage
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thotbot.migrations.types import UTCDateTime

revision = "0004_account_security"
down_revision = "0003_usage"
branch_labels = None
depends_on = None


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"], ["accounts.id"], name=f"fk_{table}_account_id_accounts", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "passkeys",
        sa.Column("id", sa.String(32), nullable=False, comment="not secret: shown and logged"),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(1023), nullable=False),
        sa.Column(
            "public_key", sa.LargeBinary(), nullable=False, comment="COSE_Key, as the authenticator sent it"
        ),
        sa.Column("sign_count", sa.BigInteger(), nullable=False, comment="the authenticator's counter"),
        sa.Column("transports", sa.String(255), nullable=False, comment="space-separated hints"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        _account_fk("passkeys"),
        sa.PrimaryKeyConstraint("id", name="pk_passkeys"),
        sa.UniqueConstraint("credential_id", name="uq_passkeys_credential_id"),
    )
    op.create_index("ix_passkeys_account_id", "passkeys", ["account_id"])
    op.create_table(
        "webauthn_challenges",
        sa.Column("id", sa.String(64), nullable=False, comment="random; handed to the client"),
        sa.Column("purpose", sa.String(16), nullable=False, comment="registration or authentication"),
        sa.Column("account_id", sa.String(32), nullable=True, comment="null for a passkey-only sign-in"),
        sa.Column("challenge", sa.LargeBinary(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        _account_fk("webauthn_challenges"),
        sa.PrimaryKeyConstraint("id", name="pk_webauthn_challenges"),
    )
    op.create_index("ix_webauthn_challenges_expires_at", "webauthn_challenges", ["expires_at"])
    op.create_table(
        "email_changes",
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False, comment="SHA-256 of a token"),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("new_email", sa.String(320), nullable=False, comment="normalised: lower case"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        _account_fk("email_changes"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_email_changes"),
    )
    op.create_index("ix_email_changes_account_id", "email_changes", ["account_id"])
    op.create_index("ix_email_changes_expires_at", "email_changes", ["expires_at"])


def downgrade() -> None:
    op.drop_table("email_changes")
    op.drop_table("webauthn_challenges")
    op.drop_table("passkeys")
