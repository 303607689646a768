// A phone's replica: edits offline (ids, hlcs, preds from local heads), keeps a durable queue
// of pending changes, and syncs with the server by the exchange endpoint, folding what it
// receives with the same merge rules as the server (./merge.js).

import { COLLECTIONS } from "./collections.js";
import { HybridClock, REPLICA_ID_PATTERN } from "./hlc.js";
import { RECORD_ID_PATTERN, newChangeId } from "./ids.js";
import {
  DELETE_CONFLICT_KEY,
  absorbSnapshot,
  applyBatch,
  decodeState,
  encodeState,
  isDeleted,
  newState,
  recordKey,
  recordView,
  scalarValue,
  valueKey,
} from "./merge.js";
import { GridsyncError, Transport } from "./transport.js";

/** @typedef {import("./merge.js").Change} Change */
/** @typedef {import("./merge.js").RecordState} RecordState */
/** @typedef {import("./merge.js").RecordView} RecordView */
/** @typedef {import("./merge.js").CollectionSpec} CollectionSpec */
/** @typedef {import("./store.js").Store} Store */
/** @typedef {import("./store.js").StoreWrite} StoreWrite */
/** @typedef {import("./store.js").StoredChange} StoredChange */

/**
 * @typedef {object} ReplicaOptions
 * @property {string} url the server's base URL
 * @property {string | null} [token] the device token
 * @property {string} [replicaId] this device's replica id (1-64 of A-Z a-z 0-9 _ . : -); a store
 *   that already holds one keeps its own; without either, one is made
 * @property {Store} store where the replica keeps its records and pending changes
 * @property {Record<string, CollectionSpec>} [collections] the server's collections (default: gridsync's)
 * @property {typeof fetch} [fetch]
 * @property {boolean} [gzip]
 * @property {number} [retries]
 * @property {number} [backoffMs]
 * @property {number} [timeoutMs]
 * @property {number} [pushBatch] changes per exchange (default 500; halved on a 413)
 * @property {number} [pullLimit] changes per pulled page (default 1000)
 * @property {number} [snapshotLimit] records per snapshot page (default 500)
 * @property {number | null} [maxClockAheadMs] how far a received hlc may move the clock past the wall clock
 * @property {() => number} [nowMs] the wall clock (tests)
 */

/**
 * A change the server refused.
 * @typedef {object} Rejection
 * @property {string} id
 * @property {string} collection
 * @property {string} record_id
 * @property {string | null} field
 * @property {string} code
 * @property {string | null} message
 */

/**
 * What one `sync()` did.
 * @typedef {object} SyncReport
 * @property {number} pushed changes the server acknowledged (applied or duplicate)
 * @property {number} pulled changes received that this replica did not hold
 * @property {Rejection[]} rejected
 * @property {number} uploaded attachments uploaded
 * @property {number | null} clockSkewMs how far this device's clock is ahead, when the server says so
 * @property {boolean} resynced whether the replica started over from a snapshot
 */

/**
 * @typedef {object} ReplicaStatus
 * @property {boolean | null} online whether the last request reached the server (null: none yet)
 * @property {number} pending changes waiting to be pushed
 * @property {number} uploads attachments waiting to be uploaded
 * @property {boolean} syncing
 * @property {number | null} lastSyncAt when the last sync finished, ms since the epoch
 * @property {string | null} lastError the code of the last sync's failure, null after a success
 * @property {string | null} cursor
 */

/**
 * @typedef {object} ListFilter
 * @property {string} [community]
 * @property {string} [grid]
 * @property {string} [building]
 * @property {string} [household]
 * @property {string} [status] the value of the record's `status` field
 * @property {string} [tag] an element of the record's `tags`
 * @property {boolean} [include_deleted]
 */

/** @typedef {{collection: string, id: string}} RecordRef */
/**
 * What the server's state of a record knows beyond its heads (a snapshot record, or a pulled
 * page's `facts` for records that entered the scope); both parts usually absent.
 * @typedef {{collection: string, id: string, covered?: string[], pending?: Record<string, string[]>}} RecordFacts
 */
/** @typedef {(changed: RecordRef[]) => void} ChangeListener */

/** @typedef {{community_id?: string, grid_id?: string, building_id?: string, household_id?: string}} Scope */

const SCOPE_FILTERS = /** @type {const} */ ([
  ["community", "community_id"],
  ["grid", "grid_id"],
  ["building", "building_id"],
  ["household", "household_id"],
]);

/**
 * @param {any} pulled a pulled change (it carries `seq`)
 * @returns {Change}
 */
