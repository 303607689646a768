"""Property tests: the merge state is a function of the set of changes.

The incremental engine is checked against a direct definition computed from the whole set, for
arbitrary change sets in arbitrary orders with duplicates and with preds naming changes that
never arrive; then a simulation of offline replicas checks convergence end to end.
"""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.collections import COLLECTIONS
from schemas.protocol import AddChange, Change, DeleteChange, RemoveChange, SetChange
from sync.hlc import HybridClock
from sync.merge import (
    DELETE_CONFLICT_KEY,
    RecordState,
    absorb_snapshot,
    apply_batch,
    copy_state,
    preds_to_look_up,
    record_view,
    snapshot_facts,
    state_codec,
)
from tests.factories import change_id, delete, hlc, set_

HOUSEHOLDS = COLLECTIONS["households"]
FIELDS = ("phone", "notes")


def _kind(change: Change) -> str:
    return "" if isinstance(change, DeleteChange) else change.field


def defined_state(changes: list[Change]) -> RecordState:
    """The merge state straight from its definition over the set of changes."""
    unique = {c.id: c for c in changes}
    namers: dict[str, set[str]] = defaultdict(set)
    for change in unique.values():
        for named in change.pred:
            namers[named].add(_kind(change))
    heads: dict[str, Change] = {}
    covered: set[str] = set()
    for change in unique.values():
        kinds = namers.get(change.id, set())
        if isinstance(change, RemoveChange):
            continue
        if isinstance(change, DeleteChange):
            if not kinds:
                heads[change.id] = change
        elif change.field not in kinds:
            heads[change.id] = change
            if "" in kinds:
                covered.add(change.id)
    pending = {named: kinds for named, kinds in namers.items() if named not in unique}
    return RecordState(heads=heads, covered=covered, pending=pending)


def incremental_state(changes: list[Change]) -> RecordState:
    state = RecordState()
    seen: set[str] = set()
    fresh = []
    for change in changes:
        if change.id not in seen:
            seen.add(change.id)
            fresh.append(change)
    apply_batch({("households", "h1"): state}, fresh, set())
    return state


@st.composite
def change_sets(draw: st.DrawFn) -> list[Change]:
    """Arbitrary changes of one record whose preds name any other change, or ids never sent."""
    count = draw(st.integers(min_value=1, max_value=12))
    ids = [change_id() for _ in range(count)]
    ghosts = [change_id() for _ in range(3)]
    made: list[Change] = []
    for index, own_id in enumerate(ids):
        pool = [i for i in ids if i != own_id] + ghosts
        pred = tuple(draw(st.lists(st.sampled_from(pool), max_size=3, unique=True)))
        kind = draw(st.sampled_from(["set", "set", "add", "remove", "delete"]))
        common = {
            "id": own_id,
            "collection": "households",
            "record_id": "h1",
            "hlc": hlc(index),
            "pred": pred,
        }
        value = draw(st.sampled_from(["x", "y"]))
        if kind == "set":
            made.append(SetChange(**common, field=draw(st.sampled_from(FIELDS)), value=value))
        elif kind == "add":
            made.append(AddChange(**common, field="tags", value=value))
        elif kind == "remove":
            made.append(RemoveChange(**common, field="tags", value=value))
        else:
            made.append(DeleteChange(**common))
    return made


@settings(max_examples=400, deadline=None)
@given(changes=change_sets(), data=st.data())
def test_any_order_and_duplication_gives_the_defined_state(
    changes: list[Change], data: st.DataObject
) -> None:
    delivered = data.draw(
        st.permutations(changes + data.draw(st.lists(st.sampled_from(changes), max_size=4)))
    )
    assert incremental_state(delivered) == defined_state(changes)


@settings(max_examples=400, deadline=None)
@given(changes=change_sets(), data=st.data())
def test_batches_through_a_store_give_the_defined_state(changes: list[Change], data: st.DataObject) -> None:
    """What the server and the phones do: batches, with only the looked-up ids reported known."""
    delivered = data.draw(st.permutations(changes))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(delivered)), max_size=4)))
    state = RecordState()
    states = {("households", "h1"): state}
    stored: set[str] = set()
    for start, end in zip([0, *cuts], [*cuts, len(delivered)], strict=True):
        batch = [c for c in delivered[start:end] if c.id not in stored]
        batch = list({c.id: c for c in batch}.values())
        apply_batch(states, batch, preds_to_look_up(states, batch) & stored)
        stored.update(c.id for c in batch)
    assert state == defined_state(changes)


