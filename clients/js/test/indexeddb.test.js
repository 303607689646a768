// IndexedDBStore on fake-indexeddb (an IndexedDB in memory for Node); the field app's browser
// test runs it on Chromium's own.
import assert from "node:assert/strict";
import { test } from "node:test";

import { IDBFactory } from "fake-indexeddb";

import { IndexedDBStore, Replica } from "../src/index.js";
import { FakeServer } from "./fake-server.js";

test("a replica on IndexedDB keeps its records, queue, clock and cursor across a restart", async () => {
  const indexedDB = new IDBFactory();
  const server = new FakeServer();
  const options = { url: "http://gridsync.test", token: "gs_test", fetch: server.fetch, backoffMs: 1 };
  const phone = await Replica.open({ ...options, replicaId: "phone-a", store: new IndexedDBStore("phone-a", { indexedDB }) });
  await phone.set("households", "h-1", "phone", "13800000000");
  await phone.sync();
  await phone.add("households", "h-1", "tags", "elderly-alone");
  const photo = await phone.upload(new Uint8Array([1, 2, 3]), "image/jpeg");
  await phone.close();

  const again = await Replica.open({ ...options, store: new IndexedDBStore("phone-a", { indexedDB }) });
  assert.equal(again.replicaId, "phone-a");
  assert.deepEqual(again.get("households", "h-1"), phone.get("households", "h-1"));
  assert.deepEqual(again.pending(), phone.pending());
  assert.equal(again.cursor, phone.cursor);
  assert.ok(again.clock.current() >= phone.clock.current());
  assert.equal(again.status().uploads, 1);
  const report = await again.sync();
  assert.deepEqual([report.pushed, report.uploaded], [1, 1]);
  assert.ok(server.attachments.has(photo));
  assert.deepEqual(again.get("households", "h-1"), server.view("households", "h-1"));
  await again.close();
  await IndexedDBStore.destroy("phone-a", indexedDB);
});

test("a write is all or nothing: clear and puts land together", async () => {
  const indexedDB = new IDBFactory();
  const store = new IndexedDBStore("atomic", { indexedDB });
  const change = { id: "0193a3c2-0000-7000-8000-000000000001", collection: "households", record_id: "h-1", field: "phone", op: /** @type {const} */ ("set"), value: "1", hlc: "001764000000000-000000-a", pred: [] };
  await store.write({ changes: [{ change, status: "synced", seq: 1 }], records: [{ collection: "households", id: "h-1", state: { heads: [change], covered: [], pending: [] } }], meta: { cursor: "c1" } });
  await store.write({ clear: true, meta: { cursor: null } });
  assert.deepEqual(await store.load(), { meta: {}, records: [], changes: [] });
  await assert.rejects(store.write({ changes: [{ change: /** @type {any} */ ({ id: undefined }), status: "synced", seq: 2 }], meta: { cursor: "c2" } }));
  assert.deepEqual((await store.load()).meta, {});
  await store.close();
});
