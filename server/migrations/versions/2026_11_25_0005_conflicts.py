"""The conflict inbox: one row per time a record went into conflict, and its events.

Revision ID: 0005_conflicts
Revises: 0003_access
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_conflicts"
down_revision = "0003_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conflicts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("kinds", sa.String(200), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("heads", sa.Text, nullable=False),
        sa.Column("opened_at_ms", sa.BigInteger, nullable=False),
        sa.Column("opened_seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_seq", sa.BigInteger, nullable=False),
        sa.Column("resolved_at_ms", sa.BigInteger, nullable=True),
        sa.Column("resolved_seq", sa.BigInteger, nullable=True),
        sa.Column("resolved_by_device_id", sa.String(36), nullable=True),
        sa.Column("resolved_via", sa.String(16), nullable=True),
        sa.Column("resolved_changes", sa.Text, nullable=True),
    )
    op.create_index("ix_conflicts_status_opened", "conflicts", ["status", "opened_seq", "id"])
    op.create_index("ix_conflicts_record", "conflicts", ["collection", "record_id"])
    op.create_index(
        "ux_conflicts_open_record",
        "conflicts",
        ["collection", "record_id"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "conflict_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("conflict_id", sa.String(36), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("device_id", sa.String(36), nullable=True),
        sa.Column("heads", sa.Text, nullable=False),
    )
    op.create_index("ix_conflict_events_conflict_id", "conflict_events", ["conflict_id"])


def downgrade() -> None:
    op.drop_table("conflict_events")
    op.drop_table("conflicts")
