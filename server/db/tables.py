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
    text,
)

__all__ = [
    "SCOPE_COLUMNS",
    "attachment_refs",
    "attachments",
    "audit_log",
    "changes",
    "compacted_changes",
    "conflict_events",
    "conflicts",
    "devices",
    "enrolment_codes",
    "import_mappings",
    "metadata",
    "records",
    "scope_moves",
    "sync_counter",
    "users",
]

metadata = MetaData()
SCOPE_COLUMNS = ("community_id", "grid_id", "building_id", "household_id")

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
    # Where the record sits in the community > grid > building > household tree, derived at
    # push time (server/access/places.py), so scoped reads are index range scans.
    *(Column(name, String(64), nullable=True) for name in SCOPE_COLUMNS),
    # The company a request is dispatched to: what a handler's phone reads by (server/access/policy.py).
    Column("company", String(200), nullable=True),
    PrimaryKeyConstraint("collection", "record_id", name="pk_records"),
    Index("ix_records_company", "company", "collection"),
    *(Index(f"ix_records_{name}", name, "collection", "record_id") for name in SCOPE_COLUMNS),
    # Every push rewrites the states it touches, usually of neighbouring records (a household
    # and its residents, a grid's households one after another). Half-full pages leave room for
    # the new row versions beside the old ones: PostgreSQL then updates in place (HOT) instead
    # of adding an entry to each of the six indexes for every rewritten state.
    postgresql_with={"fillfactor": 50},
)

# Photos and files, content-addressed: stored once per SHA-256, whoever uploads them.
attachments = Table(
    "attachments",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(100), nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# Which records name which attachment (a hazard's or a request's photos): an attachment is
# served only to a caller who may read one of them (server/registry/attachments.py).
attachment_refs = Table(
    "attachment_refs",
    metadata,
    Column("sha256", String(64), nullable=False),
    Column("collection", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    PrimaryKeyConstraint("sha256", "collection", "record_id", name="pk_attachment_refs"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    # JSON of server.access.principals.UserScope: the communities, grids and buildings assigned.
    Column("scope", Text, nullable=False),
    Column("password_hash", String(200), nullable=True),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until_ms", BigInteger, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("disabled_at_ms", BigInteger, nullable=True),
)

# A one-time enrolment code: a phone exchanges it once, before it expires, for a device token of
# ``user_id`` (POST /v1/enrol). Only the code's SHA-256 is kept.
enrolment_codes = Table(
    "enrolment_codes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("user_id", String(36), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("used_at_ms", BigInteger, nullable=True),
    Column("device_id", String(36), nullable=True),
)

# A credential: a phone's token (kind 'device') or an admin sign-in (kind 'session').
devices = Table(
    "devices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("user_id", String(36), nullable=True, index=True),
    Column("kind", String(16), nullable=False, server_default="device"),
    Column("expires_at_ms", BigInteger, nullable=True),
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

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor_user_id", String(36), nullable=True),
    Column("actor_name", String(200), nullable=True),
    Column("actor_device_id", String(36), nullable=True),
    Column("address", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=True),
    Column("community_id", String(64), nullable=True),
    Column("detail", Text, nullable=False),
    Index("ix_audit_log_action_at", "action", "at_ms"),
)

# The desk's imports (server/desk/imports.py): each office's column mapping per collection, so
# its spreadsheets import the same way every time. ``office`` is a community id ("" district-wide).
import_mappings = Table(
    "import_mappings",
    metadata,
    Column("office", String(64), primary_key=True),
    Column("collection", String(64), primary_key=True),
    Column("mapping", Text, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

# The conflict inbox (server/inbox/tracking.py): one row per time a record went into conflict. At most
# one open row per record; a resolved row stays as the record's conflict history.
conflicts = Table(
    "conflicts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("collection", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    # ",delete,field," : every kind present, comma-fenced so one LIKE finds a kind.
    Column("kinds", String(200), nullable=False),
    # JSON: the conflicting field names (``_deleted`` for delete-vs-edit), and the head ids.
    Column("fields", Text, nullable=False),
    Column("heads", Text, nullable=False),
    Column("opened_at_ms", BigInteger, nullable=False),
    Column("opened_seq", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("updated_seq", BigInteger, nullable=False),
    Column("resolved_at_ms", BigInteger, nullable=True),
    Column("resolved_seq", BigInteger, nullable=True),
    # The credential whose push closed it (a phone, or an admin's sign-in); join devices for the user.
    Column("resolved_by_device_id", String(36), nullable=True),
    Column("resolved_via", String(16), nullable=True),
    Column("resolved_changes", Text, nullable=True),
    Index("ix_conflicts_status_opened", "status", "opened_seq", "id"),
    Index("ix_conflicts_record", "collection", "record_id"),
    Index(
        "ux_conflicts_open_record",
        "collection",
        "record_id",
        unique=True,
        sqlite_where=text("status = 'open'"),
        postgresql_where=text("status = 'open'"),
    ),
)

# What happened to a conflict: opened, heads changed, resolved. Written in the push's transaction.
conflict_events = Table(
    "conflict_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("conflict_id", String(36), nullable=False, index=True),
    Column("event", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("device_id", String(36), nullable=True),
    Column("heads", Text, nullable=False),
)

# A record that changed place (scope columns or company), logged at the seq of the push that
# moved it: pull tells phones whose scope it left to drop it, and with it what is under it.
scope_moves = Table(
    "scope_moves",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False, index=True),
    Column("collection", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    # The scope column that holds the record's own id (what lies under it), if any.
    Column("level", String(32), nullable=True),
    Column("old_scope", Text, nullable=False),
    Column("new_scope", Text, nullable=False),
)
