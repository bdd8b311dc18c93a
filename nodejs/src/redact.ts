/**
 * Redaction and the protocol's limits for a log line's key-values (the Python
 * shipper's RedactKeys, shipper/processors.py, with the same rules and results).
 */
import { LOG_LABEL_BUDGET, MAX_LOG_LABELS, dumps, truncate } from "./wire";

export const REDACTED = "[REDACTED]";

function normalize(key: string): string {
  return key.toLowerCase().replace(/-/g, "_");
}

/** Nesting redaction walks (as the Python shipper's REDACT_DEPTH); below it a value is TOO_DEEP. */
export const REDACT_DEPTH = 32;
/** What a value nested past REDACT_DEPTH becomes: never its raw text. */
export const TOO_DEEP = "[TOO DEEP]";

function isScalar(value: unknown): boolean {
  return value === null || typeof value !== "object";
}

/**
 * A container as the JSON it will be written as: arrays and plain objects as they are,
 * a Map as an object, a Set as an array, anything with `toJSON` (Date, Buffer...) as
 * its result, a class instance as its own enumerable fields (what JSON.stringify
 * writes), an Error as `Name: message`. A getter or toJSON that throws gives a marker.
 */
function asJson(value: object): unknown {
  try {
    if (Array.isArray(value)) return value;
    if (value instanceof Error) return `${value.name}: ${value.message}`;
    if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), v]));
    if (value instanceof Set) return [...value];
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") return toJSON.call(value) as unknown;
    return value;
  } catch {
    return "<unprintable>";
  }
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
   * worker accepts become the compact JSON text (<= 1,024 code points) of their
   * redacted copy, so a secret is hidden at any depth.
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
      else if (isScalar(value)) out[k] = value;
      else out[k] = this.cleanNested(value as object, LOG_LABEL_BUDGET - 1, new Set());
    }
    if (extra) out._truncated_keys = extra;
    return out;
  }

  /** `value` is at `budget`: its children are allowed `budget - 1`; past 0, JSON text. */
  private cleanNested(value: object, budget: number, path: Set<object>): unknown {
    if (budget <= 0) {
      const copy = this.redactDeep(value, REDACT_DEPTH, path);
      const empty = Array.isArray(copy) ? copy.length === 0 : isScalar(copy) || Object.keys(copy as object).length === 0;
      return empty ? copy : truncate(dumps(copy), 1024);
    }
    return this.walk(value, path, (v) => this.cleanNested(v, budget - 1, path));
  }

  /**
   * A redacted, JSON-ready copy of `value`, sensitive keys hidden at every depth;
   * containers nested deeper than `depth` become TOO_DEEP, a cycle `<cycle>`.
   */
  redactDeep(value: unknown, depth: number = REDACT_DEPTH, path: Set<object> = new Set()): unknown {
    if (isScalar(value)) return value;
    if (depth <= 0) return TOO_DEEP;
    return this.walk(value as object, path, (v) => this.redactDeep(v, depth - 1, path));
  }

  /** One level of a container: sensitive keys replaced, nested containers through `inner`. */
  private walk(value: object, path: Set<object>, inner: (v: object) => unknown): unknown {
    if (path.has(value)) return "<cycle>";
    const json = asJson(value);
    if (isScalar(json)) return json;
    path.add(value);
    try {
      if (Array.isArray(json)) return json.map((v) => (isScalar(v) ? v : inner(v as object)));
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(json as object)) {
        const v = (json as Record<string, unknown>)[k];
        if (this.sensitive(k)) out[k] = this.replacement;
        else out[k] = isScalar(v) ? v : inner(v as object);
      }
      return out;
    } catch {
      return "<unprintable>";
    } finally {
      path.delete(value);
    }
  }
}
