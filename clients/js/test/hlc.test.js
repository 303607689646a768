import assert from "node:assert/strict";
import { test } from "node:test";

import { HybridClock, MAX_CLOCK_AHEAD_MS, MAX_COUNTER, formatHlc, parseHlc } from "../src/hlc.js";
import { UUID_PATTERN, newChangeId, uuid7From } from "../src/ids.js";

test("string order of hlcs is clock order, and the replica id breaks ties", () => {
  const hlcs = [formatHlc(1000, 2, "b"), formatHlc(999, 5, "z"), formatHlc(1000, 2, "a"), formatHlc(1000, 10, "a")];
  assert.deepEqual([...hlcs].sort(), [hlcs[1], hlcs[2], hlcs[0], hlcs[3]]);
  assert.deepEqual(parseHlc("001764000000123-000007-phone-7"), { wallMs: 1764000000123, counter: 7, replicaId: "phone-7" });
  assert.throws(() => parseHlc("1764000000123-7-phone"), /15-digit wall ms/);
});

test("the clock never goes backwards when the wall clock stands still or jumps back", () => {
  let wall = 5000;
  const clock = new HybridClock("phone-a", { nowMs: () => wall });
  const first = clock.now();
  const second = clock.now();
  wall = 1000;
  const third = clock.now();
  assert.ok(first < second && second < third, [first, second, third].join(" "));
  assert.equal(third, formatHlc(5000, 2, "phone-a"));
});

test("an exhausted counter borrows a millisecond instead of failing", () => {
  const clock = new HybridClock("phone-a", { wallMs: 9000, counter: MAX_COUNTER, nowMs: () => 1 });
  assert.equal(clock.now(), formatHlc(9001, 0, "phone-a"));
});

test("the clock moves past every hlc it receives within the bound", () => {
  const clock = new HybridClock("phone-a", { nowMs: () => 10_000 });
  assert.equal(clock.observe(formatHlc(10_000 + MAX_CLOCK_AHEAD_MS, 4, "server")), true);
  assert.ok(clock.now() > formatHlc(10_000 + MAX_CLOCK_AHEAD_MS, 4, "server"));
});

test("an hlc past the allowed skew moves the clock only up to the bound, whatever it is", () => {
  for (const far of [formatHlc(10_000 + MAX_CLOCK_AHEAD_MS + 1, 0, "phone-b"), formatHlc(999_999_999_999_999, 999_999, "evil")]) {
    const clock = new HybridClock("phone-a", { nowMs: () => 10_000 });
    clock.now();
    assert.equal(clock.observe(far), false);
    assert.equal(clock.current(), formatHlc(10_000 + MAX_CLOCK_AHEAD_MS, 1, "phone-a"));
    assert.ok(clock.now() < far);
    assert.ok(clock.wallMs - 10_000 <= MAX_CLOCK_AHEAD_MS);
  }
});

test("a clock stored beyond the bound is set back to it at its next tick", () => {
  const clock = new HybridClock("phone-a", { wallMs: 999_999_999_999_000, counter: 5, nowMs: () => 10_000 });
  assert.equal(clock.now(), formatHlc(10_000 + MAX_CLOCK_AHEAD_MS, 1, "phone-a"));
  const unbounded = new HybridClock("phone-a", { wallMs: 50_000, maxAheadMs: null, nowMs: () => 10_000 });
  assert.equal(unbounded.now(), formatHlc(50_000, 1, "phone-a"));
});

test("change ids are lowercase UUIDv7, ordered by time", () => {
  const id = uuid7From(0x0193a3c27d1e, new Uint8Array(10).fill(0xff));
  assert.equal(id, "0193a3c2-7d1e-7fff-bfff-ffffffffffff");
  const made = Array.from({ length: 50 }, () => newChangeId());
  for (const one of made) assert.match(one, UUID_PATTERN);
  assert.equal(new Set(made).size, 50);
  assert.ok(uuid7From(1, new Uint8Array(10)) < uuid7From(2, new Uint8Array(10)));
});
