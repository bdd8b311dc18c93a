#!/usr/bin/env node
// NodeJS shipper overhead per invocation against floors measured in the same run.
//
//   node bench/node_overhead.mjs [--quick]     (build first: scripts/test-node, or
//                                                cd nodejs && npm ci && npm run build)
//
// Shipper: a Lambda handler wrapped by faaslens.lambda that logs 3 lines and bumps 1
// counter, awaited per call (the wrapper waits for its datagrams' send callbacks, as it
// does in a function); with the default settings it sends a start event, then the
// record. Floors: JSON.stringify of the same invocation record and its 3 lines as one
// event list plus one dgram send on a connected socket, its callback awaited
// ("floor-1"); the same preceded by the start event stringified and sent ("floor-2",
// two sends, as the shipper makes with start events on). "shipper-nostart" is the
// shipper with FAASLENS_START_EVENTS=false, against floor-1. All send to a receiver in
// another process over loopback, alternating in rounds; medians of the rounds. The same
// pairs are measured again without waiting for send callbacks (a sync handler under
// faaslens.instrument; sends fire and forget). Also: what one periodic flush of a long
// invocation costs (3 pending lines sent in one frame), against one floor send.
// Goal: each shipper <= 3x its floor. Exit 1 when a ratio is over the goal.
import { fork } from "node:child_process";
import { createSocket } from "node:dgram";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const faaslens = require(join(here, "..", "nodejs"));
const { runIn } = require(join(here, "..", "nodejs", "dist", "src", "record.js"));

const GOAL = 3.0;
const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 5 : 15;
const PER_ROUND = quick ? 2_000 : 10_000;

