/**
 * The shipper's settings: defaults < `FAASLENS_*` environment < explicit options.
 *
 * The only module that reads the environment's settings. The variables and their
 * meaning are the Python shipper's (shipper/config.py). A bad environment value never
 * breaks the function: it is reported on stderr once and its default used instead; a
 * bad explicit option throws a ConfigError (it comes from code being written).
 */

export type LevelName = "debug" | "info" | "warning" | "error" | "critical";
export const LEVELS: Readonly<Record<LevelName, number>> = {
  debug: 10,
  info: 20,
  warning: 30,
  error: 40,
  critical: 50,
};

export const DEFAULT_ENDPOINT = "udp://127.0.0.1:8518";
export const DEFAULT_REDACT_KEYS = ["password", "secret", "token", "authorization", "cookie", "api_key"];
export const LOOPBACK_DATAGRAM = 60_000;
export const NETWORK_DATAGRAM = 1400;

/** Price overrides (`FAASLENS_PRICE_*`): figures of a price row, see cost.ts. */
export interface PriceOverrides {
  per_request?: number;
  per_gb_s?: number;
  per_ghz_s?: number;
  per_vcpu_s?: number;
  price_id?: string;
}

export interface ShipperConfig {
  /** `udp://host:port` or `tcp://host:port`. */
  endpoint: string;
  service: string | null;
  serviceVersion: string | null;
  environment: string | null;
  functionName: string | null;
  region: string | null;
  /** Fraction of invocations whose lines below warning are shipped (0..1). */
  logSampleRate: number;
  /** Lines below it go to the debug buffer. */
  logLevel: LevelName;
  /** Lines kept aside per invocation (below the level, or unsampled), shipped on failure. */
  debugBuffer: number;
  hmacKey: string | null;
  hmacKeyId: string;
  /** Packing target in bytes; null: 60,000 to a loopback endpoint, else 1,400. */
  maxDatagram: number | null;
  redactKeys: string[];
  /** Also print each line as JSON on stdout. */
  echo: boolean;
  disabled: boolean;
  memoryMb: number | null;
  cpu: number | null;
  gcpGeneration: 1 | 2;
  /** Record a timeout this many ms before the platform's deadline (AWS); 0 disables. */
  timeoutMarginMs: number;
  /** TCP connect timeout, seconds. */
  tcpTimeoutS: number;
  /** Send a start event when each invocation starts (the worker settles unfinished ones). */
  startEvents: boolean;
  /**
   * Once an invocation has run half of this (ms), its pending lines leave within 3/4 of
   * it of being logged, before the record; 0: lines leave with the record only.
   */
  flushIntervalMs: number;
  /** An HTTP function's answer with a status at or above it is a failure (100-999); 0: never. */
  httpFailureStatus: number;
  prices: PriceOverrides;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

// Setting -> its snake_case name (FAASLENS_<NAME in upper case>), as in the Python shipper.
const NAMES: Record<Exclude<keyof ShipperConfig, "prices">, string> = {
  endpoint: "endpoint",
  service: "service",
  serviceVersion: "service_version",
  environment: "environment",
  functionName: "function_name",
  region: "region",
  logSampleRate: "log_sample_rate",
  logLevel: "log_level",
  debugBuffer: "debug_buffer",
  hmacKey: "hmac_key",
  hmacKeyId: "hmac_key_id",
  maxDatagram: "max_datagram",
  redactKeys: "redact_keys",
  echo: "echo",
  disabled: "disabled",
  memoryMb: "memory_mb",
  cpu: "cpu",
  gcpGeneration: "gcp_generation",
  timeoutMarginMs: "timeout_margin_ms",
  tcpTimeoutS: "tcp_timeout_s",
  startEvents: "start_events",
  flushIntervalMs: "flush_interval_ms",
  httpFailureStatus: "http_failure_status",
};
const PRICE_KEYS = ["per_request", "per_gb_s", "per_ghz_s", "per_vcpu_s", "price_id"] as const;

export function defaults(): ShipperConfig {
  return {
    endpoint: DEFAULT_ENDPOINT,
    service: null,
    serviceVersion: null,
    environment: null,
    functionName: null,
    region: null,
    logSampleRate: 1.0,
    logLevel: "info",
    debugBuffer: 200,
    hmacKey: null,
    hmacKeyId: "k1",
    maxDatagram: null,
    redactKeys: [...DEFAULT_REDACT_KEYS],
    echo: false,
    disabled: false,
    memoryMb: null,
    cpu: null,
    gcpGeneration: 2,
    timeoutMarginMs: 50,
    tcpTimeoutS: 0.5,
    startEvents: true,
    flushIntervalMs: 1000,
    httpFailureStatus: 500,
    prices: {},
  };
}

/** A boolean from a bool or a word; blank means "not set": the setting's default. */
function asBool(raw: unknown, dflt: boolean): boolean {
  if (typeof raw === "boolean") return raw;
  const text = String(raw).trim().toLowerCase();
  if (text === "") return dflt;
  if (["1", "true", "yes", "on"].includes(text)) return true;
  if (["0", "false", "no", "off"].includes(text)) return false;
  throw new Error(`not a boolean: ${JSON.stringify(raw)}`);
}

function asNumber(raw: unknown, integer: boolean): number {
  const value = typeof raw === "number" ? raw : Number(String(raw).trim());
  if (String(raw).trim() === "" || !Number.isFinite(value)) throw new Error(`not a number: ${JSON.stringify(raw)}`);
  if (integer && !Number.isInteger(value)) throw new Error(`not an integer: ${JSON.stringify(raw)}`);
  return value;
}

function inRange(value: number, lo: number, hi: number, what: string): number {
  if (value < lo || value > hi) throw new Error(what);
  return value;
}

/** One setting from a string (environment) or a JS value, checked. Throws on a bad one. */
function coerce(key: keyof ShipperConfig, raw: unknown): unknown {
  switch (key) {
    case "echo":
    case "disabled":
      return asBool(raw, false);
    case "startEvents":
      return asBool(raw, true);
    case "maxDatagram":
      if (raw === null || raw === "") return null;
      return inRange(asNumber(raw, true), 256, 65_507, "must be between 256 and 65507");
    case "debugBuffer":
    case "timeoutMarginMs":
    case "flushIntervalMs":
      return inRange(asNumber(raw, true), 0, Number.MAX_SAFE_INTEGER, "must be >= 0");
    case "httpFailureStatus": {
      const status = asNumber(raw, true);
      if (status !== 0 && !(status >= 100 && status <= 999)) throw new Error("must be 0 (never) or between 100 and 999");
      return status;
    }
    case "gcpGeneration": {
      const gen = asNumber(raw, true);
      if (gen !== 1 && gen !== 2) throw new Error("must be 1 or 2");
      return gen;
    }
    case "memoryMb":
      return raw === null || raw === "" ? null : asNumber(raw, true);
    case "cpu":
      return raw === null || raw === "" ? null : asNumber(raw, false);
    case "logSampleRate":
      return inRange(asNumber(raw, false), 0, 1, "must be between 0 and 1");
    case "tcpTimeoutS":
      return inRange(asNumber(raw, false), 0, 3600, "must be between 0 and 3600");
    case "logLevel": {
      let level = String(raw).trim().toLowerCase();
      if (level === "warn") level = "warning";
      if (!(level in LEVELS)) throw new Error(`one of ${Object.keys(LEVELS).join(", ")}`);
      return level;
    }
    case "redactKeys": {
      const items = typeof raw === "string" ? raw.split(",") : Array.isArray(raw) ? raw : [];
      return items.map((k) => String(k).trim().toLowerCase()).filter((k) => k);
    }
    case "prices":
      return { ...(raw as PriceOverrides) };
    case "endpoint":
      parseEndpoint(String(raw));
      return String(raw);
    case "hmacKeyId": {
      const id = String(raw);
      if (!/^[A-Za-z0-9_.-]{1,32}$/.test(id)) throw new Error("1-32 of [A-Za-z0-9_.-]");
      return id;
    }
    default:
      return raw === null || raw === undefined ? null : String(raw);
  }
}

function errorFor(key: keyof ShipperConfig, exc: unknown): ConfigError {
  const name = key === "prices" ? "PRICE_*" : NAMES[key].toUpperCase();
  return new ConfigError(`FAASLENS_${name}: ${exc instanceof Error ? exc.message : String(exc)}`);
}

/** `udp://host:port` or `tcp://host:port` -> [scheme, host, port]. Throws ConfigError. */
export function parseEndpoint(endpoint: string): ["udp" | "tcp", string, number] {
  const m = /^(udp|tcp):\/\/(.+):(\d+)$/.exec(endpoint);
  if (!m) throw new ConfigError(`endpoint ${JSON.stringify(endpoint)}: expected udp://host:port or tcp://host:port`);
  const host = m[2]!.replace(/^\[|\]$/g, "");
  const port = Number(m[3]);
  if (!host) throw new ConfigError(`endpoint ${JSON.stringify(endpoint)}: expected host:port`);
  if (!(port > 0 && port < 65536)) throw new ConfigError(`endpoint ${JSON.stringify(endpoint)}: port out of range`);
  return [m[1] as "udp" | "tcp", host, port];
}

/** The packing target: the setting, else large on loopback (no fragmentation there). */
export function datagramSize(config: ShipperConfig, host: string): number {
  if (config.maxDatagram !== null) return config.maxDatagram;
  const loopback = host === "localhost" || host.startsWith("127.") || host === "::1";
  return loopback ? LOOPBACK_DATAGRAM : NETWORK_DATAGRAM;
}

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Settings from `FAASLENS_*` variables of `env` (default: process.env), then `options`.
 * Bad environment values are reported on stderr and ignored; bad options throw ConfigError.
 */
export function loadConfig(env: Env = process.env, options: Partial<ShipperConfig> = {}): ShipperConfig {
  const config = defaults();
  const target = config as unknown as Record<string, unknown>;
  for (const [key, name] of Object.entries(NAMES) as [keyof ShipperConfig, string][]) {
    let raw = env[`FAASLENS_${name.toUpperCase()}`];
    if (raw === undefined && key === "service") raw = env.OTEL_SERVICE_NAME;
    // A variable set to nothing is not set (a console's empty field), except
    // FAASLENS_REDACT_KEYS=, which redacts no key: as in the Python shipper.
    if (raw === undefined || (raw.trim() === "" && key !== "redactKeys")) continue;
    try {
      target[key] = coerce(key, raw);
    } catch (exc) {
      process.stderr.write(`faaslens: ignoring bad setting: ${errorFor(key, exc).message}\n`);
    }
  }
  const prices: Record<string, number | string> = {};
  for (const name of PRICE_KEYS) {
    const raw = env[`FAASLENS_PRICE_${name.toUpperCase()}`];
    if (raw === undefined || raw.trim() === "") continue;
    if (name === "price_id") {
      prices[name] = raw.slice(0, 64);
      continue;
    }
    const value = Number(raw);
    if (!Number.isFinite(value)) {
      process.stderr.write(`faaslens: ignoring bad setting: FAASLENS_PRICE_${name.toUpperCase()}: not a number: ${JSON.stringify(raw)}\n`);
    } else {
      prices[name] = value;
    }
  }
  if (Object.keys(prices).length) config.prices = prices as PriceOverrides;
  for (const [key, value] of Object.entries(options) as [keyof ShipperConfig, unknown][]) {
    if (!(key in NAMES) && key !== "prices") throw new ConfigError(`unknown shipper setting ${JSON.stringify(key)}`);
    if (value === undefined) continue;
    try {
      target[key] = coerce(key, value);
    } catch (exc) {
      throw errorFor(key, exc);
    }
  }
  return config;
}

/** The numeric level below which lines go to the debug buffer. */
export function minLevel(config: ShipperConfig): number {
  return LEVELS[config.logLevel];
}
