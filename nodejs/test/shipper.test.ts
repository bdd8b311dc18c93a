// The NodeJS shipper on real sockets and real platform shapes: transports that never
// throw, the Lambda (async and callback), Azure v4 and functions-framework wrappers,
// truncation on code point boundaries, redaction, the timeout record. Start events are on
// (the default) unless a test says otherwise: each invocation's first frame is its start.
import { strict as assert } from "node:assert";
import { createServer, type AddressInfo, type Server } from "node:net";
import { test } from "node:test";
import { HttpRequest, InvocationContext } from "@azure/functions";
import { azure, counter, gcpCloudEvent, gcpHttp, getLogger, lambda, loadConfig, truncate, truncateBytes } from "../src/index";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BUCKET_FILE, bucketIndex, histogramBuckets } from "../src/buckets";
import { PRICE_FILE, estimatorFor } from "../src/cost";
import { codePoints } from "../src/wire";
import { Collector, type Frame, lambdaContext, shipperFor } from "./kit";

/** The frames holding invocation records (start events and flushed lines left out). */
function records(frames: Frame[]): Frame[] {
  return frames.filter((f) => f.ev[0]!.t === "inv");
}

test("lambda async handler: one record with its lines and metric, result untouched", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint);
  const log = getLogger("orders", null, shipper);
  const orders = counter("orders", null, shipper);
  const handler = lambda(
    async (event: { n: number }) => {
      log.info("one", { password: "hunter2", nested: { api_key: "k", ok: 1 } });
      log.warn("two");
      log.error("three", { err: new RangeError("bad range") });
      orders.inc(2, { region: "eu" });
      return event.n * 2;
    },
    { shipper },
  );
  assert.equal(await handler({ n: 21 }, lambdaContext("req-1")), 42);
  const [start, frame] = await c.take(2);
  assert.deepEqual(start!.ev.map((e) => [e.t, e["faas.execution"]]), [["start", "req-1"]]);
  assert.deepEqual([start!.seq, frame!.seq], [1, 2]);
  const [inv, ...lines] = frame!.ev;
  assert.equal(inv!["faas.execution"], "req-1");
  assert.equal(inv!["event.outcome"], "success");
  assert.equal(inv!["faas.coldstart"], true);
  assert.equal(inv!["faas.max_memory"], 256 * 1024 * 1024);
  assert.equal(inv!["faas.cost.price_id"], "aws-x86_64-2025-01");
  assert.ok(inv!["faas.mem_usage"] > 0);
  assert.deepEqual(inv!.metrics, [{ name: "orders", kind: "counter", value: 2, labels: { region: "eu" } }]);
  assert.deepEqual(lines.map((l) => [l["event.sequence"], l["log.level"], l.message]), [
    [0, "info", "one"],
    [1, "warning", "two"],
    [2, "error", "three"],
  ]);
  assert.deepEqual(lines[0]!.labels, { password: "[REDACTED]", nested: { api_key: "[REDACTED]", ok: 1 } });
  assert.equal(lines[2]!["error.type"], "RangeError");
  assert.match(lines[2]!["error.grouping_key"], /^[0-9a-f]{16}$/);
  assert.equal(shipper.snapshot().frames_sent, 2);
  c.close();
});

test("lambda callback handler: the callback gets the result; an error is a failure record", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint);
  const handler = lambda(
    (event: { fail: boolean }, _ctx: unknown, callback: (err?: unknown, result?: string) => void) => {
      setImmediate(() => (event.fail ? callback(new TypeError("nope")) : callback(null, "done")));
    },
    { shipper },
  );
  const call = (fail: boolean, id: string) =>
    new Promise<[unknown, unknown]>((resolve) => handler({ fail }, lambdaContext(id), (err, result) => resolve([err, result])));
  assert.deepEqual(await call(false, "cb-1"), [null, "done"]);
  const [err] = await call(true, "cb-2");
  assert.ok(err instanceof TypeError);
  const frames = records(await c.take(4));
  assert.deepEqual(frames.map((f) => [f.ev[0]!["faas.execution"], f.ev[0]!["event.outcome"]]), [
    ["cb-1", "success"],
    ["cb-2", "failure"],
  ]);
  assert.equal(frames[1]!.ev[0]!["error.type"], "TypeError");
  c.close();
});

