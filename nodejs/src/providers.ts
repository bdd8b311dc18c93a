/**
 * One wrapper per platform. Each call of a wrapped handler is one invocation: its
 * record is sent when the platform considers the call over, and the wrapper waits
 * (at most SETTLE_MS) for the frames to leave before handing the result back, since
 * a runtime may freeze the process right after.
 *
 * The process's shipper is looked up on each call, so `configure()` after wrapping
 * applies; pass `shipper` to use another.
 */
import type { Trigger } from "./context";
import { type InvocationOptions, type Shipper, getShipper } from "./core";
import { runIn } from "./record";

export interface WrapOptions {
  /** The function's name where it differs from the process's (several per app). */
  name?: string;
  trigger?: Trigger;
  shipper?: Shipper;
}

function invocationOptions(options: WrapOptions): InvocationOptions {
  return { name: options.name ?? null, trigger: options.trigger ?? null };
}

type LambdaCallback<R> = (error?: unknown, result?: R) => void;
type AsyncLambda<E, C, R> = (event: E, context: C) => R | Promise<R>;
type CallbackLambda<E, C, R> = (event: E, context: C, callback: LambdaCallback<R>) => void;

/**
 * AWS Lambda handler, async (`async (event, context) => result`) or callback style
 * (`(event, context, callback) => void`, told apart by its declared parameters).
 */
export function lambda<E, C, R>(handler: AsyncLambda<E, C, R>, options?: WrapOptions): (event: E, context: C) => Promise<R>;
export function lambda<E, C, R>(handler: CallbackLambda<E, C, R>, options?: WrapOptions): CallbackLambda<E, C, R>;
export function lambda<E, C, R>(
  handler: AsyncLambda<E, C, R> | CallbackLambda<E, C, R>,
  options: WrapOptions = {},
): ((event: E, context: C) => Promise<R>) | CallbackLambda<E, C, R> {
  const opts = invocationOptions(options);
  if (handler.length >= 3) {
    const fn = handler as CallbackLambda<E, C, R>;
    return function callbackHandler(this: unknown, event: E, context: C, callback: LambdaCallback<R>): void {
      const shipper = options.shipper ?? getShipper();
      if (shipper.disabled) return fn.call(this, event, context, callback);
      const inv = shipper.start([event, context], opts);
      const done: LambdaCallback<R> = (error, result) => {
        const failed = error !== undefined && error !== null;
        shipper.finish(inv, failed ? error : undefined, failed, null, result);
        const wait = shipper.settled();
        void wait.then(() => callback(error, result));
      };
      try {
        runIn(inv, () => fn.call(this, event, context, done));
      } catch (err) {
        shipper.finish(inv, err, true);
        throw err;
      }
    };
  }
  const fn = handler as AsyncLambda<E, C, R>;
  return async function asyncHandler(this: unknown, event: E, context: C): Promise<R> {
    const shipper = options.shipper ?? getShipper();
    return shipper.runAsync(() => fn.call(this, event, context), [event, context], opts);
  };
}

/**
 * Azure Functions v4 programming model handler: `(input, context: InvocationContext)`,
 * e.g. `app.http("hello", { handler: faaslens.azure(async (request, context) => ...) })`.
 */
export function azure<I, C, R>(handler: (input: I, context: C) => R | Promise<R>, options: WrapOptions = {}): (input: I, context: C) => Promise<R> {
  const opts = invocationOptions(options);
  return async function azureHandler(this: unknown, input: I, context: C): Promise<R> {
    const shipper = options.shipper ?? getShipper();
    return shipper.runAsync(() => handler.call(this, input, context), [input, context], opts);
  };
}

interface ResponseLike {
  once(event: "finish" | "close", listener: () => void): unknown;
  setHeader(name: string, value: unknown): unknown;
}

/**
 * Google Cloud Functions HTTP handler for @google-cloud/functions-framework:
 * `functions.http("hello", faaslens.gcpHttp((req, res) => ...))`. The invocation
 * ends when the response is finished (or the connection closed), or when the handler
 * throws or its promise rejects.
 */
export function gcpHttp<Q, S extends ResponseLike>(handler: (req: Q, res: S) => unknown, options: WrapOptions = {}): (req: Q, res: S) => unknown {
  const opts: InvocationOptions = { ...invocationOptions(options), trigger: options.trigger ?? "http" };
  return function httpHandler(this: unknown, req: Q, res: S): unknown {
    const shipper = options.shipper ?? getShipper();
    if (shipper.disabled) return handler.call(this, req, res);
    const inv = shipper.start([req, res], opts);
    const end = (err: unknown, failed: boolean, answer?: S): void => shipper.finish(inv, err, failed, null, answer);
    try {
      // A finished response is the answer: its statusCode is the status sent. A connection
      // closed before that (the client went away) answered nothing.
      res.once("finish", () => end(undefined, false, res));
      res.once("close", () => end(undefined, false));
    } catch {
      shipper.stats.internal_errors++;
    }
    let result: unknown;
    try {
      result = runIn(inv, () => handler.call(this, req, res));
    } catch (err) {
      end(err, true);
      throw err;
    }
    if (result !== null && typeof result === "object" && typeof (result as PromiseLike<unknown>).then === "function") {
      (result as PromiseLike<unknown>).then(undefined, (err: unknown) => end(err, true));
    }
    return result;
  };
}

/**
 * Google Cloud Functions CloudEvent handler for @google-cloud/functions-framework:
 * `functions.cloudEvent("onMessage", faaslens.gcpCloudEvent(async (ce) => ...))`.
 */
export function gcpCloudEvent<E, R>(handler: (cloudEvent: E) => R | Promise<R>, options: WrapOptions = {}): (cloudEvent: E) => Promise<R> {
  const opts = invocationOptions(options);
  return async function cloudEventHandler(this: unknown, cloudEvent: E): Promise<R> {
    const shipper = options.shipper ?? getShipper();
    return shipper.runAsync(() => handler.call(this, cloudEvent), [cloudEvent], opts);
  };
}

/**
 * Any other function (a plain process, a queue consumer): one invocation per call,
 * platform facts read from its arguments where they have a known shape.
 */
export function instrument<A extends unknown[], R>(fn: (...args: A) => R, options: WrapOptions = {}): (...args: A) => R {
  const opts = invocationOptions(options);
  return function instrumented(this: unknown, ...args: A): R {
    const shipper = options.shipper ?? getShipper();
    return shipper.run(() => fn.apply(this, args), args, opts);
  };
}
