/**
 * The composition root: a Shipper ties config, context, cost, wire and transport.
 *
 * One shipper per process is the rule (`getShipper()`); tests build their own with an
 * injected clock, ids, memory reading and transport. Nothing here throws into the
 * handler: internal failures are counted in `stats().internal_errors`.
 *
 * Events are built field by field in the Python shipper's order (shipper/core.py), so
 * that both pack the same events into the same frames.
 *
 * Besides the record, an invocation sends a start event before its handler runs
 * (`startEvents`) and, once it has run half of the flush interval `I`
 * (`flushIntervalMs`, 1,000), its pending lines: a timer ticks every `I/4` while
 * invocations run, so a line logged at `x` leaves by `max(x, I/2) + I/4`, and every
 * line logged at least `I` before the process dies has left it. Shorter invocations
 * send their lines with the record, in one send. The timer is unref'd: it never keeps
 * the process (or a Lambda invocation waiting for an empty event loop) alive. Like any
 * timer it needs the event loop: a handler that blocks it (a synchronous loop) holds
 * its lines until it yields.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { type Env, type LevelName, type ShipperConfig, datagramSize, loadConfig, minLevel, parseEndpoint } from "./config";
import { PLAIN, type InvocationInfo, type Trigger, extract, httpStatus, newExecutionId, resourceFromEnv } from "./context";
import { type Estimator, estimatorFor } from "./cost";
import { errorFields } from "./errors";
import { Invocation, type Line, MetricBuffer, type MetricKind, currentInvocation, runIn } from "./record";
import { Redactor } from "./redact";
import { Stats, type Transport, makeTransport } from "./transport";
import { type Event, MAX_ATTEMPT, MAX_LOGGER, MAX_MESSAGE, Packer, Signer, TCP_MAX, UDP_MAX, codePoints, dumps, truncate } from "./wire";

/** Time sources; tests substitute their own. */
export interface Clock {
  /** Wall clock, epoch ms (for @timestamp). */
  timeMs(): number;
  /** Monotonic ns (for durations). */
  perfNs(): number;
  /** ns since this process started (the init duration of a cold start). */
  processAgeNs(): number | null;
}

export const systemClock: Clock = {
  timeMs: Date.now,
  perfNs: () => performance.now() * 1e6,
  // performance.now() counts from the process's time origin, i.e. its start.
  processAgeNs: () => Math.round(performance.now() * 1e6),
};

/** Peak resident set size of the process in bytes (`maxRSS` is in KiB). */
export function peakRss(): number | null {
  try {
    return process.resourceUsage().maxRSS * 1024;
  } catch {
    return null;
  }
}

export interface ShipperOptions {
  config?: ShipperConfig;
  /** Where platform facts are read (default process.env, read live: X-Ray changes per call). */
  env?: Env;
  resource?: Record<string, unknown>;
  transport?: Transport;
  clock?: Clock;
  src?: string;
  rss?: () => number | null;
  newId?: () => string;
  sample?: () => number;
}

export interface InvocationOptions {
  name?: string | null;
  trigger?: Trigger | null;
  executionId?: string | null;
}

// (fields differing from the resource block, estimator, memory size, the function's identity among them)
type Plan = [Record<string, unknown> | null, Estimator | null, number | null, Record<string, unknown> | null];
const NO_COLD = ["provisioned-concurrency", "snap-start"];
/** How long a wrapper waits for an invocation's frames to leave, at most (ms). */
export const SETTLE_MS = 200;

/**
 * Sends one record per invocation, with its log lines, errors and metrics; before it, a
 * start event (`startEvents`) and, for long invocations, their lines so far.
 */