test("lambda handler that throws: the error reaches the runtime, the record says failure", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint);
  const handler = lambda(async () => {
    throw new Error("boom");
  }, { shipper });
  await assert.rejects(handler({}, lambdaContext("t-1")), /boom/);
  const [frame] = records(await c.take(2));
  assert.equal(frame!.ev[0]!["event.outcome"], "failure");
  assert.equal(frame!.ev[0]!["error.message"], "boom");
  c.close();
});

test("a timeout record goes out before the platform's deadline", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint, { timeoutMarginMs: 50 });
  let release: () => void = () => undefined;
  const handler = lambda(() => new Promise<string>((resolve) => (release = () => resolve("late"))), { shipper });
  const running = handler({}, lambdaContext("slow-1", 80));
  const [frame] = records(await c.take(2));
  assert.equal(frame!.ev[0]!["error.type"], "faaslens.Timeout");
  assert.equal(frame!.ev[0]!["event.outcome"], "failure");
  release();
  assert.equal(await running, "late");
  assert.equal(shipper.snapshot().timeouts, 1);
  c.close();
});

test("Azure Functions v4: invocation id, function name, http trigger and trace from the InvocationContext", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint);
  const handler = azure(async (request: HttpRequest, context: InvocationContext) => {
    context.log("ignored by faaslens");
    return { status: 200, body: `hello ${request.query.get("name") ?? ""}` };
  }, { shipper });
  const context = new InvocationContext({
    invocationId: "az-inv-1",
    functionName: "HttpTrigger1",
    traceContext: { traceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
    options: { trigger: { type: "httpTrigger", name: "req" } as never, extraInputs: [], extraOutputs: [] },
  });
  const request = new HttpRequest({ method: "GET", url: "http://localhost/api/hello?name=x" });
  assert.deepEqual(await handler(request, context), { status: 200, body: "hello x" });
  const [frame] = records(await c.take(2));
  const inv = frame!.ev[0]!;
  assert.equal(inv["faas.execution"], "az-inv-1");
  assert.equal(inv["faas.name"], "HttpTrigger1");
  assert.equal(inv["cloud.provider"], "azure");
  assert.equal(inv["faas.trigger.type"], "http");
  assert.equal(inv["trace.id"], "0af7651916cd43dd8448eb211c80319c");
  c.close();
});

test("functions-framework HTTP and CloudEvent functions", async () => {
  const c = await Collector.start();
  const shipper = shipperFor(c.endpoint);
  const ff = await import("@google-cloud/functions-framework");
  const testing = await import("@google-cloud/functions-framework/testing");
  ff.http(
    "hello",
    gcpHttp((req: any, res: any) => {
      getLogger("api", null, shipper).info("served", { path: req.path });
      res.send("ok");
    }, { shipper }),
  );
  ff.cloudEvent("onMessage", gcpCloudEvent(async () => undefined, { shipper }));
  const server = testing.getTestServer("hello") as unknown as import("node:http").Server;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const response = await fetch(`http://127.0.0.1:${port}/x`, {
    headers: { "Function-Execution-Id": "gcp-1", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
  });
  assert.equal(await response.text(), "ok");
  server.close();
  const ceServer = testing.getTestServer("onMessage") as unknown as import("node:http").Server;
  await new Promise<void>((resolve) => ceServer.listen(0, "127.0.0.1", resolve));
  const cePort = (ceServer.address() as AddressInfo).port;
  const ce = await fetch(`http://127.0.0.1:${cePort}/`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-id": "ce-1",
      "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
      "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
    },
    body: JSON.stringify({ message: {} }),
  });
  assert.equal(ce.status, 204);
  ceServer.close();
  const frames = records(await c.take(4));
  const [http, event] = frames.map((f) => f.ev);
  assert.equal(http![0]!["faas.execution"], "gcp-1");
  assert.equal(http![0]!["faas.trigger.type"], "http");
  assert.equal(http![0]!["trace.id"], "0af7651916cd43dd8448eb211c80319c");
  assert.equal(http![1]!.message, "served");
  assert.equal(event![0]!["faas.execution"], "ce-1");
  assert.equal(event![0]!["faas.trigger.type"], "pubsub");
  c.close();
});

