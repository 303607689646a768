import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import { GridsyncError, MAX_CLOCK_AHEAD_MS, MemoryStore, Replica } from "../src/index.js";
import { FakeServer } from "./fake-server.js";

/**
 * @param {FakeServer} server
 * @param {Partial<import("../src/replica.js").ReplicaOptions>} [options]
 */
function open(server, options = {}) {
  return Replica.open({
    url: "http://gridsync.test",
    token: "gs_test",
    store: new MemoryStore(),
    fetch: server.fetch,
    backoffMs: 1,
    ...options,
  });
}

test("offline edits wait in the queue, survive a restart, and a sync pushes them", async () => {
  const server = new FakeServer();
  const store = new MemoryStore();
  const phone = await open(server, { store, replicaId: "phone-a" });
  await phone.set("households", "h-1", "phone", "13800000000");
  await phone.add("households", "h-1", "tags", "elderly-alone");
  assert.equal(phone.pending().length, 2);
  assert.equal(server.log.length, 0);

  const restarted = await open(server, { store });
  assert.equal(restarted.replicaId, "phone-a");
  assert.deepEqual(restarted.pending(), phone.pending());
  assert.deepEqual(restarted.status().pending, 2);
  const report = await restarted.sync();
  assert.deepEqual([report.pushed, report.rejected], [2, []]);
  assert.deepEqual(restarted.pending(), []);
  assert.deepEqual(restarted.get("households", "h-1"), server.view("households", "h-1"));
  assert.equal(restarted.status().lastError, null);
  assert.equal(restarted.status().online, true);
  // A fresh hlc after the restart is past every one issued before it.
  const again = await restarted.set("households", "h-1", "phone", "13900000002");
  assert.ok(again.hlc > server.log[1].hlc);
  assert.deepEqual(again.pred, [server.log[0].id]);
});

test("two phones converge; a conflict is shown with both values and resolved", async () => {
  const server = new FakeServer();
  const a = await open(server, { replicaId: "phone-a" });
  const b = await open(server, { replicaId: "phone-b" });
  await a.set("households", "h-1", "phone", "13800000000");
  await a.sync();
  await b.sync();
  await a.set("households", "h-1", "phone", "13900000002");
  await b.set("households", "h-1", "phone", "13700000003");
  await a.remove("households", "h-1", "tags", "none-there");
  await a.sync();
  await b.sync();
  await a.sync();
  const shown = /** @type {import("../src/merge.js").RecordView} */ (a.get("households", "h-1"));
  assert.deepEqual(shown.conflicts.phone.map((head) => head.value).sort(), ["13700000003", "13900000002"]);
  assert.deepEqual(b.get("households", "h-1"), shown);
  await b.resolve("households", "h-1", "phone", "13900000002");
  await b.sync();
  await a.sync();
  for (const phone of [a, b]) {
    assert.deepEqual(phone.get("households", "h-1"), server.view("households", "h-1"));
    assert.deepEqual(phone.get("households", "h-1")?.conflicts, {});
  }
});

test("a delete concurrent with an edit is a _deleted conflict; keeping the record settles it", async () => {
  const server = new FakeServer();
  const a = await open(server, { replicaId: "phone-a" });
  const b = await open(server, { replicaId: "phone-b" });
  await a.set("households", "h-1", "head_name", "Li Wei");
  await a.sync();
  await b.sync();
  await a.delete("households", "h-1");
  await b.set("households", "h-1", "phone", "13800000000");
  await a.sync();
  await b.sync();
  assert.ok(b.get("households", "h-1")?.conflicts._deleted);
  await b.resolve("households", "h-1", "_deleted", false);
  await b.sync();
  await a.sync();
  const kept = a.get("households", "h-1");
  assert.deepEqual([kept?.deleted, kept?.conflicts], [false, {}]);
  assert.deepEqual(kept, server.view("households", "h-1"));
  await a.resolve("households", "h-1", "_deleted", true);
  await a.sync();
  assert.equal(a.get("households", "h-1")?.deleted, true);
  assert.deepEqual(a.list("households"), []);
  assert.equal(a.list("households", { include_deleted: true }).length, 1);
});