function asChange(pulled) {
  return {
    id: pulled.id,
    collection: pulled.collection,
    record_id: pulled.record_id,
    field: pulled.field ?? null,
    op: pulled.op,
    value: pulled.value ?? null,
    hlc: pulled.hlc,
    pred: Array.from(pulled.pred ?? []),
  };
}

/** @param {Change} change */
const keyOf = (change) => recordKey(change.collection, change.record_id);

/** @param {string} key @returns {RecordRef} */
function refOf(key) {
  const split = key.indexOf("\u0000");
  return { collection: key.slice(0, split), id: key.slice(split + 1) };
}

/** @param {number} bytes */
function hex(bytes) {
  return bytes.toString(16).padStart(2, "0");
}

export class Replica {
  /**
   * Open a replica on its store: loads what the store holds (records, pending changes, the
   * clock and the pull cursor). Nothing goes over the network until `sync()`.
   * @param {ReplicaOptions} options
   * @returns {Promise<Replica>}
   */
  static async open(options) {
    if (!options || !options.store) throw new TypeError("Replica.open needs a store (MemoryStore, IndexedDBStore ...)");
    const replica = new Replica(options);
    await replica._load();
    return replica;
  }

  /**
   * Use `Replica.open`.
   * @param {ReplicaOptions} options
   */
  constructor(options) {
    this.options = options;
    this.store = options.store;
    this.collections = options.collections ?? COLLECTIONS;
    this.transport = new Transport(options);
    this.pushBatch = options.pushBatch ?? 500;
    this.pullLimit = options.pullLimit ?? 1000;
    this.snapshotLimit = options.snapshotLimit ?? 500;
    this.replicaId = "";
    /** @type {HybridClock} */
    this.clock = /** @type {any} */ (null);
    /** @type {Map<string, RecordState>} */
    this.states = new Map();
    /** @type {Map<string, StoredChange>} */
    this.changes = new Map();
    /** @type {Map<string, StoredChange>} pending changes, in the order they were made */
    this.outbox = new Map();
    /** @type {string | null} */
    this.cursor = null;
    this.resyncing = false;
    /**
     * Records a snapshot sent as written after its `sync_cursor`, with the seq of that write.
     * @type {Map<string, number>}
     */
    this.snapshotSeqs = new Map();
    /** Whether the server has the exchange endpoint (until it answers 404). */
    this.exchanges = true;
    this.seq = 0;
    /** @type {number | null} */
    this.lastSyncAt = null;
    /** @type {string | null} */
    this.lastError = null;
    this.queuedUploads = 0;
    /** @type {Set<ChangeListener>} */
    this.listeners = new Set();
    /** @type {Promise<SyncReport> | null} */
    this.running = null;
    /** @type {Promise<void>} */
    this.writes = Promise.resolve();
  }

  async _load() {
    const contents = await this.store.load();
    const meta = contents.meta;
    const replicaId = meta.replicaId ?? this.options.replicaId ?? `r${newChangeId().replace(/-/g, "").slice(-12)}`;
    if (!REPLICA_ID_PATTERN.test(replicaId)) {
      throw new GridsyncError("bad_replica_id", `replica id ${JSON.stringify(replicaId)} must be 1-64 of A-Z a-z 0-9 _ . : -`);
    }
    this.replicaId = replicaId;
    const [wallMs, counter] = meta.clock ?? [0, 0];
    this.clock = new HybridClock(replicaId, {
      wallMs,
      counter,
      maxAheadMs: this.options.maxClockAheadMs,
      nowMs: this.options.nowMs,
    });
    this.cursor = meta.cursor ?? null;
    this.resyncing = meta.resyncing === true;
    this.snapshotSeqs = new Map(meta.snapshotSeqs ?? []);
    this.lastSyncAt = meta.lastSyncAt ?? null;
    this.states.clear();
    this.changes.clear();
    this.outbox.clear();
    this.seq = 0;
    for (const record of contents.records) {
      this.states.set(recordKey(record.collection, record.id), decodeState(record.state));
    }
    for (const stored of [...contents.changes].sort((a, b) => a.seq - b.seq)) {
      this.changes.set(stored.change.id, stored);
      if (stored.status === "pending") this.outbox.set(stored.change.id, stored);
      this.seq = Math.max(this.seq, stored.seq);
    }
    this.queuedUploads = this.store.uploads ? (await this.store.uploads()).length : 0;
    // Straight to the store: a store that cannot write fails the open (reloading would loop).
    if (meta.replicaId === undefined) await this.store.write({ meta: { replicaId } });
  }

