// The merge rules, as pure functions over one record's state: the same rules as sync/merge.py,
// change for change (tests/vectors/ holds histories both must agree on).
//
// The state of a record is a function of the *set* of changes it has received: any arrival
// order, any duplication, and a `pred` naming a change that has not arrived yet all give the
// same state. A record keeps only what the rules need, not its history:
// - `heads`: the field changes no change of the same field supersedes, and the deletes no
//   change supersedes. A `remove` only supersedes the adds it names; it is never a head.
// - `covered`: the heads named by some delete (a deleted value that may still come back).
// - `pending`: ids named in a `pred` before the change itself arrived, with the kind of each
//   namer (a field name, or "" for a delete), so the late change is born superseded.

/**
 * A change, as the wire carries it (docs/protocol.md).
 * @typedef {object} Change
 * @property {string} id
 * @property {string} collection
 * @property {string} record_id
 * @property {string | null} field
 * @property {"set" | "add" | "remove" | "delete"} op
 * @property {any} value
 * @property {string} hlc
 * @property {string[]} pred
 */

/**
 * @typedef {object} RecordState
 * @property {Map<string, Change>} heads
 * @property {Set<string>} covered
 * @property {Map<string, Set<string>>} pending
 */

/**
 * A record's state as plain JSON, for a store.
 * @typedef {{heads: Change[], covered: string[], pending: [string, string[]][]}} StoredState
 */

/**
 * What the merge needs to know of a collection: each field's policy.
 * @typedef {object} CollectionSpec
 * @property {Record<string, "scalar" | "set">} fields
 * @property {string | null} [scopeSelf]
 * @property {string[]} [scopeLinks]
 * @property {Record<string, string>} [refs]
 */

/**
 * @typedef {object} ConflictHead
 * @property {string} change_id
 * @property {any} value
 * @property {string} hlc
 * @property {string} replica_id
 * @property {string} op
 * @property {string | null} field
 */

/**
 * The shape of `GET /v1/records/{collection}/{id}`.
 * @typedef {object} RecordView
 * @property {string} collection
 * @property {string} id
 * @property {boolean} deleted
 * @property {Record<string, any>} fields
 * @property {Record<string, ConflictHead[]>} conflicts
 */

const DELETE_KIND = "";
/** Key of the conflicts map that holds a delete and the edits made concurrently with it. */
export const DELETE_CONFLICT_KEY = "_deleted";

/** @returns {RecordState} */
export function newState() {
  return { heads: new Map(), covered: new Set(), pending: new Map() };
}

/**
 * A copy that `applyChange` can fold changes into, leaving `state` as it is.
 * @param {RecordState} state
 * @returns {RecordState}
 */
export function copyState(state) {
  return {
    heads: new Map(state.heads),
    covered: new Set(state.covered),
    pending: new Map(Array.from(state.pending, ([named, kinds]) => [named, new Set(kinds)])),
  };
}

/**
 * @param {RecordState} state
 * @returns {StoredState}
 */
export function encodeState(state) {
  return {
    heads: Array.from(state.heads.values()),
    covered: Array.from(state.covered),
    pending: Array.from(state.pending, ([named, kinds]) => [named, Array.from(kinds)]),
  };
}

/**
 * @param {StoredState} stored
 * @returns {RecordState}
 */
export function decodeState(stored) {
  return {
    heads: new Map(stored.heads.map((change) => [change.id, change])),
    covered: new Set(stored.covered),
    pending: new Map(stored.pending.map(([named, kinds]) => [named, new Set(kinds)])),
  };
}

/** @param {Change} change */
function kindOf(change) {
  return change.op === "delete" ? DELETE_KIND : /** @type {string} */ (change.field);
}

/**
 * Fold one new change into `state` (in place). `known(id)` tells whether a change with that id
 * was already applied to this store; the caller never applies the same change twice.
 * @param {RecordState} state
 * @param {Change} change
 * @param {(id: string) => boolean} known
 */
