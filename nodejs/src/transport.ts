/**
 * Getting frames to the worker: a connected UDP socket, or TCP with LF framing.
 *
 * Nothing here throws into the handler: every socket has an error handler, and a
 * failure (a closed port, an unreachable host, a full buffer) is counted in Stats.
 * Sockets are unref'd so they never keep a function's process alive. `settled()`
 * lets a wrapper wait, with a deadline, until the frames of an invocation have left
 * (a frozen Lambda sandbox sends nothing).
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { isIP } from "node:net";
import { connect as tcpConnect, type Socket as TcpSocket } from "node:net";
import { lookup } from "node:dns";

/** What the shipper did, for `stats()`. The Python shipper's names. */
export class Stats {
  bytes_sent = 0;
  dropped_lines = 0; // kept-aside lines pushed out of a full debug buffer
  dropped_metrics = 0; // bad values, bad labels, or over 64 per record
  frames_oversize = 0; // frames over the datagram size (one large event)
  frames_sent = 0;
  internal_errors = 0; // the shipper's own failures, swallowed
  invocations = 0;
  lines = 0;
  lines_flushed = 0; // of which sent before their invocation ended
  send_errors = 0;
  tcp_dropped = 0; // frames dropped from the TCP queue while disconnected
  tcp_reconnects = 0;
  timeouts = 0;
  truncated = 0;

  /** A snapshot. */
  asObject(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>;
  }
}

export interface Transport {
  /** Send frames; count, never throw, on failure. */
  send(frames: Buffer[]): void;
  /** Resolves when sends in flight have completed, or after `deadlineMs`; null when none are. */
  settled(deadlineMs: number): Promise<void> | null;
  close(): void;
}

/** Waiters resolved when in-flight sends reach zero. */
class InFlight {
  count = 0;
  private waiters: (() => void)[] = [];

  done(): void {
    this.count--;
    if (this.count <= 0) {
      this.count = 0;
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  }

  settled(deadlineMs: number): Promise<void> | null {
    if (this.count === 0) return null;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, deadlineMs);
      timer.unref();
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/**
 * One datagram per frame on a connected socket (so that an ICMP "port unreachable"
 * surfaces as ECONNREFUSED on a later send, counted). The host is resolved once; a
 * failed lookup is retried at most every 5 s, frames meanwhile counted as send errors.
 */
export class UdpTransport implements Transport {
  private sock: UdpSocket | null = null;
  private connected = false;
  private readonly waiting: Buffer[] = []; // frames sent before the socket connected
  private nextTry = 0;
  private readonly inFlight = new InFlight();
  private readonly onSent: (err: Error | null, bytes: number) => void;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly stats: Stats,
    private readonly waitingMax = 1000,
  ) {
    this.onSent = (err, bytes) => {
      if (err) this.stats.send_errors++;
      else {
        this.stats.frames_sent++;
        this.stats.bytes_sent += bytes;
      }
      this.inFlight.done();
    };
  }

  private open(): UdpSocket | null {
    const now = Date.now();
    if (now < this.nextTry) return null;
    const family = isIP(this.host);
    try {
      const sock = createSocket(family === 6 ? "udp6" : "udp4");
      sock.on("error", () => this.failed(sock));
      sock.unref();
      // IPv4 first: "localhost" may resolve to ::1 while collectors often bind 127.0.0.1.
      const address = family ? this.host : this.host === "localhost" ? "127.0.0.1" : this.host;
      sock.connect(this.port, address, () => {
        if (this.sock !== sock) return;
        this.connected = true;
        const frames = this.waiting.splice(0);
        for (const frame of frames) this.write(sock, frame);
      });
      this.sock = sock;
      return sock;
    } catch {
      this.stats.send_errors++;
      this.nextTry = now + 5000;
      return null;
    }
  }

  /** An asynchronous failure (a lookup, the connect): count, drop what waits, retry later. */
  private failed(sock: UdpSocket): void {
    this.stats.send_errors += 1 + this.waiting.length;
    this.waiting.length = 0;
    this.nextTry = Date.now() + 5000;
    if (this.sock === sock) this.sock = null;
    this.connected = false;
    try {
      sock.close();
    } catch {
      // already closed
    }
    while (this.inFlight.count > 0) this.inFlight.done();
  }

  private write(sock: UdpSocket, frame: Buffer): void {
    try {
      sock.send(frame, (err) => this.onSent(err, frame.length));
    } catch {
      this.onSent(new Error("send failed"), 0);
    }
  }

  send(frames: Buffer[]): void {
    const sock = this.sock ?? this.open();
    for (const frame of frames) {
      if (sock === null) {
        this.stats.send_errors++;
        continue;
      }
      this.inFlight.count++;
      if (this.connected) {
        this.write(sock, frame);
      } else if (this.waiting.length < this.waitingMax) {
        this.waiting.push(frame);
      } else {
        this.onSent(new Error("too many frames waiting for the socket"), 0);
      }
    }
  }

  settled(deadlineMs: number): Promise<void> | null {
    return this.inFlight.settled(deadlineMs);
  }

  close(): void {
    const sock = this.sock;
    this.sock = null;
    this.connected = false;
    if (sock !== null) {
      try {
        sock.close();
      } catch {
        // already closed
      }
    }
  }
}

/**
 * Frames separated by LF on one connection, reconnecting with backoff. While the
 * connection is down, frames wait in a bounded queue (oldest dropped and counted) and
 * go first once it is back.
 */
export class TcpTransport implements Transport {
  private sock: TcpSocket | null = null;
  private connected = false;
  private readonly pending: Buffer[] = [];
  private nextTry = 0;
  private backoffMs = 100;
  private readonly inFlight = new InFlight();
  private static readonly LF = Buffer.from("\n");
  /** Bytes written but not yet taken by the kernel, past which frames are dropped. */
  static readonly BUFFER_MAX = 4 * 1024 * 1024;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly stats: Stats,
    private readonly timeoutMs = 500,
    private readonly pendingMax = 1000,
  ) {}