test("a new phone starts from a snapshot, then pulls from its cursor", async () => {
  const server = new FakeServer();
  const a = await open(server, { replicaId: "phone-a" });
  for (let n = 0; n < 12; n++) await a.set("households", `h-${n}`, "phone", "1380000000" + (n % 10));
  await a.set("households", "h-0", "phone", "13999999999");
  await a.sync();
  const b = await open(server, { replicaId: "phone-b", snapshotLimit: 5 });
  const before = server.requests.length;
  const report = await b.sync();
  const asked = server.requests.slice(before).map((r) => r.path);
  assert.deepEqual(asked, ["/v1/sync/snapshot", "/v1/sync/snapshot", "/v1/sync/snapshot", "/v1/sync/exchange"]);
  assert.equal(report.pulled, 12); // heads only: the superseded write of h-0 never came
  assert.deepEqual(b.list("households"), a.list("households"));
});

test("a 413 halves the batch; transient failures are retried with backoff", async () => {
  const server = new FakeServer({ maxChangesPerPush: 3 });
  const phone = await open(server, { replicaId: "phone-a" });
  await phone.sync();
  for (let n = 0; n < 10; n++) await phone.set("households", `h-${n}`, "notes", `visit ${n}`);
  server.failures.push("network", 503, 502);
  const report = await phone.sync();
  assert.equal(report.pushed, 10);
  assert.equal(server.log.length, 10);
  // Three failures retried with the whole batch, then 413s: 10, 5, then batches that fit.
  const sizes = server.requests.filter((r) => r.changes > 0).map((r) => r.changes);
  assert.deepEqual(sizes.slice(0, 6), [10, 10, 10, 10, 5, 2]);
  assert.ok(phone.pushBatch <= 3);
});

test("after its retries a sync fails with a code, and the changes stay queued", async () => {
  const server = new FakeServer();
  const phone = await open(server, { replicaId: "phone-a", retries: 2 });
  await phone.set("households", "h-1", "notes", "offline");
  server.failures.push("network", "network", "network");
  await assert.rejects(phone.sync(), (error) => error instanceof GridsyncError && error.code === "offline");
  assert.deepEqual([phone.status().online, phone.status().lastError, phone.pending().length], [false, "offline", 1]);
  await phone.sync();
  assert.equal(phone.pending().length, 0);
});

test("a push body of 1 KiB or more goes gzipped", async () => {
  const server = new FakeServer();
  const phone = await open(server, { replicaId: "phone-a" });
  for (let n = 0; n < 20; n++) await phone.set("households", `h-${n}`, "notes", "x".repeat(100));
  await phone.sync();
  const pushes = server.requests.filter((r) => r.path === "/v1/sync/exchange");
  assert.deepEqual(pushes.map((r) => [r.changes, r.gzipped]), [[20, true]]);
});

test("a refused change is reported, kept aside, and left out of the record", async () => {
  const server = new FakeServer();
  const phone = await open(server, { replicaId: "phone-a" });
  await phone.set("households", "h-1", "head_name", "Li Wei");
  await phone.set("households", "h-1", "head_name", "REJECT");
  const report = await phone.sync();
  assert.deepEqual(report.rejected.map((r) => [r.code, r.field]), [["invalid_value", "head_name"]]);
  assert.deepEqual(phone.rejected().map((r) => r.code), ["invalid_value"]);
  assert.deepEqual(phone.get("households", "h-1")?.fields, { head_name: "Li Wei" });
  assert.deepEqual(phone.get("households", "h-1"), server.view("households", "h-1"));
});

test("a 409 resync_required re-offers every change and starts over from a snapshot, losing none", async () => {
  const server = new FakeServer();
  const a = await open(server, { replicaId: "phone-a" });
  const b = await open(server, { replicaId: "phone-b" });
  for (let n = 0; n < 6; n++) await a.set("households", `h-${n}`, "phone", `1380000000${n}`);
  await a.sync();
  await b.sync();
  server.restore(3); // the server lost the last three: only phones hold them now
  await b.set("households", "h-9", "phone", "13900000009");
  const report = await b.sync();
  assert.equal(report.resynced, true);
  assert.equal(server.log.length, 7);
  assert.deepEqual(b.pending(), []);
  assert.deepEqual(b.list("households").length, 7);
  for (const view of b.list("households")) assert.deepEqual(view, server.view("households", view.id));
});

