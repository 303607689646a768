"""Users, roles and scopes; credentials owned by users; the audit log; scope moves.

Revision ID: 0003_access
Revises: 0002_domain
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_access"
down_revision = "0002_domain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until_ms", sa.BigInteger, nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("disabled_at_ms", sa.BigInteger, nullable=True),
    )
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("user_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="device"))
        batch.add_column(sa.Column("expires_at_ms", sa.BigInteger, nullable=True))
        batch.create_index("ix_devices_user_id", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor_user_id", sa.String(36), nullable=True),
        sa.Column("actor_name", sa.String(200), nullable=True),
        sa.Column("actor_device_id", sa.String(36), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("community_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at_ms"])
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("company", sa.String(200), nullable=True))
        batch.create_index("ix_records_company", ["company", "collection"])
    op.create_table(
        "scope_moves",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("level", sa.String(32), nullable=True),
        sa.Column("old_scope", sa.Text, nullable=False),
        sa.Column("new_scope", sa.Text, nullable=False),
    )
    op.create_index("ix_scope_moves_seq", "scope_moves", ["seq"])


def downgrade() -> None:
    op.drop_table("scope_moves")
    with op.batch_alter_table("records") as batch:
        batch.drop_index("ix_records_company")
        batch.drop_column("company")
    op.drop_table("audit_log")
    with op.batch_alter_table("devices") as batch:
        batch.drop_index("ix_devices_user_id")
        batch.drop_column("expires_at_ms")
        batch.drop_column("kind")
        batch.drop_column("user_id")
    op.drop_table("users")
