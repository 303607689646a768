"""The JS SDK against a real server: JS phones (clients/js, run by node) and Python reference
phones (sync/client.py) edit the same households offline, in a random order of turns, sync at
random, and in the end every phone shows exactly the server's ``/v1/records`` views."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from sync.client import Replica
from tests.sdk.conftest import phone_turn

H = "households"
RECORDS = [f"h-{n}" for n in range(5)]


def _python_edits(replica: Replica, rng: random.Random, count: int) -> None:
    for n in range(count):
        record_id = rng.choice(RECORDS)
        roll = rng.random()
        if roll < 0.3:
            replica.set(H, record_id, "phone", f"138{rng.randrange(10**8):08d}")
        elif roll < 0.5:
            replica.set(H, record_id, "notes", f"{replica.replica_id} visit {n}")
        elif roll < 0.6:
            replica.set(H, record_id, "members_count", rng.randrange(8))
        elif roll < 0.75:
            replica.add(H, record_id, "tags", rng.choice(["elderly-alone", "veteran", "disability"]))
        elif roll < 0.85:
            tags = replica.record(H, record_id).fields.get("tags") or []
            if tags:
                replica.remove(H, record_id, "tags", rng.choice(tags))
        elif roll < 0.92:
            replica.set(H, record_id, "head_name", f"{replica.replica_id} head")
        else:
            replica.delete(H, record_id)


def test_js_and_python_phones_converge_with_the_server(
    server_url: str, enroll: Callable[[str], str], tmp_path: Path
) -> None:
    rng = random.Random(22)
    js_phones = {name: enroll(name) for name in ("js-a", "js-b", "js-c")}
    py_phones = {
        name: Replica(tmp_path / f"{name}.db", name, token=enroll(name)) for name in ("py-a", "py-b")
    }
    js_views: dict[str, dict[str, Any]] = {}

    def js_turn(name: str, edits: int, sync: bool) -> None:
        job = {
            "url": server_url,
            "token": js_phones[name],
            "replicaId": name,
            "storePath": str(tmp_path / f"{name}.json"),
            "seed": rng.randrange(2**31),
            "edits": edits,
            "sync": sync,
            "records": RECORDS,
        }
        result = phone_turn(job)
        js_views[name] = result["views"]
        if sync:
            assert result["pending"] == 0
            assert result["report"]["rejected"] == []

    with httpx.Client(base_url=server_url, timeout=30) as http:
        turns = [*js_phones, *py_phones] * 5
        rng.shuffle(turns)
        for name in turns:
            edits, sync = rng.randrange(1, 8), rng.random() < 0.6
            if name in js_phones:
                js_turn(name, edits, sync)
            else:
                _python_edits(py_phones[name], rng, edits)
                if sync:
                    assert py_phones[name].sync(http).rejected == []
        # Everyone syncs twice: the first round pushes what is left, the second pulls it all.
        for _ in range(2):
            for name in js_phones:
                js_turn(name, 0, True)
            for replica in py_phones.values():
                replica.sync(http)

        token = next(iter(js_phones.values()))
        served: dict[str, Any] = {}
        for record_id in RECORDS:
            reply = http.get(f"/v1/records/{H}/{record_id}", headers={"authorization": f"Bearer {token}"})
            served[record_id] = reply.json() if reply.status_code == 200 else None
    assert any(view is not None for view in served.values())
    assert any(view and view["conflicts"] for view in served.values()), "no conflict was exercised"
    for name, views in js_views.items():
        assert views == served, name
    for name, replica in py_phones.items():
        held = {record_id: msgspec.to_builtins(replica.record(H, record_id)) for record_id in RECORDS}
        assert {k: v for k, v in held.items() if served[k] is not None} == {
            k: v for k, v in served.items() if v is not None
        }, name
        replica.close()
