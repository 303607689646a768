// A gridsync server in memory, speaking enough of protocol v1 (exchange, push, snapshot,
// attachments) through a `fetch` function to test a Replica's sync without a network. It
// merges with the SDK's own merge functions; tests/sdk/test_js_live.py runs against the real one.
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";

import { COLLECTIONS } from "../src/collections.js";
import { applyBatch, recordKey, recordView } from "../src/merge.js";

/** @typedef {import("../src/merge.js").Change} Change */
/** @typedef {import("../src/merge.js").RecordState} RecordState */

/**
 * @param {number} status
 * @param {any} body
 * @param {Record<string, string>} [headers]
 */
function reply(status, body, headers = {}) {
  const type = status >= 400 ? "application/problem+json" : "application/json";
  return new Response(JSON.stringify(body), { status, headers: { "content-type": type, ...headers } });
}

/** @param {number} status @param {string} code @param {Record<string, string>} [headers] */
const problem = (status, code, headers) => reply(status, { status, code, detail: code.replace(/_/g, " ") }, headers);

export class FakeServer {
  constructor({ maxChangesPerPush = 2000, exchange = true } = {}) {
    /** Whether this server has the exchange endpoint (an older one has push and pull only). */
    this.exchange = exchange;
    /** @type {(Change & {seq: number})[]} */
    this.log = [];
    /** @type {Map<string, RecordState>} */
    this.states = new Map();
    this.epoch = "e1";
    this.maxChangesPerPush = maxChangesPerPush;
    /** Answers to give before the real ones: a status code, or "network" for a dropped connection. @type {(number | "network")[]} */
    this.failures = [];
    /** @type {{method: string, path: string, gzipped: boolean, changes: number}[]} */
    this.requests = [];
    /** Records the next pull lists in `left`. @type {{collection: string, id: string}[]} */
    this.leaving = [];
    this.scopeChanged = false;
    /**
     * How many of the newest changes a snapshot shows as written while it was paged: its
     * `sync_cursor` stands before them, and their records carry the seq of their last write.
     */
    this.snapshotLag = 0;
    /** Whether snapshot records carry `covered` and `pending` beside their heads. */
    this.snapshotFacts = true;
    /** @type {Map<string, Uint8Array>} */
    this.attachments = new Map();
    this.fetch = this.fetch.bind(this);
  }

  /** Forget the newest `count` changes and start a new epoch, as a restore from a backup does. @param {number} count */
  restore(count) {
    this.log = this.log.slice(0, this.log.length - count);
    this.epoch = `e${Number(this.epoch.slice(1)) + 1}`;
    this.states = new Map();
    applyBatch(this.states, this.log, () => false);
  }

  /** @param {string} collection @param {string} id */
  view(collection, id) {
    const state = this.states.get(recordKey(collection, id));
    return state === undefined ? null : recordView(state, collection, COLLECTIONS[collection], id);
  }

  /** @param {Change[]} changes */
  push(changes) {
    const known = new Set(this.log.map((c) => c.id));
    const results = [];
    /** @type {Change[]} */
    const fresh = [];
    for (const change of changes) {
      if (known.has(change.id)) {
        results.push({ id: change.id, status: "duplicate", code: null, message: null, conflict: false });
      } else if (change.value === "REJECT") {
        results.push({ id: change.id, status: "rejected", code: "invalid_value", message: "not a value", conflict: false });
      } else {
        known.add(change.id);
        fresh.push(change);
        this.log.push({ ...change, seq: this.log.length + 1 });
        results.push({ id: change.id, status: "applied", code: null, message: null, conflict: false });
      }
    }
    const before = new Set(this.log.slice(0, this.log.length - fresh.length).map((c) => c.id));
    applyBatch(this.states, fresh, (id) => before.has(id));
    const serverHlc = `${String(Date.now()).padStart(15, "0")}-000000-server`;
    return { results, server_hlc: serverHlc, cursor: `${this.epoch}.${this.log.length}`, clock_skew_ms: null };
  }

