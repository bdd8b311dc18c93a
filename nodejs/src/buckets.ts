/**
 * Bucket upper bounds of custom histograms, by the unit of the samples: the buckets the
 * worker exposes, into which the shipper pre-aggregates observations. The table is the
 * one the Python side reads (faaslens/histogram_buckets.json, copied next to this module
 * at build time by scripts/copy-data.mjs), so the two shippers cannot drift.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const BUCKET_FILE = join(__dirname, "histogram_buckets.json");

interface BucketTable {
  default: number[];
  units: { names: string[]; bounds: number[] }[];
}

let loaded: { fallback: readonly number[]; byUnit: Map<string, readonly number[]> } | null = null;

/** The table, read once, on the first histogram observation. */
function table(): NonNullable<typeof loaded> {
  if (loaded === null) {
    const data = JSON.parse(readFileSync(BUCKET_FILE, "utf8")) as BucketTable;
    const byUnit = new Map<string, readonly number[]>();
    for (const group of data.units) for (const name of group.names) byUnit.set(name, group.bounds);
    loaded = { fallback: data.default, byUnit };
  }
  return loaded;
}

/**
 * Ascending upper bounds (+Inf implied) of a histogram whose samples carry `unit`,
 * matched case-insensitively; an unknown unit, or none, gets the default bounds
 * (faaslens.protocol.histogram_buckets).
 */
export function histogramBuckets(unit: string | null | undefined): readonly number[] {
  const { fallback, byUnit } = table();
  return unit ? (byUnit.get(unit.toLowerCase()) ?? fallback) : fallback;
}

/** Index of the first bound >= value (bounds.length: +Inf), as Python's bisect_left. */
export function bucketIndex(bounds: readonly number[], value: number): number {
  let lo = 0;
  let hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (bounds[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
