// The storage interface a Replica persists through, and the in-memory adapter.
//
// A Replica holds its records in memory (so `get`, `list` and `pending` answer at once) and
// writes every change of them through its store before the call that made it resolves. A store
// therefore needs only two things: hand back everything at open (`load`), and apply one write
// atomically (`write`): all of it or none of it, durably, in the order the writes were made.
// Any key-value storage can do that: IndexedDB (IndexedDBStore), a mini-program's
// `wx.setStorage`, React Native's AsyncStorage or SQLite (docs/sdk.md shows an adapter).

/** @typedef {import("./merge.js").Change} Change */
/** @typedef {import("./merge.js").StoredState} StoredState */

/**
 * A change this replica holds, with where it stands.
 * @typedef {object} StoredChange
 * @property {Change} change
 * @property {"pending" | "synced" | "rejected"} status pending: made here, not yet acknowledged
 * @property {number} seq the order in which this replica took it (pending changes push in it)
 * @property {string | null} [code] why the server refused it (status "rejected")
 * @property {string | null} [message]
 */

/**
 * One record's merge state.
 * @typedef {object} StoredRecord
 * @property {string} collection
 * @property {string} id
 * @property {StoredState} state
 */

/**
 * Everything a store holds, as `load` hands it back.
 * @typedef {object} StoreContents
 * @property {Record<string, any>} meta small JSON values: replica id, clock, cursor ...
 * @property {StoredRecord[]} records
 * @property {StoredChange[]} changes
 */

/**
 * One atomic write. Every part is optional; a store applies them in this order.
 * @typedef {object} StoreWrite
 * @property {boolean} [clear] drop every record and change first (a resync)
 * @property {Record<string, any>} [meta] keys to set; `null` removes a key
 * @property {{collection: string, id: string, state: StoredState | null}[]} [records] put, or remove with `null`
 * @property {StoredChange[]} [changes] put, by `change.id`
 * @property {string[]} [dropChanges] change ids to remove
 */

/**
 * A photo or file waiting to be uploaded.
 * @typedef {object} QueuedUpload
 * @property {string} sha256
 * @property {Blob | Uint8Array} data
 * @property {string} [mediaType]
 */

/**
 * The storage a Replica writes through. `putUpload`, `uploads` and `dropUpload` keep the
 * attachment queue; a store without them uploads at once and queues nothing.
 * @typedef {object} Store
 * @property {() => Promise<StoreContents>} load
 * @property {(write: StoreWrite) => Promise<void>} write
 * @property {(upload: QueuedUpload) => Promise<void>} [putUpload]
 * @property {() => Promise<QueuedUpload[]>} [uploads]
 * @property {(sha256: string) => Promise<void>} [dropUpload]
 * @property {() => Promise<void>} [close]
 */

/**
 * JSON of a value, copied: what a store keeps must not change when the caller's object does.
 * @template T
 * @param {T} value
 * @returns {T}
 */
function clone(value) {
  return value === undefined ? value : JSON.parse(JSON.stringify(value));
}

/**
 * Apply `write` to plain maps: the semantics every store must have.
 * @param {{meta: Map<string, any>, records: Map<string, StoredRecord>, changes: Map<string, StoredChange>}} into
 * @param {StoreWrite} write
 */
export function applyWrite(into, write) {
  // Everything is copied before anything changes, so a value that cannot be stored fails the
  // whole write.
  const meta = Object.entries(write.meta ?? {}).map(([key, value]) => [key, value === null || value === undefined ? null : clone(value)]);
  const records = (write.records ?? []).map((record) => ({ ...record, state: record.state === null ? null : clone(record.state) }));
  const changes = (write.changes ?? []).map(clone);
  if (write.clear) {
    into.records.clear();
    into.changes.clear();
  }
  for (const [key, value] of meta) {
    if (value === null) into.meta.delete(key);
    else into.meta.set(key, value);
  }
  for (const record of records) {
    const key = `${record.collection}\u0000${record.id}`;
    if (record.state === null) into.records.delete(key);
    else into.records.set(key, { collection: record.collection, id: record.id, state: record.state });
  }
  for (const stored of changes) into.changes.set(stored.change.id, stored);
  for (const id of write.dropChanges ?? []) into.changes.delete(id);
}

/**
 * Keeps everything in memory: for tests, for a replica that need not outlive its process, and
 * as the model an adapter can follow. Pass the same instance to a second `Replica.open` to
 * "restart" a replica on what the first one left.
 * @implements {Store}
 */
export class MemoryStore {
  constructor() {
    /** @type {Map<string, any>} */
    this.meta = new Map();
    /** @type {Map<string, StoredRecord>} */
    this.records = new Map();
    /** @type {Map<string, StoredChange>} */
    this.changes = new Map();
    /** @type {Map<string, QueuedUpload>} */
    this.queued = new Map();
  }

  /** @returns {Promise<StoreContents>} */
  async load() {
    return {
      meta: Object.fromEntries(Array.from(this.meta, ([key, value]) => [key, clone(value)])),
      records: Array.from(this.records.values(), clone),
      changes: Array.from(this.changes.values(), clone),
    };
  }

  /** @param {StoreWrite} write */
  async write(write) {
    applyWrite(this, write);
  }

  /** @param {QueuedUpload} upload */
  async putUpload(upload) {
    this.queued.set(upload.sha256, upload);
  }

  async uploads() {
    return Array.from(this.queued.values());
  }

  /** @param {string} sha256 */
  async dropUpload(sha256) {
    this.queued.delete(sha256);
  }

  async close() {}
}
