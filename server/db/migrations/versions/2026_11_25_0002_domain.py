"""Domain: scope columns on records (community, grid, building, household) and attachments.

Revision ID: 0002_domain
Revises: 0001_sync_core
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_domain"
down_revision = "0001_sync_core"
branch_labels = None
depends_on = None

SCOPE_COLUMNS = ("community_id", "grid_id", "building_id", "household_id")


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        for name in SCOPE_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(64), nullable=True))
    for name in SCOPE_COLUMNS:
        op.create_index(f"ix_records_{name}", "records", [name, "collection", "record_id"])
    op.create_table(
        "attachments",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("attachments")
    for name in SCOPE_COLUMNS:
        op.drop_index(f"ix_records_{name}", table_name="records")
    with op.batch_alter_table("records") as batch:
        for name in SCOPE_COLUMNS:
            batch.drop_column(name)