if (process.argv[2] === "--receiver") {
  // Child: receive and discard, so that reading costs the measured process nothing.
  const sock = createSocket("udp4");
  sock.on("message", () => undefined);
  sock.bind(0, "127.0.0.1", () => process.send(sock.address().port));
  process.on("disconnect", () => process.exit(0));
} else {
  const child = fork(fileURLToPath(import.meta.url), ["--receiver"], { stdio: "inherit" });
  const port = await new Promise((resolve) => child.once("message", resolve));
  const endpoint = `udp://127.0.0.1:${port}`;

  const env = { AWS_LAMBDA_FUNCTION_NAME: "bench", AWS_REGION: "eu-west-1", AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "512" };
  const shipper = faaslens.configure({ endpoint }, { env });
  const noStart = new faaslens.Shipper({ config: faaslens.loadConfig({}, { endpoint, startEvents: false }), env });
  const log = faaslens.getLogger("bench");
  const orders = faaslens.counter("orders");
  const logNoStart = faaslens.getLogger("bench", null, noStart);
  const ordersNoStart = faaslens.counter("orders", null, noStart);
  const body = (lg, counter, e) => {
    lg.info("order received", { order_id: e.id });
    lg.info("order priced", { total: 42.5 });
    lg.info("order stored", { items: 3 });
    counter.inc(1, { region: "eu" });
    return e.id;
  };
  const work = async (e) => body(log, orders, e);
  const workNoStart = async (e) => body(logNoStart, ordersNoStart, e);
  const handler = faaslens.lambda(work);
  const handlerNoStart = faaslens.lambda(workNoStart, { shipper: noStart });
  let n = 0;
  const context = () => ({
    awsRequestId: `req-${++n}`,
    functionName: "bench",
    functionVersion: "$LATEST",
    memoryLimitInMB: "512",
    invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:bench",
    getRemainingTimeInMillis: () => 30_000,
  });
  const event = { id: "o-1" };

  // The floors: what any shipper must do at least, for the same start event, record and lines.
  const sock = createSocket("udp4");
  await new Promise((resolve) => sock.connect(port, "127.0.0.1", resolve));
  const captured = [];
  const capture = { send: (frames) => captured.push(...frames), settled: () => null, close() {} };
  const probe = new faaslens.Shipper({ config: faaslens.loadConfig({}, { endpoint }), env, transport: capture });
  const probeLog = faaslens.getLogger("bench", null, probe);
  const probeOrders = faaslens.counter("orders", null, probe);
  await faaslens.lambda(async (e) => body(probeLog, probeOrders, e), { shipper: probe })(event, context());
  const [startFrame, recordFrame] = captured.map((f) => JSON.parse(f.toString()));
  if (startFrame.ev[0].t !== "start" || recordFrame.ev[0].t !== "inv") throw new Error("expected a start frame, then the record");
  const startEvents = startFrame.ev;
  const floorEvents = recordFrame.ev;
  const sendAwaited = (buf) => new Promise((resolve) => sock.send(buf, resolve));
  const floor1 = () => sendAwaited(Buffer.from(JSON.stringify(floorEvents)));
  const floor2 = async () => {
    sock.send(Buffer.from(JSON.stringify(startEvents)));
    await sendAwaited(Buffer.from(JSON.stringify(floorEvents)));
  };
  const instrumented = () => handler(event, context());
  const instrumentedNoStart = () => handlerNoStart(event, context());
  // The same without waiting for each send's callback (how a sync handler wrapped by
  // faaslens.instrument runs), against floors that do not wait either.
  const syncHandler = faaslens.instrument((e) => body(log, orders, e));
  const syncHandlerNoStart = faaslens.instrument((e) => body(logNoStart, ordersNoStart, e), { shipper: noStart });
  const floor1NoWait = () => {
    sock.send(Buffer.from(JSON.stringify(floorEvents)));
  };
  const floor2NoWait = () => {
    sock.send(Buffer.from(JSON.stringify(startEvents)));
    sock.send(Buffer.from(JSON.stringify(floorEvents)));
  };
  const instrumentedNoWait = () => {
    syncHandler(event, context());
  };
  const instrumentedNoStartNoWait = () => {
    syncHandlerNoStart(event, context());
  };
  // One periodic flush: a running invocation logs 3 lines, then the timer's work sends
  // them (flushRunning at a time past half the interval), fire and forget; its baseline
  // logs the same lines and drops them.
  const flusher = new faaslens.Shipper({ config: faaslens.loadConfig({}, { endpoint, startEvents: false }), env });
  const flushLog = faaslens.getLogger("bench", null, flusher);
  const running = flusher.start([event, context()]);
  const noCounter = { inc() {} };
  const flushOnce = () => {
    runIn(running, () => body(flushLog, noCounter, event));
    flusher.flushRunning(running.t0 + 3_600e9);
  };
  const logOnly = () => {
    runIn(running, () => body(flushLog, noCounter, event));
    running.takeUnsent();
  };

  async function timeRound(fn) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < PER_ROUND; i++) await fn();
    return Number(process.hrtime.bigint() - t0) / PER_ROUND;
  }
  // Unawaited sends: batches of 100, then one turn of the event loop for their callbacks.
  async function timeRoundNoWait(fn) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < PER_ROUND; i += 100) {
      for (let j = 0; j < 100; j++) fn();
      await new Promise((resolve) => setImmediate(resolve));
    }
    return Number(process.hrtime.bigint() - t0) / PER_ROUND;
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

  const awaited = { floor1, floor2, shipper: instrumented, shipperNoStart: instrumentedNoStart };
  const noWait = {
    floor1: floor1NoWait,
    floor2: floor2NoWait,
    shipper: instrumentedNoWait,
    shipperNoStart: instrumentedNoStartNoWait,
    logOnly,
    flushOnce,
  };
  for (const fn of Object.values(awaited)) await timeRound(fn); // warm-up
  for (const fn of Object.values(noWait)) await timeRoundNoWait(fn);
  const times = Object.fromEntries([...Object.keys(awaited), ...Object.keys(noWait).map((k) => `${k}NoWait`)].map((k) => [k, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(awaited)) times[name].push(await timeRound(fn));
    for (const [name, fn] of Object.entries(noWait)) times[`${name}NoWait`].push(await timeRoundNoWait(fn));
  }
  const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const ratios = {
    "shipper/floor-2": med.shipper / med.floor2,
    "shipper-nostart/floor-1": med.shipperNoStart / med.floor1,
    "no wait: shipper/floor-2": med.shipperNoWait / med.floor2NoWait,
    "no wait: shipper-nostart/floor-1": med.shipperNoStartNoWait / med.floor1NoWait,
  };
  const flushNs = med.flushOnceNoWait - med.logOnlyNoWait;
  const stats = faaslens.stats();
  const errors = stats.send_errors + noStart.snapshot().send_errors + flusher.snapshot().send_errors;
  const ns = (x) => x.toFixed(0).padStart(8);
  console.log(`record frame: ${Buffer.byteLength(JSON.stringify(recordFrame))} bytes, ${floorEvents.length} events (record + 3 lines, 1 metric); start frame: ${Buffer.byteLength(JSON.stringify(startFrame))} bytes`);
  console.log(`awaited, ns/invocation:  floor-1 ${ns(med.floor1)}  floor-2 ${ns(med.floor2)}  shipper ${ns(med.shipper)}  shipper-nostart ${ns(med.shipperNoStart)}`);
  console.log(`no wait, ns/invocation:  floor-1 ${ns(med.floor1NoWait)}  floor-2 ${ns(med.floor2NoWait)}  shipper ${ns(med.shipperNoWait)}  shipper-nostart ${ns(med.shipperNoStartNoWait)}`);
  for (const [name, ratio] of Object.entries(ratios)) console.log(`${name.padEnd(34)} ${ratio.toFixed(2)}x (goal <= ${GOAL}x)`);
  console.log(`start event costs ${(med.shipper - med.shipperNoStart).toFixed(0)} ns awaited, ${(med.shipperNoWait - med.shipperNoStartNoWait).toFixed(0)} ns without waiting`);
  console.log(`one periodic flush (3 pending lines, one frame): ${flushNs.toFixed(0)} ns = ${(flushNs / med.floor1NoWait).toFixed(2)}x one floor send`);
  console.log(`${ROUNDS} rounds of ${PER_ROUND}; send errors ${errors}`);
  sock.close();
  shipper.close();
  noStart.close();
  flusher.close();
  child.disconnect();
  process.exitCode = Object.values(ratios).every((r) => r <= GOAL) && errors === 0 ? 0 : 1;
}