test("a resync cut short is finished by the next sync, even after a restart", async () => {
  const server = new FakeServer();
  const store = new MemoryStore();
  let answered = Infinity; // requests answered before the network goes
  /** @type {typeof fetch} */
  const flaky = async (input, init) => {
    if (answered-- <= 0) throw new TypeError("fetch failed");
    return server.fetch(input, init);
  };
  const a = await open(server, { replicaId: "phone-a", store, retries: 1, fetch: flaky });
  for (let n = 0; n < 4; n++) await a.set("households", `h-${n}`, "phone", `1380000000${n}`);
  await a.sync();
  server.restore(2);
  answered = 1; // the exchange answers 409, then the network is gone
  await assert.rejects(a.sync(), { code: "offline" });
  assert.equal(a.resyncing, true);
  const restarted = await open(server, { store });
  const report = await restarted.sync();
  assert.equal(report.resynced, true);
  assert.equal(restarted.resyncing, false);
  assert.equal(server.log.length, 4);
  assert.equal(restarted.list("households").length, 4);
  for (const view of restarted.list("households")) assert.deepEqual(view, server.view("households", view.id));
});

test("records that left the scope are dropped but own unpushed changes stay; scope_changed starts over", async () => {
  const server = new FakeServer();
  const a = await open(server, { replicaId: "phone-a" });
  await a.set("households", "h-1", "phone", "13800000000");
  await a.set("households", "h-2", "phone", "13800000001");
  await a.sync();
  /** @type {import("../src/replica.js").RecordRef[][]} */
  const seen = [];
  a.onChange((changed) => seen.push(changed));
  server.leaving.push({ collection: "households", id: "h-1" }, { collection: "households", id: "h-2" });
  const mine = await a.set("households", "h-2", "notes", "not pushed yet");
  a.outbox.delete(mine.id); // held back from this exchange, as if made while it was in flight
  await a.sync();
  assert.equal(a.get("households", "h-1"), null);
  assert.deepEqual(a.get("households", "h-2")?.fields, { notes: "not pushed yet" });
  assert.ok(seen.flat().some((ref) => ref.id === "h-1"));
  a.outbox.set(mine.id, /** @type {any} */ (a.changes.get(mine.id)));

  server.scopeChanged = true;
  const report = await a.sync();
  assert.equal(report.resynced, true);
  assert.deepEqual(a.pending(), []);
  for (const id of ["h-1", "h-2"]) assert.deepEqual(a.get("households", id), server.view("households", id));
});

test("list filters by place, status and tag, as GET /v1/records does", async () => {
  const server = new FakeServer();
  const phone = await open(server, { replicaId: "phone-a" });
  await phone.set("grids", "c1-g1", "community_id", "c1");
  await phone.set("grids", "c1-g2", "community_id", "c1");
  await phone.set("buildings", "b-1", "grid_id", "c1-g1");
  await phone.set("buildings", "b-2", "grid_id", "c1-g2");
  await phone.set("households", "h-1", "building_id", "b-1");
  await phone.add("households", "h-1", "tags", "elderly-alone");
  await phone.set("households", "h-2", "building_id", "b-2");
  await phone.set("visits", "v-1", "household_id", "h-1");
  await phone.set("requests", "q-1", "household_id", "h-2");
  await phone.set("requests", "q-1", "status", "submitted");
  const ids = (/** @type {import("../src/merge.js").RecordView[]} */ views) => views.map((v) => v.id);
  assert.deepEqual(ids(phone.list("households", { grid: "c1-g1" })), ["h-1"]);
  assert.deepEqual(ids(phone.list("households", { community: "c1" })), ["h-1", "h-2"]);
  assert.deepEqual(ids(phone.list("visits", { grid: "c1-g1" })), ["v-1"]);
  assert.deepEqual(ids(phone.list("visits", { grid: "c1-g2" })), []);
  assert.deepEqual(ids(phone.list("households", { tag: "elderly-alone" })), ["h-1"]);
  assert.deepEqual(ids(phone.list("requests", { status: "submitted", building: "b-2" })), ["q-1"]);
  assert.deepEqual(phone.scope("visits", "v-1"), { community_id: "c1", grid_id: "c1-g1", building_id: "b-1", household_id: "h-1" });
});

