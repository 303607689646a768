"""The tables of a phone's own SQLite file: its changes (the outbox among them), the merged
records, and what it knows of the server (its cursor, the seqs a snapshot sent)."""

from __future__ import annotations

__all__ = ["LOCAL_SCHEMA"]

LOCAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    local_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    record_id TEXT NOT NULL,
    body BLOB NOT NULL,
    -- 'pending': made here, not yet acknowledged; 'synced'; 'rejected': refused by the server
    status TEXT NOT NULL,
    code TEXT,
    message TEXT
);
-- The outbox: only the changes still to push. Marking a pushed change synced takes it out of
-- this index, where an index of (status, local_seq) moved it within (a phone marks 500 a push).
DROP INDEX IF EXISTS ix_changes_pending;
CREATE INDEX IF NOT EXISTS ix_changes_outbox ON changes (local_seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS ix_changes_record ON changes (collection, record_id);
CREATE TABLE IF NOT EXISTS records (
    collection TEXT NOT NULL,
    record_id TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (collection, record_id)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Records a snapshot sent as written after its sync_cursor: their changes up to seq, pulled
-- again afterwards, are already in their states. Emptied once a pull is caught up.
CREATE TABLE IF NOT EXISTS snapshot_seqs (
    collection TEXT NOT NULL,
    record_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (collection, record_id)
);
"""
