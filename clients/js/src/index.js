// @gridsync/client: the gridsync protocol v1 client for phones, browsers, mini-programs and
// React Native. See docs/sdk.md.

export { Replica } from "./replica.js";
export { MemoryStore, applyWrite } from "./store.js";
export { IndexedDBStore } from "./indexeddb.js";
export { GridsyncError } from "./transport.js";
export { HybridClock, MAX_CLOCK_AHEAD_MS, formatHlc, parseHlc } from "./hlc.js";
export { newChangeId, uuid7From } from "./ids.js";
export { COLLECTIONS } from "./collections.js";
export {
  DELETE_CONFLICT_KEY,
  absorbSnapshot,
  applyBatch,
  applyChange,
  conflicts,
  fieldValues,
  isDeleted,
  newState,
  recordKey,
  recordView,
} from "./merge.js";