  /**
   * Persist one write, after the ones before it. When the store fails, the replica reloads
   * what the store holds, so memory never shows what the disk does not.
   * @param {StoreWrite} write
   */
  async _write(write) {
    write.meta = { ...write.meta, clock: [this.clock.wallMs, this.clock.counter] };
    const next = this.writes.then(() => this.store.write(write));
    this.writes = next.catch(() => {});
    try {
      await next;
    } catch (error) {
      await this._load();
      throw error;
    }
  }

  /** @param {RecordRef[]} changed */
  _notify(changed) {
    if (changed.length === 0) return;
    for (const listener of this.listeners) {
      try {
        listener(changed);
      } catch (error) {
        console.error("gridsync: an onChange listener failed", error);
      }
    }
  }

  /**
   * @param {string} collection
   * @returns {CollectionSpec}
   */
  _spec(collection) {
    const spec = this.collections[collection];
    if (spec === undefined) {
      const known = Object.keys(this.collections).sort().join(", ");
      throw new GridsyncError("unknown_collection", `unknown collection ${JSON.stringify(collection)}; known collections: ${known}`);
    }
    return spec;
  }

  /** @param {string} key */
  _state(key) {
    return this.states.get(key) ?? newState();
  }

  /**
   * Store and merge changes this replica does not hold yet; the records they touched.
   * `facts`: records whose heads are among the changes (a snapshot page's, or those that entered
   * the scope), with what supersession knows beyond their heads (`covered` heads, ids `pending`
   * before they arrived), folded in as well. `merged`: ids of changes the states hold already
   * (stored, not merged again).
   * @param {Change[]} incoming
   * @param {"pending" | "synced"} status
   * @param {RecordFacts[]} [facts]
   * @param {Set<string>} [merged]
   * @returns {{fresh: StoredChange[], touched: Set<string>}}
   */
  _fold(incoming, status, facts = [], merged = new Set()) {
    /** @type {Map<string, Change>} */
    const fresh = new Map();
    for (const change of incoming) {
      if (!this.changes.has(change.id) && !fresh.has(change.id)) fresh.set(change.id, change);
    }
    const known = new Map(
      facts
        .filter((r) => (r.covered?.length ?? 0) > 0 || Object.keys(r.pending ?? {}).length > 0)
        .map((r) => [recordKey(r.collection, r.id), r]),
    );
    const toMerge = Array.from(fresh.values()).filter((change) => !merged.has(change.id));
    const touched = new Set([...toMerge.map(keyOf), ...known.keys()]);
    /** @type {Map<string, RecordState>} */
    const states = new Map();
    for (const key of touched) states.set(key, this._state(key));
    applyBatch(states, toMerge, (id) => this.changes.has(id) || merged.has(id));
    for (const [key, record] of known) {
      const state = /** @type {RecordState} */ (states.get(key));
      absorbSnapshot(state, record.covered ?? [], record.pending ?? {}, (id) => this.changes.has(id) || fresh.has(id));
    }
    for (const [key, state] of states) this.states.set(key, state);
    const stored = Array.from(fresh.values(), (change) => {
      /** @type {StoredChange} */
      const entry = { change, status, seq: ++this.seq };
      this.changes.set(change.id, entry);
      if (status === "pending") this.outbox.set(change.id, entry);
      return entry;
    });
    return { fresh: stored, touched };
  }

  /**
   * @param {Iterable<string>} keys
   * @returns {StoreWrite["records"]}
   */
  _recordWrites(keys) {
    return Array.from(keys, (key) => {
      const { collection, id } = refOf(key);
      const state = this.states.get(key);
      return { collection, id, state: state === undefined ? null : encodeState(state) };
    });
  }

  /**
   * Recompute records from the changes this replica holds, leaving out the rejected ones.
   * @param {Iterable<string>} keys
   */
  _rebuild(keys) {
    const wanted = new Set(keys);
    /** @type {Map<string, Change[]>} */
    const kept = new Map();
    for (const stored of this.changes.values()) {
      const key = keyOf(stored.change);
      if (!wanted.has(key) || stored.status === "rejected") continue;
      const list = kept.get(key);
      if (list === undefined) kept.set(key, [stored.change]);
      else list.push(stored.change);
    }
    for (const key of wanted) {
      const changes = kept.get(key);
      if (changes === undefined) {
        this.states.delete(key);
        continue;
      }
      /** @type {Map<string, RecordState>} */
      const states = new Map([[key, newState()]]);
      applyBatch(states, changes, () => false);
      this.states.set(key, /** @type {RecordState} */ (states.get(key)));
    }
  }

