#!/usr/bin/env node
// NodeJS shipper overhead per invocation against a floor measured in the same run.
//
//   node bench/node_overhead.mjs [--quick]     (build first: scripts/test-node, or
//                                                cd nodejs && npm ci && npm run build)
//
// Shipper: a Lambda handler wrapped by faaslens.lambda that logs 3 lines and bumps 1
// counter, awaited per call (the wrapper waits for its datagram's send callback, as it
// does in a function). Floor: JSON.stringify of the same invocation record and its 3
// lines as one event list, plus one dgram send on a connected socket, its callback
// awaited. Both send to a receiver in another process over loopback, alternating in
// rounds; medians of the rounds. The same pair is measured again without waiting for
// send callbacks (a sync handler under faaslens.instrument; sends fire and forget).
// Goal: shipper <= 3x floor in both. Exit 1 when a ratio is over the goal.
import { fork } from "node:child_process";
import { createSocket } from "node:dgram";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const faaslens = require(join(here, "..", "nodejs"));

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
  const log = faaslens.getLogger("bench");
  const orders = faaslens.counter("orders");
  const work = async (event) => {
    log.info("order received", { order_id: event.id });
    log.info("order priced", { total: 42.5 });
    log.info("order stored", { items: 3 });
    orders.inc(1, { region: "eu" });
    return event.id;
  };
  const handler = faaslens.lambda(work);
  let n = 0;
  const context = () => ({
    awsRequestId: `req-${++n}`,
    functionName: "bench",
    functionVersion: "$LATEST",
    memoryLimitInMB: "512",
    invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:bench",
  });
  const event = { id: "o-1" };

  // The floor: what any shipper must do at least, for the same record and lines.
  const sock = createSocket("udp4");
  await new Promise((resolve) => sock.connect(port, "127.0.0.1", resolve));
  const captured = [];
  const capture = { send: (frames) => captured.push(...frames), settled: () => null, close() {} };
  const probe = new faaslens.Shipper({ config: faaslens.loadConfig({}, { endpoint }), env, transport: capture });
  await faaslens.lambda(work, { shipper: probe })(event, context());
  const sampleFrame = JSON.parse(captured[0].toString());
  const floorEvents = sampleFrame.ev;
  const floor = async () => {
    const buf = Buffer.from(JSON.stringify(floorEvents));
    await new Promise((resolve) => sock.send(buf, resolve));
  };
  const instrumented = () => handler(event, context());
  // The same without waiting for each send's callback (how a sync handler wrapped by
  // faaslens.instrument runs), against a floor that does not wait either.
  const syncWork = (e) => {
    log.info("order received", { order_id: e.id });
    log.info("order priced", { total: 42.5 });
    log.info("order stored", { items: 3 });
    orders.inc(1, { region: "eu" });
    return e.id;
  };
  const syncHandler = faaslens.instrument(syncWork);
  const floorNoWait = () => {
    sock.send(Buffer.from(JSON.stringify(floorEvents)));
  };
  const instrumentedNoWait = () => {
    syncHandler(event, context());
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

  await timeRound(floor); // warm-up
  await timeRound(instrumented);
  await timeRoundNoWait(floorNoWait);
  await timeRoundNoWait(instrumentedNoWait);
  const floors = [];
  const ships = [];
  const floorsNoWait = [];
  const shipsNoWait = [];
  for (let r = 0; r < ROUNDS; r++) {
    floors.push(await timeRound(floor));
    ships.push(await timeRound(instrumented));
    floorsNoWait.push(await timeRoundNoWait(floorNoWait));
    shipsNoWait.push(await timeRoundNoWait(instrumentedNoWait));
  }
  const floorNs = median(floors);
  const shipNs = median(ships);
  const ratio = shipNs / floorNs;
  const ratioNoWait = median(shipsNoWait) / median(floorsNoWait);
  const stats = faaslens.stats();
  console.log(`frame: ${Buffer.byteLength(JSON.stringify(sampleFrame))} bytes, ${floorEvents.length} events (record + 3 lines, 1 metric)`);
  console.log(`floor (JSON.stringify + 1 dgram send)    ${floorNs.toFixed(0).padStart(8)} ns/invocation`);
  console.log(`shipper (3 log lines, 1 counter, send)   ${shipNs.toFixed(0).padStart(8)} ns/invocation`);
  console.log(`ratio ${ratio.toFixed(2)}x (goal <= ${GOAL}x)`);
  console.log(`without waiting for send callbacks: floor ${median(floorsNoWait).toFixed(0)} ns, shipper ${median(shipsNoWait).toFixed(0)} ns, ratio ${ratioNoWait.toFixed(2)}x`);
  console.log(`${ROUNDS} rounds of ${PER_ROUND}; send errors ${stats.send_errors}`);
  sock.close();
  shipper.close();
  child.disconnect();
  process.exitCode = ratio <= GOAL && ratioNoWait <= GOAL && stats.send_errors === 0 ? 0 : 1;
}