export function applyChange(state, change, known) {
  const { heads, covered, pending } = state;
  const namers = pending.get(change.id);
  if (namers !== undefined) pending.delete(change.id);
  const kind = kindOf(change);
  for (const named of change.pred) {
    const head = heads.get(named);
    if (head === undefined) {
      if (!known(named)) {
        let kinds = pending.get(named);
        if (kinds === undefined) pending.set(named, (kinds = new Set()));
        kinds.add(kind);
      }
      continue;
    }
    nameHead(state, head, kind);
  }
  if (change.op === "remove") return;
  if (change.op === "delete") {
    if (namers === undefined || namers.size === 0) heads.set(change.id, change);
    return;
  }
  if (namers === undefined || !namers.has(kind)) {
    heads.set(change.id, change);
    if (namers !== undefined && namers.has(DELETE_KIND)) covered.add(change.id);
  }
}

/**
 * What a change of `kind` naming the present `head` in its pred does to it.
 * @param {RecordState} state
 * @param {Change} head
 * @param {string} kind
 */
function nameHead(state, head, kind) {
  if (head.op === "delete" || (kind !== DELETE_KIND && head.field === kind)) {
    // Any change that saw a delete supersedes it (a restore); a field change supersedes the
    // heads of its own field only.
    state.heads.delete(head.id);
    state.covered.delete(head.id);
  } else if (kind === DELETE_KIND) {
    state.covered.add(head.id);
  }
}

/**
 * Fold into `state`, which holds a snapshot's heads of the record (and whatever this replica
 * had), what the server's state knows beyond its heads: `covered` (heads a delete named,
 * possibly a delete no longer a head) and `pending` (ids named before they arrived, with their
 * namers' kinds). The state is then the one a replica replaying the whole log holds.
 * `known(id)`: whether this replica already holds that change.
 * @param {RecordState} state
 * @param {Iterable<string>} covered
 * @param {Record<string, string[]>} pending
 * @param {(id: string) => boolean} known
 */
export function absorbSnapshot(state, covered, pending, known) {
  for (const id of covered) {
    const head = state.heads.get(id);
    if (head !== undefined && head.op !== "delete") state.covered.add(id);
  }
  for (const [named, kinds] of Object.entries(pending)) {
    const head = state.heads.get(named);
    if (head !== undefined) {
      // Held here already (an own change not yet pushed): the changes that named it supersede
      // it now, as they will on the server when it arrives there.
      for (const kind of [...kinds].sort()) if (state.heads.has(named)) nameHead(state, head, kind);
    } else if (!known(named)) {
      let found = state.pending.get(named);
      if (found === undefined) state.pending.set(named, (found = new Set()));
      for (const kind of kinds) found.add(kind);
    }
  }
}

/**
 * Apply new changes in order. `knownBefore(id)` tells whether the store already held a change
 * before this batch (heads and the batch's own changes count as known without asking).
 * @param {Map<string, RecordState>} states by `recordKey(collection, id)`
 * @param {Iterable<Change>} changes
 * @param {(id: string) => boolean} knownBefore
 */
export function applyBatch(states, changes, knownBefore) {
  /** @type {Set<string>} */
  const applied = new Set();
  /** @type {Set<string>} */
  const presentHeads = new Set();
  for (const state of states.values()) for (const id of state.heads.keys()) presentHeads.add(id);
  /** @param {string} id */
  const known = (id) => applied.has(id) || presentHeads.has(id) || knownBefore(id);
  for (const change of changes) {
    const key = recordKey(change.collection, change.record_id);
    let state = states.get(key);
    if (state === undefined) states.set(key, (state = newState()));
    applyChange(state, change, known);
    applied.add(change.id);
  }
}

/**
 * @param {string} collection
 * @param {string} recordId
 */
export function recordKey(collection, recordId) {
  return `${collection}\u0000${recordId}`;
}

/**
 * Every head of the record: what a delete names in `pred`.
 * @param {RecordState} state
 * @returns {Change[]}
 */
export function recordHeads(state) {
  return Array.from(state.heads.values());
}

/**
 * (hlc, id) order, the order in which heads win.
 * @param {Change} a
 * @param {Change} b
 */
function compareOrder(a, b) {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}

/**
 * @param {Change} change
 * @returns {ConflictHead}
 */
function conflictHead(change) {
  return {
    change_id: change.id,
    value: change.value,
    hlc: change.hlc,
    replica_id: change.hlc.slice(23),
    op: change.op,
    field: change.field ?? null,
  };
}

/**
 * A value's identity for "same value" tests: its JSON with object keys sorted.
 * @param {any} value
 * @returns {string}
 */
