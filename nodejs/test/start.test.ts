// Start events and the periodic flush of a long invocation's lines, on real sockets:
// the start leaves before the handler runs, the flush timer sends the lines of an
// invocation past half the interval and never keeps a process alive.
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { getLogger, instrument, lambda, loadConfig } from "../src/index";
import { runIn } from "../src/record";
import { Collector, type Frame, capturingShipper, lambdaContext, shipperFor } from "./kit";

test("the start event leaves before the handler runs, then the record, in one frame sequence", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint);
  let seenInside: Frame[] = [];
  const handler = lambda(
    async () => {
      seenInside = await c.take(1);
      return "ok";
    },
    { shipper, trigger: "http" },
  );
  assert.equal(await handler({}, lambdaContext("req-1", 3000)), "ok");
  const [start] = seenInside;
  assert.equal(start!.seq, 1);
  const [ev] = start!.ev;
  assert.equal(ev!.t, "start");
  assert.equal(ev!["faas.execution"], "req-1");
  assert.equal(ev!["faas.timeout"], 3000 * 1_000_000); // the deadline left at the start, in ns
  assert.equal(ev!["faas.coldstart"], true);
  assert.equal(ev!["faas.trigger.type"], "http");
  assert.equal(ev!["event.duration"], undefined);
  const [record] = await c.take(1);
  assert.equal(record!.seq, 2); // the same frame stream: sequence accounting holds
  assert.deepEqual([record!.ev[0]!.t, record!.ev[0]!["faas.execution"]], ["inv", "req-1"]);
  assert.equal(record!.ev[0]!["@timestamp"], ev!["@timestamp"]);
  c.close();
});

test("start events: on by default, switched off by FAASLENS_START_EVENTS or the option", async () => {
  assert.equal(loadConfig({}).startEvents, true);
  assert.equal(loadConfig({ FAASLENS_START_EVENTS: "" }).startEvents, true); // blank: not set
  assert.equal(loadConfig({ FAASLENS_START_EVENTS: "off" }).startEvents, false);
  assert.equal(loadConfig({ FAASLENS_START_EVENTS: "FALSE" }).startEvents, false);
  assert.equal(loadConfig({ FAASLENS_START_EVENTS: "maybe" }).startEvents, true); // bad: reported, default kept
  assert.throws(() => loadConfig({}, { startEvents: "maybe" as never }), /FAASLENS_START_EVENTS/);
  assert.equal(loadConfig({ FAASLENS_FLUSH_INTERVAL_MS: "250" }).flushIntervalMs, 250);
  assert.throws(() => loadConfig({}, { flushIntervalMs: -1 }), /FAASLENS_FLUSH_INTERVAL_MS/);
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint, { startEvents: false });
  await lambda(async () => "ok", { shipper })({}, lambdaContext("quiet-1"));
  const [frame] = await c.take(1);
  assert.deepEqual([frame!.seq, frame!.ev.map((e) => e.t)], [1, ["inv"]]);
  assert.equal(shipper.snapshot().frames_sent, 1);
  c.close();
});

test("a short invocation sends its lines once, with the record", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint, { flushIntervalMs: 60_000 });
  const log = getLogger("t", null, shipper);
  await lambda(
    async () => {
      log.info("one");
      await new Promise((resolve) => setImmediate(resolve));
      log.info("two");
    },
    { shipper },
  )({}, lambdaContext("short"));
  const frames = await c.take(2);
  assert.deepEqual(frames.map((f) => f.ev.map((e) => e.t)), [["start"], ["inv", "log", "log"]]);
  assert.equal(shipper.snapshot().lines_flushed, 0);
  shipper.close();
  c.close();
});

test("the lines of a long invocation leave before it ends, by the flush timer", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint, { startEvents: false, flushIntervalMs: 100 });
  const log = getLogger("t", null, shipper);
  const got: Frame[] = [];
  const handler = lambda(
    async () => {
      log.info("before the crash", { step: 1 });
      // The invocation runs on; its line must reach the collector meanwhile.
      const deadline = Date.now() + 10_000;
      while (!got.some((f) => f.ev.some((e) => e.t === "log")) && Date.now() < deadline) got.push(...(await c.take(1, 10_000)));
      log.info("after the flush", { step: 2 });
      return "ok";
    },
    { shipper },
  );
  assert.equal(await handler({}, lambdaContext("long")), "ok");
  got.push(...(await c.take(1)));
  const lines = got.flatMap((f) => f.ev).filter((e) => e.t === "log");
  assert.deepEqual(lines.map((e) => [e.message, e["event.sequence"], e["faas.execution"]]), [
    ["before the crash", 0, "long"],
    ["after the flush", 1, "long"],
  ]);
  assert.equal(got[0]!.ev[0]!.t, "log"); // the flushed line came first, in a frame of its own
  assert.equal(got.at(-1)!.ev[0]!.t, "inv");
  assert.equal(shipper.snapshot().lines_flushed, 1);
  shipper.close();
  c.close();
});

