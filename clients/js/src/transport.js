// HTTP for a Replica: fetch with the bearer token, gzip request bodies, retries with backoff.

/** A request that failed: `code` is the server's stable code, or one of the SDK's own. */
export class GridsyncError extends Error {
  /**
   * @param {string} code e.g. `offline`, `invalid_token`, `resync_required`, `storage_full`
   * @param {string} message
   * @param {{status?: number | null, retryable?: boolean, body?: any}} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "GridsyncError";
    this.code = code;
    this.status = details.status ?? null;
    this.retryable = details.retryable ?? false;
    this.body = details.body;
  }
}

/**
 * @typedef {object} TransportOptions
 * @property {string} url the server's base URL, e.g. `https://sync.example.org`
 * @property {string | null} [token] the device token (`gs_...`)
 * @property {typeof fetch} [fetch]
 * @property {boolean} [gzip] gzip request bodies of 1 KiB or more (default: where CompressionStream exists)
 * @property {number} [retries] attempts after the first for a network error, 429, 502, 503 or 504 (default 4)
 * @property {number} [backoffMs] the first wait; each next one doubles, with jitter, up to 30 s (default 500)
 * @property {number} [timeoutMs] per request (default 60000)
 */

const GZIP_FROM = 1024;
const RETRYABLE = new Set([429, 502, 503, 504]);

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * @param {Uint8Array} bytes
 * @returns {Promise<Uint8Array>}
 */
export async function gzipBytes(bytes) {
  const stream = new Blob([/** @type {BlobPart} */ (bytes)]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export class Transport {
  /** @param {TransportOptions} options */
  constructor(options) {
    this.url = options.url.replace(/\/+$/, "");
    this.token = options.token ?? null;
    const found = options.fetch ?? globalThis.fetch;
    if (!found) throw new Error("no fetch here: pass `fetch` to Replica.open");
    // Called unbound: a browser's fetch throws "Illegal invocation" when `this` is not a window.
    /** @type {typeof fetch} */
    this.fetch = (input, init) => found.call(globalThis, input, init);
    this.gzip = options.gzip ?? typeof globalThis.CompressionStream === "function";
    this.retries = options.retries ?? 4;
    this.backoffMs = options.backoffMs ?? 500;
    this.timeoutMs = options.timeoutMs ?? 60000;
    /** Whether the last request reached the server (null before the first). @type {boolean | null} */
    this.online = null;
  }

  /**
   * @param {Record<string, string | number | null | undefined>} [params]
   */
  static query(params = {}) {
    const parts = Object.entries(params)
      .filter(([, value]) => value !== null && value !== undefined)
      .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
    return parts.length ? `?${parts.join("&")}` : "";
  }

  /**
   * One request, retried on a network error or a transient status; resolves to the parsed JSON
   * of a 2xx answer and throws a GridsyncError otherwise.
   * @param {string} method
   * @param {string} path with its query
   * @param {{json?: any, body?: Blob | Uint8Array, contentType?: string}} [send]
   * @returns {Promise<any>}
   */
  async request(method, path, send = {}) {
    /** @type {Record<string, string>} */
    const headers = { accept: "application/json" };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    /** @type {BodyInit | undefined} */
    let body;
    let zipped = false;
    if (send.json !== undefined) {
      headers["content-type"] = "application/json";
      /** @type {Uint8Array} */
      let bytes = new TextEncoder().encode(JSON.stringify(send.json));
      if (this.gzip && bytes.length >= GZIP_FROM) {
        bytes = await gzipBytes(bytes);
        headers["content-encoding"] = "gzip";
        zipped = true;
      }
      body = /** @type {BodyInit} */ (/** @type {unknown} */ (bytes));
    } else if (send.body !== undefined) {
      headers["content-type"] = send.contentType ?? "application/octet-stream";
      body = /** @type {BodyInit} */ (/** @type {unknown} */ (send.body));
    }
    for (let attempt = 0; ; attempt++) {
      /** @type {Response} */
      let reply;
      try {
        if (globalThis.navigator?.onLine === false) throw new TypeError("the device is offline");
        const signal = typeof AbortSignal.timeout === "function" ? AbortSignal.timeout(this.timeoutMs) : undefined;
        reply = await this.fetch(`${this.url}${path}`, { method, headers, body, signal });
      } catch (error) {
        this.online = false;
        if (attempt < this.retries && globalThis.navigator?.onLine !== false) {
          await sleep(this.wait(attempt, null));
          continue;
        }
        throw new GridsyncError("offline", `the server cannot be reached: ${String(error)}`, { retryable: true });
      }
      this.online = true;
      if (reply.ok) {
        const text = await reply.text();
        return text ? JSON.parse(text) : null;
      }
      /** @type {any} */
      let problem = null;
      try {
        problem = await reply.json();
      } catch {
        problem = null;
      }
      if (zipped && reply.status === 415 && problem?.code === "unsupported_content_encoding") {
        // A server that takes no gzip: send plain from now on.
        this.gzip = false;
        return this.request(method, path, send);
      }
      if (RETRYABLE.has(reply.status) && attempt < this.retries) {
        await sleep(this.wait(attempt, reply.headers.get("retry-after")));
        continue;
      }
      const code = problem?.code ?? `http_${reply.status}`;
      const message = problem?.detail ?? problem?.message ?? `${method} ${path} answered ${reply.status}`;
      throw new GridsyncError(code, message, {
        status: reply.status,
        retryable: RETRYABLE.has(reply.status) || reply.status === 507,
        body: problem,
      });
    }
  }

  /**
   * @param {number} attempt
   * @param {string | null} retryAfter
   */
  wait(attempt, retryAfter) {
    const told = retryAfter !== null ? Number(retryAfter) * 1000 : NaN;
    if (Number.isFinite(told) && told >= 0) return Math.min(told, 30000);
    const base = Math.min(this.backoffMs * 2 ** attempt, 30000);
    return base / 2 + Math.random() * (base / 2);
  }
}
