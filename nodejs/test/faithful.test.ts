// The record stays whole and true: redeliveries of one id as numbered attempts, HTTP
// answers of 5xx as failures, custom metrics aggregated per series, a timeout billed to
// its limit, and user text of any kind (lone surrogates, any size, any nesting) arriving
// as valid UTF-8 within the limits with secrets hidden at every depth. The shared
// scenarios (scenarios.test.ts) pin the exact frames; these tests cover the runtimes'
// own shapes and, by property, inputs nobody wrote down.
import { strict as assert } from "node:assert";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import fc from "fast-check";
import { HttpRequest, HttpResponse, InvocationContext } from "@azure/functions";
import { azure, counter, gcpHttp, getLogger, histogram, lambda, loadConfig, setLabel } from "../src/index";
import { ConfigError } from "../src/config";
import { errorFields } from "../src/errors";
import { histogramBuckets } from "../src/buckets";
import { TOO_DEEP } from "../src/redact";
import { MAX_ERROR_MESSAGE, MAX_MESSAGE, MAX_STACK, UDP_MAX, codePoints, dumps, shrinkStack, wellFormed } from "../src/wire";
import { type Frame, capturingShipper, lambdaContext } from "./kit";

const records = (frames: Frame[]): Record<string, any>[] => frames.filter((f) => f.ev[0]!.t === "inv").map((f) => f.ev[0]!);
const lines = (frames: Frame[]): Record<string, any>[] => frames.flatMap((f) => f.ev.filter((e) => e.t === "log"));

// ------------------------------------------------------------------ attempts

test("a redelivered id is the next attempt: its own start event, record and lines, numbered", async () => {
  const [shipper, capture] = capturingShipper();
  const log = getLogger("orders", null, shipper);
  let calls = 0;
  const handler = lambda(async (event: { n: number }) => {
    log.info(`attempt body ${event.n}`);
    if (++calls === 1) throw new Error("upstream refused");
    return "ok";
  }, { shipper });
  await assert.rejects(handler({ n: 1 }, lambdaContext("retry-1")), /upstream refused/);
  assert.equal(await handler({ n: 2 }, lambdaContext("retry-1")), "ok");
  assert.equal(await handler({ n: 3 }, lambdaContext("other-1")), "ok");
  const frames = capture.take();
  const [first, second, other] = records(frames);
  assert.equal(first!["event.outcome"], "failure");
  assert.equal(first!["faas.attempt"], undefined);
  assert.equal(second!["faas.execution"], "retry-1");
  assert.equal(second!["faas.attempt"], 2);
  assert.equal(second!["event.outcome"], "success");
  assert.equal(other!["faas.attempt"], undefined);
  const starts = frames.filter((f) => f.ev[0]!.t === "start").map((f) => f.ev[0]!);
  assert.deepEqual(starts.map((e) => e["faas.attempt"]), [undefined, 2, undefined]);
  const [l1, l2, l3] = lines(frames);
  assert.equal(l1!["faas.attempt"], undefined);
  assert.deepEqual([l2!.message, l2!["faas.attempt"]], ["attempt body 2", 2]);
  assert.equal(l3!["faas.attempt"], undefined);
});

test("ids seen failing are remembered in two generations of 1,024: old ones age out, recent ones stay", () => {
  const [shipper, capture] = capturingShipper({ startEvents: false });
  const run = (fn: () => unknown, id: string): void => {
    try {
      shipper.run(fn, [], { executionId: id });
    } catch {
      // the handler's own error
    }
  };
  const thrower = (): never => {
    throw new Error("x");
  };
  for (let i = 0; i < 2049; i++) run(thrower, `id-${i}`);
  capture.take();
  run(() => "ok", "id-0"); // two generations later: forgotten
  run(() => "ok", "id-2048"); // the latest: remembered
  const [old, recent] = records(capture.take());
  assert.equal(old!["faas.attempt"], undefined);
  assert.equal(recent!["faas.attempt"], 2);
});

test("Azure states the attempt in its retry context; a redelivery after it continues the count", async () => {
  const [shipper, capture] = capturingShipper({ startEvents: false });
  const handler = azure(async () => {
    throw new Error("poison");
  }, { shipper });
  const context = (retryCount: number): InvocationContext =>
    new InvocationContext({
      invocationId: "az-retry-1",
      functionName: "OnMessage",
      retryContext: { retryCount, maxRetryCount: 5 },
      options: { trigger: { type: "queueTrigger", name: "msg" } as never, extraInputs: [], extraOutputs: [] },
    });
  await assert.rejects(handler({}, context(2)));
  await assert.rejects(handler({}, context(2))); // the platform repeats itself: this process knows better
  const [third, fourth] = records(capture.take());
  assert.equal(third!["faas.attempt"], 3);
  assert.equal(fourth!["faas.attempt"], 4);
});

