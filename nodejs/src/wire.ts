/**
 * Frames on the wire (docs/protocol.md): packing, limits, truncation, signing.
 *
 * Pure: values in, bytes out, no I/O. Mirrors the Python shipper's shipper/wire.py so
 * that both pack the same events into the same frames (tests/vectors/scenarios).
 */
import { createHmac } from "node:crypto";

export const VERSION = 1;
export const MARKER = "…[truncated]";
const MARKER_POINTS = 12; // code points of MARKER
const MARKER_BYTES = Buffer.byteLength(MARKER);
export const UDP_MAX = 65_507; // the IPv4 UDP payload limit
export const TCP_MAX = 1 << 20; // the worker's default max_frame_bytes

// Limits of docs/protocol.md, in code points (the marker counts towards the limit).
export const MAX_MESSAGE = 32 * 1024;
export const MAX_ERROR_MESSAGE = 8 * 1024;
export const MAX_STACK = 32 * 1024;
export const MAX_ERROR_TYPE = 256;
export const MAX_LOGGER = 256;
export const MAX_INV_LABELS = 32;
export const MAX_INV_LABEL_VALUE = 1024;
export const MAX_LOG_LABELS = 64;
export const LOG_LABEL_BUDGET = 3; // nesting allowed below a line's labels object
export const MAX_METRICS = 64;
export const MAX_METRIC_LABELS = 5;
export const MAX_METRIC_LABEL_VALUE = 64;
export const MAX_EVENTS = 1000;
export const MAX_ATTEMPT = 1000;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Event = Record<string, unknown>;

/** Number of Unicode code points in `text` (JavaScript's `.length` counts UTF-16 units). */
export function codePoints(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** UTF-16 index just past the first `points` code points of `text`. */
function indexAfter(text: string, points: number): number {
  let i = 0;
  for (let n = 0; n < points && i < text.length; n++) {
    const c = text.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && isLow(text.charCodeAt(i + 1)) ? 2 : 1;
  }
  return i;
}

function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/**
 * `text` cut to `limit` code points, ending with the marker when cut; never splits a
 * surrogate pair. Same result as the Python shipper's `truncate`.
 */
export function truncate(text: string, limit: number): string {
  if (text.length <= limit) return text; // UTF-16 units >= code points: nothing to count
  if (codePoints(text) <= limit) return text;
  return text.slice(0, indexAfter(text, Math.max(0, limit - MARKER_POINTS))) + MARKER;
}

/**
 * `text` cut so that its UTF-8 encoding, marker included, takes at most `maxBytes`
 * bytes, on a code point boundary. Used to fit one event into a frame.
 */
export function truncateBytes(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  const budget = Math.max(0, maxBytes - MARKER_BYTES);
  let bytes = 0;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    let units = 1;
    let size: number;
    if (c < 0x80) size = 1;
    else if (c < 0x800) size = 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && isLow(text.charCodeAt(i + 1))) {
      size = 4;
      units = 2;
    } else size = 3; // BMP, and lone surrogates (encoded as U+FFFD, 3 bytes)
    if (bytes + size > budget) break;
    bytes += size;
    i += units;
  }
  return text.slice(0, i) + MARKER;
}

function plain(value: unknown, depth: number, seen: Set<object>): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "undefined" || typeof value === "function" || typeof value === "symbol") {
    return String(value);
  }
  if (depth > 32) return "<too deep>";
  const obj = value as object;
  if (seen.has(obj)) return "<cycle>";
  seen.add(obj);
  try {
    if (Array.isArray(obj)) return obj.map((v) => plain(v, depth + 1, seen));
    if (obj instanceof Map) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of obj) out[String(k)] = plain(v, depth + 1, seen);
      return out;
    }
    if (obj instanceof Set) return [...obj].map((v) => plain(v, depth + 1, seen));
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") return plain(toJSON.call(obj), depth + 1, seen);
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(obj)) out[k] = plain((obj as Record<string, unknown>)[k], depth + 1, seen);
    return out;
  } catch {
    return "<unprintable>";
  } finally {
    seen.delete(obj);
  }
}

// A lone surrogate as JSON.stringify writes it (`\udXXX`, lower case), unless its
// backslash is itself escaped (user text holding a literal backslash-u).
const LONE_SURROGATE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

/**
 * JSON text with each lone surrogate escape replaced by U+FFFD. JavaScript strings may
 * hold lone surrogates (a half emoji, a cut string); JSON.stringify writes them as
 * `\ud800` escapes, which are not UTF-8 text and which the worker refuses (RFC 8259
 * section 8.2), so the whole frame would be lost. Paired surrogates are written as the
 * character itself, so an escape in the output is always a lone one.
 */
export function wellFormed(json: string): string {
  return json.includes("\\ud") ? json.replace(LONE_SURROGATE, "$1\ufffd") : json;
}