  private open(): void {
    const now = Date.now();
    if (this.sock !== null || now < this.nextTry) return;
    let sock: TcpSocket;
    try {
      sock = tcpConnect({
        host: this.host,
        port: this.port,
        noDelay: true,
        // IPv4 first, as for UDP.
        lookup: (hostname, options, callback) => lookup(hostname, { ...options, family: isIP(hostname) || 4 }, callback),
      });
    } catch {
      this.failed();
      return;
    }
    this.sock = sock;
    sock.unref();
    sock.setTimeout(this.timeoutMs, () => {
      if (!this.connected) sock.destroy(new Error("connect timeout"));
    });
    sock.on("connect", () => {
      sock.setTimeout(0);
      this.connected = true;
      this.backoffMs = 100;
      this.stats.tcp_reconnects++;
      this.flushPending();
    });
    sock.on("error", () => {
      this.stats.send_errors++;
    });
    sock.on("close", () => {
      if (this.sock === sock) {
        this.sock = null;
        this.connected = false;
        this.failed();
      }
    });
  }

  private failed(): void {
    this.nextTry = Date.now() + this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
    // Frames counted in flight will not complete on this connection: release waiters.
    while (this.inFlight.count > 0) this.inFlight.done();
  }

  private queue(frame: Buffer): void {
    if (this.pending.length >= this.pendingMax) {
      this.pending.shift();
      this.stats.tcp_dropped++;
      this.stats.send_errors++;
    }
    this.pending.push(frame);
  }

  private flushPending(): void {
    const sock = this.sock;
    if (sock === null || !this.connected) return;
    while (this.pending.length) {
      const frame = this.pending.shift()!;
      if (sock.writableLength > TcpTransport.BUFFER_MAX) {
        // The collector reads slower than we write: drop rather than grow without bound.
        this.stats.tcp_dropped++;
        this.stats.send_errors++;
        continue;
      }
      this.inFlight.count++;
      sock.write(Buffer.concat([frame, TcpTransport.LF]), (err) => {
        if (err) {
          this.stats.send_errors++;
        } else {
          this.stats.frames_sent++;
          this.stats.bytes_sent += frame.length + 1;
        }
        this.inFlight.done();
      });
    }
  }

  send(frames: Buffer[]): void {
    for (const frame of frames) this.queue(frame);
    if (this.sock === null) this.open();
    this.flushPending();
  }

  /** Waits for the connection (up to the deadline) when frames are queued for it. */
  settled(deadlineMs: number): Promise<void> | null {
    if (this.pending.length && this.sock !== null && !this.connected) {
      return new Promise<void>((resolve) => {
        const sock = this.sock!;
        const timer = setTimeout(done, deadlineMs);
        timer.unref();
        function done(): void {
          clearTimeout(timer);
          sock.off("connect", later);
          sock.off("close", done);
          resolve();
        }
        const later = (): void => {
          const rest = this.inFlight.settled(deadlineMs);
          clearTimeout(timer);
          sock.off("close", done);
          if (rest) void rest.then(resolve);
          else resolve();
        };
        sock.once("connect", later);
        sock.once("close", done);
      });
    }
    return this.inFlight.settled(deadlineMs);
  }

  close(): void {
    const sock = this.sock;
    this.sock = null;
    this.connected = false;
    if (sock !== null) sock.destroy();
  }
}

/** The transport for an endpoint's scheme. */
export function makeTransport(scheme: "udp" | "tcp", host: string, port: number, stats: Stats, timeoutS: number): Transport {
  return scheme === "tcp" ? new TcpTransport(host, port, stats, timeoutS * 1000) : new UdpTransport(host, port, stats);
}
