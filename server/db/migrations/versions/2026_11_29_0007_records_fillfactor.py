"""Records: half-full pages on PostgreSQL, so rewritten states stay on their page (HOT updates).

Existing pages keep their rows; new and rewritten rows follow the setting. SQLite has no such
setting and is left alone.

Revision ID: 0007_records_fillfactor
Revises: 0006_reliability
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0007_records_fillfactor"
down_revision = "0006_reliability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE records SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE records RESET (fillfactor)")
