// The JS SDK's merge on the conformance vectors (tests/vectors/): every delivery of every
// history folded into fresh states, as benchmarks/sdk_merge.py does with sync/merge.py. Reads
// {"rounds": n} on stdin; prints {"changes": folded per round, "seconds": [one per round]}.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { applyBatch } from "../clients/js/src/merge.js";

const directory = join(dirname(fileURLToPath(import.meta.url)), "..", "tests", "vectors");
const deliveries = readdirSync(directory)
  .filter((name) => name.endsWith(".json"))
  .sort()
  .flatMap((name) => {
    const vector = JSON.parse(readFileSync(join(directory, name), "utf8"));
    return vector.deliveries.map((delivery) => delivery.batches.map((batch) => batch.map((n) => vector.changes[n])));
  });
const changes = deliveries.flat(2).length;

function fold(batches) {
  const states = new Map();
  const held = new Set();
  for (const batch of batches) {
    const fresh = new Map();
    for (const change of batch) if (!held.has(change.id) && !fresh.has(change.id)) fresh.set(change.id, change);
    applyBatch(states, fresh.values(), (id) => held.has(id));
    for (const id of fresh.keys()) held.add(id);
  }
  return states.size;
}

const { rounds, repeats } = JSON.parse(readFileSync(0, "utf8"));
for (let warm = 0; warm < repeats; warm++) for (const batches of deliveries) fold(batches);
const seconds = [];
for (let round = 0; round < rounds; round++) {
  const start = process.hrtime.bigint();
  for (let again = 0; again < repeats; again++) for (const batches of deliveries) fold(batches);
  seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
}
process.stdout.write(JSON.stringify({ changes: changes * repeats, seconds }));
