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
    _open_existing_conflicts()


def _open_existing_conflicts() -> None:
    """A database that already holds conflicts gets their inbox rows, opened now."""
    import time
    import uuid

    import msgspec

    from schemas.collections import COLLECTIONS
    from server.inbox.tracking import conflict_kinds, fenced, heads_by_key, record_conflicts
    from sync.merge import state_codec

    with_transitions = [
        name
        for name, spec in COLLECTIONS.items()
        if any(getattr(f, "transitions", None) for f in spec.fields.values())
    ]
    records = sa.table(
        "records",
        sa.column("collection", sa.String),
        sa.column("record_id", sa.String),
        sa.column("state", sa.LargeBinary),
        sa.column("conflict", sa.Boolean),
        sa.column("updated_seq", sa.BigInteger),
    )
    now = time.time_ns() // 1_000_000
    query = sa.select(records).where(sa.or_(records.c.conflict, records.c.collection.in_(with_transitions)))
    rows = []
    for row in op.get_bind().execute(query):
        spec = COLLECTIONS.get(row.collection)
        found = {} if spec is None else record_conflicts(state_codec.decode(row.state), spec)
        if not found:
            continue
        assert spec is not None
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "collection": row.collection,
                "record_id": row.record_id,
                "status": "open",
                "kinds": fenced(conflict_kinds(found, spec)),
                "fields": fenced(found),
                "heads": msgspec.json.encode(heads_by_key(found)).decode(),
                "opened_at_ms": now,
                "opened_seq": row.updated_seq,
                "updated_at_ms": now,
                "updated_seq": row.updated_seq,
            }
        )
    if rows:
        op.bulk_insert(sa.table("conflicts", *(sa.column(name) for name in rows[0])), rows)


def downgrade() -> None:
    op.drop_table("conflict_events")
    op.drop_table("conflicts")
