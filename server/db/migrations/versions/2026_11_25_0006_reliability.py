"""Reliability: compaction floor, acknowledged pull cursors, ids of compacted changes.

Revision ID: 0006_reliability
Revises: 0005_conflicts
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_reliability"
down_revision = "0005_conflicts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_counter") as batch:
        batch.add_column(sa.Column("compacted_seq", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("acked_seq", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("acked_at_ms", sa.BigInteger, nullable=True))
    op.create_table(
        "compacted_changes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("compacted_changes")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("acked_at_ms")
        batch.drop_column("acked_seq")
    with op.batch_alter_table("sync_counter") as batch:
        batch.drop_column("compacted_seq")
