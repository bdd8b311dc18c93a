/**
 * Thrown values as ECS `error.*` fields, with the protocol's fingerprint
 * (docs/protocol.md, "Error fingerprint"), computed the same way as the Python shipper's.
 */
import { createHash } from "node:crypto";
import { MAX_ERROR_MESSAGE, MAX_ERROR_TYPE, MAX_STACK, shrinkStack, truncate } from "./wire";

export const FINGERPRINT_FRAMES = 5;
// Frames of the shipper's own files (the wrapper that called the handler) end the
// handler's part of a stack, as the decorator frame is left out in Python.
const OWN_DIR = __dirname;

/** A stack frame as the fingerprint sees it: [file basename, function name]. */
export type Frame = [string, string];

const LONE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * UTF-8 of `text`, a lone surrogate written as its own three bytes (Python's
 * "surrogatepass"), so that a name holding one fingerprints as in the Python shipper.
 */
function utf8Pass(text: string): Buffer {
  if (!LONE.test(text)) return Buffer.from(text, "utf8");
  const parts: Buffer[] = [];
  for (const ch of text) {
    const c = ch.charCodeAt(0);
    if (ch.length === 1 && c >= 0xd800 && c <= 0xdfff) parts.push(Buffer.from([0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)]));
    else parts.push(Buffer.from(ch, "utf8"));
  }
  return Buffer.concat(parts);
}

/** The fingerprint: first 16 hex digits of SHA-256 over `type|file:function|...` (UTF-8). */
export function fingerprintOf(errorType: string, frames: Frame[]): string {
  const parts = [errorType, ...frames.slice(-FINGERPRINT_FRAMES).map(([file, fn]) => `${file}:${fn}`)];
  return createHash("sha256").update(utf8Pass(parts.join("|"))).digest("hex").slice(0, 16);
}

/** The class name of a thrown value: the constructor's name for objects, else the JS type. */
export function errorType(err: unknown): string {
  if (err !== null && typeof err === "object") {
    try {
      const ctor = (err as { constructor?: { name?: unknown } }).constructor;
      if (ctor && typeof ctor.name === "string" && ctor.name) return ctor.name;
      const name = (err as { name?: unknown }).name;
      if (typeof name === "string" && name) return name;
    } catch {
      // a hostile getter
    }
    return "Object";
  }
  return typeof err;
}

function messageOf(err: unknown): string {
  try {
    if (err instanceof Error) return String(err.message);
    return typeof err === "string" ? err : JSON.stringify(err) ?? String(err);
  } catch {
    return `<unprintable ${errorType(err)}>`;
  }
}

const AT = /^\s+at (?:async )?(?:new )?(.*?)(?: \[as [^\]]+\])?(?: \((.*)\))?$/;

function basename(location: string): string {
  let path = location.replace(/:\d+:\d+$/, "").replace(/:\d+$/, "");
  if (path.startsWith("file://")) path = path.slice(7);
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return cut >= 0 ? path.slice(cut + 1) : path;
}

function fullPath(location: string): string {
  const path = location.replace(/:\d+:\d+$/, "");
  return path.startsWith("file://") ? path.slice(7) : path;
}

/**
 * The handler's frames of a V8 stack, outermost first: the frames above the shipper's
 * own (the wrapper that called the handler), each as [file basename, function name].
 * A function's name drops its receiver (`Object.handler` -> `handler`), `async `,
 * `new ` and `[as alias]`; one without a name is `<anonymous>`.
 */
export function framesOf(stack: string): Frame[] {
  const frames: Frame[] = [];
  for (const line of stack.split("\n")) {
    const m = AT.exec(line);
    if (!m) continue;
    let fn = m[1] ?? "";
    let location = m[2];
    if (location === undefined) {
      location = fn; // "at file:line:col": an anonymous function
      fn = "<anonymous>";
    }
    if (fullPath(location).startsWith(OWN_DIR)) break;
    const dot = fn.lastIndexOf(".");
    if (dot >= 0 && dot < fn.length - 1) fn = fn.slice(dot + 1);
    frames.push([basename(location), fn || "<anonymous>"]);
  }
  return frames.reverse();
}

/** The fingerprint of a thrown value. */
export function fingerprint(err: unknown): string {
  const stack = err instanceof Error && typeof err.stack === "string" ? err.stack : "";
  return fingerprintOf(errorType(err), framesOf(stack));
}

/** The four `error.*` fields of a thrown value. Never throws. */
export function errorFields(err: unknown): Record<string, string> {
  const type = errorType(err);
  const message = messageOf(err);
  let stack: string;
  try {
    stack = err instanceof Error && typeof err.stack === "string" && err.stack ? err.stack : `${type}: ${message}`;
  } catch {
    stack = `${type}: ${message}`;
  }
  let key: string;
  try {
    key = fingerprint(err);
  } catch {
    key = fingerprintOf(type, []);
  }
  return {
    "error.type": truncate(type, MAX_ERROR_TYPE),
    "error.message": truncate(message, MAX_ERROR_MESSAGE),
    "error.stack_trace": shrinkStack(stack, MAX_STACK),
    "error.grouping_key": key,
  };
}
