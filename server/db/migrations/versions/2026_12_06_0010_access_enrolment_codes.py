"""One-time enrolment codes: a phone exchanges one for its device token (POST /v1/enrol).

Revision ID: 0010_access_enrolment_codes
Revises: 0007_records_fillfactor
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_access_enrolment_codes"
down_revision = "0007_records_fillfactor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrolment_codes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("used_at_ms", sa.BigInteger, nullable=True),
        sa.Column("device_id", sa.String(36), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("enrolment_codes")