test("edits the server would refuse for their shape fail at once, with its codes", async () => {
  const phone = await open(new FakeServer());
  await assert.rejects(phone.set("nowhere", "h-1", "phone", "1"), { code: "unknown_collection" });
  await assert.rejects(phone.set("households", "h 1", "phone", "1"), { code: "bad_record_id" });
  await assert.rejects(phone.set("households", "h-1", "colour", "1"), { code: "unknown_field" });
  await assert.rejects(phone.set("households", "h-1", "tags", "x"), { code: "wrong_op" });
  await assert.rejects(phone.add("households", "h-1", "phone", "x"), { code: "wrong_op" });
  assert.deepEqual(phone.pending(), []);
});

test("a photo is queued by its sha256 and uploaded with the next sync", async () => {
  const server = new FakeServer();
  const phone = await open(server, { replicaId: "phone-a" });
  const photo = new Uint8Array([0xff, 0xd8, 0xff, 1, 2, 3]);
  const sha256 = await phone.upload(photo, "image/jpeg");
  assert.equal(sha256, createHash("sha256").update(photo).digest("hex"));
  assert.equal(phone.status().uploads, 1);
  await phone.add("hazards", "z-1", "photos", sha256);
  server.failures.push("network", "network", "network", "network", "network");
  await assert.rejects(phone.sync(), { code: "offline" });
  assert.equal(phone.status().uploads, 1);
  const report = await phone.sync();
  assert.equal(report.uploaded, 1);
  assert.deepEqual(server.attachments.get(sha256), photo);
  assert.equal(phone.status().uploads, 0);
});

test("concurrent sync calls share one run", async () => {
  const server = new FakeServer();
  const phone = await open(server, { replicaId: "phone-a" });
  await phone.set("households", "h-1", "phone", "13800000000");
  const [one, two] = [phone.sync(), phone.sync()];
  assert.equal(one, two);
  assert.equal(phone.status().syncing, true);
  await one;
  assert.equal(server.requests.filter((r) => r.path === "/v1/sync/exchange").length, 1);
});

test("a change from a phone with a wrong date is merged, but does not drag the clock ahead", async () => {
  const server = new FakeServer();
  const now = Date.now();
  const far = `${String(now + 24 * 3600 * 1000).padStart(15, "0")}-000000-phone-z`;
  server.push([{ id: "0193a3c2-0000-7000-8000-00000000000f", collection: "households", record_id: "h-1", field: "phone", op: "set", value: "13800000000", hlc: far, pred: [] }]);
  const phone = await open(server, { replicaId: "phone-a", nowMs: () => now });
  await phone.sync();
  assert.equal(phone.get("households", "h-1")?.fields.phone, "13800000000");
  assert.ok(phone.clock.wallMs <= now + MAX_CLOCK_AHEAD_MS, `${phone.clock.wallMs - now} ms ahead`);
  const mine = await phone.set("households", "h-1", "phone", "13900000002");
  assert.ok(mine.hlc < far);
  await phone.sync();
  // Its pred names the far-ahead value, so it wins whatever the clocks say.
  assert.equal(server.view("households", "h-1")?.fields.phone, "13900000002");
});

test("with a server older than the exchange, a sync pushes and then pulls", async () => {
  const server = new FakeServer({ exchange: false });
  const a = await open(server, { replicaId: "phone-a" });
  const b = await open(server, { replicaId: "phone-b" });
  await a.set("households", "h-1", "phone", "13800000000");
  await b.set("households", "h-1", "phone", "13900000002");
  for (const phone of [a, b, a]) assert.deepEqual((await phone.sync()).rejected, []);
  assert.deepEqual(a.get("households", "h-1"), server.view("households", "h-1"));
  assert.deepEqual(b.get("households", "h-1"), server.view("households", "h-1"));
  assert.equal(a.get("households", "h-1")?.conflicts.phone.length, 2);
  const paths = server.requests.map((r) => r.path);
  assert.equal(paths.filter((p) => p === "/v1/sync/exchange").length, 2); // once a phone
  assert.ok(paths.includes("/v1/sync/pull"));
});

