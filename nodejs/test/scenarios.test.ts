// The language-neutral shipper scenarios (tests/vectors/scenarios/*.json), run by the
// NodeJS shipper: it must send the frames the Python shipper sends (stored as
// tests/vectors/<name>.frame), compared under the rules of docs/protocol.md
// ("Shipper scenarios"). The Python side: tests/vectors/scenario.py.
import { strict as assert } from "node:assert";
import { createHmac } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { EventEmitter } from "node:events";
import { runInThisContext } from "node:vm";
import { HttpResponse } from "@azure/functions";
import { Shipper, loadConfig, fingerprintOf } from "../src/index";
import type { Clock } from "../src/core";
import { Logger } from "../src/logger";
import { gcpHttp } from "../src/providers";
import { Counter, Gauge, Histogram } from "../src/metrics";
import { currentInvocation } from "../src/record";
import { Capture } from "./kit";

export const VECTORS = join(__dirname, "..", "..", "..", "tests", "vectors");
const SCENARIOS = join(VECTORS, "scenarios");

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Step = Record<string, any>;
interface Scenario {
  name: string;
  settings: Record<string, string>;
  src: string;
  resource: Record<string, unknown>;
  clock: { wall_ms: number; mono_ns: number };
  process_age_ns: number;
  rss_bytes: number;
  ids: string[];
  random: number[];
  steps: Step[];
  expect_frames: string[];
}
interface Raise {
  type: string;
  message: unknown;
  frames: [string, string][];
}

/**
 * A string given as data: plain, {repeat, times}, {concat: [...]} or {code_unit: n}:
 * one UTF-16 code unit, e.g. a lone surrogate, which JSON files cannot hold.
 */
function textOf(spec: any): string {
  if (typeof spec === "string") return spec;
  if ("code_unit" in spec) return String.fromCharCode(spec.code_unit);
  if ("repeat" in spec) return String(spec.repeat).repeat(spec.times);
  return (spec.concat as unknown[]).map(textOf).join("");
}

/** A key given as data: `\\u{dce9}` in it stands for that UTF-16 code unit. */
function keyText(key: string): string {
  return key.replace(/\\u\{([0-9a-fA-F]{4})\}/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

/** Fields or labels given as data: `{"$text": spec}` is textOf the spec, keys go through keyText. */
function dataOf(value: any): any {
  if (Array.isArray(value)) return value.map(dataOf);
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$text") return textOf(value.$text);
    return Object.fromEntries(keys.map((k) => [keyText(k), dataOf(value[k])]));
  }
  return value;
}

function substitute(value: any, name: string, i: number): any {
  if (value === `$${name}`) return i;
  if (Array.isArray(value)) return value.map((v) => substitute(v, name, i));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, name, i)]));
  }
  return value;
}

const AZURE_TRIGGER: Record<string, string> = { http: "httpTrigger", timer: "timerTrigger", pubsub: "queueTrigger" };