@settings(max_examples=300, deadline=None)
@given(changes=change_sets(), data=st.data())
def test_a_copied_state_takes_changes_without_touching_the_original(
    changes: list[Change], data: st.DataObject
) -> None:
    """What the scope check's tentative merge does: fold the rest of a history into a copy."""
    cut = data.draw(st.integers(0, len(changes)))
    original = incremental_state(changes[:cut])
    stored = state_codec.encode(original)
    copy = copy_state(original)
    assert copy == original
    apply_batch({("households", "h1"): copy}, changes[cut:], {c.id for c in changes[:cut]})
    assert state_codec.encode(original) == stored
    assert copy == defined_state(changes)


def _bootstrapped(
    snapshot_of: RecordState, held: list[Change], batch_sizes: list[int]
) -> tuple[RecordState, set[str]]:
    """A phone holding ``held`` (its own unpushed changes) that folds a snapshot of the server's
    state ``snapshot_of`` as the reference client does: the heads (in batches), then the facts
    beyond them. Returns its state and the ids it holds."""
    state = RecordState()
    states = {("households", "h1"): state}
    apply_batch(states, held, set())
    holds = {c.id for c in held}
    heads = list(snapshot_of.heads.values())
    start = 0
    for size in [*batch_sizes, len(heads)]:
        batch = [c for c in heads[start : start + size] if c.id not in holds]
        apply_batch(states, batch, preds_to_look_up(states, batch) & holds)
        holds.update(c.id for c in batch)
        start += size
    covered, pending = snapshot_facts(snapshot_of)
    absorb_snapshot(state, covered, pending, holds.__contains__)
    return state, holds


def _same_as_replay(phone: RecordState, replayed: RecordState, history: set[str]) -> None:
    """The phone's state is the replaying one's: the same heads, covered heads and view, and the
    same ids awaited, but for ids of the history the phone never receives (a snapshot's heads
    name changes it does not send; awaiting them changes nothing, they never come)."""
    assert phone.heads == replayed.heads
    assert phone.covered == replayed.covered
    assert {k: v for k, v in phone.pending.items() if k not in history} == replayed.pending
    assert record_view(phone, HOUSEHOLDS, "h1") == record_view(replayed, HOUSEHOLDS, "h1")


@settings(max_examples=500, deadline=None)
@given(changes=change_sets(), data=st.data())
def test_a_snapshot_bootstrap_holds_the_state_of_a_full_replay(
    changes: list[Change], data: st.DataObject
) -> None:
    """The server received a prefix of the history (in server order) when the snapshot was
    taken; the rest arrives by pull afterwards. A phone bootstrapped from the snapshot holds,
    at the snapshot and after every later change, what a phone replaying the log holds, and
    what the server's record view says, deletes naming non-head changes included."""
    arrival = data.draw(st.permutations(changes))
    cut = data.draw(st.integers(0, len(arrival)))
    served, later = arrival[:cut], arrival[cut:]
    server = incremental_state(served)
    assert server == defined_state(served)
    sizes = data.draw(st.lists(st.integers(1, 4), max_size=3))
    phone, holds = _bootstrapped(server, [], sizes)
    _same_as_replay(phone, server, {c.id for c in served})
    states = {("households", "h1"): phone}
    for pulled, change in enumerate(later, start=1):  # a page at a time, in server order
        if change.id not in holds:
            apply_batch(states, [change], preds_to_look_up(states, [change]) & holds)
            holds.add(change.id)
        _same_as_replay(phone, defined_state(served + later[:pulled]), {c.id for c in served})


