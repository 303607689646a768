"""Attachment links: which records name which photo, so a download is judged by the records.

Filled from the change log's photo adds and from the heads of the records' states (what a
compacted log keeps).

Revision ID: 0011_privacy_attachment_refs
Revises: 0010_access_enrolment_codes
Create Date: 2026-12-06
"""

from __future__ import annotations

import msgspec
import sqlalchemy as sa
from alembic import op

from schemas.collections import COLLECTIONS
from schemas.protocol import AddChange
from server.registry.attachment_refs import attachment_fields
from sync.merge import state_codec

revision = "0011_privacy_attachment_refs"
down_revision = "0010_access_enrolment_codes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachment_refs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "collection", "record_id", name="pk_attachment_refs"),
    )
    fields = attachment_fields(COLLECTIONS)
    if not fields:
        return
    changes = sa.table(
        "changes",
        sa.column("collection", sa.String),
        sa.column("record_id", sa.String),
        sa.column("field", sa.String),
        sa.column("op", sa.String),
        sa.column("value", sa.Text),
    )
    records = sa.table(
        "records", sa.column("collection", sa.String), sa.column("record_id", sa.String), sa.column("state")
    )
    bind = op.get_bind()
    found: set[tuple[str, str, str]] = set()
    for collection, field in sorted(fields):
        logged = sa.select(changes.c.record_id, changes.c.value).where(
            changes.c.collection == collection, changes.c.field == field, changes.c.op == "add"
        )
        for row in bind.execute(logged):
            value = msgspec.json.decode(row.value)
            if isinstance(value, str):
                found.add((value, collection, row.record_id))
    for collection in sorted({collection for collection, _ in fields}):
        query = sa.select(records.c.record_id, records.c.state).where(records.c.collection == collection)
        for row in bind.execute(query):
            for head in state_codec.decode(row.state).heads.values():
                if isinstance(head, AddChange) and (collection, head.field) in fields:
                    found.add((head.value, collection, row.record_id))
    if found:
        refs = sa.table(
            "attachment_refs",
            sa.column("sha256", sa.String),
            sa.column("collection", sa.String),
            sa.column("record_id", sa.String),
        )
        op.bulk_insert(refs, [{"sha256": s, "collection": c, "record_id": r} for s, c, r in sorted(found)])


def downgrade() -> None:
    op.drop_table("attachment_refs")