/** The handler's arguments on the step's platform, in the NodeJS runtimes' shapes. */
function handlerArgs(step: Step): unknown[] {
  switch (step.platform) {
    case "aws": {
      const c = step.context;
      const context: Record<string, unknown> = {
        awsRequestId: c.request_id,
        functionName: c.function_name,
        functionVersion: c.function_version,
        memoryLimitInMB: String(c.memory_mb),
        invokedFunctionArn: c.arn,
      };
      // The runtime's method; absent unless the scenario gives it.
      if (c.remaining_ms !== undefined) context.getRemainingTimeInMillis = () => c.remaining_ms;
      return [step.event, context];
    }
    case "azure": {
      const c = step.context;
      const input = step.input ?? {};
      const request = { method: input.method, headers: new Headers(input.headers ?? {}) };
      const context = {
        invocationId: c.invocation_id,
        functionName: c.function_name,
        traceContext: { traceParent: c.traceparent },
        ...(c.retry_count == null ? {} : { retryContext: { retryCount: c.retry_count, maxRetryCount: 5 } }),
        options: { trigger: { type: AZURE_TRIGGER[c.trigger] ?? "unknownTrigger" } },
      };
      return [request, context];
    }
    case "gcp_cloudevent":
      return [{ specversion: "1.0", ...step.event }];
    case "gcp_http": {
      const headers = Object.fromEntries(Object.entries(step.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
      return [{ headers, method: "GET" }, new FakeResponse()];
    }
    case "plain":
      return [];
    default:
      throw new Error(`unknown platform ${String(step.platform)}`);
  }
}

/** A handler whose stack holds exactly the frames the scenario names (compiled under /var/task/<file>). */
function failingHandler(spec: Raise, body: () => void): (...args: unknown[]) => unknown {
  const names = spec.frames.map(([, fn]) => fn);
  const fns: Record<string, (...args: unknown[]) => unknown> = {};
  const make = runInThisContext(
    `(function (type, message) {
       const known = globalThis[type];
       if (typeof known === "function" && known.prototype instanceof Error) return known;
       return ({ [type]: class extends Error { constructor(m) { super(m); this.name = type; } } })[type];
     })`,
  ) as (type: string, message: string) => new (message: string) => Error;
  const ErrorClass = make(spec.type, "");
  const message = textOf(spec.message);
  spec.frames.forEach(([file, fn], i) => {
    // The error is made in the innermost frame itself, so its stack starts there.
    const call = i === names.length - 1 ? "throw new ErrorClass(message);" : `return fns[${JSON.stringify(names[i + 1])}]();`;
    const prelude = i === 0 ? "body();" : "";
    const source = `(function (fns, body, ErrorClass, message) { return function ${fn}() { ${prelude} ${call} }; })`;
    fns[fn] = runInThisContext(source, { filename: `/var/task/${file}` })(fns, body, ErrorClass, message);
  });
  return fns[names[0]!]!;
}

/** An express response as functions-framework hands it, as far as the shipper reads it. */
class FakeResponse extends EventEmitter {
  statusCode = 200;
  setHeader(): void {}
  /** Send the response: the platform's invocation is over. */
  end(): void {
    this.emit("finish");
  }
}

/**
 * The handler's answer `{status: n}` in the step's platform's shape; on gcp_http it is set on
 * the response, whose status is 200 unless set (the Python runner answers 200 there too).
 */
function answer(step: Step, args: unknown[]): unknown {
  const status = step.answer?.status as number | undefined;
  if (step.platform === "gcp_http") {
    const res = args[1] as FakeResponse;
    if (status !== undefined) res.statusCode = status;
    res.end();
    return undefined;
  }
  if (status === undefined) return undefined;
  if (step.platform === "aws") return { statusCode: status, body: "" };
  if (step.platform === "azure") return new HttpResponse({ status });
  throw new Error(`no HTTP answer on platform ${String(step.platform)}`);
}

const METRICS = { counter: Counter, gauge: Gauge, histogram: Histogram } as const;

class Run {
  readonly capture = new Capture();
  readonly shipper: Shipper;
  wallMs: number;
  monoNs: number;

  constructor(scenario: Scenario) {
    this.wallMs = scenario.clock.wall_ms;
    this.monoNs = scenario.clock.mono_ns;
    const clock: Clock = {
      timeMs: () => this.wallMs,
      perfNs: () => this.monoNs,
      processAgeNs: () => scenario.process_age_ns,
    };
    const ids = [...scenario.ids];
    const draws = [...scenario.random];
    this.shipper = new Shipper({
      config: loadConfig(scenario.settings),
      env: {},
      resource: scenario.resource,
      transport: this.capture,
      clock,
      src: scenario.src,
      rss: () => scenario.rss_bytes,
      newId: () => ids.shift()!,
      sample: () => draws.shift()!,
    });
  }

  steps(steps: Step[]): void {
    for (const step of steps) this.step(step);
  }

  step(step: Step): void {
    switch (step.op) {
      case "tick":
        this.wallMs += step.wall_ms ?? 0;
        this.monoNs += step.mono_ns ?? 0;
        return;
      case "repeat":
        for (let i = 0; i < step.times; i++) this.steps(substitute(step.steps, step.var, i));
        return;
      case "log":
        new Logger(step.logger == null ? null : textOf(step.logger), null, this.shipper).log(step.level, textOf(step.message), step.fields ? dataOf(step.fields) : undefined);
        return;
      case "metric": {
        const metric = new METRICS[step.kind as keyof typeof METRICS](step.name, step.unit ?? null, this.shipper);
        const value = step.value ?? 1;
        const labels = step.labels ? dataOf(step.labels) : undefined;
        if (metric instanceof Counter) metric.inc(value, labels);
        else if (metric instanceof Gauge) metric.set(value, labels);
        else metric.observe(value, labels);
        return;
      }
      case "label": {
        const inv = currentInvocation();
        assert.ok(inv, "a label step belongs inside an invocation");
        inv.setLabel(keyText(step.key), textOf(step.value));
        return;
      }
      case "invoke":
        return this.invoke(step);
      case "timer":
        // The periodic flush timer fires now, at the scenario clock's time.
        this.shipper.flushRunning(this.monoNs);
        return;
      default:
        throw new Error(`unknown step ${String(step.op)}`);
    }
  }

  invoke(step: Step): void {
    const args = handlerArgs(step);
    const raising = step.raise as Raise | undefined;
    const body = (): unknown => {
      this.steps(step.steps ?? []);
      return raising ? undefined : answer(step, args);
    };
    const handler = raising ? failingHandler(raising, body) : body;
    // An HTTP function on functions-framework goes through its wrapper: the invocation
    // ends when the response is sent, with the response's status.
    const wrapped: (...a: unknown[]) => unknown =
      step.platform === "gcp_http"
        ? (gcpHttp(handler, { name: step.name ?? undefined, trigger: step.trigger ?? undefined, shipper: this.shipper }) as (...a: unknown[]) => unknown)
        : this.shipper.instrument(handler, {
            name: step.name ?? null,
            trigger: step.trigger ?? null,
            executionId: step.execution_id ?? null,
          });
    try {
      wrapped(...args);
    } catch (err) {
      if (!raising || (err as Error).name !== raising.type) throw err;
    }
  }
}

export function loadScenario(name: string): Scenario {
  return JSON.parse(readFileSync(join(SCENARIOS, `${name}.json`), "utf8")) as Scenario;
}

export function scenarioNames(): string[] {
  return readdirSync(SCENARIOS)
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -5))
    .sort();
}

