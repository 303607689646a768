"""An import's scratch space, so one pass over the file both checks every row and keeps what to
write: a private temporary SQLite database (on disk, removed when closed; SQLite keeps at most its
page cache in memory) holding

* the keys the file's rows have named so far (each record id and ID number with its row), so a
  record or an ID number on a second row is found whatever the distance between the two, and
* each chunk's plan (record id, the fields to write, the heads read), written out only once the
  whole file was read and no row was wrong.

Memory follows the chunk, not the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import msgspec

__all__ = ["Planned", "Spool"]

# One row's plan: (record id, field -> value to write, field -> the heads read).
Planned = tuple[str, dict[str, Any], dict[str, list[str]]]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[str, dict[str, Any], dict[str, list[str]]]])


class Spool:
    """Keys seen and plans kept by one import; a context manager that drops them all on exit."""

    def __init__(self) -> None:
        # "" opens a private temporary database on disk, deleted when the connection closes.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE seen (kind TEXT NOT NULL, key TEXT NOT NULL, row INTEGER NOT NULL,
                               PRIMARY KEY (kind, key)) WITHOUT ROWID;
            CREATE TABLE plan (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
            """
        )
        # One transaction, never committed: pages leave the cache only when it is full.
        self._db.execute("BEGIN")
        self.rows = 0  # rows kept to write

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._db.close()

    def claim(self, kind: str, named: list[tuple[str, int]]) -> dict[int, int]:
        """Each (key, row) of a chunk, in the file's order, kept as the row naming ``key`` (of
        ``kind``: "id", "id_number"); the rows whose key an earlier row named, with that row."""
        keys = msgspec.json.encode(sorted({key for key, _ in named})).decode()
        held: dict[str, int] = dict(
            self._db.execute(
                "SELECT key, row FROM seen WHERE kind = ? AND key IN (SELECT value FROM json_each(?))",
                (kind, keys),
            )
        )
        again: dict[int, int] = {}
        new: list[tuple[str, str, int]] = []
        for key, row in named:
            earlier = held.setdefault(key, row)
            if earlier != row:
                again[row] = earlier
            else:
                new.append((kind, key, row))
        self._db.executemany("INSERT INTO seen (kind, key, row) VALUES (?, ?, ?)", new)
        return again

    def keep(self, planned: list[Planned]) -> None:
        """One chunk's plan, to write once the whole file is checked."""
        if planned:
            self._db.execute("INSERT INTO plan (body) VALUES (?)", (_encoder.encode(planned),))
            self.rows += len(planned)

    def kept(self) -> Iterator[list[Planned]]:
        """The chunks' plans in the file's order."""
        for (body,) in self._db.execute("SELECT body FROM plan ORDER BY seq"):
            yield _decoder.decode(body)