export class Shipper {
  readonly config: ShipperConfig;
  readonly stats = new Stats();
  readonly src: string;
  readonly redact: Redactor;
  readonly resource: Record<string, unknown>;
  readonly disabled: boolean;
  private readonly env: Env;
  private readonly clock: Clock;
  private readonly rss: () => number | null;
  private readonly newId: () => string;
  private sample: (() => number) | null;
  private readonly transport: Transport;
  private readonly packer: Packer;
  private readonly resJson: string;
  private seq = 1;
  // Ids of recent failed attempts -> their attempt (a redelivery reuses the id).
  private failed = new Map<string, number>();
  private failedOld = new Map<string, number>();
  private logSeq = 0;
  private invocationCount = 0;
  private readonly estimators = new Map<string, Estimator | null>();
  private readonly plans = new WeakMap<object, Plan>();
  private plainPlan: Plan | null = null;
  private rssValue: number | null = null;
  private rssAt = -Infinity;
  private pendingMetrics = new MetricBuffer();
  private readonly minLevel: number;
  private readonly unsampledLevel: number;
  private readonly noCold: boolean;
  private readonly echo: ((line: Line, inv: Invocation | null) => void) | null;
  private readonly startEvents: boolean;
  /** Invocations running now, for the periodic flush of their lines (null: disabled). */
  private readonly running: Set<Invocation> | null;
  /** Invocations older than this (ns) have their lines flushed: half the interval. */
  private readonly flushAgeNs: number;
  private flushTimer: NodeJS.Timeout | null = null;
  readonly nextSeq = (): number => this.seq++;

  constructor(options: ShipperOptions = {}) {
    this.env = options.env ?? process.env;
    this.config = options.config ?? loadConfig(this.env);
    const cfg = this.config;
    this.clock = options.clock ?? systemClock;
    this.rss = options.rss ?? peakRss;
    this.newId = options.newId ?? newExecutionId;
    this.sample = options.sample ?? null;
    this.src = options.src ?? randomBytes(8).toString("hex");
    const [scheme, host, port] = parseEndpoint(cfg.endpoint);
    this.transport = options.transport ?? makeTransport(scheme, host, port, this.stats, cfg.tcpTimeoutS);
    const signer = cfg.hmacKey
      ? new Signer(cfg.hmacKeyId, cfg.hmacKey, () => this.clock.timeMs())
      : null;
    this.packer = new Packer(this.src, datagramSize(cfg, host), scheme === "udp" ? UDP_MAX : TCP_MAX, signer);
    this.redact = new Redactor(cfg.redactKeys);
    this.resource = options.resource ? { ...options.resource } : resourceFromEnv(this.env, cfg);
    this.resJson = dumps(this.resource);
    this.minLevel = minLevel(cfg);
    this.unsampledLevel = Math.max(this.minLevel, 30);
    this.noCold = NO_COLD.includes(this.env.AWS_LAMBDA_INITIALIZATION_TYPE ?? "");
    this.echo = cfg.echo ? (line, inv) => this.echoLine(line, inv) : null;
    this.disabled = cfg.disabled;
    this.startEvents = cfg.startEvents;
    this.running = cfg.flushIntervalMs > 0 ? new Set() : null;
    this.flushAgeNs = (cfg.flushIntervalMs * 1_000_000) / 2;
  }

  // ------------------------------------------------------------ public API

  /**
   * Run `fn` as one invocation (sync or async): its record is sent when it returns,
   * throws, or its promise settles; the result and errors are the handler's own.
   */
  run<T>(fn: () => T, args: readonly unknown[] = [], options: InvocationOptions = {}): T {
    if (this.disabled) return fn();
    const inv = this.start(args, options);
    let result: T;
    try {
      result = runIn(inv, fn);
    } catch (err) {
      this.finish(inv, err, true);
      throw err;
    }
    if (isThenable(result)) {
      return result.then(
        async (value: unknown) => {
          this.finish(inv, undefined, false, null, value);
          await this.settled();
          return value;
        },
        async (err: unknown) => {
          this.finish(inv, err, true);
          await this.settled();
          throw err;
        },
      ) as T;
    }
    this.finish(inv, undefined, false, null, result);
    return result;
  }

