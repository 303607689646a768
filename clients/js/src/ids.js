// Change ids: UUIDv7 (RFC 9562), time-ordered, so a server's unique index on them grows at its
// right edge instead of rewriting a page per new id.

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const RECORD_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/**
 * @param {Uint8Array} bytes
 * @returns {Uint8Array}
 */
function randomBytes(bytes) {
  const source = globalThis.crypto;
  if (source && typeof source.getRandomValues === "function") return source.getRandomValues(bytes);
  // A runtime without Web Crypto (an old mini-program base library): ids stay unique in
  // practice, only not unguessable, which change ids need not be.
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return bytes;
}

/**
 * The UUIDv7 of a Unix time in milliseconds and 10 bytes of entropy.
 * @param {number} unixMs
 * @param {Uint8Array} entropy
 * @returns {string}
 */
export function uuid7From(unixMs, entropy) {
  const raw = new Uint8Array(16);
  let time = unixMs;
  for (let i = 5; i >= 0; i--) {
    raw[i] = time % 256;
    time = Math.floor(time / 256);
  }
  raw.set(entropy.subarray(0, 10), 6);
  raw[6] = (raw[6] & 0x0f) | 0x70;
  raw[8] = (raw[8] & 0x3f) | 0x80;
  const hex = Array.from(raw, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A fresh UUIDv7 change id. */
export function newChangeId() {
  return uuid7From(Date.now(), randomBytes(new Uint8Array(10)));
}
