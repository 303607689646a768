// The IndexedDB adapter: a Replica's store in a browser or an installed PWA.

/** @typedef {import("./store.js").Store} Store */
/** @typedef {import("./store.js").StoreWrite} StoreWrite */
/** @typedef {import("./store.js").StoreContents} StoreContents */
/** @typedef {import("./store.js").QueuedUpload} QueuedUpload */

const VERSION = 1;
const META = "meta";
const RECORDS = "records";
const CHANGES = "changes";
const UPLOADS = "uploads";
const ALL = [META, RECORDS, CHANGES, UPLOADS];

/**
 * @template T
 * @param {IDBRequest<T>} request
 * @returns {Promise<T>}
 */
function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * @param {IDBTransaction} transaction
 * @returns {Promise<void>}
 */
function committed(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error ?? new Error("IndexedDB transaction aborted"));
  });
}

/**
 * One IndexedDB database per replica: object stores `meta` (key: name), `records` (key:
 * [collection, id]), `changes` (key: change id) and `uploads` (key: sha256). A write is one
 * read-write transaction over them, committed with `durability: "strict"` where the browser
 * offers it, so an edit made offline is on disk when `set` resolves.
 * @implements {Store}
 */
export class IndexedDBStore {
  /**
   * @param {string} [name] the database name; one per replica (per signed-in device)
   * @param {{indexedDB?: IDBFactory}} [options] another IndexedDB implementation (tests)
   */
  constructor(name = "gridsync", options = {}) {
    this.name = name;
    const factory = options.indexedDB ?? globalThis.indexedDB;
    if (!factory) throw new Error("IndexedDB is not available here: use another store");
    this.factory = factory;
    /** @type {Promise<IDBDatabase> | null} */
    this.opening = null;
  }

  /** @returns {Promise<IDBDatabase>} */
  database() {
    if (this.opening === null) {
      const request = this.factory.open(this.name, VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        for (const name of ALL) if (!db.objectStoreNames.contains(name)) db.createObjectStore(name);
      };
      this.opening = done(request);
    }
    return this.opening;
  }

  /**
   * @param {IDBTransactionMode} mode
   * @param {string[]} [stores]
   */
  async transaction(mode, stores = ALL) {
    const db = await this.database();
    // `durability` is a hint some browsers take; "strict" waits for the disk.
    return db.transaction(stores, mode, /** @type {any} */ ({ durability: "strict" }));
  }

  /** @returns {Promise<StoreContents>} */
  async load() {
    const tx = await this.transaction("readonly", [META, RECORDS, CHANGES]);
    const [metaKeys, metaValues, records, changes] = await Promise.all([
      done(tx.objectStore(META).getAllKeys()),
      done(tx.objectStore(META).getAll()),
      done(tx.objectStore(RECORDS).getAll()),
      done(tx.objectStore(CHANGES).getAll()),
    ]);
    /** @type {Record<string, any>} */
    const meta = {};
    metaKeys.forEach((key, index) => {
      meta[String(key)] = metaValues[index];
    });
    return { meta, records, changes };
  }

  /** @param {StoreWrite} write */
  async write(write) {
    const tx = await this.transaction("readwrite", [META, RECORDS, CHANGES]);
    const finished = committed(tx);
    try {
      this.fill(tx, write);
    } catch (error) {
      // A put that throws (a key IndexedDB cannot hold) must not let the rest commit.
      tx.abort();
      await finished.catch(() => {});
      throw error;
    }
    await finished;
  }

  /**
   * @param {IDBTransaction} tx
   * @param {StoreWrite} write
   */
  fill(tx, write) {
    const meta = tx.objectStore(META);
    const records = tx.objectStore(RECORDS);
    const changes = tx.objectStore(CHANGES);
    if (write.clear) {
      records.clear();
      changes.clear();
    }
    for (const [key, value] of Object.entries(write.meta ?? {})) {
      if (value === null || value === undefined) meta.delete(key);
      else meta.put(value, key);
    }
    for (const record of write.records ?? []) {
      const key = [record.collection, record.id];
      if (record.state === null) records.delete(key);
      else records.put({ collection: record.collection, id: record.id, state: record.state }, key);
    }
    for (const stored of write.changes ?? []) changes.put(stored, stored.change.id);
    for (const id of write.dropChanges ?? []) changes.delete(id);
  }

  /** @param {QueuedUpload} upload */
  async putUpload(upload) {
    const tx = await this.transaction("readwrite", [UPLOADS]);
    tx.objectStore(UPLOADS).put(upload, upload.sha256);
    await committed(tx);
  }

  /** @returns {Promise<QueuedUpload[]>} */
  async uploads() {
    const tx = await this.transaction("readonly", [UPLOADS]);
    return done(tx.objectStore(UPLOADS).getAll());
  }

  /** @param {string} sha256 */
  async dropUpload(sha256) {
    const tx = await this.transaction("readwrite", [UPLOADS]);
    tx.objectStore(UPLOADS).delete(sha256);
    await committed(tx);
  }

  async close() {
    if (this.opening !== null) (await this.opening).close();
    this.opening = null;
  }

  /**
   * Remove the whole database (signing out a device).
   * @param {string} [name]
   * @param {IDBFactory} [factory]
   */
  static async destroy(name = "gridsync", factory = globalThis.indexedDB) {
    await done(factory.deleteDatabase(name));
  }
}