  /**
   * Run `fn` as one invocation and wait for its frames to leave (platform wrappers whose
   * runtime may freeze the process once the returned promise settles).
   */
  async runAsync<T>(fn: () => T | PromiseLike<T>, args: readonly unknown[] = [], options: InvocationOptions = {}): Promise<T> {
    if (this.disabled) return fn();
    const inv = this.start(args, options);
    let value: T;
    try {
      value = await runIn(inv, fn);
    } catch (err) {
      this.finish(inv, err, true);
      await this.settled();
      throw err;
    }
    this.finish(inv, undefined, false, null, value);
    await this.settled();
    return value;
  }

  /** Wrap a handler (sync or async, any platform): one record per call. */
  instrument<A extends unknown[], R>(fn: (...args: A) => R, options: InvocationOptions = {}): (...args: A) => R {
    if (this.disabled) return fn;
    const self = this;
    return function instrumented(this: unknown, ...args: A): R {
      return self.run(() => fn.apply(this, args), args, options);
    };
  }

  /** Resolves once frames in flight have left (at most `deadlineMs`); immediately when none are. */
  async settled(deadlineMs = SETTLE_MS): Promise<void> {
    try {
      const wait = this.transport.settled(deadlineMs);
      if (wait !== null) await wait;
    } catch {
      this.stats.internal_errors++;
    }
  }

  /** Counters: frames/bytes sent, send errors, dropped lines/metrics, internal errors. */
  snapshot(): Record<string, number> {
    this.stats.frames_oversize = this.packer.oversize;
    return this.stats.asObject();
  }

  /** Retry frames waiting for a TCP connection (UDP sends never wait). */
  flush(): void {
    try {
      this.transport.send([]);
    } catch {
      this.stats.internal_errors++;
    }
  }

  /** Release the socket (a later send reopens it) and stop the flush timer. */
  close(): void {
    this.stopFlushTimer();
    try {
      this.transport.close();
    } catch {
      this.stats.internal_errors++;
    }
  }

  // ------------------------------------------------------------ invocation lifecycle

  /** Begin an invocation (platform wrappers call it; prefer `run` / `instrument`). */
  start(args: readonly unknown[], options: InvocationOptions = {}): Invocation {
    try {
      const startMs = this.clock.timeMs();
      const info = args.length ? extract(args, this.env) : PLAIN;
      let execId = options.executionId || info.executionId;
      let attempt = 1;
      if (!execId) execId = this.newId(); // none, or an empty one the protocol would refuse
      else if (info.attempt !== null || (this.failed.size && (this.failed.has(execId) || this.failedOld.has(execId)))) {
        attempt = this.attemptOf(execId, info.attempt); // redeliveries follow failures: no lookup before one
      }
      let keep = this.minLevel;
      if (this.config.logSampleRate < 1) {
        const sample = (this.sample ??= Math.random);
        if (!(sample() < this.config.logSampleRate)) keep = this.unsampledLevel;
      }
      const inv = new Invocation(execId, startMs, info, keep, this.config.debugBuffer, this.clock.timeMs, this.echo);
      if (options.name != null) inv.name = options.name;
      inv.attempt = attempt;
      if (options.trigger != null) inv.trigger = options.trigger;
      if (this.invocationCount++ === 0 && !this.noCold) {
        inv.coldstart = true;
        inv.initNs = this.clock.processAgeNs();
      }
      if (this.pendingMetrics.size || this.pendingMetrics.dropped) {
        inv.metrics = this.pendingMetrics;
        this.pendingMetrics = new MetricBuffer();
      }
      const remaining = info.remainingMs;
      if (remaining !== null && this.config.timeoutMarginMs) this.armWatchdog(inv, remaining);
      if (this.startEvents) this.sendStart(inv, remaining);
      this.stats.invocations++;
      const running = this.running;
      if (running !== null) {
        running.add(inv);
        if (this.flushTimer === null) this.startFlushTimer();
      }
      inv.t0 = this.clock.perfNs();
      return inv;
    } catch {
      this.stats.internal_errors++;
      const inv = new Invocation(options.executionId || "unknown", 0, PLAIN, 100, 0, this.clock.timeMs);
      inv.done = true; // a placeholder: nothing will be sent for it
      return inv;
    }
  }

