"""The desk: each office's column mapping for importing its spreadsheets.

Revision ID: 0012_desk_import_mappings
Revises: 0011_privacy_attachment_refs
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_desk_import_mappings"
down_revision = "0011_privacy_attachment_refs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_mappings",
        sa.Column("office", sa.String(64), primary_key=True),
        sa.Column("collection", sa.String(64), primary_key=True),
        sa.Column("mapping", sa.Text, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("import_mappings")