export function runScenario(scenario: Scenario): Buffer[] {
  const run = new Run(scenario);
  run.steps(scenario.steps);
  return run.capture.frames;
}

// ------------------------------------------------------------------ comparison rules

function splitFrame(frame: Buffer): [string | null, string | null, Buffer] {
  // s2: the signing time stays with the signature ("<ms> <hex>"), which covers it.
  if (frame.subarray(0, 3).toString() === "s2 ") {
    const first = frame.indexOf(0x20, 3);
    const second = frame.indexOf(0x20, first + 1);
    const third = frame.indexOf(0x20, second + 1);
    return [frame.subarray(3, first).toString(), frame.subarray(first + 1, third).toString(), frame.subarray(third + 1)];
  }
  if (frame.subarray(0, 3).toString() === "s1 ") {
    const first = frame.indexOf(0x20, 3);
    const second = frame.indexOf(0x20, first + 1);
    return [frame.subarray(3, first).toString(), frame.subarray(first + 1, second).toString(), frame.subarray(second + 1)];
  }
  return [null, null, frame];
}

function raisedIn(steps: Step[]): Raise | null {
  for (const step of steps) {
    if (step.raise) return step.raise as Raise;
    const inner = raisedIn(step.steps ?? []);
    if (inner) return inner;
  }
  return null;
}

