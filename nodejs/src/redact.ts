/**
 * Redaction and the protocol's limits for a log line's key-values (the Python
 * shipper's RedactKeys, shipper/processors.py, with the same rules and results).
 */
import { LOG_LABEL_BUDGET, MAX_LOG_LABELS, dumps, truncate } from "./wire";

export const REDACTED = "[REDACTED]";

function normalize(key: string): string {
  return key.toLowerCase().replace(/-/g, "_");
}

function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  if (value === null || typeof value !== "object") return false;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * Replaces the value of any key containing a sensitive word, at any depth. Matching is
 * case-insensitive, `-` equals `_`, and a word matches inside a key (`db_password`,
 * `X-Api-Key`, `access_token`): leaking a secret is worse than hiding a harmless value.
 */
export class Redactor {
  private readonly words: string[];
  private readonly cache = new Map<string, boolean>();

  constructor(
    keys: readonly string[],
    readonly replacement: string = REDACTED,
  ) {
    this.words = keys.filter((k) => k).map(normalize);
  }

  /** Whether a key's value must be hidden. */
  sensitive(key: string): boolean {
    let hit = this.cache.get(key);
    if (hit === undefined) {
      const norm = normalize(key);
      hit = this.words.some((w) => norm.includes(w));
      if (this.cache.size < 4096) this.cache.set(key, hit);
    }
    return hit;
  }

  /**
   * A redacted copy of a line's key-values within the protocol's limits: at most 64
   * keys (the rest counted under `_truncated_keys`); objects nested deeper than the
   * worker accepts become their compact JSON text (<= 1,024 code points).
   */
  clean(labels: Record<string, unknown>): Record<string, unknown> {
    let keys = Object.keys(labels);
    const out: Record<string, unknown> = {};
    let extra = 0;
    if (keys.length > MAX_LOG_LABELS) {
      extra = keys.length - (MAX_LOG_LABELS - 1);
      keys = keys.slice(0, MAX_LOG_LABELS - 1);
    }
    for (const k of keys) {
      const value = labels[k];
      if (this.sensitive(k)) out[k] = this.replacement;
      else if (isContainer(value)) out[k] = this.cleanNested(value, LOG_LABEL_BUDGET - 1);
      else if (value instanceof Error) out[k] = `${value.name}: ${value.message}`;
      else out[k] = value;
    }
    if (extra) out._truncated_keys = extra;
    return out;
  }

  /** `value` is at `budget`: its children are allowed `budget - 1`. */
  private cleanNested(value: Record<string, unknown> | unknown[], budget: number): unknown {
    if (budget <= 0) {
      const empty = Array.isArray(value) ? value.length === 0 : Object.keys(value).length === 0;
      return empty ? value : truncate(dumps(value), 1024);
    }
    if (Array.isArray(value)) return value.map((v) => (isContainer(v) ? this.cleanNested(v, budget - 1) : v));
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value)) {
      const v = value[k];
      if (this.sensitive(k)) out[k] = this.replacement;
      else if (isContainer(v)) out[k] = this.cleanNested(v, budget - 1);
      else out[k] = v;
    }
    return out;
  }
}
