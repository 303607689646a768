// One turn of a JS phone in tests/sdk/test_js_live.py: open the replica on its file, make random
// offline edits on the shared households, sync when told to, and print what it holds.
//
// The file store is also the smallest example of a custom storage adapter (docs/sdk.md): it
// keeps the store's contents as one JSON file, rewritten whole (then renamed) on each write.
import { readFileSync, renameSync, writeFileSync, existsSync } from "node:fs";

import { COLLECTIONS, Replica, applyWrite } from "../../clients/js/src/index.js";

class FileStore {
  /** @param {string} path */
  constructor(path) {
    this.path = path;
    this.meta = new Map();
    this.records = new Map();
    this.changes = new Map();
    if (existsSync(path)) {
      const saved = JSON.parse(readFileSync(path, "utf8"));
      this.meta = new Map(Object.entries(saved.meta));
      this.records = new Map(saved.records.map((r) => [`${r.collection}\u0000${r.id}`, r]));
      this.changes = new Map(saved.changes.map((c) => [c.change.id, c]));
    }
  }

  async load() {
    return { meta: Object.fromEntries(this.meta), records: [...this.records.values()], changes: [...this.changes.values()] };
  }

  async write(write) {
    applyWrite(this, write);
    writeFileSync(`${this.path}.tmp`, JSON.stringify(await this.load()));
    renameSync(`${this.path}.tmp`, this.path);
  }
}

/** A seeded generator (mulberry32): the same seed gives the same edits. */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const job = JSON.parse(readFileSync(0, "utf8"));
const rng = random(job.seed);
const pick = (list) => list[Math.floor(rng() * list.length)];
const H = "households";
const phone = await Replica.open({ url: job.url, token: job.token, replicaId: job.replicaId, store: new FileStore(job.storePath), backoffMs: 50 });
for (let n = 0; n < (job.edits ?? 0); n++) {
  const id = pick(job.records);
  const roll = rng();
  if (roll < 0.3) await phone.set(H, id, "phone", `139${String(Math.floor(rng() * 1e8)).padStart(8, "0")}`);
  else if (roll < 0.5) await phone.set(H, id, "notes", `${job.replicaId} visit ${n}`);
  else if (roll < 0.6) await phone.set(H, id, "members_count", Math.floor(rng() * 8));
  else if (roll < 0.75) await phone.add(H, id, "tags", pick(["elderly-alone", "veteran", "disability"]));
  else if (roll < 0.85) {
    const tags = phone.get(H, id)?.fields.tags ?? [];
    if (tags.length) await phone.remove(H, id, "tags", pick(tags));
  } else if (roll < 0.92) {
    const view = phone.get(H, id);
    const field = view ? Object.keys(view.conflicts).find((name) => name !== "_deleted") : undefined;
    if (view && field) await phone.resolve(H, id, field, view.conflicts[field][0].value);
    else await phone.set(H, id, "head_name", `${job.replicaId} head`);
  } else await phone.delete(H, id);
}
for (const [collection, id, field, value] of job.writes ?? []) await phone.set(collection, id, field, value);
const report = job.sync ? await phone.sync() : null;
const views = Object.fromEntries((job.records ?? []).map((id) => [id, phone.get(H, id)]));
// Every record the phone holds, as "collection/id".
const held = Object.keys(COLLECTIONS).flatMap((c) => phone.list(c, { include_deleted: true }).map((v) => `${c}/${v.id}`));
process.stdout.write(JSON.stringify({ views, report, pending: phone.pending().length, held }));
await phone.close();
