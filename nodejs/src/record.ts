/**
 * One invocation's state until its record is sent, and the current invocation.
 *
 * The current invocation lives in an AsyncLocalStorage, so concurrent invocations
 * (Azure and GCP run several per process) never see each other's lines, labels or
 * metrics. Lines are buffered as tuples and serialized once, when the invocation ends;
 * the lines of an invocation that runs past half the flush interval leave earlier, in
 * batches (Shipper.flushRunning).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { LevelName } from "./config";
import { bucketIndex, histogramBuckets } from "./buckets";
import type { InvocationInfo, Trigger } from "./context";
import {
  MAX_INV_LABEL_VALUE,
  MAX_INV_LABELS,
  MAX_METRIC_LABEL_VALUE,
  MAX_METRIC_LABELS,
  MAX_METRICS,
  truncate,
} from "./wire";

/** [event.sequence, @timestamp ms, level, message, logger, key-values, thrown value]. */
export type Line = [number, number, LevelName, string, string | null, Record<string, unknown> | null, unknown];
export type MetricKind = "counter" | "gauge" | "histogram";

export interface MetricObject {
  name: string;
  kind: MetricKind;
  value: number;
  labels?: Record<string, string>;
  unit?: string;
  /** Histogram bucket entries past one observation: how many, and their total. */
  count?: number;
  sum?: number;
}

const storage = new AsyncLocalStorage<Invocation>();

/** The invocation the calling code runs in, if any. */
export function currentInvocation(): Invocation | undefined {
  return storage.getStore();
}

/** Run `fn` as part of `inv` (its lines, labels and metrics go with it). */
export function runIn<T>(inv: Invocation, fn: () => T): T {
  return storage.run(inv, fn);
}

const NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,63}$/;

/** The protocol's metric and metric-label name rule: `[a-zA-Z_][a-zA-Z0-9_]{0,63}`. */
export function validName(name: unknown): name is string {
  return typeof name === "string" && NAME.test(name);
}

/** Metric labels within limits: valid names, <= 5 keys, values <= 64 code points. */
export function cleanMetricLabels(labels: Record<string, unknown> | undefined): [Record<string, string> | null, number] {
  if (!labels) return [null, 0];
  const out: Record<string, string> = {};
  let kept = 0;
  let dropped = 0;
  for (const key of Object.keys(labels)) {
    if (kept >= MAX_METRIC_LABELS || !validName(key)) {
      dropped++;
      continue;
    }
    const value = labels[key];
    const text = typeof value === "string" ? value : String(value);
    out[key] = truncate(text, MAX_METRIC_LABEL_VALUE);
    kept++;
  }
  return [kept ? out : null, dropped];
}

/**
 * Custom metric objects carried with one record, aggregated per series so that the
 * number of updates does not matter: counters summed, gauges their last value,
 * histograms as counts per bucket (the worker's buckets for the metric's unit,
 * histogramBuckets in ./buckets): one object per bucket used, whose `value` is its
 * largest observation and, past one observation, `count` and `sum` say how many and
 * their total. The same encoding as the Python shipper's MetricBuffer (shipper/record.py).
 *
 * At most 64 objects per record; updates that would need more are dropped and counted
 * in `dropped` (sent as `faas.metrics_dropped`).
 */
export class MetricBuffer {
  readonly items: MetricObject[] = [];
  private readonly keyed = new Map<string, MetricObject>();
  dropped = 0;

  get size(): number {
    return this.items.length;
  }

  add(kind: MetricKind, name: string, value: number, labels: Record<string, string> | null, unit: string | null): void {
    let key = labels ? `${kind}\u0000${name}\u0000${JSON.stringify(labels)}` : `${kind}\u0000${name}`;
    if (kind === "histogram") key += `\u0000${bucketIndex(histogramBuckets(unit), value)}`;
    const found = this.keyed.get(key);
    if (found !== undefined) {
      if (kind === "counter") found.value += value;
      else if (kind === "gauge") found.value = value;
      else {
        // The first observation is the entry's value until a second one comes.
        found.sum = (found.sum ?? found.value) + value;
        found.count = (found.count ?? 1) + 1;
        found.value = Math.max(found.value, value); // still inside the bucket
      }
      return;
    }
    if (this.items.length >= MAX_METRICS) {
      this.dropped++;
      return;
    }
    const entry: MetricObject = { name, kind, value };
    if (labels) entry.labels = labels;
    if (unit) entry.unit = unit;
    this.items.push(entry);
    this.keyed.set(key, entry);
  }
}

