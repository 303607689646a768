"""ID numbers at rest: sealed with the server's key before they are stored, opened at the edge.

An ID number is stored, in the change log and in the record's state alike, as a *sealed* string:
``gs1:<key id>:<masked form>:<ciphertext>``. The ciphertext is AES-SIV (RFC 5297, from the
``cryptography`` package) of the number, bound to its collection and field. AES-SIV is
deterministic: the same number seals to the same string under one key, so everything the push
path compares by value (a retried change answered ``duplicate``, two concurrent writes of the same
value that are no conflict, the digests of compacted changes) works on sealed values unchanged,
and only ID-number changes pay for the cipher, which is built once per key.

The masked form (``1101**********1234``) is what every role but the admins reads, so masking a
pulled change needs no key; admins' reads open the seal (``reveal``). docs/security.md states
the policy and how the key is provided.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import secrets
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from sqlalchemy import and_, not_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.collections import CollectionSpec
from server.db.engine import classify_database_error
from server.db.tables import changes, records
from server.settings import Settings
from sync.merge import state_codec

logger = logging.getLogger("gridsync")
# How often an app that started during an outage tries the key check again, in seconds.
_RECHECK_SECONDS = 5

__all__ = [
    "SEALED_PREFIX",
    "EncryptionKeyError",
    "Sealer",
    "check_stored_later",
    "default_key_file",
    "is_sealed",
    "load_sealer",
    "mask_text",
    "masked_form",
    "new_key",
    "prepare_stored",
    "reveal",
    "sealed_fields",
    "write_key_file",
]

SEALED_PREFIX = "gs1:"
_KEY_BYTES = 64  # AES-256-SIV
# Every sealer built in this process, by key id: a sealed value names the key that opens it.
_SEALERS: dict[str, Sealer] = {}


class EncryptionKeyError(RuntimeError):
    """The key is missing, malformed, or not the one the stored ID numbers were sealed with."""


def mask_text(value: str) -> str:
    """``110101199001011234`` -> ``1101**********1234``."""
    return value[:4] + "*" * (len(value) - 8) + value[-4:] if len(value) > 8 else "*" * len(value)


def sealed_fields(collections: Mapping[str, CollectionSpec]) -> frozenset[tuple[str, str]]:
    """The (collection, field) pairs stored sealed: the masked fields (ID numbers)."""
    return frozenset(
        (spec.name, field.name)
        for spec in collections.values()
        for field in spec.fields.values()
        if field.masked
    )


def new_key() -> str:
    """A fresh key, as ``GRIDSYNC_ENCRYPTION_KEY`` or a key file holds it (URL-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals and opens values of one key; one per process and key, made at start-up."""

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise EncryptionKeyError(
                f"the encryption key must be {_KEY_BYTES} bytes in URL-safe base64 (it is {len(key)}): "
                "make one with `gridsync key new`"
            )
        self._cipher = AESSIV(key)
        self.key_id = hashlib.sha256(b"gridsync-key-id" + key).hexdigest()[:8]
        self._head = f"{SEALED_PREFIX}{self.key_id}:"
        _SEALERS[self.key_id] = self

    def seal(self, collection: str, field: str, value: str) -> str:
        if value.startswith(SEALED_PREFIX):
            return value
        sealed = self._cipher.encrypt(value.encode(), [f"{collection}.{field}".encode()])
        token = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        return f"{self._head}{mask_text(value)}:{token}"

    def open(self, collection: str, field: str, value: str) -> str:
        token = value.rsplit(":", 1)[1]
        try:
            return self._cipher.decrypt(_b64decode(token), [f"{collection}.{field}".encode()]).decode()
        except (InvalidTag, binascii.Error, ValueError) as error:
            raise EncryptionKeyError(f"a sealed {collection}.{field} does not open with this key") from error


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def masked_form(value: str) -> str:
    """What a role without the right to the whole number reads of a sealed value."""
    return value.split(":", 3)[2]


def reveal(collection: str, field: str | None, value: Any) -> Any:
    """``value`` opened when it is sealed (for the roles that read ID numbers whole)."""
    if field is None or not is_sealed(value):
        return value
    key_id = value[len(SEALED_PREFIX) : len(SEALED_PREFIX) + 8]
    sealer = _SEALERS.get(key_id)
    if sealer is None:
        raise EncryptionKeyError(
            f"an ID number is sealed with key {key_id}, which this server was not given: "
            "set GRIDSYNC_ENCRYPTION_KEY (or GRIDSYNC_ENCRYPTION_KEY_FILE) to that key"
        )
    return sealer.open(collection, field, value)


def default_key_file(database_url: str) -> Path | None:
    """``<database file>.key`` for a SQLite database (what ``gridsync demo`` makes for a
    development database when no key is configured); None for PostgreSQL and in-memory."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).with_name(Path(url.database).name + ".key")


def load_sealer(settings: Settings) -> Sealer | None:
    """The sealer of the configured key: ``GRIDSYNC_ENCRYPTION_KEY``, else the file
    ``GRIDSYNC_ENCRYPTION_KEY_FILE`` names, else a SQLite database's ``<file>.key`` if it
    exists; None when there is no key at all."""
    raw = settings.encryption_key.strip()
    if not raw:
        path = Path(settings.encryption_key_file) if settings.encryption_key_file else None
        if path is None:
            path = default_key_file(settings.database_url)
            if path is None or not path.exists():
                return None
        try:
            raw = path.read_text().strip()
        except OSError as error:
            raise EncryptionKeyError(f"cannot read the encryption key file {path}: {error}") from error
    try:
        key = _b64decode(raw)
    except (binascii.Error, ValueError) as error:
        raise EncryptionKeyError(
            "the encryption key is not URL-safe base64: make one with `gridsync key new`"
        ) from error
    return Sealer(key)


def write_key_file(path: Path) -> None:
    """A new key in ``path``, readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(new_key() + "\n")


async def prepare_stored(
    engine: AsyncEngine, sealer: Sealer | None, collections: Mapping[str, CollectionSpec]
) -> int:
    """At start-up: refuse to serve ID numbers it cannot open (no key, or another key), and
    seal those still stored in plain text (a database from before sealing). Returns how many
    log rows it sealed."""
    pairs = sealed_fields(collections)
    if not pairs:
        return 0
    of_fields = [and_(changes.c.collection == c, changes.c.field == f) for c, f in sorted(pairs)]
    stored = select(changes.c.seq).where(changes.c.value != "null").limit(1)
    async with engine.begin() as connection:
        for condition in of_fields:
            if sealer is None:
                if (await connection.execute(stored.where(condition))).first() is not None:
                    raise EncryptionKeyError(
                        "the database holds ID numbers but no encryption key is configured: set "
                        "GRIDSYNC_ENCRYPTION_KEY or GRIDSYNC_ENCRYPTION_KEY_FILE (docs/security.md)"
                    )
                continue
            other_key = and_(
                changes.c.value.like(f'"{SEALED_PREFIX}%'),
                not_(changes.c.value.like(f'"{SEALED_PREFIX}{sealer.key_id}:%')),
            )
            if (await connection.execute(stored.where(condition, other_key))).first() is not None:
                raise EncryptionKeyError(
                    "the database's ID numbers were sealed with another key than the one "
                    "configured: start with the key they were sealed with"
                )
        if sealer is None:
            return 0
        return await _seal_plain(connection, sealer, pairs)


async def check_stored_later(
    engine: AsyncEngine, sealer: Sealer | None, collections: Mapping[str, CollectionSpec]
) -> None:
    """``prepare_stored`` for an app that started while its database was away (it answers 503
    meanwhile): tried every few seconds until the database answers. A key that does not fit
    then stops the process, as it stops a start with the database up."""
    while True:
        await asyncio.sleep(_RECHECK_SECONDS)
        try:
            await prepare_stored(engine, sealer, collections)
            return
        except EncryptionKeyError as error:
            logger.critical("%s; stopping", error)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except Exception as error:
            if classify_database_error(error) != "unavailable":
                raise


async def _seal_plain(connection: Any, sealer: Sealer, pairs: frozenset[tuple[str, str]]) -> int:
    import msgspec

    plain = and_(changes.c.value != "null", not_(changes.c.value.like(f'"{SEALED_PREFIX}%')))
    sealed_rows = 0
    touched: set[tuple[str, str]] = set()
    for collection, field in sorted(pairs):
        rows = (
            await connection.execute(
                select(changes.c.seq, changes.c.record_id, changes.c.value).where(
                    changes.c.collection == collection, changes.c.field == field, plain
                )
            )
        ).all()
        for row in rows:
            value = msgspec.json.decode(row.value)
            if isinstance(value, str):
                sealed = msgspec.json.encode(sealer.seal(collection, field, value)).decode()
                await connection.execute(update(changes).where(changes.c.seq == row.seq).values(value=sealed))
                sealed_rows += 1
                touched.add((collection, row.record_id))
    for collection, record_id in sorted(touched):
        key = and_(records.c.collection == collection, records.c.record_id == record_id)
        blob = (await connection.execute(select(records.c.state).where(key))).scalar_one_or_none()
        if blob is None:
            continue
        state = state_codec.decode(blob)
        for head_id, head in list(state.heads.items()):
            if (head.collection, head.field) in pairs and isinstance(head.value, str):
                state.heads[head_id] = msgspec.structs.replace(
                    head, value=sealer.seal(collection, head.field, head.value)
                )
        await connection.execute(update(records).where(key).values(state=state_codec.encode(state)))
    return sealed_rows
