"""Sync core: change log, record states, the seq counter and devices.

Revision ID: 0001_sync_core
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0001_sync_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    counter = op.create_table(
        "sync_counter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("epoch", sa.String(32), nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "last_seq": 0, "epoch": uuid.uuid4().hex[:12]}])
    op.create_table(
        "changes",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("field", sa.String(64), nullable=True),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("hlc", sa.String(96), nullable=False),
        sa.Column("pred", sa.Text, nullable=False),
        sa.Column("device_id", sa.String(36), nullable=True),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_changes_record", "changes", ["collection", "record_id"])
    op.create_table(
        "records",
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("conflict", sa.Boolean, nullable=False),
        sa.Column("updated_seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("collection", "record_id", name="pk_records"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
        sa.Column("last_seen_at_ms", sa.BigInteger, nullable=True),
        sa.Column("clock_skew_ms", sa.BigInteger, nullable=True),
        sa.Column("clock_flagged_at_ms", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    for table in ("devices", "records", "changes", "sync_counter"):
        op.drop_table(table)