function same(expected: Json, actual: Json, path: string, raised: Raise | null, out: string[]): void {
  if (path.endsWith("/error.stack_trace") && raised) {
    if (typeof actual !== "string" || !actual || [...actual].length > 32 * 1024) out.push(`${path}: not a stack trace within 32 KiB`);
    else for (const w of [raised.type, ...raised.frames.map(([, fn]) => fn)]) if (!actual.includes(w)) out.push(`${path}: does not name ${w}`);
    return;
  }
  if (typeof expected === "number" && typeof actual === "number") {
    if (expected === actual) return;
    const bothInts = Number.isInteger(expected) && Number.isInteger(actual);
    if (!bothInts && Math.abs(expected - actual) <= 1e-9 * Math.max(Math.abs(expected), Math.abs(actual))) return;
    out.push(`${path}: ${actual} != ${expected}`);
    return;
  }
  if (Array.isArray(expected) && Array.isArray(actual)) {
    if (expected.length !== actual.length) {
      out.push(`${path}: ${actual.length} items != ${expected.length}`);
      return;
    }
    expected.forEach((e, i) => same(e, actual[i]!, `${path}/${i}`, raised, out));
    return;
  }
  if (expected && actual && typeof expected === "object" && typeof actual === "object" && !Array.isArray(expected) && !Array.isArray(actual)) {
    for (const k of Object.keys(expected)) if (!(k in actual)) out.push(`${path}: missing key ${k}`);
    for (const k of Object.keys(actual)) if (!(k in expected)) out.push(`${path}: unexpected key ${k}`);
    for (const k of Object.keys(expected)) if (k in actual) same(expected[k]!, actual[k]!, `${path}/${k}`, raised, out);
    return;
  }
  if (expected !== actual) out.push(`${path}: ${JSON.stringify(actual)?.slice(0, 200)} != ${JSON.stringify(expected)?.slice(0, 200)}`);
}

/** Differences between expected and produced frames under the protocol's comparison rules. */
export function framesMatch(scenario: Scenario, expected: Buffer[], actual: Buffer[]): string[] {
  if (expected.length !== actual.length) return [`${actual.length} frames != ${expected.length}`];
  const raised = raisedIn(scenario.steps);
  const key = scenario.settings.FAASLENS_HMAC_KEY ?? "";
  const out: string[] = [];
  expected.forEach((e, i) => {
    const [eId, , eBody] = splitFrame(e);
    const [aId, aSig, aBody] = splitFrame(actual[i]!);
    if (eId !== aId) out.push(`frame ${i}: key id ${aId} != ${eId}`);
    const stamp = aSig === null ? "" : aSig.slice(0, aSig.lastIndexOf(" ") + 1);
    const digest = aSig === null ? null : aSig.slice(aSig.lastIndexOf(" ") + 1);
    if (digest !== null && digest !== createHmac("sha256", key).update(stamp).update(aBody).digest("hex")) {
      out.push(`frame ${i}: signature does not match the body`);
    }
    same(JSON.parse(eBody.toString()) as Json, JSON.parse(aBody.toString()) as Json, `frame ${i}`, raised, out);
  });
  return out;
}

for (const name of scenarioNames()) {
  test(`scenario ${name}: the NodeJS shipper sends the expected frames`, () => {
    const scenario = loadScenario(name);
    const expected = scenario.expect_frames.map((n) => readFileSync(join(VECTORS, `${n}.frame`)));
    assert.deepEqual(framesMatch(scenario, expected, runScenario(scenario)), []);
  });
}

test("comparison rules catch differences", () => {
  const scenario = loadScenario("shipper_error");
  const frame = readFileSync(join(VECTORS, `${scenario.expect_frames[0]}.frame`));
  const body = JSON.parse(frame.toString()) as { ev: Record<string, unknown>[] };
  const variant = (changes: Record<string, unknown>): Buffer[] => [Buffer.from(JSON.stringify({ ...body, ev: [{ ...body.ev[0], ...changes }] }))];
  const usd = body.ev[0]!["faas.cost.usd"] as number;
  assert.deepEqual(framesMatch(scenario, [frame], variant({ "faas.cost.usd": usd * (1 + 1e-12) })), []);
  assert.notDeepEqual(framesMatch(scenario, [frame], variant({ "faas.cost.usd": usd * 1.001 })), []);
  assert.notDeepEqual(framesMatch(scenario, [frame], variant({ "error.stack_trace": "ValueError" })), []);
  assert.notDeepEqual(framesMatch(scenario, [frame], variant({ "error.grouping_key": "0".repeat(16) })), []);
  assert.notDeepEqual(framesMatch(scenario, [frame], [frame, frame]), []);
});

test("fingerprint vectors", () => {
  const { cases } = JSON.parse(readFileSync(join(VECTORS, "fingerprints.json"), "utf8")) as {
    cases: { type: string; frames: [string, string][]; text: string; grouping_key: string }[];
  };
  assert.ok(cases.length >= 5);
  for (const c of cases) assert.equal(fingerprintOf(c.type, c.frames), c.grouping_key, c.text);
});