export function valueKey(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(valueKey).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${valueKey(value[key])}`).join(",")}}`;
}

/**
 * @param {Iterable<any>} values
 * @returns {any[]}
 */
function distinct(values) {
  /** @type {Map<string, any>} */
  const seen = new Map();
  for (const value of values) {
    const key = valueKey(value);
    if (!seen.has(key)) seen.set(key, value);
  }
  return Array.from(seen.values());
}

const utf8 = new TextEncoder();

/**
 * The order of set elements: by the bytes of their JSON, as the server sorts them.
 * @param {any} a
 * @param {any} b
 */
function compareJsonBytes(a, b) {
  const left = utf8.encode(JSON.stringify(a));
  const right = utf8.encode(JSON.stringify(b));
  const length = Math.min(left.length, right.length);
  for (let i = 0; i < length; i++) if (left[i] !== right[i]) return left[i] - right[i];
  return left.length - right.length;
}

/**
 * (delete heads, field heads no delete has named).
 * @param {RecordState} state
 * @returns {[Change[], Change[]]}
 */
function status(state) {
  /** @type {Change[]} */
  const deletes = [];
  /** @type {Change[]} */
  const live = [];
  for (const change of state.heads.values()) {
    if (change.op === "delete") deletes.push(change);
    else if (!state.covered.has(change.id)) live.push(change);
  }
  return [deletes, live];
}

/** @param {RecordState} state */
export function isDeleted(state) {
  const [deletes, live] = status(state);
  return deletes.length > 0 && live.length === 0;
}

/**
 * @param {RecordState} state
 * @returns {Map<string, Change[]>}
 */
function fieldHeads(state) {
  /** @type {Map<string, Change[]>} */
  const byField = new Map();
  for (const change of state.heads.values()) {
    if (change.op === "delete") continue;
    const name = /** @type {string} */ (change.field);
    const list = byField.get(name);
    if (list === undefined) byField.set(name, [change]);
    else list.push(change);
  }
  return byField;
}

/**
 * Fields whose heads disagree, and a delete with the edits made concurrently with it; heads
 * newest first.
 * @param {RecordState} state
 * @param {CollectionSpec} spec
 * @returns {Record<string, ConflictHead[]>}
 */
export function conflicts(state, spec) {
  /** @type {Record<string, ConflictHead[]>} */
  const found = {};
  for (const [name, heads] of fieldHeads(state)) {
    if (spec.fields[name] !== "scalar" || heads.length < 2) continue;
    if (distinct(heads.map((head) => head.value)).length > 1) {
      found[name] = [...heads].sort(compareOrder).reverse().map(conflictHead);
    }
  }
  const [deletes, live] = status(state);
  if (deletes.length > 0 && live.length > 0) {
    found[DELETE_CONFLICT_KEY] = [...deletes, ...live].sort(compareOrder).reverse().map(conflictHead);
  }
  return found;
}

/**
 * The value shown for one scalar field (null when it has none).
 * @param {RecordState} state
 * @param {string} name
 */
export function scalarValue(state, name) {
  /** @type {Change | null} */
  let best = null;
  for (const change of state.heads.values()) {
    if (change.field === name && (best === null || compareOrder(change, best) > 0)) best = change;
  }
  return best === null ? null : best.value;
}

/**
 * @param {RecordState} state
 * @param {CollectionSpec} spec
 * @returns {Record<string, any>}
 */
export function fieldValues(state, spec) {
  /** @type {Record<string, any>} */
  const values = {};
  for (const [name, heads] of fieldHeads(state)) {
    const policy = spec.fields[name];
    if (policy === undefined) continue;
    if (policy === "set") {
      values[name] = distinct(heads.map((head) => head.value)).sort(compareJsonBytes);
    } else {
      values[name] = heads.reduce((best, head) => (compareOrder(head, best) > 0 ? head : best)).value;
    }
  }
  return values;
}

/**
 * @param {RecordState} state
 * @param {string} collection
 * @param {CollectionSpec} spec
 * @param {string} recordId
 * @returns {RecordView}
 */
export function recordView(state, collection, spec, recordId) {
  const deleted = isDeleted(state);
  return {
    collection,
    id: recordId,
    deleted,
    fields: deleted ? {} : fieldValues(state, spec),
    conflicts: conflicts(state, spec),
  };
}