test("flush schedule: invocations younger than half the interval keep their lines", () => {
  const [shipper, sent] = capturingShipper({ startEvents: false, flushIntervalMs: 1000 });
  const log = getLogger("t", null, shipper);
  const ms = 1_000_000;
  const inv = shipper.start([], { executionId: "sched" });
  runIn(inv, () => log.info("early"));
  shipper.flushRunning(inv.t0 + 499 * ms);
  assert.deepEqual(sent.take(), []); // younger than half the interval: nothing yet
  shipper.flushRunning(inv.t0 + 500 * ms);
  assert.deepEqual(sent.take().map((f) => f.ev.map((e) => e.message)), [["early"]]);
  shipper.flushRunning(inv.t0 + 750 * ms);
  assert.deepEqual(sent.take(), []); // nothing new to send
  runIn(inv, () => log.info("late"));
  shipper.finish(inv, undefined, false);
  shipper.flushRunning(inv.t0 + 2000 * ms); // ended: nothing more from it
  assert.deepEqual(sent.take().map((f) => f.ev.map((e) => [e.t, e.message])), [[["inv", undefined], ["log", "late"]]]);
  assert.equal(shipper.snapshot().lines_flushed, 1);
  shipper.close();
});

test("flushIntervalMs 0: lines leave with the record only", () => {
  const [shipper, sent] = capturingShipper({ startEvents: false, flushIntervalMs: 0 });
  const log = getLogger("t", null, shipper);
  const inv = shipper.start([], { executionId: "no-flush" });
  runIn(inv, () => log.info("kept"));
  shipper.flushRunning(inv.t0 + 3_600_000 * 1_000_000);
  assert.deepEqual(sent.take(), []);
  shipper.finish(inv, undefined, false);
  assert.deepEqual(sent.take().map((f) => f.ev.map((e) => e.t)), [["inv", "log"]]);
  assert.equal(shipper.snapshot().lines_flushed, 0);
});

test("the flush timer runs only while invocations run", async () => {
  const [shipper] = capturingShipper({ startEvents: false, flushIntervalMs: 40 });
  const timer = (): unknown => Reflect.get(shipper, "flushTimer");
  assert.equal(timer(), null); // none before the first invocation
  const inv = shipper.start([], { executionId: "t-1" });
  assert.notEqual(timer(), null);
  shipper.finish(inv, undefined, false);
  // Its next tick finds nothing running and stops it (ticks every 10 ms).
  const deadline = Date.now() + 5000;
  while (timer() !== null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(timer(), null);
  shipper.finish(shipper.start([], { executionId: "t-2" }), undefined, false);
  assert.notEqual(timer(), null); // made again by the next invocation
  shipper.close();
  assert.equal(timer(), null);
});

// A process whose only work is an invocation that never ends: the flush timer (and the
// sockets) must not keep it alive, so it exits on its own, having sent its start event
// and flushed its line. A timer that held the event loop would hang it.
const NEVER_ENDS = `
const faaslens = require(process.argv[1]);
faaslens.configure({ endpoint: process.argv[2], flushIntervalMs: 40 }, { env: {} });
const log = faaslens.getLogger("t");
let exitsWith = null;
process.on("beforeExit", () => {
  if (exitsWith !== null) return;
  exitsWith = faaslens.stats();
  process.stdout.write(JSON.stringify(exitsWith));
});
faaslens.instrument(async () => {
  log.info("started");
  // Waits on nothing that holds the event loop: once the flush has run, only unref'd
  // handles remain.
  await new Promise((resolve) => setTimeout(resolve, 200));
  await new Promise(() => undefined);
})();
`;

test("the flush timer never keeps the process alive", async () => {
  const c = await Collector.start();
  const pkg = join(__dirname, "..", "src", "index.js");
  const child = spawn(process.execPath, ["-e", NEVER_ENDS, pkg, c.endpoint], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += String(d)));
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("the process was kept alive"));
    }, 20_000);
    child.on("exit", (status) => {
      clearTimeout(timer);
      resolve(status);
    });
  });
  assert.equal(code, 0);
  const stats = JSON.parse(out) as Record<string, number>;
  assert.equal(stats.invocations, 1);
  assert.equal(stats.lines_flushed, 1);
  const frames = await c.take(2);
  assert.deepEqual(frames.map((f) => f.ev.map((e) => [e.t, e.message])), [[["start", undefined]], [["log", "started"]]]);
  c.close();
});

test("a synchronous handler wrapped by instrument: start, then the record with its lines", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint);
  const log = getLogger("t", null, shipper);
  const fn = instrument(
    (n: number) => {
      log.info("sync");
      return n + 1;
    },
    { shipper, name: "adder", trigger: "other" },
  );
  assert.equal(fn(1), 2);
  const [start, record] = await c.take(2);
  assert.deepEqual(start!.ev.map((e) => [e.t, e["faas.name"], e["faas.trigger.type"]]), [["start", "adder", "other"]]);
  assert.deepEqual(record!.ev.map((e) => [e.t, e["faas.name"]]), [["inv", "adder"], ["log", "adder"]]);
  c.close();
});