/**
 * JSON text of user data that never throws (cycles, BigInt, hostile getters/toJSON),
 * always valid UTF-8: lone surrogates in values and keys become U+FFFD.
 */
export function dumps(value: unknown): string {
  try {
    const text = JSON.stringify(value);
    if (text !== undefined) return wellFormed(text);
  } catch {
    // a cycle, a BigInt, a getter or toJSON that throws: the slow, safe path below
  }
  try {
    return wellFormed(JSON.stringify(plain(value, 0, new Set())) ?? "null");
  } catch {
    return '"<unprintable>"';
  }
}

export const STACK_MARKER_HEAD = "    …[";
const STACK_MARKER_TAIL = " frames omitted]\n";
const FRAME_LINE = /^\s+at /;

/** UTF-8 bytes of `text` (a lone surrogate counts the 3 bytes of its U+FFFD). */
function utf8Size(text: string): number {
  return Buffer.byteLength(text);
}

/**
 * A V8 stack trace (`Type: message` then `    at ...` lines, innermost first) within
 * `limit` code points, or UTF-8 bytes when `inBytes`, keeping what explains the error:
 * the first line, i.e. the exception line (itself cut when it alone would take more
 * than half), and the innermost frames; outer frames are dropped with one
 * `    …[N frames omitted]` line (docs/protocol.md, "Limits and truncation"). Text that
 * is not a stack trace is cut at its end.
 */
export function shrinkStack(text: string, limit: number, inBytes = false): string {
  const size = inBytes ? utf8Size : codePoints;
  const cut = inBytes ? truncateBytes : truncate;
  if (size(text) <= limit) return text;
  const lines = text.split(/(?<=\n)/);
  const first = lines.findIndex((line) => FRAME_LINE.test(line));
  if (first <= 0) return cut(text, limit);
  let head = lines.slice(0, first).join("");
  if (!head.endsWith("\n")) head += "\n";
  head = cut(head, Math.max(Math.floor(limit / 2), MARKER_BYTES));
  if (!head.endsWith("\n")) head += "\n";
  // A trace cut before (by errorFields, then to fit a frame) keeps one marker.
  let omitted = 0;
  const frames: string[] = [];
  for (const line of lines.slice(first)) {
    if (line.startsWith(STACK_MARKER_HEAD) && line.endsWith(STACK_MARKER_TAIL)) {
      omitted += Number.parseInt(line.slice(STACK_MARKER_HEAD.length), 10) || 0;
    } else {
      frames.push(line);
    }
  }
  let room = limit - size(head) - (STACK_MARKER_HEAD.length + STACK_MARKER_TAIL.length + 8);
  if (room < 0) return cut(head, limit);
  const kept: string[] = [];
  for (const frame of frames) {
    const n = size(frame);
    if (n > room) break;
    kept.push(frame);
    room -= n;
  }
  omitted += frames.length - kept.length;
  if (!omitted) return head + kept.join("");
  const last = kept.length ? kept[kept.length - 1]! : "\n";
  const gap = last.endsWith("\n") ? "" : "\n";
  return `${head}${kept.join("")}${gap}${STACK_MARKER_HEAD}${omitted}${STACK_MARKER_TAIL}`;
}

/**
 * HMAC-SHA256 signing with the signing time: `s2 <key-id> <ms> <hex> <json>`, the HMAC
 * taken over `<ms> <json>` (the worker refuses a frame signed too long ago, so a
 * captured frame cannot be replayed later). `nowMs`: the wall clock, epoch ms.
 */
export class Signer {
  readonly overhead: number;
  private readonly prefix: string;

  constructor(
    keyId: string,
    private readonly key: string,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.prefix = `s2 ${keyId} `;
    // prefix, up to 15 digits of milliseconds and a space, the digest and a space
    this.overhead = Buffer.byteLength(this.prefix) + 16 + 64 + 1;
  }

  /** The signed frame for a JSON body (the signature covers the time and the body's bytes). */
  sign(body: Buffer): Buffer {
    const stamp = `${Math.floor(this.nowMs())} `;
    const digest = createHmac("sha256", this.key).update(stamp).update(body).digest("hex");
    return Buffer.concat([Buffer.from(`${this.prefix}${stamp}${digest} `), body]);
  }
}

/** Packs events into self-contained frames under a size target (bytes). */
export class Packer {
  oversize = 0; // frames over the datagram size (one big event alone)
  shrunk = 0; // events cut further to fit the transport's hard limit
  private readonly max: number;
  private readonly hardMax: number;
  private readonly head: string;
  private readonly headBytes: number;
  private resJson = "";
  private resPart = "";
  private resPartBytes = 0;

