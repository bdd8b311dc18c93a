/**
 * Custom metrics: counters, gauges and histograms carried with the invocation record.
 *
 * The worker exposes them as `faas_custom_<name>` (counters `_total`) with the
 * function added as a label. Labels must stay bounded (a handful of values each):
 * never put an id in a label. Updates outside an invocation go with the next one.
 */
import { type Shipper, getShipper } from "./core";
import { type MetricKind, cleanMetricLabels, validName } from "./record";
import { truncate } from "./wire";

/** Distinct label sets one metric may use in a process; past it, updates are dropped and counted. */
export const MAX_LABEL_SETS = 100;

export type Labels = Record<string, string | number | boolean>;

abstract class Metric {
  abstract readonly kind: MetricKind;
  readonly unit: string | null;
  private readonly labelSets = new Set<string>();

  /** Throws on a bad name: a programming error, caught where the metric is defined. */
  constructor(
    readonly name: string,
    unit: string | null = null,
    private readonly shipper: Shipper | null = null,
  ) {
    if (!validName(name)) throw new TypeError(`metric name ${JSON.stringify(name)} must match [a-zA-Z_][a-zA-Z0-9_]{0,63}`);
    this.unit = unit ? truncate(unit, 16) : null;
  }

  protected record(value: number, labels: Labels | undefined): void {
    const shipper = this.shipper ?? getShipper();
    try {
      const v = typeof value === "number" ? value : Number(value);
      if (!Number.isFinite(v) || (this.kind === "counter" && v < 0)) {
        shipper.dropMetric();
        return;
      }
      const [clean, dropped] = cleanMetricLabels(labels);
      if (dropped) shipper.dropMetric(dropped);
      if (clean !== null) {
        const redact = shipper.redact;
        for (const label of Object.keys(clean)) if (redact.sensitive(label)) clean[label] = redact.replacement;
        const key = JSON.stringify(clean);
        if (!this.labelSets.has(key)) {
          if (this.labelSets.size >= MAX_LABEL_SETS) {
            shipper.dropMetric();
            return;
          }
          this.labelSets.add(key);
        }
      }
      shipper.addMetric(this.kind, this.name, v, clean, this.unit);
    } catch {
      shipper.dropMetric();
    }
  }
}

/** A count that only goes up, summed per invocation. */
export class Counter extends Metric {
  readonly kind = "counter";

  /** Add `value` (>= 0, default 1) for these labels. */
  inc(value = 1, labels?: Labels): void {
    this.record(value, labels);
  }
}

/** A value that goes up and down; the last one set in an invocation is sent. */
export class Gauge extends Metric {
  readonly kind = "gauge";

  set(value: number, labels?: Labels): void {
    this.record(value, labels);
  }
}

/**
 * A distribution: observations are counted per bucket within the invocation, so any
 * number of them costs at most one metric object per bucket used.
 */
export class Histogram extends Metric {
  readonly kind = "histogram";

  observe(value: number, labels?: Labels): void {
    this.record(value, labels);
  }
}

export function counter(name: string, unit: string | null = null, shipper: Shipper | null = null): Counter {
  return new Counter(name, unit, shipper);
}

export function gauge(name: string, unit: string | null = null, shipper: Shipper | null = null): Gauge {
  return new Gauge(name, unit, shipper);
}

export function histogram(name: string, unit: string | null = null, shipper: Shipper | null = null): Histogram {
  return new Histogram(name, unit, shipper);
}