@settings(max_examples=300, deadline=None)
@given(changes=change_sets(), data=st.data())
def test_a_snapshot_bootstrap_keeps_the_phones_own_unpushed_changes(
    changes: list[Change], data: st.DataObject
) -> None:
    """A phone that starts over from a snapshot with changes of its own still to push holds the
    state of the whole set once it has pushed them and pulled the rest."""
    arrival = data.draw(st.permutations(changes))
    cut = data.draw(st.integers(0, len(arrival)))
    served, later = arrival[:cut], arrival[cut:]
    own = [c for c in later if data.draw(st.booleans())]
    phone, holds = _bootstrapped(incremental_state(served), own, [])
    everything = served + later
    served_ids = {c.id for c in served}
    _same_as_replay(phone, defined_state(served + own), served_ids)
    states = {("households", "h1"): phone}
    for change in later:
        if change.id not in holds:
            apply_batch(states, [change], preds_to_look_up(states, [change]) & holds)
            holds.add(change.id)
    _same_as_replay(phone, defined_state(everything), served_ids)


def test_a_snapshot_carries_a_chain_of_deletes() -> None:
    """The example that diverged: a delete naming a delete that is no longer a head."""
    building = set_("building_id", "b-1", at=1)
    phone_number = set_("phone", "13800000000", at=2)
    first = delete(pred=(building.id,), at=3)
    second = delete(pred=(first.id, phone_number.id), at=4)
    notes = set_("notes", "made without seeing the deletes", at=5)
    history = [building, phone_number, first, second, notes]
    server = incremental_state(history)
    conflict = record_view(server, HOUSEHOLDS, "h1").conflicts[DELETE_CONFLICT_KEY]
    assert [h.change_id for h in conflict] == [notes.id, second.id]
    phone, _ = _bootstrapped(server, [], [])
    _same_as_replay(phone, server, {c.id for c in history})


class _SimReplica:
    """An in-memory replica making realistic changes (preds from its own view)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.clock = HybridClock(name, now_ms=lambda: 1_700_000_000_000)
        self.changes: dict[str, Change] = {}
        self.state = RecordState()

    def receive(self, changes: list[Change]) -> None:
        fresh = [c for c in changes if c.id not in self.changes]
        for change in fresh:
            self.clock.observe(change.hlc)
        apply_batch({("households", "h1"): self.state}, fresh, set(self.changes))
        self.changes.update((c.id, c) for c in fresh)

    def edit(self, rng: random.Random) -> None:
        heads = self.state.heads
        common = {"id": change_id(), "collection": "households", "record_id": "h1", "hlc": self.clock.now()}
        roll = rng.random()
        if roll < 0.5:
            field = rng.choice(FIELDS)
            pred = tuple(i for i, c in heads.items() if not isinstance(c, DeleteChange) and c.field == field)
            change: Change = SetChange(
                **common, field=field, value=f"{self.name}-{rng.randint(0, 3)}", pred=pred
            )
        elif roll < 0.7:
            change = AddChange(**common, field="tags", value=rng.choice(["a", "b"]))
        elif roll < 0.9:
            element = rng.choice(["a", "b"])
            adds = tuple(i for i, c in heads.items() if isinstance(c, AddChange) and c.value == element)
            if not adds:
                return
            change = RemoveChange(**common, field="tags", value=element, pred=adds)
        else:
            change = DeleteChange(**common, pred=tuple(heads))
        self.receive([change])


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), replicas=st.integers(min_value=2, max_value=4))
def test_offline_replicas_converge_after_exchanging_everything(seed: int, replicas: int) -> None:
    rng = random.Random(seed)
    phones = [_SimReplica(f"p{i}") for i in range(replicas)]
    for _ in range(rng.randint(1, 25)):
        phone = rng.choice(phones)
        if rng.random() < 0.7:
            phone.edit(rng)
        else:
            source = rng.choice(phones)
            phone.receive(rng.sample(list(source.changes.values()), k=len(source.changes)))
    everything = {i: c for p in phones for i, c in p.changes.items()}
    for phone in phones:
        phone.receive(rng.sample(list(everything.values()), k=len(everything)))
    views = [record_view(p.state, HOUSEHOLDS, "h1") for p in phones]
    assert all(v == views[0] for v in views)
    assert all(p.state == defined_state(list(everything.values())) for p in phones)
    # Nothing typed is lost: every value ever written is still in the log of every phone.
    assert all(set(p.changes) == set(everything) for p in phones)