  /** @param {string | null} since @param {number} limit */
  pull(since, limit) {
    let from = 0;
    if (since !== null) {
      const [epoch, seq] = since.split(".");
      if (epoch !== this.epoch || Number(seq) > this.log.length) return null;
      from = Number(seq);
    }
    const page = this.log.slice(from, from + limit);
    const left = this.leaving;
    this.leaving = [];
    return { changes: page, cursor: `${this.epoch}.${from + page.length}`, more: from + page.length < this.log.length, left };
  }

  /**
   * @param {string | URL | Request} input
   * @param {RequestInit} [init]
   */
  async fetch(input, init = {}) {
    const url = new URL(String(input));
    const method = init.method ?? "GET";
    const headers = /** @type {Record<string, string>} */ (init.headers ?? {});
    let raw = init.body === undefined || init.body === null ? null : Buffer.from(/** @type {Uint8Array} */ (init.body));
    const gzipped = headers["content-encoding"] === "gzip";
    if (raw !== null && gzipped) raw = gunzipSync(raw);
    const body = raw !== null && headers["content-type"] === "application/json" ? JSON.parse(raw.toString("utf8")) : null;
    this.requests.push({ method, path: url.pathname, gzipped, changes: body?.changes?.length ?? 0 });
    const failure = this.failures.shift();
    if (failure === "network") throw new TypeError("fetch failed");
    if (failure !== undefined) return problem(failure, failure === 503 ? "database_unavailable" : "failed", { "retry-after": "0" });
    if (headers.authorization !== "Bearer gs_test") return problem(401, "invalid_token");
    const since = url.searchParams.get("since");
    const limit = Number(url.searchParams.get("limit") ?? 1000);
    if (url.pathname === "/v1/sync/pull" && method === "GET") {
      if (this.scopeChanged) {
        this.scopeChanged = false;
        return problem(409, "scope_changed");
      }
      const page = this.pull(since, limit);
      return page === null ? problem(409, "resync_required") : reply(200, page);
    }
    if ((url.pathname === "/v1/sync/exchange" && this.exchange) || url.pathname === "/v1/sync/push") {
      if (body.changes.length > this.maxChangesPerPush) return problem(413, "batch_too_large");
      const pushed = this.push(body.changes);
      if (url.pathname === "/v1/sync/push") return reply(200, pushed);
      if (this.scopeChanged) {
        this.scopeChanged = false;
        return problem(409, "scope_changed");
      }
      const page = this.pull(since, limit);
      return page === null ? problem(409, "resync_required") : reply(200, { push: pushed, pull: page });
    }
    if (url.pathname === "/v1/sync/snapshot") {
      const keys = Array.from(this.states.keys()).sort();
      const start = Number(url.searchParams.get("cursor") ?? 0);
      const slice = keys.slice(start, start + limit);
      const records = slice.map((key) => {
        const [collection, id] = key.split("\u0000");
        const state = /** @type {RecordState} */ (this.states.get(key));
        // What supersession knows beyond the heads, as the server's snapshot sends it.
        const facts = this.snapshotFacts
          ? { covered: [...state.covered].sort(), pending: Object.fromEntries([...state.pending].map(([id, kinds]) => [id, [...kinds].sort()])) }
          : {};
        const syncSeq = this.log.length - this.snapshotLag;
        const last = Math.max(0, ...this.log.filter((c) => recordKey(c.collection, c.record_id) === key).map((c) => c.seq));
        return { collection, id, heads: Array.from(state.heads.values()), ...facts, ...(last > syncSeq ? { seq: last } : {}) };
      });
      const more = start + limit < keys.length;
      return reply(200, { records, cursor: String(start + limit), more, sync_cursor: `${this.epoch}.${this.log.length - this.snapshotLag}` });
    }
    if (url.pathname.startsWith("/v1/attachments/") && method === "PUT") {
      const sha256 = url.pathname.split("/").pop() ?? "";
      const bytes = new Uint8Array(/** @type {Buffer} */ (raw));
      if (createHash("sha256").update(bytes).digest("hex") !== sha256) return problem(400, "hash_mismatch");
      const created = !this.attachments.has(sha256);
      this.attachments.set(sha256, bytes);
      return reply(created ? 201 : 200, { sha256, size: bytes.length, media_type: "image/jpeg", created });
    }
    return problem(404, "not_found");
  }
}