test("a snapshot's covered heads and pending ids make the bootstrapped record the replayed one", async () => {
  /** @param {number} n @param {Partial<import("../src/merge.js").Change>} fields @returns {import("../src/merge.js").Change} */
  const change = (n, fields) => ({
    id: `0193a3c2-0000-7000-8000-${String(n).padStart(12, "0")}`,
    collection: "households",
    record_id: "h-1",
    field: null,
    op: "delete",
    value: null,
    hlc: `00176400000000${n}-000000-phone-a`,
    pred: [],
    ...fields,
  });
  const phone = change(1, { op: "set", field: "phone", value: "13800000000" });
  const first = change(2, { pred: [phone.id] }); // covers the phone
  const second = change(3, { pred: [first.id] }); // from a phone that saw only the first delete
  const early = change(4, { op: "set", field: "notes", value: "old" }); // named before it arrives
  const notes = change(5, { op: "set", field: "notes", value: "new", pred: [early.id] });
  /** @type {Record<string, any>} */
  const shown = {};
  for (const snapshotFacts of [true, false]) {
    const server = new FakeServer();
    server.snapshotFacts = snapshotFacts;
    server.push([phone, first, second, notes]);
    const fresh = await open(server, { replicaId: "phone-b" });
    await fresh.sync();
    server.push([early]);
    await fresh.sync();
    shown[String(snapshotFacts)] = fresh.get("households", "h-1");
    if (snapshotFacts) assert.deepEqual(shown.true, server.view("households", "h-1"));
  }
  // With the facts the phone stays covered by the first delete; from heads alone it comes back.
  assert.deepEqual(shown.true.conflicts._deleted.map((/** @type {any} */ h) => h.change_id).sort(), [second.id, notes.id]);
  assert.equal(shown.true.conflicts.notes, undefined);
  assert.deepEqual(shown.false.conflicts._deleted.map((/** @type {any} */ h) => h.change_id).sort(), [phone.id, second.id, notes.id]);
});

test("changes pulled again after a snapshot that holds them are stored once, its seqs then forgotten", async () => {
  const server = new FakeServer();
  const a = await open(server, { replicaId: "phone-a" });
  await a.set("households", "h-1", "phone", "13800000000");
  await a.set("households", "h-1", "phone", "13900000002");
  await a.set("households", "h-1", "phone", "13700000003");
  await a.sync();
  server.snapshotLag = 3; // the whole chain was written while the snapshot was paged
  const b = await open(server, { replicaId: "phone-b" });
  await b.sync();
  assert.deepEqual(b.get("households", "h-1"), server.view("households", "h-1"));
  assert.deepEqual(b.get("households", "h-1")?.conflicts, {});
  assert.equal(b.changes.size, 3);
  assert.equal(b.snapshotSeqs.size, 0); // caught up: forgotten
});

test("a store that fails a write fails the edit and leaves the replica as the store holds it", async () => {
  const store = new MemoryStore();
  const phone = await open(new FakeServer(), { replicaId: "phone-a", store });
  await phone.set("households", "h-1", "phone", "13800000000");
  const write = store.write.bind(store);
  store.write = async () => {
    throw new Error("QuotaExceededError");
  };
  await assert.rejects(phone.set("households", "h-1", "phone", "13900000002"), /QuotaExceededError/);
  assert.equal(phone.pending().length, 1);
  assert.equal(phone.get("households", "h-1")?.fields.phone, "13800000000");
  await assert.rejects(open(new FakeServer(), { store: new (class extends MemoryStore {
    async write() {
      throw new Error("read-only");
    }
  })() }), /read-only/);
  store.write = write;
  await phone.set("households", "h-1", "phone", "13900000002");
  assert.equal(phone.pending().length, 2);
});
