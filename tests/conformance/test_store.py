"""The store under concurrency, and its materialised state against a rebuild from the log."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import select

from schemas.protocol import Change
from server.access.accounts import AccountStore
from server.db.tables import changes, devices, records
from server.sync.pull import change_from_row
from server.sync.store import SyncStore
from sync.merge import RecordState, apply_batch, state_codec
from tests.factories import add, delete, set_


async def test_concurrent_writers_and_pullers_never_skip_or_repeat(store: SyncStore) -> None:
    writers, batches, per_batch = 6, 15, 20
    expected = writers * batches * per_batch
    done = asyncio.Event()

    async def writer(number: int) -> None:
        for batch in range(batches):
            sent = [
                set_("notes", f"w{number}-{batch}-{i}", record=f"h{number}-{i % 5}") for i in range(per_batch)
            ]
            outcome = await store.writer.push(None, f"writer-{number}", sent)
            assert {r.status for r in outcome.results} == {"applied"}
            await asyncio.sleep(random.random() / 200)

    async def puller() -> list[tuple[int, str]]:
        seen: list[tuple[int, str]] = []
        cursor: str | None = None
        while True:
            finished = done.is_set()
            page, cursor, more, _, _ = await store.pulls.page(cursor, 37)
            seen += [(c.seq, c.id) for c in page]
            if finished and not more:
                return seen
            if not page:
                await asyncio.sleep(0.001)

    pullers = [asyncio.create_task(puller()) for _ in range(3)]
    await asyncio.gather(*(writer(n) for n in range(writers)))
    done.set()
    for seen in await asyncio.gather(*pullers):
        ids = [change_id for _, change_id in seen]
        assert len(ids) == expected
        assert len(set(ids)) == expected
        seqs = [seq for seq, _ in seen]
        assert seqs == list(range(1, expected + 1))


async def test_stored_states_equal_a_rebuild_from_the_change_log(store: SyncStore) -> None:
    rng = random.Random(7)
    made: list[Change] = []
    for _ in range(12):
        batch: list[Change] = []
        for _ in range(25):
            record = f"h{rng.randint(0, 5)}"
            kind = rng.random()
            field = rng.choice(["phone", "notes"]) if kind < 0.6 else "tags"
            value = str(rng.randint(0, 9)) if kind < 0.6 else rng.choice(["veteran", "disability"])
            # What a pred may name (docs/protocol.md): a delete any change of its record, a field
            # change the changes of its field (a tag: of its element) and the record's deletes.
            prior = [
                c
                for c in made + batch
                if c.record_id == record
                and (
                    kind >= 0.85 or c.field is None or (c.field == field and (kind < 0.6 or c.value == value))
                )
            ]
            pred = tuple(c.id for c in rng.sample(prior, k=min(len(prior), rng.randint(0, 2))))
            if kind < 0.6:
                batch.append(set_(field, value, record=record, pred=pred))
            elif kind < 0.85:
                batch.append(add("tags", value, record=record, pred=pred))
            else:
                batch.append(delete(pred=pred, record=record))
        rng.shuffle(batch)  # preds may name changes later in the batch or in a later batch
        await store.writer.push(None, "mixer", batch)
        made += batch

    async with store.engine.connect() as connection:
        log = (await connection.execute(select(changes).order_by(changes.c.seq))).all()
        stored = {
            (row.collection, row.record_id): state_codec.decode(row.state)
            for row in await connection.execute(select(records))
        }
    rebuilt: dict[tuple[str, str], RecordState] = {key: RecordState() for key in stored}
    decoded = [change_from_row(row) for row in log]
    apply_batch(rebuilt, list(reversed(decoded)), set())
    assert len(log) == len(made)
    assert rebuilt == stored


async def test_acknowledgements_that_arrive_together_are_all_written(store: SyncStore) -> None:
    accounts = AccountStore(store.engine)
    device_ids = [
        (await accounts.enroll_device(None, f"phone-{n}", role="district_admin"))[0] for n in range(12)
    ]
    await store.writer.push(None, "office", [set_("notes", f"n{n}", record=f"h{n}") for n in range(30)])
    epoch = (await store.pulls.page(None, 1))[1].partition(".")[0]

    # A storm of pulls: every acknowledgement is written, however the writes were grouped.
    await asyncio.gather(*(store.acks.record(d, f"{epoch}.{n + 1}") for n, d in enumerate(device_ids)))
    # A lower cursor never moves an acknowledgement back; a repeat within the interval is skipped.
    await store.acks.record(device_ids[5], f"{epoch}.1")

    async with store.engine.connect() as connection:
        rows = await connection.execute(select(devices.c.id, devices.c.acked_seq))
        acked = {row.id: row.acked_seq for row in rows}
    assert [acked[d] for d in device_ids] == list(range(1, 13))
