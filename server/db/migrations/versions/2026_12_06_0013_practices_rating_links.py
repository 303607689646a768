"""One-time links a resident rates a finished request through, kept as the token's SHA-256.

Revision ID: 0013_practices_rating_links
Revises: 0012_desk_import_mappings
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_practices_rating_links"
down_revision = "0012_desk_import_mappings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rating_links",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("used_at_ms", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("rating_links")
