"""Personal data (docs/security.md, Personal data): ID numbers sealed at rest and masked on
every read by role, sensitive tags and health notes kept from volunteers and building leaders,
photos served only through a readable record and without their EXIF, and a resident erased on
request. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from PIL import Image
from sqlalchemy import select, text

from server.access.personal import EncryptionKeyError
from server.access.principals import UserScope
from server.app import create_app
from server.cli import main
from server.db.engine import create_engine
from server.db.tables import audit_log, changes, records
from server.settings import Settings
from sync.client import Replica
from sync.merge import state_codec
from tests.factories import bearer, create_user, enroll_user, photo, sign_in

Client = TestClient  # type: ignore[type-arg]
ID_NUMBER = "110101195001011234"
CHILD_ID_NUMBER = "11010120200202567X"
MASKED = "1101**********1234"

# Two communities; h1 in building b1 of grid g1 holds the sensitive data.
TREE: list[tuple[str, str, dict[str, Any]]] = [
    ("communities", "c1", {"name": "Xingfu"}),
    ("communities", "c2", {"name": "Heping"}),
    ("grids", "g1", {"community_id": "c1", "name": "Grid 1"}),
    ("grids", "g2", {"community_id": "c2", "name": "Grid 2"}),
    ("buildings", "b1", {"grid_id": "g1", "name": "Building 1"}),
    ("buildings", "b2", {"grid_id": "g2", "name": "Building 2"}),
    (
        "households",
        "h1",
        {
            "building_id": "b1",
            "address": "B1 U1 101",
            "tags": ["elderly-alone", "five-guarantee", "empty-nest"],
            "notes": "diabetic, insulin in the fridge",
        },
    ),
    ("households", "h2", {"building_id": "b2", "address": "B2 U1 101"}),
    (
        "residents",
        "r1",
        {
            "household_id": "h1",
            "name": "Wang Fang",
            "id_number": ID_NUMBER,
            "tags": ["disability", "volunteer"],
            "notes": "wheelchair user",
        },
    ),
    ("residents", "r2", {"household_id": "h1", "name": "Wang Xiao", "id_number": CHILD_ID_NUMBER}),
    ("checkins", "k1", {"household_id": "h1", "day": "2026-11-25", "signal": True, "notes": "dizzy today"}),
]
HIDDEN_TEXT = ("elderly-alone", "five-guarantee", "disability", "diabetic", "wheelchair", "dizzy")


def _write(phone: Replica, tree: list[tuple[str, str, dict[str, Any]]]) -> None:
    for collection, record_id, fields in tree:
        for name, value in fields.items():
            for element in value if isinstance(value, list) else [value]:
                if isinstance(value, list):
                    phone.add(collection, record_id, name, element)
                else:
                    phone.set(collection, record_id, name, element)


@pytest.fixture
def district(client: Client, phone: Callable[[str], Replica]) -> Replica:
    office = phone("office")
    _write(office, TREE)
    report = office.sync(client)
    assert report.rejected == [], report.rejected
    return office


def _token(settings: Settings, name: str, role: str, scope: UserScope) -> dict[str, str]:
    token = asyncio.run(enroll_user(settings, name, role, scope))
    return {"authorization": f"Bearer {token}"}


def _pull_all(
    client: Client, headers: dict[str, str], since: str | None = None, limit: int = 1000
) -> dict[str, Any]:
    """Every pulled change and left record from ``since`` to the end, page by page."""
    pulled: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    for _ in range(1000):
        params: dict[str, Any] = {"limit": limit}
        if since:
            params["since"] = since
        reply = client.get("/v1/sync/pull", params=params, headers=headers)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        pulled += body["changes"]
        left += body.get("left", [])
        since = body["cursor"]
        if not body["more"]:
            return {"changes": pulled, "left": left, "cursor": since}
    raise AssertionError("the pull never ended")


def _snapshot(client: Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    reply = client.get("/v1/sync/snapshot", params={"limit": 5000}, headers=headers)
    assert reply.status_code == 200, reply.text
    records_: list[dict[str, Any]] = reply.json()["records"]
    return records_


def _values(changes_: list[dict[str, Any]], collection: str, record_id: str, field: str) -> list[Any]:
    return [
        c["value"]
        for c in changes_
        if (c["collection"], c["record_id"], c.get("field")) == (collection, record_id, field)
    ]


async def _stored_text(database_url: str) -> bytes:
    """Every byte the database holds of the log, the records, the audit log and the conflicts."""
    engine = create_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            path = Path(engine.url.database or "")
            return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())
        async with engine.connect() as connection:
            found = b""
            for table in (
                "changes",
                "records",
                "audit_log",
                "conflicts",
                "conflict_events",
                "compacted_changes",
            ):
                rows = await connection.execute(text(f"SELECT t::text FROM {table} t"))
                found += "\n".join(row[0] for row in rows).encode()
            rows = await connection.execute(text("SELECT state FROM records"))
            found += b"".join(bytes(row[0]) for row in rows)
            return found
    finally:
        await engine.dispose()


# ------------------------------------------------------------------ ID numbers at rest


def test_id_numbers_are_never_stored_in_plain_text(
    client: Client, district: Replica, settings: Settings, database_url: str
) -> None:
    stored = asyncio.run(_stored_text(database_url))
    for number in (ID_NUMBER, CHILD_ID_NUMBER):
        assert number.encode() not in stored
        # Not in the state's msgpack either (a str there is its UTF-8 bytes), nor split.
        assert number[4:-4].encode() not in stored
    # What is stored opens to the number with the key, and not without it.
    admin = _token(settings, "admin", "district_admin", UserScope())
    assert client.get("/v1/records/residents/r1", headers=admin).json()["fields"]["id_number"] == ID_NUMBER


def test_id_numbers_are_whole_for_admins_and_masked_for_others_on_every_read(
    client: Client, district: Replica, settings: Settings
) -> None:
    district_admin = _token(settings, "da", "district_admin", UserScope())
    community_admin = _token(settings, "ca", "community_admin", UserScope(communities=("c1",)))
    worker = _token(settings, "w", "grid_worker", UserScope(communities=("c1",), grids=("g1",)))
    for headers, shown in ((district_admin, ID_NUMBER), (community_admin, ID_NUMBER), (worker, MASKED)):
        # Pull (the unscoped pull's JSON is made by the database: opened at the edge).
        assert _values(_pull_all(client, headers)["changes"], "residents", "r1", "id_number") == [shown]
        msgpack = client.get(
            "/v1/sync/pull", params={"limit": 1000}, headers={**headers, "accept": "application/msgpack"}
        )
        pulled = msgspec.msgpack.decode(msgpack.content)["changes"]
        assert _values(pulled, "residents", "r1", "id_number") == [shown]
        # Snapshot, the record, the list.
        heads = next(r["heads"] for r in _snapshot(client, headers) if r["id"] == "r1")
        assert [h["value"] for h in heads if h.get("field") == "id_number"] == [shown]
        assert client.get("/v1/records/residents/r1", headers=headers).json()["fields"]["id_number"] == shown
        listed = client.get("/v1/records/residents", params={"community": "c1"}, headers=headers).json()
        assert {r["id"]: r["fields"].get("id_number") for r in listed["records"]}["r1"] == shown
        # The exchange (push and pull in one request).
        exchanged = client.post(
            "/v1/sync/exchange", json={"replica_id": "x", "changes": [], "limit": 1000}, headers=headers
        )
        assert exchanged.status_code == 200, exchanged.text
        assert _values(exchanged.json()["pull"]["changes"], "residents", "r1", "id_number") == [shown]
    # A child's number is sealed and masked like any other.
    assert client.get("/v1/records/residents/r2", headers=worker).json()["fields"]["id_number"] == (
        "1101**********567X"
    )


def test_a_retried_id_number_change_is_a_duplicate_and_equal_values_are_no_conflict(
    client: Client, district: Replica
) -> None:
    change = {
        "op": "set",
        "id": "00000000-0000-4000-8000-000000000001",
        "collection": "residents",
        "record_id": "r9",
        "field": "id_number",
        "value": ID_NUMBER,
        "hlc": "001764000000000-000000-p1",
        "pred": [],
    }
    same_value = {**change, "id": "00000000-0000-4000-8000-000000000002", "hlc": "001764000000000-000000-p2"}
    first = client.post("/v1/sync/push", json={"replica_id": "p1", "changes": [change]}).json()
    again = client.post("/v1/sync/push", json={"replica_id": "p1", "changes": [change, same_value]}).json()
    assert [r["status"] for r in first["results"]] == ["applied"]
    assert [(r["status"], r.get("conflict")) for r in again["results"]] == [
        ("duplicate", False),
        ("applied", False),
    ]


def test_without_a_key_id_numbers_are_refused_and_a_database_holding_them_does_not_start(
    settings: Settings, enroll: Callable[[str], str]
) -> None:
    keyless = replace(settings, encryption_key="")
    token = enroll("office")
    with TestClient(create_app(keyless)) as client:
        client.headers["authorization"] = f"Bearer {token}"
        changes_ = [
            {
                "op": "set",
                "id": f"00000000-0000-4000-8000-00000000000{n}",
                "collection": "residents",
                "record_id": "r1",
                "field": field,
                "value": value,
                "hlc": f"001764000000000-00000{n}-p1",
                "pred": [],
            }
            for n, (field, value) in enumerate((("name", "Wang Fang"), ("id_number", ID_NUMBER)), 1)
        ]
        results = client.post("/v1/sync/push", json={"replica_id": "p1", "changes": changes_}).json()[
            "results"
        ]
        assert [(r["status"], r.get("code")) for r in results] == [
            ("applied", None),
            ("rejected", "encryption_key_missing"),
        ]
    with TestClient(create_app(settings)) as client:
        client.headers["authorization"] = f"Bearer {token}"
        results = client.post("/v1/sync/push", json={"replica_id": "p1", "changes": changes_[1:]}).json()[
            "results"
        ]
        assert [r["status"] for r in results] == ["applied"]
    # The app does not start without the key, nor with another one.
    assert "no encryption key" in _start_up_error(keyless)
    other_key = replace(settings, encryption_key=base64.urlsafe_b64encode(b"k" * 64).decode())
    assert "sealed with another key" in _start_up_error(other_key)


def _start_up_error(settings: Settings) -> str:
    with pytest.raises(BaseException) as caught, TestClient(create_app(settings)):  # noqa: PT011
        pass
    error: BaseException = caught.value
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, EncryptionKeyError)
    return str(error)


# ------------------------------------------------------------------ sensitive tags and notes


@pytest.mark.parametrize("role", ["volunteer", "building_leader"])
def test_volunteers_and_building_leaders_never_see_sensitive_tags_or_health_notes(
    client: Client, district: Replica, settings: Settings, role: str
) -> None:
    kept_from = _token(settings, role, role, UserScope(communities=("c1",), buildings=("b1",)))
    worker = _token(settings, "w", "grid_worker", UserScope(communities=("c1",), grids=("g1",)))

    pulled = _pull_all(client, kept_from)["changes"]
    seen = json.dumps(pulled)
    assert not [word for word in HIDDEN_TEXT if word in seen]
    assert _values(pulled, "households", "h1", "tags") == ["empty-nest"]
    assert _values(pulled, "residents", "r1", "tags") == ["volunteer"]
    assert "B1 U1 101" in seen  # what is not sensitive still comes
    snapshot = json.dumps(_snapshot(client, kept_from))
    assert not [word for word in HIDDEN_TEXT if word in snapshot]
    household = client.get("/v1/records/households/h1", headers=kept_from).json()
    assert household["fields"]["tags"] == ["empty-nest"]
    assert "notes" not in household["fields"]
    resident = client.get("/v1/records/residents/r1", headers=kept_from).json()
    assert (resident["fields"]["tags"], "notes" in resident["fields"]) == (["volunteer"], False)
    assert "notes" not in client.get("/v1/records/checkins/k1", headers=kept_from).json()["fields"]
    # A list filtered by a hidden tag tells nothing, and the no-signal list is not theirs.
    tagged = client.get("/v1/records/households", params={"tag": "elderly-alone"}, headers=kept_from).json()
    assert tagged["records"] == []
    no_signal = client.get("/v1/checkins/no-signal", headers=kept_from)
    assert (no_signal.status_code, no_signal.json()["code"]) == (403, "forbidden")

    # A grid worker's task needs them.
    pulled = json.dumps(_pull_all(client, worker)["changes"])
    assert all(word in pulled for word in HIDDEN_TEXT)
    assert client.get("/v1/records/households/h1", headers=worker).json()["fields"]["notes"]


# ------------------------------------------------------------------ attachments


def test_a_photo_is_served_only_to_who_may_read_a_record_naming_it(
    client: Client, district: Replica, settings: Settings
) -> None:
    import hashlib

    first, second, loose = photo(seed=1), photo(seed=2), photo(seed=3)
    hashes = [hashlib.sha256(p).hexdigest() for p in (first, second, loose)]
    for content, sha in zip((first, second, loose), hashes, strict=True):
        assert client.put(f"/v1/attachments/{sha}", content=content).status_code == 201
    hazard = [
        {
            "op": "set",
            "id": "00000000-0000-4000-8000-0000000000a1",
            "collection": "hazards",
            "record_id": "z1",
            "field": "household_id",
            "value": "h1",
            "hlc": "001764000000000-000000-p1",
            "pred": [],
        },
        {
            "op": "add",
            "id": "00000000-0000-4000-8000-0000000000a2",
            "collection": "hazards",
            "record_id": "z1",
            "field": "photos",
            "value": hashes[0],
            "hlc": "001764000000000-000001-p1",
            "pred": [],
        },
        {
            "op": "set",
            "id": "00000000-0000-4000-8000-0000000000a3",
            "collection": "requests",
            "record_id": "q2",
            "field": "household_id",
            "value": "h2",
            "hlc": "001764000000000-000002-p1",
            "pred": [],
        },
        {
            "op": "add",
            "id": "00000000-0000-4000-8000-0000000000a4",
            "collection": "requests",
            "record_id": "q2",
            "field": "photos",
            "value": hashes[1],
            "hlc": "001764000000000-000003-p1",
            "pred": [],
        },
    ]
    results = client.post("/v1/sync/push", json={"replica_id": "p1", "changes": hazard}).json()["results"]
    assert {r["status"] for r in results} == {"applied"}
    in_c1 = _token(settings, "w1", "grid_worker", UserScope(communities=("c1",), grids=("g1",)))
    in_c2 = _token(settings, "a2", "community_admin", UserScope(communities=("c2",)))
    unknown = client.get(f"/v1/attachments/{'0' * 64}", headers=in_c1)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")

    def answer(sha: str, headers: dict[str, str]) -> tuple[int, str | None]:
        reply = client.get(f"/v1/attachments/{sha}", headers=headers)
        return reply.status_code, None if reply.status_code == 200 else reply.json()["code"]

    assert answer(hashes[0], in_c1) == (200, None)
    assert answer(hashes[0], in_c2) == (404, "not_found")
    assert answer(hashes[1], in_c2) == (200, None)
    assert answer(hashes[1], in_c1) == (404, "not_found")
    # Named by no record: nobody reads it, not even the district.
    assert answer(hashes[2], {}) == (404, "not_found")
    # Still the record's once removed from its set: its history shows it.
    remove = {
        "op": "remove",
        "id": "00000000-0000-4000-8000-0000000000a5",
        "collection": "hazards",
        "record_id": "z1",
        "field": "photos",
        "value": hashes[0],
        "hlc": "001764000000000-000004-p1",
        "pred": ["00000000-0000-4000-8000-0000000000a2"],
    }
    assert client.post("/v1/sync/push", json={"replica_id": "p1", "changes": [remove]}).status_code == 200
    assert answer(hashes[0], in_c1) == (200, None)


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_photos_are_stored_and_served_without_their_exif(
    client: Client, district: Replica, database_url: str, kind: str
) -> None:
    import hashlib

    taken = photo(kind)
    assert b"PhoneMaker" in taken
    assert Image.open(io.BytesIO(taken)).getexif().get_ifd(0x8825)
    sha = hashlib.sha256(taken).hexdigest()
    stored = client.put(f"/v1/attachments/{sha}", content=taken)
    assert stored.status_code == 201, stored.text
    assert stored.json()["sha256"] == sha
    assert stored.json()["size"] < len(taken)
    assert client.put(f"/v1/attachments/{sha}", content=taken).json()["created"] is False
    link = {
        "op": "add",
        "id": "00000000-0000-4000-8000-0000000000b1",
        "collection": "hazards",
        "record_id": "z9",
        "field": "photos",
        "value": sha,
        "hlc": "001764000000000-000000-p1",
        "pred": [],
    }
    client.post("/v1/sync/push", json={"replica_id": "p1", "changes": [link]})
    served = client.get(f"/v1/attachments/{sha}")
    assert served.status_code == 200
    image = Image.open(io.BytesIO(served.content))
    assert dict(image.getexif()) == {}
    assert b"PhoneMaker" not in served.content
    assert b"Exif" not in served.content
    assert image.tobytes() == Image.open(io.BytesIO(taken)).tobytes()  # the pixels as taken
    assert b"PhoneMaker" not in asyncio.run(_stored_text_of_attachments(database_url))


async def _stored_text_of_attachments(database_url: str) -> bytes:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT content FROM attachments"))
            return b"".join(bytes(row[0]) for row in rows)
    finally:
        await engine.dispose()


def test_a_damaged_photo_is_refused(client: Client) -> None:
    import hashlib

    damaged = photo()[:40]
    reply = client.put(f"/v1/attachments/{hashlib.sha256(damaged).hexdigest()}", content=damaged)
    assert (reply.status_code, reply.json()["code"]) == (422, "damaged_image")


# ------------------------------------------------------------------ erasure


@pytest.fixture
def erased_history(client: Client, district: Replica, settings: Settings) -> dict[str, Any]:
    """A worker who pulled the district, then more edits of r1 (a long history), all before r1 is erased."""
    worker = _token(settings, "w", "grid_worker", UserScope(communities=("c1",), grids=("g1",)))
    before = _pull_all(client, worker)
    edits = [
        {
            "op": "set",
            "id": f"00000000-0000-4000-8000-{n:012d}",
            "collection": "residents",
            "record_id": "r1",
            "field": "phone",
            "value": f"1380000{n:04d}",
            "hlc": f"001764000001000-{n:06d}-p1",
            "pred": [],
        }
        for n in range(30)
    ]
    assert client.post("/v1/sync/push", json={"replica_id": "p1", "changes": edits}).status_code == 200
    return {"worker": worker, "cursor": before["cursor"]}


def test_an_admin_erases_a_resident_and_phones_drop_them(
    client: Client, erased_history: dict[str, Any], settings: Settings, database_url: str
) -> None:
    worker, cursor = erased_history["worker"], erased_history["cursor"]
    # The admin API answers admins signed in with a password, never a device token.
    create_user(settings, "a2", "community_admin", ("c2",))
    create_user(settings, "a1", "community_admin", ("c1",))
    other_admin, admin = bearer(sign_in(client, "a2")), bearer(sign_in(client, "a1"))
    refused = client.post("/v1/admin/residents/r1/erase", headers=other_admin)
    assert (refused.status_code, refused.json()["code"]) == (404, "not_found")
    assert client.post("/v1/admin/residents/r1/erase", headers=worker).status_code == 403

    erased = client.post("/v1/admin/residents/r1/erase", headers=admin)
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["resident_id"] == "r1"
    assert body["purged_changes"] >= 36

    async def stored() -> tuple[list[Any], Any, list[Any]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                logged = (
                    await connection.execute(
                        select(changes.c.op, changes.c.id).where(changes.c.record_id == "r1")
                    )
                ).all()
                state = (
                    await connection.execute(select(records.c.state).where(records.c.record_id == "r1"))
                ).scalar_one()
                audited = (
                    await connection.execute(
                        select(
                            audit_log.c.action,
                            audit_log.c.target,
                            audit_log.c.detail,
                            audit_log.c.community_id,
                        ).where(audit_log.c.action == "resident_erase")
                    )
                ).all()
                return [tuple(r) for r in logged], state_codec.decode(state), [tuple(r) for r in audited]
        finally:
            await engine.dispose()

    logged, state, audited = asyncio.run(stored())
    assert logged == [("delete", body["delete_change_id"])]
    assert list(state.heads) == [body["delete_change_id"]]
    assert not state.covered
    assert [(a[0], a[1], a[3]) for a in audited] == [("resident_erase", "residents/r1", "c1")]
    assert json.loads(audited[0][2])["purged_changes"] == body["purged_changes"]
    everything = asyncio.run(_stored_text(database_url))
    assert b"Wang Fang" not in everything
    assert b"wheelchair" not in everything
    assert b"13800000029" not in everything

    # The worker's phone is told to drop r1 (its next pull's ``left``); nothing of it comes again.
    after = _pull_all(client, worker, since=cursor)
    assert {"collection": "residents", "id": "r1"} in after["left"]
    assert not [c for c in after["changes"] if c["record_id"] == "r1"]
    assert client.get("/v1/records/residents/r1", headers=worker).status_code == 404
    assert "r1" not in {r["id"] for r in _snapshot(client, worker)}
    # A district-wide phone receives the delete, naming every head the record held; page by
    # page over the purged seqs, its pull ends.
    district_wide = _token(settings, "da", "district_admin", UserScope())
    pulled = _pull_all(client, district_wide, limit=2)["changes"]
    mine = [c for c in pulled if c["record_id"] == "r1"]
    assert [(c["op"], c["id"]) for c in mine] == [("delete", body["delete_change_id"])]
    assert len(mine[0]["pred"]) >= 5
    # The phone that wrote it, from its own cursor, drops every value it held.
    assert client.get("/v1/records/residents/r1", headers=district_wide).json()["fields"] == {}


def test_the_console_erases_a_resident(
    client: Client,
    district: Replica,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("server.cli.get_settings", lambda: settings)
    assert main(["resident", "erase", "r2", "--database-url", settings.database_url]) == 0
    assert json.loads(capsys.readouterr().out)["resident_id"] == "r2"
    assert client.get("/v1/records/residents/r2").json()["deleted"] is True
    assert main(["resident", "erase", "nobody", "--database-url", settings.database_url]) == 1


def test_the_demo_makes_a_development_key_beside_a_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}"
    assert main(["demo", "--database-url", url, "--households", "8"]) == 0
    key_file = tmp_path / "dev.db.key"
    assert key_file.exists()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    with TestClient(create_app(Settings(database_url=url))) as client:
        assert client.get("/health").status_code == 200
