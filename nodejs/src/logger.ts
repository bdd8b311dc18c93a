/**
 * The logger: levels, bound key-values, lines that go with the current invocation.
 *
 * `log.info("order stored", { order_id: "o-1" })`. Inside an invocation a line is
 * buffered with it and sent with its record; outside, it is sent on its own. Lines
 * below FAASLENS_LOG_LEVEL, and lines below warning of an invocation left out by
 * sampling (FAASLENS_LOG_SAMPLE_RATE), are kept aside (FAASLENS_DEBUG_BUFFER) and
 * shipped only if the invocation fails. Sensitive keys are redacted when sent. An
 * `err` or `error` key holding an Error becomes the line's `error.*` fields.
 */
import type { LevelName } from "./config";
import { type Shipper, getShipper } from "./core";

export type Fields = Record<string, unknown>;

const LEVEL_NUMBERS: Record<string, [number, LevelName]> = {
  debug: [10, "debug"],
  info: [20, "info"],
  warn: [30, "warning"],
  warning: [30, "warning"],
  error: [40, "error"],
  critical: [50, "critical"],
  fatal: [50, "critical"],
};

export class Logger {
  constructor(
    readonly name: string | null = null,
    private readonly context: Fields | null = null,
    private readonly shipper: Shipper | null = null,
  ) {}

  /** A logger with more key-values on every line. */
  bind(fields: Fields): Logger {
    return new Logger(this.name, { ...this.context, ...fields }, this.shipper);
  }

  /** A logger of another name, with the same key-values. */
  child(name: string): Logger {
    return new Logger(name, this.context, this.shipper);
  }

  debug(message: unknown, fields?: Fields): void {
    this.emit(10, "debug", message, fields);
  }

  info(message: unknown, fields?: Fields): void {
    this.emit(20, "info", message, fields);
  }

  warn(message: unknown, fields?: Fields): void {
    this.emit(30, "warning", message, fields);
  }

  warning(message: unknown, fields?: Fields): void {
    this.emit(30, "warning", message, fields);
  }

  error(message: unknown, fields?: Fields): void {
    this.emit(40, "error", message, fields);
  }

  critical(message: unknown, fields?: Fields): void {
    this.emit(50, "critical", message, fields);
  }

  /** Log at error level with a thrown value (its type, message, stack and fingerprint). */
  exception(message: unknown, err: unknown, fields?: Fields): void {
    this.emit(40, "error", message, fields, err);
  }

  /** Log at a level given by name (`debug` ... `critical`, `warn`, `fatal`). */
  log(level: string, message: unknown, fields?: Fields): void {
    const [levelno, name] = LEVEL_NUMBERS[level.toLowerCase()] ?? [20, "info"];
    this.emit(levelno, name, message, fields);
  }

  private emit(levelno: number, level: LevelName, message: unknown, fields: Fields | undefined, thrown?: unknown): void {
    const shipper = this.shipper ?? getShipper();
    try {
      const text = typeof message === "string" ? message : message == null ? "" : String(message);
      let kv: Fields | null = this.context;
      let err = thrown;
      if (fields) {
        kv = kv ? { ...kv, ...fields } : fields;
        for (const key of ["err", "error"]) {
          const value = kv[key];
          if (value instanceof Error && err === undefined) {
            err = value;
            kv = { ...kv };
            delete kv[key];
          }
        }
        if (!Object.keys(kv).length) kv = null;
      }
      shipper.log(levelno, level, text, this.name, kv, err);
    } catch {
      shipper.stats.internal_errors++;
    }
  }
}

/** A logger whose lines go with the current invocation (or on their own outside one). */
export function getLogger(name: string | null = null, fields: Fields | null = null, shipper: Shipper | null = null): Logger {
  return new Logger(name, fields, shipper);
}