test("UDP to a closed port: counted as send errors, never thrown", async () => {
  const probe = await Collector.start();
  const endpoint = probe.endpoint;
  probe.close(); // nothing listens there now
  const shipper = shipperFor(endpoint);
  const handler = lambda(async () => "ok", { shipper });
  const deadline = Date.now() + 5000;
  // The refusal arrives as ICMP after a datagram: a later send reports it.
  while (shipper.snapshot().send_errors === 0 && Date.now() < deadline) {
    assert.equal(await handler({}, lambdaContext(`c-${Date.now()}`)), "ok");
  }
  assert.ok(shipper.snapshot().send_errors > 0);
});

test("UDP to a name that does not resolve: counted, never thrown", async () => {
  const shipper = shipperFor("udp://no-such-host.invalid:8518");
  const handler = lambda(async () => "ok", { shipper });
  assert.equal(await handler({}, lambdaContext("dns-1")), "ok");
  const deadline = Date.now() + 5000;
  while (shipper.snapshot().send_errors === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(shipper.snapshot().send_errors > 0);
  assert.equal(await handler({}, lambdaContext("dns-2")), "ok");
});

test("TCP: LF-separated frames; a down collector is counted and never blocks past the deadline", async () => {
  const received: string[] = [];
  let notify: () => void = () => undefined;
  const server: Server = createServer((sock) => {
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        received.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
        notify();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const shipper = shipperFor(`tcp://127.0.0.1:${port}`);
  const handler = lambda(async () => "ok", { shipper });
  for (const id of ["tcp-1", "tcp-2"]) assert.equal(await handler({}, lambdaContext(id)), "ok");
  const deadline = Date.now() + 5000;
  while (received.length < 4 && Date.now() < deadline) await new Promise<void>((r) => ((notify = r), setTimeout(r, 50).unref()));
  const sent = received.map((line) => JSON.parse(line) as Frame);
  assert.deepEqual(sent.map((f) => [f.seq, f.ev[0]!.t, f.ev[0]!["faas.execution"]]), [
    [1, "start", "tcp-1"],
    [2, "inv", "tcp-1"],
    [3, "start", "tcp-2"],
    [4, "inv", "tcp-2"],
  ]);
  shipper.close();
  server.close();

  const down = shipperFor(`tcp://127.0.0.1:${port}`);
  const downHandler = lambda(async () => "still ok", { shipper: down });
  const t0 = Date.now();
  assert.equal(await downHandler({}, lambdaContext("tcp-down")), "still ok");
  assert.ok(Date.now() - t0 < 2000);
  const until = Date.now() + 5000;
  while (down.snapshot().send_errors === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.ok(down.snapshot().send_errors > 0);
  down.close();
});

test("truncation counts code points and cuts on code point boundaries", () => {
  const emoji = "😀".repeat(20); // 20 code points, 40 UTF-16 units, 80 UTF-8 bytes
  assert.equal(truncate(emoji, 20), emoji);
  const cut = truncate(emoji, 15);
  assert.equal(codePoints(cut), 15);
  assert.equal(cut, "😀😀😀…[truncated]"); // 15 points: 3 emoji and the 12-point marker
  const bytes = truncateBytes(emoji, 30);
  assert.ok(Buffer.byteLength(bytes) <= 30);
  assert.ok(!bytes.includes("\ufffd") && Buffer.from(bytes).toString() === bytes);
  assert.equal(truncateBytes("abc", 3), "abc");
});

test("bad settings: explicit options throw ConfigError, bad environment values are ignored", () => {
  assert.throws(() => loadConfig({}, { endpoint: "http://x" }), /endpoint/);
  assert.throws(() => loadConfig({}, { logSampleRate: 2 }), /LOG_SAMPLE_RATE/);
  assert.equal(loadConfig({ FAASLENS_MAX_DATAGRAM: "nope" }).maxDatagram, null);
});

test("variables set to nothing are not set, except FAASLENS_REDACT_KEYS= (no key redacted)", (t) => {
  const written: string[] = [];
  t.mock.method(process.stderr, "write", (chunk: string) => {
    written.push(String(chunk));
    return true;
  });
  const blank: Record<string, string> = { FAASLENS_PRICE_PER_GB_S: " " };
  for (const name of ["endpoint", "log_level", "debug_buffer", "max_datagram", "tcp_timeout_s", "service", "echo", "redact_keys"]) {
    blank[`FAASLENS_${name.toUpperCase()}`] = "";
  }
  const config = loadConfig(blank);
  const defaults = loadConfig({});
  assert.deepEqual(written, []);
  assert.deepEqual(config.redactKeys, []);
  assert.deepEqual({ ...config, redactKeys: defaults.redactKeys }, defaults);
});

test("histogram buckets: the shared table, looked up by unit as faaslens.protocol.histogram_buckets", () => {
  const shared = JSON.parse(readFileSync(join(__dirname, "..", "..", "..", "faaslens", "histogram_buckets.json"), "utf8"));
  assert.deepEqual(JSON.parse(readFileSync(BUCKET_FILE, "utf8")), shared);
  for (const group of shared.units as { names: string[]; bounds: number[] }[]) {
    for (const name of group.names) {
      assert.deepEqual(histogramBuckets(name), group.bounds);
      assert.deepEqual(histogramBuckets(name.replace(/[a-z]/g, (c) => c.toUpperCase())), group.bounds);
    }
  }
  for (const unit of [null, undefined, "", "widgets"]) assert.deepEqual(histogramBuckets(unit), shared.default);
  assert.deepEqual(histogramBuckets("MS").slice(0, 3), [1, 2.5, 5]);
  // A value on a bound falls in that bound's bucket (le), past the last one in +Inf.
  const bounds = histogramBuckets("s");
  assert.deepEqual([0, 0.001, 0.0011, 900, 901].map((v) => bucketIndex(bounds, v)), [0, 0, 1, bounds.length - 1, bounds.length]);
});

test("cost: the shared price table, priced as the Python shipper prices it", () => {
  const shared = JSON.parse(readFileSync(join(__dirname, "..", "..", "..", "shipper", "prices.json"), "utf8"));
  assert.deepEqual(JSON.parse(readFileSync(PRICE_FILE, "utf8")), shared);
  const MIB = 1024 * 1024;
  const aws = estimatorFor("aws", "x86_64", "eu-west-1")!;
  const [billed, gbS, usd] = aws.estimate(1_200_001, 1024 * MIB, null)!;
  assert.equal(billed, 2); // rounded up to 1 ms
  assert.ok(Math.abs(gbS - 0.002) < 1e-12);
  assert.equal(usd, 2.33333e-7); // 0.2e-6 + 0.002 * 0.0000166667, to 12 decimals as in Python
  const azureEst = estimatorFor("azure", "x86_64", "westeurope")!;
  assert.deepEqual(azureEst.estimate(3_000_000, null, 70 * MIB)!.slice(0, 2), [100, 0.0125]); // 100 ms, 128 MB minimum
  assert.equal(azureEst.estimate(1, null, null), null); // no memory reading, no price
  const gen1 = estimatorFor("gcp", "x86_64", "us-central1", { gcpGeneration: 1 })!;
  assert.equal(gen1.row.price_id, "gcp-gen1-tier1-2025-01");
  assert.equal(gen1.estimate(260_000_000, 256 * MIB, null)![0], 300); // rounded up to 100 ms
  assert.equal(estimatorFor("gcp", "x86_64", "southamerica-east1", { gcpGeneration: 1 })!.row.price_id, "gcp-gen1-tier2-2025-01");
  assert.equal(estimatorFor("aws", "arm64", null, { prices: { per_gb_s: 1e-5 } })!.row.price_id, "aws-arm64-2025-01-custom");
  assert.equal(estimatorFor("local", "x86_64", null), null);
});
