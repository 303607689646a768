"""The database schema, shared by the store and the migrations.

``changes`` is the immutable log, in server order (``seq``); ``records`` holds each record's
materialised merge state, so reads and snapshots never replay the log.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

__all__ = ["changes", "compacted_changes", "devices", "metadata", "records", "sync_counter"]

metadata = MetaData()

# One row. Taking it FOR UPDATE at the start of every push serialises writers, so seqs are
# handed out in commit order and a pull by ``seq > cursor`` can never skip a late commit.
sync_counter = Table(
    "sync_counter",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    # Changes when the database is restored, so cursors from another history are refused.
    Column("epoch", String(32), nullable=False),
    # Every change with a seq at or below this was compacted (only heads kept): a cursor below
    # it is answered 409 resync_required. 0 while nothing was ever compacted.
    Column("compacted_seq", BigInteger, nullable=False, server_default="0"),
)

changes = Table(
    "changes",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(36), nullable=False, unique=True),
    Column("collection", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("field", String(64), nullable=True),
    Column("op", String(8), nullable=False),
    Column("value", Text, nullable=False),
    Column("hlc", String(96), nullable=False),
    Column("pred", Text, nullable=False),
    Column("device_id", String(36), nullable=True),
    Column("received_at_ms", BigInteger, nullable=False),
    Index("ix_changes_record", "collection", "record_id"),
)

records = Table(
    "records",
    metadata,
    Column("collection", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("conflict", Boolean, nullable=False),
    Column("updated_seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("collection", "record_id", name="pk_records"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    Column("last_seen_at_ms", BigInteger, nullable=True),
    Column("clock_skew_ms", BigInteger, nullable=True),
    Column("clock_flagged_at_ms", BigInteger, nullable=True),
    # The last pull cursor (seq) the device sent as ``since``: it holds every change up to it.
    # Written at most once per ``ack_interval_ms`` per device; compaction stays below it.
    Column("acked_seq", BigInteger, nullable=True),
    Column("acked_at_ms", BigInteger, nullable=True),
)

# Ids of compacted change rows, with a digest of their content, so a phone that re-offers an
# old change after a resync is still answered ``duplicate`` (or ``id_reused``), never re-applied.
compacted_changes = Table(
    "compacted_changes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
)