// ------------------------------------------------------------------ HTTP answers

test("HTTP answers of 5xx without throwing are failures with their status, in each platform's shape", async () => {
  const [shipper, capture] = capturingShipper({ startEvents: false });
  const apiEvent = { httpMethod: "GET", path: "/", requestContext: { requestId: "r" }, headers: {} };
  // AWS proxy result, async and callback style (a status as digits counts too).
  await lambda(async () => ({ statusCode: 500, body: "" }), { shipper })(apiEvent, lambdaContext("aws-500"));
  await new Promise<void>((resolve) =>
    lambda((_e: unknown, _c: unknown, cb: (err?: unknown, r?: unknown) => void) => cb(null, { statusCode: "502" }), { shipper })(apiEvent, lambdaContext("aws-502"), () => resolve()),
  );
  // A job (not HTTP-triggered) returning an upstream's answer is not an HTTP function.
  await lambda(async () => ({ statusCode: 500 }), { shipper })({ Records: [] }, lambdaContext("job-500"));
  // Azure Functions v4: an HttpResponse, and a plain HttpResponseInit.
  const azContext = (id: string): InvocationContext =>
    new InvocationContext({ invocationId: id, functionName: "Api", options: { trigger: { type: "httpTrigger", name: "req" } as never, extraInputs: [], extraOutputs: [] } });
  const request = new HttpRequest({ method: "GET", url: "http://localhost/api" });
  const answer = await azure(async () => new HttpResponse({ status: 503, body: "busy" }), { shipper })(request, azContext("az-503"));
  assert.equal(answer.status, 503); // the handler's own answer, untouched
  await azure(async () => ({ status: 201 }), { shipper })(request, azContext("az-201"));
  const byId = Object.fromEntries(records(capture.take()).map((r) => [r["faas.execution"], r]));
  assert.deepEqual([byId["aws-500"]!["event.outcome"], byId["aws-500"]!["http.response.status_code"]], ["failure", 500]);
  assert.deepEqual([byId["aws-502"]!["event.outcome"], byId["aws-502"]!["http.response.status_code"]], ["failure", 502]);
  assert.deepEqual([byId["job-500"]!["event.outcome"], byId["job-500"]!["http.response.status_code"]], ["success", undefined]);
  assert.deepEqual([byId["az-503"]!["event.outcome"], byId["az-503"]!["http.response.status_code"]], ["failure", 503]);
  assert.deepEqual([byId["az-201"]!["event.outcome"], byId["az-201"]!["http.response.status_code"]], ["success", 201]);
  assert.equal(byId["aws-500"]!["error.type"], undefined); // nothing was thrown
});

test("functions-framework: the response's status decides, as sent over a real socket", async () => {
  const [shipper, capture] = capturingShipper({ startEvents: false });
  const ff = await import("@google-cloud/functions-framework");
  const testing = await import("@google-cloud/functions-framework/testing");
  ff.http("status", gcpHttp((req: any, res: any) => res.status(Number(req.query.s)).send("x"), { shipper }));
  const server = testing.getTestServer("status") as unknown as import("node:http").Server;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  for (const s of [503, 200]) {
    const res = await fetch(`http://127.0.0.1:${port}/?s=${s}`, { headers: { "Function-Execution-Id": `gcp-${s}` } });
    assert.equal(res.status, s);
    await res.text();
  }
  server.close();
  const byId = Object.fromEntries(records(capture.take()).map((r) => [r["faas.execution"], r]));
  assert.deepEqual([byId["gcp-503"]!["event.outcome"], byId["gcp-503"]!["http.response.status_code"]], ["failure", 503]);
  assert.deepEqual([byId["gcp-200"]!["event.outcome"], byId["gcp-200"]!["http.response.status_code"]], ["success", 200]);
});

test("FAASLENS_HTTP_FAILURE_STATUS: 0 never fails on a status, another threshold moves the line; bad values are named", async () => {
  const apiEvent = { httpMethod: "GET", requestContext: {} };
  for (const [threshold, status, outcome] of [[0, 503, "success"], [404, 404, "failure"], [404, 302, "success"]] as const) {
    const [shipper, capture] = capturingShipper({ startEvents: false, httpFailureStatus: threshold });
    await lambda(async () => ({ statusCode: status }), { shipper })(apiEvent, lambdaContext("t"));
    const [rec] = records(capture.take());
    assert.deepEqual([rec!["event.outcome"], rec!["http.response.status_code"]], [outcome, status]);
  }
  assert.equal(loadConfig({ FAASLENS_HTTP_FAILURE_STATUS: "0" }).httpFailureStatus, 0);
  assert.throws(() => loadConfig({}, { httpFailureStatus: 42 }), (e: unknown) => e instanceof ConfigError && /FAASLENS_HTTP_FAILURE_STATUS/.test(e.message));
});