  /**
   * The attempt number of an id seen failing in this process, or stated by the platform:
   * one more than its last failed attempt, or the stated one if more (<= MAX_ATTEMPT).
   */
  private attemptOf(execId: string, stated: number | null): number {
    const before = this.failed.get(execId) ?? this.failedOld.get(execId) ?? 0;
    const attempt = stated !== null && stated > before + 1 ? stated : before + 1;
    return Math.min(attempt, MAX_ATTEMPT);
  }

  /**
   * Remember a failed attempt's id: platforms redeliver after a failure (AWS async
   * retries, Pub/Sub, Azure retries). Two generations of 1,024 ids: O(1) eviction.
   */
  private noteFailed(inv: Invocation): void {
    if (this.failed.size >= 1024 && !this.failed.has(inv.executionId)) {
      this.failedOld = this.failed;
      this.failed = new Map();
    }
    this.failed.set(inv.executionId, inv.attempt);
  }

  /**
   * End an invocation and send its record (once; later calls do nothing). `result` is
   * the handler's answer (its HTTP status decides the outcome of an HTTP function).
   */
  finish(inv: Invocation, err: unknown, failed: boolean, timedOutMs: number | null = null, result: unknown = undefined): void {
    const end = this.clock.perfNs();
    if (inv.done) return;
    inv.done = true;
    if (inv.watchdog !== null) {
      clearTimeout(inv.watchdog);
      inv.watchdog = null;
    }
    this.running?.delete(inv);
    try {
      let duration = Math.round(end - inv.t0);
      // The platform stops the handler at its timeout and bills all of it; the record
      // leaves a margin earlier, so it states the full limit.
      if (timedOutMs !== null && inv.limitMs) duration = Math.max(duration, inv.limitMs * 1_000_000);
      this.sendRecord(inv, duration, failed ? err : undefined, failed, timedOutMs, result);
    } catch {
      this.stats.internal_errors++;
    }
  }

