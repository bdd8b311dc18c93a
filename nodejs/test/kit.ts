// What the NodeJS shipper's tests share: a UDP collector on loopback, a shipper sending
// to it, a Lambda context.
import { createSocket, type Socket } from "node:dgram";
import { Shipper, loadConfig } from "../src/index";
import type { Transport } from "../src/transport";

export type Frame = { v: number; src: string; seq: number; res?: Record<string, unknown>; ev: Record<string, any>[] };

/** A UDP collector on an ephemeral loopback port: frames as they arrive. */
export class Collector {
  readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  private constructor(readonly sock: Socket) {
    sock.on("message", (msg) => {
      this.frames.push(JSON.parse(msg.toString()) as Frame);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async start(): Promise<Collector> {
    const sock = createSocket("udp4");
    await new Promise<void>((resolve) => sock.bind(0, "127.0.0.1", resolve));
    return new Collector(sock);
  }

  get endpoint(): string {
    return `udp://127.0.0.1:${this.sock.address().port}`;
  }

  /** Waits (with a deadline) until `n` frames have arrived. */
  async take(n: number, deadlineMs = 5000): Promise<Frame[]> {
    const deadline = Date.now() + deadlineMs;
    while (this.frames.length < n) {
      if (Date.now() > deadline) throw new Error(`${this.frames.length} of ${n} frames arrived`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50).unref();
      });
    }
    return this.frames.splice(0, n);
  }

  close(): void {
    this.sock.close();
  }
}

const RESOURCE = { "faas.name": "t", "cloud.provider": "aws", "host.architecture": "x86_64" };

/** A shipper sending to `endpoint`, with a fixed resource block and no platform variables. */
export function shipperFor(endpoint: string, settings: Record<string, unknown> = {}): Shipper {
  return new Shipper({ config: loadConfig({}, { endpoint, ...settings }), env: {}, resource: RESOURCE });
}

export const lambdaContext = (id: string, remaining = 30_000) => ({
  awsRequestId: id,
  functionName: "orders",
  functionVersion: "$LATEST",
  memoryLimitInMB: "256",
  invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:orders",
  getRemainingTimeInMillis: () => remaining,
});

/** A transport that keeps the frames, synchronously, instead of sending them. */
export class Capture implements Transport {
  readonly frames: Buffer[] = [];
  send(frames: Buffer[]): void {
    this.frames.push(...frames);
  }
  settled(): null {
    return null;
  }
  close(): void {}

  /** The frames kept so far, parsed, and forgotten. */
  take(): Frame[] {
    return this.frames.splice(0).map((f) => JSON.parse(f.toString()) as Frame);
  }
}

/** A shipper whose frames a Capture keeps (same settings and resource as shipperFor). */
export function capturingShipper(settings: Record<string, unknown> = {}): [Shipper, Capture] {
  const capture = new Capture();
  const config = loadConfig({}, settings);
  return [new Shipper({ config, env: {}, transport: capture, resource: RESOURCE }), capture];
}