// ------------------------------------------------------------------ metrics

test("any number of metric updates fits: histograms per bucket with count and sum, counters summed, drops sent", async () => {
  const [shipper, capture] = capturingShipper({ startEvents: false });
  const latency = histogram("latency", "s", shipper);
  const orders = counter("orders", null, shipper);
  counter("early", null, shipper).inc(-1); // outside an invocation: dropped, sent with the next record
  const values = Array.from({ length: 5000 }, (_, i) => (i % 97) / 7);
  await lambda(async () => {
    for (const v of values) latency.observe(v);
    for (let i = 0; i < 1000; i++) orders.inc(2, { region: "eu" });
    orders.inc(Number.NaN);
  }, { shipper })({}, lambdaContext("m-1"));
  const [rec] = records(capture.take());
  const metrics = rec!.metrics as { name: string; kind: string; value: number; count?: number; sum?: number; labels?: object }[];
  const buckets = metrics.filter((m) => m.name === "latency");
  const bounds = histogramBuckets("s");
  assert.ok(buckets.length <= bounds.length + 1);
  assert.equal(buckets.reduce((n, m) => n + (m.count ?? 1), 0), values.length);
  const total = values.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(buckets.reduce((n, m) => n + (m.sum ?? m.value), 0) - total) < 1e-6 * total);
  for (const m of buckets) {
    // Each entry's value lies in its bucket, the largest observation there.
    const i = bounds.findIndex((b) => m.value <= b);
    const lower = i === 0 ? -Infinity : bounds[(i < 0 ? bounds.length : i) - 1]!;
    assert.ok(m.value > lower, `${m.value} above ${lower}`);
  }
  assert.deepEqual(metrics.find((m) => m.name === "orders"), { name: "orders", kind: "counter", value: 2000, labels: { region: "eu" } });
  assert.equal(rec!["faas.metrics_dropped"], 2); // the negative increment before, the NaN inside
  assert.equal(shipper.snapshot().dropped_metrics, 2);
});

// ------------------------------------------------------------------ billing

test("a timed-out invocation states and bills its full limit (whole seconds on Lambda)", async () => {
  const [shipper, capture] = capturingShipper({ startEvents: false, timeoutMarginMs: 50 });
  let release: () => void = () => undefined;
  const handler = lambda(() => new Promise<void>((resolve) => (release = resolve)), { shipper });
  const running = handler({}, lambdaContext("slow", 120));
  const deadline = Date.now() + 5000;
  while (!capture.frames.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  release();
  await running;
  const [rec] = records(capture.take());
  assert.equal(rec!["error.type"], "faaslens.Timeout");
  assert.equal(rec!["event.duration"], 1_000_000_000); // the 120 ms left, rounded up to Lambda's whole second
  assert.ok(rec!["faas.billed_duration"] >= 1000, String(rec!["faas.billed_duration"]));
});

// ------------------------------------------------------------------ text

test("lone surrogates become U+FFFD in the JSON text; literal backslash-u text and pairs stay", () => {
  assert.equal(dumps({ ["k\ud800"]: "a\udfffb" }), '{"k\ufffd":"a\ufffdb"}');
  assert.equal(dumps("\\ud800"), JSON.stringify("\\ud800")); // a user's backslash, not an escape
  assert.equal(dumps("\\\ud800"), '"\\\\\ufffd"');
  assert.equal(dumps("😀"), '"😀"');
  assert.equal(dumps("\ud83d"), '"\ufffd"');
  assert.equal(wellFormed('"ok"'), '"ok"');
});

test("a long stack trace keeps its exception line and innermost frames, in code points and in bytes", () => {
  const frames = Array.from({ length: 400 }, (_, i) => `    at fn${i} (/var/task/handler.js:${i}:1)\n`).join("");
  const stack = `TypeError: ${"错".repeat(30_000)}\n${frames}`.trimEnd();
  for (const [limit, inBytes] of [[MAX_STACK, false], [20_000, true], [3_000, false]] as const) {
    const out = shrinkStack(stack, limit, inBytes);
    assert.ok((inBytes ? Buffer.byteLength(out) : codePoints(out)) <= limit, `${limit}`);
    assert.ok(out.startsWith("TypeError: 错"));
    assert.match(out, /\n {4}at fn0 \(/);
    assert.match(out, /\n {4}…\[\d+ frames omitted\]\n$/);
    const again = shrinkStack(out, Math.floor(limit / 2), inBytes); // cut twice: one marker, counts added
    assert.equal(again.match(/frames omitted/g)!.length, 1);
  }
  const err = new Error("错".repeat(40_000));
  const fields = errorFields(err);
  assert.ok(codePoints(fields["error.stack_trace"]!) <= MAX_STACK);
  assert.match(fields["error.stack_trace"]!, /\n {4}at /);
  assert.equal(codePoints(fields["error.message"]!), MAX_ERROR_MESSAGE);
});

test("redaction holds at every depth; past the depth budget a value is a marker, never its text", async () => {
  const [shipper, capture] = capturingShipper({ startEvents: false });
  let deep: Record<string, unknown> = { password: "s3cret-deep" };
  for (let i = 0; i < 50; i++) deep = { a: deep };
  class Request {
    headers = new Map([["Authorization", "Bearer s3cret-map"]]);
  }
  const cyclic: Record<string, unknown> = { token: "s3cret-cycle" };
  cyclic.self = cyclic;
  await lambda(async () => {
    getLogger("app", null, shipper).info("req", {
      request: { headers: { auth: { Authorization: "Bearer s3cret-1" } } },
      batches: [[{ api_key: "s3cret-2" }]],
      sets: new Set([{ secret: "s3cret-set" }]),
      instance: new Request(),
      cyclic,
      deep,
    });
  }, { shipper })({}, lambdaContext("r-1"));
  const text = capture.frames.map((f) => f.toString()).join("\n");
  assert.doesNotMatch(text, /s3cret/);
  assert.match(text, new RegExp(TOO_DEEP.replace(/[[\]]/g, "\\$&")));
  const [line] = lines(capture.take());
  assert.equal((line!.labels as any).request.headers.auth, '{"Authorization":"[REDACTED]"}');
});

// ------------------------------------------------------------------ property: any user text

/** One UTF-16 code unit of any kind, lone surrogates included, or a character that needs care. */
const unit = fc.oneof(
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
  fc.constantFrom("😀", "错", "\\", '"', "\n", "\u0000", "…", "\u2028"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
);
const text = fc.oneof(
  fc.string({ unit, maxLength: 40 }),
  fc.tuple(fc.string({ unit, maxLength: 3 }), fc.integer({ min: 1, max: 50_000 })).map(([s, n]) => (s || "x").repeat(n)),
);
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: "small" }, text, fc.integer(), fc.constant(null), tie("arr"), tie("obj")),
  arr: fc.array(tie("node"), { maxLength: 4 }),
  obj: fc.dictionary(fc.string({ unit, maxLength: 8 }), tie("node"), { maxKeys: 4 }),
})).node;

