// Hybrid logical clocks, as sync/hlc.py defines them.
//
// An hlc is `<wall ms, 15 digits>-<counter, 6 digits>-<replica id>`: fixed-width numbers make
// string order equal clock order, and the replica id breaks ties between devices.

export const WALL_DIGITS = 15;
export const COUNTER_DIGITS = 6;
export const MAX_COUNTER = 10 ** COUNTER_DIGITS - 1;
export const REPLICA_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
export const HLC_PATTERN = /^(\d{15})-(\d{6})-([A-Za-z0-9_.:-]{1,64})$/;
/**
 * How far past its own wall clock this clock may ever stand (`B`, `MAX_FOLLOW_AHEAD_MS` of
 * sync/hlc.py): a received hlc further ahead (a device with a wrong date) is merged, but the
 * clock follows it only up to the bound, so one bad device cannot drag every clock ahead. Well
 * below the server's `clock_ahead` flag (5 minutes), so a phone with a correct clock that
 * followed a fast one is never flagged itself.
 */
export const MAX_CLOCK_AHEAD_MS = 60_000;

/**
 * @typedef {{wallMs: number, counter: number, replicaId: string}} Timestamp
 */

/**
 * @param {number} wallMs
 * @param {number} counter
 * @param {string} replicaId
 * @returns {string}
 */
export function formatHlc(wallMs, counter, replicaId) {
  return `${String(wallMs).padStart(WALL_DIGITS, "0")}-${String(counter).padStart(COUNTER_DIGITS, "0")}-${replicaId}`;
}

/**
 * Parse an hlc; throws a readable error when it is malformed.
 * @param {string} hlc
 * @returns {Timestamp}
 */
export function parseHlc(hlc) {
  const match = HLC_PATTERN.exec(hlc);
  if (match === null) {
    throw new Error(`hlc ${JSON.stringify(hlc)} is not '<15-digit wall ms>-<6-digit counter>-<replica id>'`);
  }
  return { wallMs: Number(match[1]), counter: Number(match[2]), replicaId: match[3] };
}

/**
 * A replica's clock: moves past every hlc it issues or observes, but never more than
 * `maxAheadMs` past its own wall time. A clock found beyond the bound when it ticks (stored
 * while the wall clock was wrong) is set back to it: local writes never inherit another
 * device's wrong date, and never overflow the hlc's 15 digits.
 */
export class HybridClock {
  /**
   * @param {string} replicaId
   * @param {{wallMs?: number, counter?: number, maxAheadMs?: number | null, nowMs?: () => number}} [options]
   *   `maxAheadMs`: how far past the wall clock this clock may stand (`MAX_CLOCK_AHEAD_MS` by
   *   default; `null` for no bound).
   */
  constructor(replicaId, options = {}) {
    if (!REPLICA_ID_PATTERN.test(replicaId)) {
      throw new Error(`replica id ${JSON.stringify(replicaId)} must be 1-64 of A-Z a-z 0-9 _ . : -`);
    }
    this.replicaId = replicaId;
    this.wallMs = options.wallMs ?? 0;
    this.counter = options.counter ?? 0;
    this.maxAheadMs = options.maxAheadMs === undefined ? MAX_CLOCK_AHEAD_MS : options.maxAheadMs;
    this.nowMs = options.nowMs ?? (() => Date.now());
  }

  /**
   * @param {number} wallMs
   * @param {number} counter
   */
  _advance(wallMs, counter) {
    // On counter overflow the clock borrows a millisecond rather than fail, so even a clock
    // stuck far in the future keeps issuing increasing hlcs.
    if (counter > MAX_COUNTER) {
      wallMs += 1;
      counter = 0;
    }
    this.wallMs = wallMs;
    this.counter = counter;
  }

  /** A new hlc for a local event, greater than every hlc issued or followed before. */
  now() {
    const physical = this.nowMs();
    if (this.maxAheadMs !== null && this.wallMs > physical + this.maxAheadMs) {
      this.wallMs = physical + this.maxAheadMs;
      this.counter = 0;
    }
    if (physical > this.wallMs) this._advance(physical, 0);
    else this._advance(this.wallMs, this.counter + 1);
    return formatHlc(this.wallMs, this.counter, this.replicaId);
  }

  current() {
    return formatHlc(this.wallMs, this.counter, this.replicaId);
  }

  /**
   * How far `hlc` is ahead of this replica's wall clock (negative when behind).
   * @param {string} hlc
   */
  skewMs(hlc) {
    return parseHlc(hlc).wallMs - this.nowMs();
  }

  /**
   * Move past a received hlc, but not past wall time + bound. Returns false when the hlc was
   * beyond the bound (the clock then moved only up to the bound; the change itself is still
   * merged).
   * @param {string} hlc
   */
  observe(hlc) {
    const remote = parseHlc(hlc);
    const bound = this.maxAheadMs === null ? Infinity : this.nowMs() + this.maxAheadMs;
    const within = remote.wallMs <= bound;
    const [wallMs, counter] = within ? [remote.wallMs, remote.counter] : [bound, 0];
    if (wallMs > this.wallMs || (wallMs === this.wallMs && counter >= this.counter)) this._advance(wallMs, counter + 1);
    return within;
  }
}