  private sendRecord(inv: Invocation, duration: number, err: unknown, failed: boolean, timedOutMs: number | null, result: unknown): void {
    let isFailure = failed || timedOutMs !== null;
    // Only an HTTP function's answer is one: a job may return an upstream's response.
    const status = inv.trigger === "http" ? httpStatus(result) : null;
    const threshold = this.config.httpFailureStatus;
    if (status !== null && threshold && status >= threshold) isFailure = true; // platforms count a 5xx as an error
    const ev: Event = {
      t: "inv",
      "faas.execution": inv.executionId,
      "@timestamp": inv.startMs,
      "event.duration": duration > 0 ? duration : 0,
      "event.outcome": isFailure ? "failure" : "success",
      "faas.coldstart": inv.coldstart,
    };
    if (inv.attempt > 1) ev["faas.attempt"] = inv.attempt;
    if (isFailure || inv.attempt > 1) this.noteFailed(inv); // a later delivery of this id is the next attempt
    const [diff, est, memory] = this.plan(inv.info);
    if (diff) Object.assign(ev, diff);
    if (inv.name !== null && this.resource["faas.name"] !== inv.name) ev["faas.name"] = inv.name;
    if (inv.initNs !== null) ev["faas.coldstart_duration"] = inv.initNs;
    if (inv.trigger !== null) ev["faas.trigger.type"] = inv.trigger;
    if (status !== null) ev["http.response.status_code"] = status;
    const rss = this.peakRss(duration);
    if (rss) ev["faas.mem_usage"] = rss;
    if (est !== null) {
      // A cold start's init phase is billed with it where the platform does (AWS).
      const billed = inv.initNs !== null && est.billsInit ? duration + inv.initNs : duration;
      const priced = est.estimate(billed, memory, rss);
      if (priced !== null) {
        ev["faas.billed_duration"] = priced[0];
        ev["faas.cost.gb_seconds"] = priced[1];
        ev["faas.cost.usd"] = priced[2];
        ev["faas.cost.price_id"] = est.row.price_id;
      }
    }
    const traceId = inv.traceId;
    if (traceId !== null) {
      ev["trace.id"] = traceId;
      if (inv.spanId !== null) ev["span.id"] = inv.spanId;
    }
    if (failed) {
      Object.assign(ev, errorFields(err));
    } else if (timedOutMs !== null) {
      ev["error.type"] = "faaslens.Timeout";
      ev["error.message"] = `invocation still running ${timedOutMs} ms before its deadline`;
      ev["error.grouping_key"] = "timeout";
      this.stats.timeouts++;
    }
    if (inv.labels) {
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(inv.labels)) labels[k] = this.redact.sensitive(k) ? this.redact.replacement : v;
      ev.labels = labels;
    }
    const metrics = inv.metrics;
    if (metrics !== null) {
      if (metrics.items.length) ev.metrics = metrics.items;
      if (metrics.dropped) {
        ev["faas.metrics_dropped"] = metrics.dropped;
        this.stats.dropped_metrics += metrics.dropped;
      }
    }
    const lines = inv.linesToShip(isFailure);
    const events: Event[] = [ev];
    if (lines.length) this.lineEvents(lines, inv.executionId, traceId, events, this.ident(inv));
    if (isFailure) this.stats.dropped_lines += inv.deferredDropped;
    this.send(events);
  }

  /** Pack events into frames (each taking the next `seq`) and send them. */
  private send(events: Event[]): void {
    this.transport.send(this.packer.pack(this.resJson, events, this.nextSeq));
  }

  /** The start event (docs/protocol.md, `t: "start"`), sent at once; a failure is counted, the invocation runs on. */
  private sendStart(inv: Invocation, remainingMs: (() => number) | null): void {
    try {
      const ev: Event = {
        t: "start",
        "faas.execution": inv.executionId,
        "@timestamp": inv.startMs,
        "faas.coldstart": inv.coldstart,
      };
      if (inv.attempt > 1) ev["faas.attempt"] = inv.attempt;
      const diff = this.plan(inv.info)[0];
      if (diff) Object.assign(ev, diff);
      if (inv.name !== null && this.resource["faas.name"] !== inv.name) ev["faas.name"] = inv.name;
      if (inv.trigger !== null) ev["faas.trigger.type"] = inv.trigger;
      const left = remainingMs === null ? null : remainingMs();
      if (left !== null && Number.isInteger(left) && left > 0) ev["faas.timeout"] = left * 1_000_000;
      if (inv.traceId !== null) {
        ev["trace.id"] = inv.traceId;
        if (inv.spanId !== null) ev["span.id"] = inv.spanId;
      }
      this.send([ev]);
    } catch {
      this.stats.internal_errors++;
    }
  }

  /**
   * The function's name and version where the invocation's differ from the resource
   * block's (an Azure app hosts several functions; a wrapper may name one), repeated on
   * its lines so that they are found under the same function as its record.
   */
  private ident(inv: Invocation): Record<string, unknown> | null {
    let ident = this.plan(inv.info)[3];
    if (inv.name !== null && this.resource["faas.name"] !== inv.name) ident = { ...ident, "faas.name": inv.name };
    // The lines of each attempt keep document ids of their own.
    if (inv.attempt > 1) ident = { ...ident, "faas.attempt": inv.attempt };
    return ident;
  }

  // ------------------------------------------------------------ periodic flush

  private startFlushTimer(): void {
    const timer = setInterval(() => {
      if (this.running === null || this.running.size === 0) this.stopFlushTimer();
      else this.flushRunning(this.clock.perfNs());
    }, this.config.flushIntervalMs / 4);
    timer.unref();
    this.flushTimer = timer;
  }

  private stopFlushTimer(): void {
    if (this.flushTimer !== null) {
      clearInterval(this.flushTimer);
      this.flushTimer = null;
    }
  }

  /**
   * Send the pending lines of invocations running for at least half the flush interval
   * (`nowNs` on the shipper's monotonic clock). The flush timer calls it; tests and
   * scenarios call it at the times they choose.
   */
  flushRunning(nowNs: number): void {
    const running = this.running;
    if (running === null || running.size === 0) return;
    try {
      for (const inv of running) {
        if (inv.done || nowNs - inv.t0 < this.flushAgeNs) continue;
        const lines = inv.takeUnsent();
        if (!lines.length) continue;
        const events: Event[] = [];
        this.lineEvents(lines, inv.executionId, inv.traceId, events, this.ident(inv));
        this.send(events);
        this.stats.lines_flushed += lines.length;
      }
    } catch {
      this.stats.internal_errors++;
    }
  }

  /** Peak RSS, re-read unless a sub-millisecond invocation follows a reading < 100 ms old. */
  private peakRss(duration: number): number | null {
    const now = this.clock.perfNs();
    if (duration >= 1_000_000 || now - this.rssAt > 100_000_000 || this.rssValue === null) {
      this.rssValue = this.rss();
      this.rssAt = now;
    }
    return this.rssValue;
  }

  /** Wire events for buffered lines, appended to `out`. */
  private lineEvents(lines: Line[], execId: string | null, traceId: string | null, out: Event[], ident: Record<string, unknown> | null = null): void {
    for (const [seq, ts, level, text, logger, kv, err] of lines) {
      let message = text;
      if (text.length > MAX_MESSAGE && codePoints(text) > MAX_MESSAGE) {
        message = truncate(text, MAX_MESSAGE);
        this.stats.truncated++;
      }
      const ev: Event =
        execId !== null
          ? { t: "log", "@timestamp": ts, "event.sequence": seq, "log.level": level, message, "faas.execution": execId }
          : { t: "log", "@timestamp": ts, "event.sequence": seq, "log.level": level, message };
      if (logger !== null) ev["log.logger"] = logger.length <= MAX_LOGGER ? logger : [...logger].slice(0, MAX_LOGGER).join("");
      if (traceId !== null) ev["trace.id"] = traceId;
      if (kv) ev.labels = this.redact.clean(kv);
      if (err !== undefined) Object.assign(ev, errorFields(err));
      if (ident) Object.assign(ev, ident);
      out.push(ev);
    }
    this.stats.lines += lines.length;
  }

  /** For an invocation's own resource fields: those differing from the process's, the estimator, the memory size. */
  private plan(info: InvocationInfo): Plan {
    const fields = info.fields;
    const cached = fields === null ? this.plainPlan : this.plans.get(fields);
    if (cached) return cached;
    const res = this.resource;
    let diff: Record<string, unknown> | null = null;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) if (res[k] !== v) (diff ??= {})[k] = v;
    }
    const merged = fields ? { ...res, ...fields } : res;
    const est = this.estimator(merged);
    let ident: Record<string, unknown> | null = null;
    if (diff) {
      for (const k of ["faas.name", "faas.version"]) if (k in diff) (ident ??= {})[k] = diff[k];
    }
    const memory = typeof merged["faas.max_memory"] === "number" ? merged["faas.max_memory"] : null;
    const plan: Plan = [diff, est, memory, ident];
    if (fields === null) this.plainPlan = plan;
    else this.plans.set(fields, plan);
    return plan;
  }

  private estimator(merged: Record<string, unknown>): Estimator | null {
    const provider = String(merged["cloud.provider"] || this.resource["cloud.provider"] || "local");
    const regionValue = merged["cloud.region"] || this.resource["cloud.region"];
    const region = regionValue ? String(regionValue) : null;
    const key = `${provider}\u0000${region}`;
    let est = this.estimators.get(key);
    if (est === undefined) {
      const cfg = this.config;
      est = estimatorFor(provider, String(this.resource["host.architecture"] ?? "x86_64"), region, {
        gcpGeneration: cfg.gcpGeneration,
        cpu: cfg.cpu,
        prices: cfg.prices,
      });
      this.estimators.set(key, est);
    }
    return est;
  }

  // ------------------------------------------------------------ lines and metrics

  /** Route one log line: with the current invocation, or on its own outside one. */
  log(levelno: number, level: LevelName, message: string, logger: string | null, kv: Record<string, unknown> | null, err: unknown): void {
    const inv = currentInvocation();
    if (inv !== undefined && !inv.done) {
      if (inv.wants(levelno)) inv.addLine(levelno, level, message, logger, kv, err);
      return;
    }
    this.logOutside(levelno, level, message, logger, kv, err);
  }

  /** Send one line logged outside any invocation, on its own (id `<src>-<seq>`). */
  logOutside(levelno: number, level: LevelName, message: string, logger: string | null, kv: Record<string, unknown> | null, err: unknown): void {
    try {
      if (levelno < this.minLevel) return;
      const line: Line = [this.logSeq++, this.clock.timeMs(), level, message, logger, kv, err];
      if (this.echo !== null) this.echo(line, null);
      const events: Event[] = [];
      this.lineEvents([line], null, null, events);
      this.send(events);
    } catch {
      this.stats.internal_errors++;
    }
  }

  /** A custom metric update: with the current invocation, or the next one. */
  addMetric(kind: MetricKind, name: string, value: number, labels: Record<string, string> | null, unit: string | null): void {
    this.metricBuffer().add(kind, name, value, labels, unit);
  }

  /**
   * Count metric updates refused before buffering (bad value, label, label set): sent
   * with the current (or next) record as `faas.metrics_dropped`.
   */
  dropMetric(n = 1): void {
    this.metricBuffer().dropped += n;
  }

  private metricBuffer(): MetricBuffer {
    const inv = currentInvocation();
    if (inv !== undefined && !inv.done) return (inv.metrics ??= new MetricBuffer());
    return this.pendingMetrics;
  }

  /** `FAASLENS_ECHO`: the line as JSON on stdout too (e.g. for CloudWatch). */
  private echoLine(line: Line, inv: Invocation | null): void {
    const [, ts, level, message, logger, kv, err] = line;
    const out: Record<string, unknown> = { "@timestamp": ts, "log.level": level, message };
    if (inv !== null) out["faas.execution"] = inv.executionId;
    if (logger) out["log.logger"] = logger;
    if (kv) Object.assign(out, this.redact.clean(kv));
    if (err !== undefined) out["error.type"] = errorFields(err)["error.type"];
    try {
      process.stdout.write(`${dumps(out)}\n`);
    } catch {
      this.stats.internal_errors++;
    }
  }

  // ------------------------------------------------------------ timeouts (AWS)

  private armWatchdog(inv: Invocation, remainingMs: () => number): void {
    const left = remainingMs();
    if (!Number.isInteger(left) || left <= 0) return;
    inv.limitMs = Math.ceil(left / 1000) * 1000; // Lambda's timeouts are whole seconds
    const margin = this.config.timeoutMarginMs;
    const timer = setTimeout(() => this.finish(inv, undefined, false, margin), Math.max(left - margin, 0));
    timer.unref();
    inv.watchdog = timer;
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") && typeof (value as { then?: unknown }).then === "function";
}

// ------------------------------------------------------------------ the process's shipper

let defaultShipper: Shipper | null = null;

/** The process's shipper, built from the environment on first use. */
export function getShipper(): Shipper {
  return (defaultShipper ??= new Shipper());
}

/**
 * Replace the process's shipper: environment settings overridden by `settings`.
 * Throws ConfigError on an unknown or bad setting. Call it at module load, before
 * the first invocation; handlers wrapped earlier use the new one.
 */
export function configure(settings: Partial<ShipperConfig> = {}, options: Omit<ShipperOptions, "config"> = {}): Shipper {
  const shipper = new Shipper({ ...options, config: loadConfig(options.env ?? process.env, settings) });
  const old = defaultShipper;
  defaultShipper = shipper;
  if (old !== null) old.close();
  return shipper;
}

/** Attach a label to the current invocation's record (ignored outside one). */
export function setLabel(key: string, value: unknown): void {
  currentInvocation()?.setLabel(key, value);
}
