// Live updates: GET /v1/sync/events read with fetch (EventSource cannot send the token), and
// polling whenever the stream is down. `onHead(seq)` is called when the server's log moved.

const POLL_MS = 30_000;
const RETRY_MS = [2_000, 5_000, 15_000, 30_000];

export class LiveUpdates {
  /**
   * @param {{url: string, token: string, onHead: (seq: number) => void, onMode: (mode: string) => void}} options
   */
  constructor({ url, token, onHead, onMode }) {
    this.url = url;
    this.token = token;
    this.onHead = onHead;
    this.onMode = onMode;
    this.mode = "polling";
    this.stopped = false;
    this.failures = 0;
    this.controller = null;
    this.pollTimer = null;
  }

  start() {
    this.stopped = false;
    this._poll();
    this._connect();
    window.addEventListener("online", () => this._reconnectNow());
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
    clearTimeout(this.pollTimer);
  }

  _setMode(mode) {
    if (mode !== this.mode) {
      this.mode = mode;
      this.onMode(mode);
    }
  }

  // While the stream is down, a sync every POLL_MS; while it is up, polling rests.
  _poll() {
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => {
      if (this.mode !== "live" && navigator.onLine) this.onHead(Number.MAX_SAFE_INTEGER);
      this._poll();
    }, POLL_MS);
  }

  _reconnectNow() {
    this.failures = 0;
    this.controller?.abort();
  }

  async _connect() {
    while (!this.stopped) {
      if (!navigator.onLine) {
        this._setMode("polling");
        await new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
        continue;
      }
      this.controller = new AbortController();
      try {
        const reply = await fetch(`${this.url}/v1/sync/events`, {
          headers: { authorization: `Bearer ${this.token}`, accept: "text/event-stream" },
          signal: this.controller.signal,
          cache: "no-store",
        });
        if (!reply.ok || !reply.body) throw new Error(`events: ${reply.status}`);
        this._setMode("live");
        this.failures = 0;
        await this._read(reply.body);
      } catch {
        // Network gone, server restarting, or no stream here: poll and try again later.
      }
      this._setMode("polling");
      if (this.stopped) return;
      const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
      this.failures += 1;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  async _read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = null;
    let data = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.search(/\r?\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer[newline] === "\r" ? 2 : 1));
        if (line === "") {
          if (event === "head") this.onHead(JSON.parse(data).seq);
          if (event === "bye") return;
          event = null;
          data = "";
        } else if (line.startsWith("event:")) {
          event = line.slice(6).trim();
        } else if (line.startsWith("data:")) {
          data += line.slice(5).trim();
        }
      }
    }
  }
}