  constructor(
    src: string,
    maxDatagram: number,
    hardMax: number,
    private readonly signer: Signer | null = null,
  ) {
    const overhead = signer ? signer.overhead : 0;
    this.max = maxDatagram - overhead;
    this.hardMax = hardMax - overhead;
    this.head = `{"v":1,"src":${JSON.stringify(src)},"seq":`;
    this.headBytes = Buffer.byteLength(this.head);
  }

  private frame(seq: number, eventsJson: string): Buffer {
    const body = Buffer.from(`${this.head}${seq}${this.resPart},"ev":${eventsJson}}`);
    return this.signer ? this.signer.sign(body) : body;
  }

  /** Frames for `events` in order. `resJson` is the serialized resource block. */
  pack(resJson: string, events: Event[], nextSeq: () => number): Buffer[] {
    if (resJson !== this.resJson) {
      this.resJson = resJson;
      this.resPart = resJson ? `,"res":${resJson}` : "";
      this.resPartBytes = Buffer.byteLength(this.resPart);
    }
    const fixed = this.headBytes + this.resPartBytes + 30; // seq digits, ',"ev":[', '}'
    if (events.length <= MAX_EVENTS) {
      const whole = dumps(events);
      // UTF-8 takes at most 3 bytes per UTF-16 unit: count exactly only near the limit.
      if (whole.length * 3 + fixed <= this.max || Buffer.byteLength(whole) + fixed <= this.max) {
        return [this.frame(nextSeq(), whole)];
      }
    }
    const frames: Buffer[] = [];
    let batch: string[] = [];
    let size = fixed;
    for (const ev of events) {
      const part = dumps(ev);
      const partBytes = Buffer.byteLength(part);
      if (partBytes + fixed > this.max) {
        if (batch.length) {
          frames.push(this.frame(nextSeq(), `[${batch.join(",")}]`));
          batch = [];
          size = fixed;
        }
        let alone = part;
        if (partBytes + fixed > this.hardMax) {
          alone = shrink(ev, this.hardMax - fixed);
          this.shrunk++;
        }
        this.oversize++;
        frames.push(this.frame(nextSeq(), `[${alone}]`));
        continue;
      }
      if (batch.length && (size + partBytes + 1 > this.max || batch.length >= MAX_EVENTS)) {
        frames.push(this.frame(nextSeq(), `[${batch.join(",")}]`));
        batch = [];
        size = fixed;
      }
      batch.push(part);
      size += partBytes + 1;
    }
    if (batch.length) frames.push(this.frame(nextSeq(), `[${batch.join(",")}]`));
    return frames;
  }
}

/**
 * Labels `excess` bytes smaller: their longest string value cut on a UTF-8 boundary;
 * when the bulk is not one string, a marker in place of them all.
 */
function shrinkLabels(labels: unknown, excess: number): Record<string, unknown> {
  if (labels !== null && typeof labels === "object" && !Array.isArray(labels)) {
    const own = labels as Record<string, unknown>;
    let longest: string | null = null;
    let longestBytes = -1;
    for (const [k, v] of Object.entries(own)) {
      if (typeof v !== "string") continue;
      const b = Buffer.byteLength(v);
      if (b > longestBytes) {
        longest = k;
        longestBytes = b;
      }
    }
    if (longest !== null && longestBytes - MARKER_BYTES > excess) {
      return { ...own, [longest]: truncateBytes(own[longest] as string, longestBytes - excess - 16) };
    }
  }
  return { _dropped: "labels too large for one frame" };
}

/** Cut the longest strings of one event until its JSON fits `budget` UTF-8 bytes. */
export function shrink(event: Event, budget: number): string {
  const ev: Event = { ...event };
  let data = dumps(ev);
  for (let round = 0; round < 64; round++) {
    const bytes = Buffer.byteLength(data);
    if (bytes <= budget) return data;
    let longest: string | null = null;
    let longestBytes = -1;
    for (const [k, v] of Object.entries(ev)) {
      if (typeof v === "string") {
        const b = Buffer.byteLength(v);
        if (b > longestBytes) {
          longest = k;
          longestBytes = b;
        }
      }
    }
    if ("labels" in ev && (longest === null || Buffer.byteLength(dumps(ev.labels)) > longestBytes)) {
      ev.labels = shrinkLabels(ev.labels, bytes - budget);
    } else if (longest !== null && longestBytes > MARKER_BYTES) {
      const text = ev[longest] as string;
      // JSON escaping may make the text longer on the wire than in UTF-8: cut some slack;
      // the loop takes another pass if needed.
      const target = Math.max(MARKER_BYTES, longestBytes - (bytes - budget) - 16);
      ev[longest] = longest === "error.stack_trace" ? shrinkStack(text, target, true) : truncateBytes(text, target);
    } else {
      break;
    }
    data = dumps(ev);
  }
  return data;
}
