// Which position the source may report to the slot as flushed (flush-tracker.ts): the
// end of the last transaction whose events are all acknowledged, or, when idle, the
// server's own position; never a position merely received.
import { expect, it } from "vitest";
import { FlushTracker } from "./flush-tracker.js";

it("advances to a transaction's end only once its last event is acknowledged", () => {
  const t = new FlushTracker(100n);
  t.begin();
  t.track("a0");
  t.track("a1");
  t.commit(200n);
  t.begin();
  t.track("b0");
  t.commit(300n);
  expect(t.flushable).toBe(100n);
  t.acknowledge("a0");
  expect(t.flushable).toBe(100n); // half of the first transaction
  t.acknowledge("a1");
  expect(t.flushable).toBe(200n);
  t.serverPosition(999n); // events outstanding: the server's position is not safe
  expect(t.flushable).toBe(200n);
  t.acknowledge("b0");
  expect(t.flushable).toBe(300n);
  expect(t.outstanding).toBe(0);
});

it("an acknowledgement covers every event before it; unknown positions are refused", () => {
  const t = new FlushTracker(0n);
  t.begin();
  ["x0", "x1", "x2"].forEach((p) => t.track(p));
  t.commit(50n);
  expect(t.acknowledge("elsewhere")).toBe(false);
  expect(t.acknowledge("x2")).toBe(true);
  expect(t.flushable).toBe(50n);
  expect(t.acknowledge("x0")).toBe(false); // already covered
});

it("a transaction without events is safe once everything before it is", () => {
  const t = new FlushTracker(10n);
  t.begin();
  t.track("p");
  t.commit(20n);
  t.begin();
  t.commit(30n); // e.g. only changes of unpublished columns
  expect(t.flushable).toBe(10n);
  t.acknowledge("p");
  expect(t.flushable).toBe(30n);
});

it("takes the server's position only when idle: nothing outstanding and no transaction open", () => {
  const t = new FlushTracker(10n);
  t.serverPosition(40n);
  expect(t.flushable).toBe(40n);
  t.begin();
  t.serverPosition(60n); // a transaction is being received
  expect(t.flushable).toBe(40n);
  t.track("q");
  t.commit(70n);
  t.serverPosition(80n);
  expect(t.flushable).toBe(40n);
  t.acknowledge("q");
  t.serverPosition(80n);
  expect(t.flushable).toBe(80n);
  t.serverPosition(5n); // never backwards
  expect(t.flushable).toBe(80n);
});
