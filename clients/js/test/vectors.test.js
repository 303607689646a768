// The cross-language conformance vectors (tests/vectors/, made from sync/merge.py): every
// delivery of every history gives the views the Python engine gives, through the merge
// functions and through a Replica's store.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { COLLECTIONS } from "../src/collections.js";
import { absorbSnapshot, applyBatch, recordKey, recordView } from "../src/merge.js";
import { MemoryStore, Replica } from "../src/index.js";

/** @typedef {import("../src/merge.js").Change} Change */
/** @typedef {import("../src/merge.js").RecordState} RecordState */
/** @typedef {import("../src/replica.js").RecordFacts} RecordFacts */
/** @typedef {{name: string, batches: number[][], facts?: RecordFacts[]}} Delivery */
/** @typedef {{name: string, description: string, changes: Change[], deliveries: Delivery[], views: any[]}} Vector */

const directory = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "tests", "vectors");
const files = readdirSync(directory).filter((name) => name.endsWith(".json")).sort();

/** @param {string} name @returns {Vector} */
const load = (name) => JSON.parse(readFileSync(join(directory, name), "utf8"));

/**
 * @param {Map<string, RecordState>} states
 * @param {Change[][]} batches
 * @param {RecordFacts[]} facts absorbed after the batches, as a snapshot's
 */
function deliver(states, batches, facts) {
  /** @type {Set<string>} */
  const held = new Set();
  for (const batch of batches) {
    /** @type {Map<string, Change>} */
    const fresh = new Map();
    for (const change of batch) if (!held.has(change.id) && !fresh.has(change.id)) fresh.set(change.id, change);
    applyBatch(states, fresh.values(), (id) => held.has(id));
    for (const id of fresh.keys()) held.add(id);
  }
  for (const record of facts) {
    const state = states.get(recordKey(record.collection, record.id));
    assert.ok(state, `facts of a record without heads: ${record.id}`);
    absorbSnapshot(state, record.covered ?? [], record.pending ?? {}, (id) => held.has(id));
  }
}

/** @param {Vector} vector @param {number[][]} batches */
const resolve = (vector, batches) => batches.map((batch) => batch.map((n) => vector.changes[n]));

test("there are vectors to run", () => {
  assert.ok(files.length >= 20, `${files.length} vectors in ${directory}`);
});

for (const name of files) {
  test(`vector ${name}: the merge gives every view whatever the delivery`, () => {
    const vector = load(name);
    for (const delivery of vector.deliveries) {
      /** @type {Map<string, RecordState>} */
      const states = new Map();
      deliver(states, resolve(vector, delivery.batches), delivery.facts ?? []);
      const views = Array.from(states)
        .filter(([, state]) => state.heads.size > 0)
        .map(([key, state]) => {
          const [collection, id] = key.split("\u0000");
          return recordView(state, collection, COLLECTIONS[collection], id);
        })
        .sort((a, b) => (a.collection + "\u0000" + a.id < b.collection + "\u0000" + b.id ? -1 : 1));
      assert.deepEqual(views, vector.views, `${vector.name} / ${delivery.name}`);
    }
  });

  test(`vector ${name}: a Replica folding the deliveries shows every view`, async () => {
    const vector = load(name);
    for (const delivery of vector.deliveries) {
      const store = new MemoryStore();
      const replica = await Replica.open({ url: "http://unused.invalid", replicaId: "phone-v", store });
      const batches = resolve(vector, delivery.batches);
      for (const [number, batch] of batches.entries()) {
        // A snapshot's facts come with its page, as the server sends them.
        const facts = number === batches.length - 1 ? (delivery.facts ?? []) : [];
        const { fresh, touched } = replica._fold(batch, "synced", facts);
        await replica._write({ changes: fresh, records: replica._recordWrites(touched) });
      }
      // Reopened on what it stored: the store holds the same states.
      const again = await Replica.open({ url: "http://unused.invalid", store });
      const views = vector.views.map((expected) => again.get(expected.collection, expected.id));
      assert.deepEqual(views, vector.views, `${vector.name} / ${delivery.name}`);
    }
  });
}
