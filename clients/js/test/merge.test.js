import assert from "node:assert/strict";
import { test } from "node:test";

import { COLLECTIONS } from "../src/collections.js";
import { applyBatch, newState, recordKey, recordView } from "../src/merge.js";

/** @typedef {import("../src/merge.js").Change} Change */

let serial = 0;
/**
 * @param {Partial<Change> & {op: Change["op"]}} fields
 * @returns {Change}
 */
function change(fields) {
  serial += 1;
  const id = `0193a3c2-0000-7000-8000-${String(serial).padStart(12, "0")}`;
  return {
    id,
    collection: "households",
    record_id: "h-1",
    field: null,
    value: null,
    hlc: `${String(1_764_000_000_000 + serial).padStart(15, "0")}-000000-phone-a`,
    pred: [],
    ...fields,
  };
}

/**
 * Fold `changes` one batch each, in order, as a store does.
 * @param {Change[]} changes
 */
function view(changes) {
  const states = new Map();
  const held = new Set();
  for (const one of changes) {
    if (held.has(one.id)) continue;
    applyBatch(states, [one], (id) => held.has(id));
    held.add(one.id);
  }
  return recordView(states.get(recordKey("households", "h-1")) ?? newState(), "households", COLLECTIONS.households, "h-1");
}

/**
 * @param {Change[]} changes
 * @returns {Change[][]}
 */
function everyOrder(changes) {
  if (changes.length <= 1) return [changes];
  return changes.flatMap((first, index) =>
    everyOrder([...changes.slice(0, index), ...changes.slice(index + 1)]).map((/** @type {Change[]} */ rest) => [first, ...rest]),
  );
}

test("concurrent writes of a scalar are a conflict, newest shown and listed first, in any order", () => {
  const base = change({ op: "set", field: "phone", value: "13800000000" });
  const mine = change({ op: "set", field: "phone", value: "13900000002", pred: [base.id] });
  const theirs = change({ op: "set", field: "phone", value: "13700000003", pred: [base.id] });
  for (const order of everyOrder([base, mine, theirs])) {
    const shown = view(order);
    assert.equal(shown.fields.phone, "13700000003");
    assert.deepEqual(shown.conflicts.phone.map((head) => head.value), ["13700000003", "13900000002"]);
    assert.equal(shown.conflicts.phone[0].replica_id, "phone-a");
  }
  const resolved = change({ op: "set", field: "phone", value: "13900000002", pred: [mine.id, theirs.id] });
  assert.deepEqual(view([base, mine, theirs, resolved]).conflicts, {});
});

test("two phones writing the same value is not a conflict", () => {
  const one = change({ op: "set", field: "head_name", value: "Li Wei" });
  const two = change({ op: "set", field: "head_name", value: "Li Wei" });
  assert.deepEqual(view([one, two]), { collection: "households", id: "h-1", deleted: false, fields: { head_name: "Li Wei" }, conflicts: {} });
});

test("a remove takes only the adds it saw: add wins", () => {
  const seen = change({ op: "add", field: "tags", value: "elderly-alone" });
  const unseen = change({ op: "add", field: "tags", value: "elderly-alone" });
  const other = change({ op: "add", field: "tags", value: "disabled" });
  const removed = change({ op: "remove", field: "tags", value: "elderly-alone", pred: [seen.id] });
  for (const order of everyOrder([seen, unseen, other, removed])) {
    assert.deepEqual(view(order).fields.tags, ["disabled", "elderly-alone"]);
  }
  const both = change({ op: "remove", field: "tags", value: "elderly-alone", pred: [seen.id, unseen.id] });
  assert.deepEqual(view([seen, unseen, other, removed, both]).fields.tags, ["disabled"]);
});

test("a delete naming every head deletes; an edit it did not see keeps the record, in conflict", () => {
  const phone = change({ op: "set", field: "phone", value: "13800000000" });
  const gone = change({ op: "delete", pred: [phone.id] });
  assert.deepEqual(view([phone, gone]), { collection: "households", id: "h-1", deleted: true, fields: {}, conflicts: {} });
  const concurrent = change({ op: "set", field: "head_name", value: "Wang Fang" });
  for (const order of everyOrder([phone, gone, concurrent])) {
    const shown = view(order);
    assert.equal(shown.deleted, false);
    assert.deepEqual(shown.fields, { phone: "13800000000", head_name: "Wang Fang" });
    // The delete, and the edit it did not see (the value it named is covered, not in conflict).
    assert.deepEqual(shown.conflicts._deleted.map((head) => [head.op, head.change_id]).sort(), [
      ["delete", gone.id],
      ["set", concurrent.id],
    ]);
  }
});

test("a write naming the delete restores the record; a delete naming a non-head deletes nothing live", () => {
  const phone = change({ op: "set", field: "phone", value: "13800000000" });
  const gone = change({ op: "delete", pred: [phone.id] });
  const restored = change({ op: "set", field: "head_name", value: "Li Wei", pred: [gone.id] });
  for (const order of everyOrder([phone, gone, restored])) {
    const shown = view(order);
    assert.equal(shown.deleted, false);
    assert.deepEqual(shown.fields, { phone: "13800000000", head_name: "Li Wei" });
    assert.deepEqual(shown.conflicts, {});
  }
  const newer = change({ op: "set", field: "phone", value: "13900000002", pred: [phone.id] });
  const stale = change({ op: "delete", pred: [phone.id] });
  for (const order of everyOrder([phone, newer, stale])) {
    const shown = view(order);
    assert.equal(shown.deleted, false);
    assert.equal(shown.fields.phone, "13900000002");
    assert.ok(shown.conflicts._deleted);
  }
});

test("a change named before it arrives is born superseded", () => {
  const early = change({ op: "set", field: "phone", value: "13800000000" });
  const late = change({ op: "set", field: "phone", value: "13900000002", pred: [early.id] });
  assert.deepEqual(view([late, early]).fields, { phone: "13900000002" });
  assert.deepEqual(view([late, early, late, early]).conflicts, {});
});