  // ---------------------------------------------------------------- offline edits

  /**
   * @param {string} collection
   * @param {string} recordId
   * @param {string | null} field
   * @param {Change["op"]} op
   */
  _check(collection, recordId, field, op) {
    const spec = this._spec(collection);
    if (typeof recordId !== "string" || !RECORD_ID_PATTERN.test(recordId)) {
      throw new GridsyncError("bad_record_id", `record id ${JSON.stringify(recordId)} must be 1-64 of A-Z a-z 0-9 _ . : -`);
    }
    if (field === null) return;
    const policy = spec.fields[field];
    if (policy === undefined) {
      const known = Object.keys(spec.fields).sort().join(", ");
      throw new GridsyncError("unknown_field", `collection ${JSON.stringify(collection)} has no field ${JSON.stringify(field)}; its fields are: ${known}`);
    }
    if (policy === "scalar" && op !== "set") {
      throw new GridsyncError("wrong_op", `field ${JSON.stringify(field)} holds one value: write it with set, not add/remove`);
    }
    if (policy === "set" && op === "set") {
      throw new GridsyncError("wrong_op", `field ${JSON.stringify(field)} is a set: write it with add or remove, not set`);
    }
  }

  /**
   * Make a change, merge it and persist it before resolving.
   * @param {string} collection
   * @param {string} recordId
   * @param {string | null} field
   * @param {Change["op"]} op
   * @param {any} value
   * @param {string[]} pred
   * @returns {Promise<Change>}
   */
  async _edit(collection, recordId, field, op, value, pred) {
    this._check(collection, recordId, field, op);
    if (value === undefined) value = null;
    JSON.stringify(value); // a value the wire cannot carry fails here, not at sync
    /** @type {Change} */
    const change = {
      id: newChangeId(),
      collection,
      record_id: recordId,
      field,
      op,
      value,
      hlc: this.clock.now(),
      pred,
    };
    const { fresh, touched } = this._fold([change], "pending");
    await this._write({ changes: fresh, records: this._recordWrites(touched) });
    this._notify([{ collection, id: recordId }]);
    return change;
  }

  /**
   * @param {string} key
   * @param {string} field
   */
  _fieldHeads(key, field) {
    return Array.from(this._state(key).heads.values()).filter((c) => c.op !== "delete" && c.field === field);
  }

  /**
   * Write a scalar field. Its `pred` names every head of the field this replica sees, so it
   * also settles a conflict on that field.
   * @param {string} collection
   * @param {string} recordId
   * @param {string} field
   * @param {any} value
   * @returns {Promise<Change>}
   */
  set(collection, recordId, field, value) {
    const pred = this._fieldHeads(recordKey(collection, recordId), field).map((c) => c.id);
    return this._edit(collection, recordId, field, "set", value, pred);
  }

  /**
   * Add an element to a set field (add-wins: a concurrent remove that did not see this add
   * leaves it in).
   * @param {string} collection
   * @param {string} recordId
   * @param {string} field
   * @param {any} element
   * @returns {Promise<Change>}
   */
  add(collection, recordId, field, element) {
    return this._edit(collection, recordId, field, "add", element, []);
  }

  /**
   * Remove an element from a set field: names every add of it this replica has seen. Resolves
   * to null when the element is not there.
   * @param {string} collection
   * @param {string} recordId
   * @param {string} field
   * @param {any} element
   * @returns {Promise<Change | null>}
   */
  async remove(collection, recordId, field, element) {
    const wanted = valueKey(element);
    const adds = this._fieldHeads(recordKey(collection, recordId), field)
      .filter((c) => c.op === "add" && valueKey(c.value) === wanted)
      .map((c) => c.id);
    if (adds.length === 0) {
      this._check(collection, recordId, field, "remove");
      return null;
    }
    return this._edit(collection, recordId, field, "remove", element, adds);
  }

  /**
   * Delete the record: `pred` names every head of it this replica sees. An edit made
   * elsewhere concurrently keeps the record visible, as a `_deleted` conflict.
   * @param {string} collection
   * @param {string} recordId
   * @returns {Promise<Change>}
   */
  delete(collection, recordId) {
    const pred = Array.from(this._state(recordKey(collection, recordId)).heads.keys());
    return this._edit(collection, recordId, null, "delete", null, pred);
  }