/** Lines below the shipping level, kept up to a bound (oldest pushed out). */
class Ring {
  readonly lines: Line[] = [];
  private start = 0;
  total = 0;

  constructor(private readonly max: number) {}

  push(line: Line): void {
    this.total++;
    if (this.lines.length < this.max) {
      this.lines.push(line);
    } else {
      this.lines[this.start] = line;
      this.start = (this.start + 1) % this.max;
    }
  }

  get kept(): number {
    return this.lines.length;
  }
}

/**
 * The state of one invocation, until its record is sent. Users may read
 * `executionId`, `traceId`, `coldstart`, `trigger`, and call `setLabel`.
 */
export class Invocation {
  readonly traceId: string | null;
  readonly spanId: string | null;
  trigger: Trigger | null;
  name: string | null = null;
  coldstart = false;
  /** > 1: the platform delivered this id before (docs/protocol.md, "Attempts"). */
  attempt = 1;
  /** The platform's time limit in ms, when it states one (AWS); 0: unknown. */
  limitMs = 0;
  initNs: number | null = null;
  /** Lines to ship, not sent yet (the periodic flush takes them out as it sends them). */
  readonly lines: Line[] = [];
  deferred: Ring | null = null;
  labels: Record<string, string> | null = null;
  metrics: MetricBuffer | null = null;
  done = false;
  t0 = 0;
  /** Timer recording a timeout before the platform's deadline, if armed. */
  watchdog: NodeJS.Timeout | null = null;
  private seq = 0;

  constructor(
    readonly executionId: string,
    readonly startMs: number,
    readonly info: InvocationInfo,
    readonly keepLevel: number,
    private readonly deferredMax: number,
    private readonly timeMs: () => number,
    readonly echo: ((line: Line, inv: Invocation | null) => void) | null = null,
  ) {
    this.traceId = info.traceId;
    this.spanId = info.spanId;
    this.trigger = info.trigger;
  }

  /** Whether a line at this level does anything (shipped, kept aside or echoed). */
  wants(levelno: number): boolean {
    return levelno >= this.keepLevel || this.deferredMax > 0 || this.echo !== null;
  }

  /** Buffer one line (or keep it aside: below the shipping level). */
  addLine(levelno: number, level: LevelName, message: string, logger: string | null, kv: Record<string, unknown> | null, err: unknown): void {
    const line: Line = [this.seq++, this.timeMs(), level, message, logger, kv, err];
    if (levelno >= this.keepLevel) {
      this.lines.push(line);
    } else if (this.deferredMax > 0) {
      if (this.deferred === null) this.deferred = new Ring(this.deferredMax);
      this.deferred.push(line);
    }
    if (this.echo !== null) this.echo(line, this);
  }

  /**
   * The lines that go with the record: those not flushed yet, and the kept-aside ones
   * too when the invocation failed (in sequence order).
   */
  linesToShip(failed: boolean): Line[] {
    if (failed && this.deferred !== null && this.deferred.kept) {
      return [...this.lines, ...this.deferred.lines].sort((a, b) => a[0] - b[0]);
    }
    return this.lines;
  }

  /**
   * The lines not sent yet, taken out (the periodic flush's share): a long invocation
   * holds only the lines logged since the last flush. One thread runs handlers and
   * timers, so no line is appended meanwhile.
   */
  takeUnsent(): Line[] {
    return this.lines.length ? this.lines.splice(0) : [];
  }

  /** Kept-aside lines pushed out of the bounded debug buffer. */
  get deferredDropped(): number {
    return this.deferred === null ? 0 : this.deferred.total - this.deferred.kept;
  }

  /** Attach a label (`labels.<key>`) to the invocation record (<= 32, values strings <= 1 KiB). */
  setLabel(key: string, value: unknown): void {
    const labels = (this.labels ??= {});
    const k = String(key);
    if (!(k in labels) && Object.keys(labels).length >= MAX_INV_LABELS) return;
    const text = typeof value === "string" ? value : String(value);
    labels[k] = text.length > MAX_INV_LABEL_VALUE ? truncate(text, MAX_INV_LABEL_VALUE) : text;
  }
}