const fatal = new TextDecoder("utf-8", { fatal: true });

function wellFormedStrings(v: unknown): boolean {
  if (typeof v === "string") return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(v);
  if (Array.isArray(v)) return v.every(wellFormedStrings);
  if (v !== null && typeof v === "object") return Object.entries(v).every(([k, x]) => wellFormedStrings(k) && wellFormedStrings(x));
  return true;
}

test("property: any text, size and nesting from the user: the record arrives whole, valid UTF-8, within limits, secrets hidden, result untouched", async () => {
  await fc.assert(
    fc.asyncProperty(text, text, text, text, value, text, async (message, logger, labelKey, labelValue, fields, errorMessage) => {
      const [shipper, capture] = capturingShipper({ startEvents: false, endpoint: "udp://127.0.0.1:9" });
      const secret = "p4ss-Wörd-secret";
      const result = { ok: message };
      const out = await lambda(async () => {
        getLogger(logger, null, shipper).error(message, { fields, nested: { deeper: { password: secret, list: [{ token: secret }] } } });
        setLabel(labelKey, labelValue);
        counter("things", null, shipper).inc(1, { label: labelValue });
        getLogger("app", null, shipper).error("failed", { err: new Error(errorMessage) });
        return result;
      }, { shipper })({}, lambdaContext("prop-1"));
      assert.equal(out, result);
      assert.ok(capture.frames.length >= 1);
      for (const frame of capture.frames) {
        assert.ok(frame.length <= UDP_MAX);
        fatal.decode(frame); // throws on bytes that are not UTF-8
        assert.ok(!frame.toString().includes(secret));
      }
      const parsed = capture.take();
      for (const f of parsed) assert.ok(wellFormedStrings(f), "a lone surrogate escaped into the JSON");
      const [rec] = records(parsed);
      assert.equal(rec!["faas.execution"], "prop-1");
      assert.equal(rec!["event.outcome"], "success");
      const logs = lines(parsed);
      assert.equal(logs.length, 2);
      for (const l of logs) {
        assert.ok(codePoints(l.message as string) <= MAX_MESSAGE);
        if (l["log.logger"] !== undefined) assert.ok(codePoints(l["log.logger"] as string) <= 256);
      }
      assert.equal(shipper.snapshot().internal_errors, 0);
    }),
    { numRuns: 60 },
  );
});