  /**
   * Settle a conflict. For a field: write `value` over every head of it (the values shown in
   * `get(...).conflicts[field]`). For `_deleted` (a delete concurrent with edits): `true`
   * confirms the deletion (a delete naming every head), `false` keeps the record (a write of
   * one of its fields, with its current value, naming the deletes).
   * @param {string} collection
   * @param {string} recordId
   * @param {string} field
   * @param {any} value
   * @returns {Promise<Change>}
   */
  async resolve(collection, recordId, field, value) {
    if (field !== DELETE_CONFLICT_KEY) return this.set(collection, recordId, field, value);
    if (value) return this.delete(collection, recordId);
    const key = recordKey(collection, recordId);
    const state = this._state(key);
    const deletes = Array.from(state.heads.values()).filter((c) => c.op === "delete");
    const spec = this._spec(collection);
    const kept = Array.from(state.heads.values()).find(
      (c) => c.op === "set" && !state.covered.has(c.id) && spec.fields[/** @type {string} */ (c.field)] === "scalar",
    ) ?? Array.from(state.heads.values()).find((c) => c.op === "set");
    if (deletes.length === 0) throw new GridsyncError("no_conflict", `${collection}/${recordId} has no delete to undo`);
    if (kept === undefined) throw new GridsyncError("no_conflict", `${collection}/${recordId} has no field to keep`);
    const field_ = /** @type {string} */ (kept.field);
    const pred = [...this._fieldHeads(key, field_).map((c) => c.id), ...deletes.map((c) => c.id)];
    return this._edit(collection, recordId, field_, "set", scalarValue(state, field_), pred);
  }

  // ---------------------------------------------------------------- reads

  /**
   * One record, in the shape of `GET /v1/records/{collection}/{id}`; null when this replica
   * holds nothing of it.
   * @param {string} collection
   * @param {string} recordId
   * @returns {RecordView | null}
   */
  get(collection, recordId) {
    const state = this.states.get(recordKey(collection, recordId));
    if (state === undefined || state.heads.size === 0) return null;
    return recordView(state, collection, this._spec(collection), recordId);
  }

  /**
   * Where a record sits (its community, grid, building, household), from its link fields.
   * @param {string} collection
   * @param {string} recordId
   * @param {Map<string, Scope>} [memo]
   * @param {Set<string>} [walking]
   * @returns {Scope}
   */
  scope(collection, recordId, memo = new Map(), walking = new Set()) {
    const key = recordKey(collection, recordId);
    const known = memo.get(key);
    if (known !== undefined) return known;
    /** @type {Scope} */
    let scope = {};
    const spec = this.collections[collection];
    if (spec === undefined || walking.has(key)) return scope;
    walking.add(key);
    const state = this.states.get(key);
    for (const link of spec.scopeLinks ?? []) {
      const value = state === undefined ? null : scalarValue(state, link);
      const target = spec.refs?.[link];
      if (value !== null && target !== undefined) {
        scope = { ...this.scope(target, value, memo, walking) };
        break;
      }
    }
    if (spec.scopeSelf) scope[/** @type {keyof Scope} */ (spec.scopeSelf)] = recordId;
    walking.delete(key);
    memo.set(key, scope);
    return scope;
  }

