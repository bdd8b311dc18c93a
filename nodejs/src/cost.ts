/**
 * Estimated cost of one invocation from the dated price table shared with the Python
 * shipper (shipper/prices.json, copied next to this module at build time; sources and
 * rounding rules in shipper/cost.py). Same rules, same results: list prices in USD, on
 * demand, without free grants or discounts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { PriceOverrides } from "./config";

const MIB = 1024 * 1024;

export interface PriceRow {
  price_id: string;
  per_request: number;
  per_gb_s: number;
  per_ghz_s?: number;
  per_vcpu_s?: number;
  round_ms?: number;
  min_ms?: number;
  round_mb?: number;
  min_mb?: number;
  max_mb?: number;
  /** Azure Consumption bills observed memory, not a configured size. */
  mem_from_rss?: boolean;
}

interface PriceTable {
  rows: Record<string, PriceRow>;
  gcp_gen1_tier1_regions: string[];
  gcp_gen2_tier1_regions: string[];
  gcp_gen1_ghz_by_mb: [number, number][];
  gcp_gen2_vcpu_by_mb: [number, number][];
}

export const PRICE_FILE = join(__dirname, "prices.json");
let table: PriceTable | null = null;

/** The price table (read once, on the first priced invocation). */
export function priceTable(): PriceTable {
  if (table === null) table = JSON.parse(readFileSync(PRICE_FILE, "utf8")) as PriceTable;
  return table;
}

function lookup(rows: [number, number][], memoryMb: number): number {
  for (const [size, value] of rows) if (memoryMb <= size) return value;
  return rows[rows.length - 1]![1];
}

/** Python's round(x, digits) for the magnitudes priced here (half to even is moot). */
function round(value: number, digits: number): number {
  return Number(value.toFixed(digits));
}

/** [billed ms, GB-seconds, USD]. */
export type Priced = [number, number, number];

/** Prices invocations of one function (provider, architecture, region fixed). */
export class Estimator {
  private readonly cache = new Map<number, Priced>();
  private readonly nsPerUnit: number;

  constructor(
    readonly row: PriceRow,
    private readonly cpu: number | null = null,
    /** The platform bills a cold start's init phase too (AWS Lambda on demand since 2025-08-01). */
    readonly billsInit: boolean = false,
  ) {
    this.nsPerUnit = (row.round_ms ?? 1) * 1_000_000;
  }

  /** Duration after the provider's rounding (and minimum), ms. */
  billedMs(durationNs: number): number {
    const billed = Math.ceil(durationNs / this.nsPerUnit) * (this.row.round_ms ?? 1);
    return Math.max(billed, this.row.min_ms ?? 0);
  }

  /** [billed ms, GB-s, USD], or null when the memory size is unknown. */
  estimate(durationNs: number, memoryBytes: number | null, rssBytes: number | null): Priced | null {
    const row = this.row;
    const billed = this.billedMs(durationNs);
    let mb: number;
    if (row.mem_from_rss) {
      if (!rssBytes) return null;
      const roundMb = row.round_mb ?? 1;
      mb = Math.ceil(Math.ceil(rssBytes / MIB) / roundMb) * roundMb;
      mb = Math.min(Math.max(mb, row.min_mb ?? 0), row.max_mb ?? mb);
    } else if (memoryBytes) {
      mb = Math.floor(memoryBytes / MIB);
    } else {
      return null;
    }
    const key = billed * 1_000_000 + mb;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const seconds = billed / 1000;
    const gbS = (mb / 1024) * seconds;
    let usd = row.per_request + gbS * row.per_gb_s;
    if (row.per_ghz_s) usd += lookup(priceTable().gcp_gen1_ghz_by_mb, mb) * seconds * row.per_ghz_s;
    if (row.per_vcpu_s) {
      const cpu = this.cpu ? this.cpu : lookup(priceTable().gcp_gen2_vcpu_by_mb, mb);
      usd += cpu * seconds * row.per_vcpu_s;
    }
    const result: Priced = [billed, round(gbS, 9), round(usd, 12)];
    if (this.cache.size < 1024) this.cache.set(key, result);
    return result;
  }
}

/** The table row for a function, or null where no price applies (local processes). */
export function priceKey(provider: string, arch: string, region: string | null, gcpGeneration: number): string | null {
  if (provider === "aws") return arch === "arm64" ? "aws-arm64" : "aws-x86_64";
  if (provider === "azure") return "azure-consumption";
  if (provider === "gcp") {
    const t = priceTable();
    const tier1 = gcpGeneration === 1 ? t.gcp_gen1_tier1_regions : t.gcp_gen2_tier1_regions;
    const tier = region === null || tier1.includes(region) ? "tier1" : "tier2";
    return `gcp-gen${gcpGeneration}-${tier}`;
  }
  return null;
}

/** An Estimator for a function with user overrides applied, or null (no price). */
export function estimatorFor(
  provider: string,
  arch: string,
  region: string | null,
  options: { gcpGeneration?: number; cpu?: number | null; prices?: PriceOverrides } = {},
): Estimator | null {
  const prices = options.prices ?? {};
  const key = priceKey(provider, arch, region, options.gcpGeneration ?? 2);
  let base: PriceRow;
  if (key === null) {
    if (prices.per_gb_s === undefined) return null;
    base = { price_id: "custom", per_request: 0, per_gb_s: 0 };
  } else {
    base = priceTable().rows[key]!;
  }
  let row = base;
  if (Object.keys(prices).length) {
    row = { ...base };
    let changed = false;
    for (const name of ["per_request", "per_gb_s", "per_ghz_s", "per_vcpu_s"] as const) {
      if (prices[name] !== undefined) {
        row[name] = prices[name];
        changed = true;
      }
    }
    if (prices.price_id !== undefined) row.price_id = String(prices.price_id).slice(0, 64);
    else if (changed) row.price_id = `${base.price_id}-custom`.slice(0, 64);
  }
  return new Estimator(row, options.cpu ?? null, key !== null && BILLS_INIT.has(key));
}

// Rows whose platform bills a cold start's init phase with the invocation (the REPORT
// line's Billed Duration covers Init Duration + Duration), as shipper/cost.py.
const BILLS_INIT = new Set(["aws-x86_64", "aws-arm64"]);