  /**
   * The records of a collection this replica holds, by id, filtered like
   * `GET /v1/records/{collection}`.
   * @param {string} collection
   * @param {ListFilter} [filter]
   * @returns {RecordView[]}
   */
  list(collection, filter = {}) {
    const spec = this._spec(collection);
    const prefix = recordKey(collection, "");
    /** @type {Map<string, Scope>} */
    const memo = new Map();
    const scoped = SCOPE_FILTERS.filter(([name]) => filter[name] !== undefined && filter[name] !== null);
    /** @type {RecordView[]} */
    const found = [];
    for (const [key, state] of this.states) {
      if (!key.startsWith(prefix) || state.heads.size === 0) continue;
      const id = key.slice(prefix.length);
      if (!filter.include_deleted && isDeleted(state)) continue;
      if (scoped.length > 0) {
        const scope = this.scope(collection, id, memo);
        if (!scoped.every(([name, column]) => scope[column] === filter[name])) continue;
      }
      const view = recordView(state, collection, spec, id);
      if (filter.status !== undefined && view.fields.status !== filter.status) continue;
      if (filter.tag !== undefined && !(view.fields.tags ?? []).includes(filter.tag)) continue;
      found.push(view);
    }
    return found.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Changes made here and not yet acknowledged by the server, oldest first.
   * @returns {Change[]}
   */
  pending() {
    return Array.from(this.outbox.values(), (stored) => stored.change);
  }

  /**
   * Changes the server refused, with its code and message (they are left out of the records).
   * @returns {Rejection[]}
   */
  rejected() {
    return Array.from(this.changes.values())
      .filter((stored) => stored.status === "rejected")
      .map((stored) => ({
        id: stored.change.id,
        collection: stored.change.collection,
        record_id: stored.change.record_id,
        field: stored.change.field,
        code: stored.code ?? "",
        message: stored.message ?? null,
      }));
  }

  /**
   * Call `listener` with the records that changed, after every local edit and every sync
   * that changed something. Returns the function that unsubscribes it.
   * @param {ChangeListener} listener
   * @returns {() => void}
   */
  onChange(listener) {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** @returns {ReplicaStatus} */
  status() {
    return {
      online: this.transport.online,
      pending: this.outbox.size,
      uploads: this.queuedUploads,
      syncing: this.running !== null,
      lastSyncAt: this.lastSyncAt,
      lastError: this.lastError,
      cursor: this.cursor,
    };
  }

  // ---------------------------------------------------------------- attachments

  /**
   * Queue a photo or file for upload under the SHA-256 of its bytes and resolve to that hash
   * (what a `photos` field holds). It goes up with the next `sync()`, and waits in the store
   * until the server has it.
   * @param {Blob | Uint8Array | ArrayBuffer} data
   * @param {string} [mediaType]
   * @returns {Promise<string>}
   */
  async upload(data, mediaType) {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data instanceof ArrayBuffer ? data : await data.arrayBuffer());
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", /** @type {BufferSource} */ (bytes)));
    const sha256 = Array.from(digest, hex).join("");
    const upload = { sha256, data: bytes, mediaType: mediaType ?? (typeof Blob !== "undefined" && data instanceof Blob ? data.type : undefined) };
    if (this.store.putUpload) {
      await this.store.putUpload(upload);
      this.queuedUploads = this.store.uploads ? (await this.store.uploads()).length : this.queuedUploads + 1;
    } else {
      await this._send(upload);
    }
    return sha256;
  }

  /** @param {import("./store.js").QueuedUpload} upload */
  async _send(upload) {
    await this.transport.request("PUT", `/v1/attachments/${upload.sha256}`, {
      body: upload.data,
      contentType: upload.mediaType || "application/octet-stream",
    });
  }

  /** @param {SyncReport} report */
  async _flushUploads(report) {
    if (!this.store.uploads || !this.store.dropUpload) return;
    for (const upload of await this.store.uploads()) {
      await this._send(upload);
      await this.store.dropUpload(upload.sha256);
      report.uploaded += 1;
    }
    this.queuedUploads = (await this.store.uploads()).length;
  }

  // ---------------------------------------------------------------- sync

  /**
   * Push everything pending and pull until caught up, one exchange per round trip; a new
   * replica first takes a snapshot. Concurrent calls share one run. Rejects with a
   * GridsyncError when the server cannot be reached (after retries) or refuses the device;
   * pending changes stay queued either way.
   * @returns {Promise<SyncReport>}
   */
  sync() {
    if (this.running === null) {
      this.running = this._sync().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  /** @returns {Promise<SyncReport>} */
  async _sync() {
    /** @type {SyncReport} */
    const report = { pushed: 0, pulled: 0, rejected: [], uploaded: 0, clockSkewMs: null, resynced: false };
    try {
      await this._flushUploads(report);
      if (this.resyncing) {
        // A resync cut short (offline, app closed): finish it, so the snapshot replaces the
        // local records instead of being merged into them.
        await this._resync(report, false);
      } else {
        if (this.cursor === null) await this._bootstrap(report);
        await this._exchangeUntilCaughtUp(report, true);
      }
      this.lastError = null;
      this.lastSyncAt = Date.now();
      await this._write({ meta: { lastSyncAt: this.lastSyncAt } });
      return report;
    } catch (error) {
      this.lastError = error instanceof GridsyncError ? error.code : String(error);
      throw error;
    }
  }

  /**
   * @param {SyncReport} report
   * @param {boolean} mayResync whether a 409 may start a resync (once a sync)
   */
  async _exchangeUntilCaughtUp(report, mayResync) {
    for (;;) {
      const batch = Array.from(this.outbox.values()).slice(0, this.pushBatch).map((s) => s.change);
      /** @type {any} */
      let page;
      try {
        page = await this._roundTrip(batch, report);
      } catch (error) {
        if (!(error instanceof GridsyncError)) throw error;
        if (error.status === 413 && batch.length > 1) {
          this.pushBatch = Math.max(1, Math.floor(batch.length / 2));
          continue;
        }
        if (mayResync && error.status === 409 && (error.code === "resync_required" || error.code === "scope_changed")) {
          // The batch may have been applied before the cursor was judged: it stays pending,
          // and the resync offers it again (answered `duplicate`).
          await this._resync(report, error.code === "scope_changed");
          return;
        }
        throw error;
      }
      await this._acceptPull(page, report);
      if (!page.more && this.outbox.size === 0) return;
    }
  }

  /**
   * Push `batch` and take the page after the cursor: one exchange, or, from a server older than
   * the exchange (it answers 404), a push and then a pull. Resolves to the page.
   * @param {Change[]} batch
   * @param {SyncReport} report
   * @returns {Promise<any>}
   */
  async _roundTrip(batch, report) {
    const query = Transport.query({ since: this.cursor, limit: this.pullLimit });
    const body = { json: { replica_id: this.replicaId, protocol: 1, changes: batch } };
    if (this.exchanges) {
      try {
        const answer = await this.transport.request("POST", `/v1/sync/exchange${query}`, body);
        await this._acceptPush(batch, answer.push, report);
        return answer.pull;
      } catch (error) {
        if (!(error instanceof GridsyncError) || error.status !== 404) throw error;
        this.exchanges = false;
      }
    }
    if (batch.length > 0) {
      await this._acceptPush(batch, await this.transport.request("POST", "/v1/sync/push", body), report);
    }
    return this.transport.request("GET", `/v1/sync/pull${query}`);
  }

  /**
   * @param {Change[]} batch
   * @param {any} response a PushResponse
   * @param {SyncReport} report
   */
  async _acceptPush(batch, response, report) {
    if (!response || response.results.length !== batch.length) {
      throw new GridsyncError("bad_response", "the push answer does not hold one result per change");
    }
    /** @type {StoredChange[]} */
    const updated = [];
    /** @type {Set<string>} */
    const rejectedKeys = new Set();
    batch.forEach((change, index) => {
      const result = response.results[index];
      const stored = this.changes.get(change.id);
      if (stored === undefined) return;
      this.outbox.delete(change.id);
      if (result.status === "rejected") {
        Object.assign(stored, { status: "rejected", code: result.code ?? "", message: result.message ?? null });
        rejectedKeys.add(keyOf(change));
        report.rejected.push({
          id: change.id,
          collection: change.collection,
          record_id: change.record_id,
          field: change.field,
          code: result.code ?? "",
          message: result.message ?? null,
        });
      } else {
        stored.status = "synced";
        report.pushed += 1;
      }
      updated.push(stored);
    });
    this._rebuild(rejectedKeys);
    if (response.server_hlc) this.clock.observe(response.server_hlc);
    if (response.clock_skew_ms !== null && response.clock_skew_ms !== undefined) report.clockSkewMs = response.clock_skew_ms;
    await this._write({ changes: updated, records: this._recordWrites(rejectedKeys) });
    this._notify(Array.from(rejectedKeys, refOf));
  }

  /**
   * @param {any} page a PullResponse
   * @param {SyncReport} report
   */
  async _acceptPull(page, report) {
    const incoming = page.changes.map(asChange);
    for (const change of incoming) this.clock.observe(change.hlc);
    // Changes of records a snapshot sent as written while it was paged: those up to that
    // write are in the snapshot's state already.
    const merged = new Set(
      page.changes
        .filter((/** @type {any} */ c) => c.seq <= (this.snapshotSeqs.get(recordKey(c.collection, c.record_id)) ?? 0))
        .map((/** @type {any} */ c) => c.id),
    );
    const { fresh, touched } = this._fold(incoming, "synced", page.facts ?? [], merged);
    /** @type {Record<string, any>} */
    const meta = { cursor: page.cursor };
    if (!page.more && this.snapshotSeqs.size > 0) {
      this.snapshotSeqs.clear();
      meta.snapshotSeqs = null;
    }
    report.pulled += fresh.length;
    const left = (page.left ?? []).map((/** @type {RecordRef} */ ref) => recordKey(ref.collection, ref.id));
    const dropped = this._forget(left);
    for (const key of left) touched.add(key);
    this.cursor = page.cursor;
    await this._write({ changes: fresh, dropChanges: dropped, records: this._recordWrites(touched), meta });
    this._notify(Array.from(touched, refOf));
  }

  /**
   * Drop records that left this replica's scope: all but its own unpushed changes.
   * @param {string[]} keys
   * @returns {string[]} the ids of the changes dropped
   */
  _forget(keys) {
    if (keys.length === 0) return [];
    const wanted = new Set(keys);
    /** @type {string[]} */
    const dropped = [];
    for (const [id, stored] of this.changes) {
      if (stored.status !== "pending" && wanted.has(keyOf(stored.change))) dropped.push(id);
    }
    for (const id of dropped) this.changes.delete(id);
    this._rebuild(wanted);
    return dropped;
  }

  /**
   * Fold the server's current heads, a page at a time, then pull from its `sync_cursor`.
   * @param {SyncReport} report
   */
  async _bootstrap(report) {
    /** @type {string | null} */
    let page = null;
    for (;;) {
      const path = `/v1/sync/snapshot${Transport.query({ limit: this.snapshotLimit, cursor: page })}`;
      const answer = await this.transport.request("GET", path);
      const incoming = answer.records.flatMap((/** @type {any} */ record) => record.heads.map(asChange));
      for (const change of incoming) this.clock.observe(change.hlc);
      const { fresh, touched } = this._fold(incoming, "synced", answer.records);
      report.pulled += fresh.length;
      for (const record of answer.records) {
        if (record.seq) this.snapshotSeqs.set(recordKey(record.collection, record.id), record.seq);
      }
      if (!answer.more) this.cursor = answer.sync_cursor;
      await this._write({
        changes: fresh,
        records: this._recordWrites(touched),
        meta: { cursor: this.cursor, snapshotSeqs: this.snapshotSeqs.size ? Array.from(this.snapshotSeqs) : null },
      });
      this._notify(Array.from(touched, refOf));
      if (!answer.more) return;
      page = answer.cursor;
    }
  }

  /**
   * Start over from a snapshot. When the server lost track of the cursor (a restored or
   * compacted history), first offer it every change held here again (it answers `duplicate`
   * for those it has), then replace the local records with its snapshot: the server then
   * holds a superset of what this replica knows. When the user's scope changed, drop what is
   * held instead (own unpushed changes stay) and take the new scope's records.
   * @param {SyncReport} report
   * @param {boolean} scopeChanged
   */
  async _resync(report, scopeChanged) {
    report.resynced = true;
    if (!scopeChanged) {
      this.resyncing = true;
      const held = Array.from(this.changes.values()).filter((s) => s.status === "synced");
      for (const stored of held) {
        stored.status = "pending";
        this.outbox.set(stored.change.id, stored);
      }
      const sorted = Array.from(this.outbox.values()).sort((a, b) => a.seq - b.seq);
      this.outbox = new Map(sorted.map((s) => [s.change.id, s]));
      this.cursor = null;
      await this._write({ changes: held, meta: { cursor: null, resyncing: true } });
      while (this.outbox.size > 0) {
        const batch = Array.from(this.outbox.values()).slice(0, this.pushBatch).map((s) => s.change);
        let answer;
        try {
          answer = await this.transport.request("POST", "/v1/sync/push", {
            json: { replica_id: this.replicaId, protocol: 1, changes: batch },
          });
        } catch (error) {
          if (error instanceof GridsyncError && error.status === 413 && batch.length > 1) {
            this.pushBatch = Math.max(1, Math.floor(batch.length / 2));
            continue;
          }
          throw error;
        }
        await this._acceptPush(batch, answer, report);
      }
    }
    const before = Array.from(this.states.keys());
    // Own changes the server has not taken (pending) or refused (rejected) stay.
    const kept = Array.from(this.changes.values()).filter((s) => s.status !== "synced");
    this.changes = new Map(kept.map((s) => [s.change.id, s]));
    this.states.clear();
    this._rebuild(kept.map((s) => keyOf(s.change)));
    this.cursor = null;
    this.resyncing = false;
    this.snapshotSeqs.clear();
    await this._write({
      clear: true,
      changes: kept,
      records: this._recordWrites(this.states.keys()),
      meta: { cursor: null, resyncing: null, snapshotSeqs: null },
    });
    this._notify(before.map(refOf));
    await this._bootstrap(report);
    await this._exchangeUntilCaughtUp(report, false);
  }

  /**
   * Use another device token from now on (after the device was enrolled again).
   * @param {string | null} token
   */
  setToken(token) {
    this.transport.token = token;
  }

  /** Wait for the writes in flight and close the store. */
  async close() {
    await this.writes;
    if (this.store.close) await this.store.close();
  }
}
