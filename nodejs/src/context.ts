/**
 * Where are we running, and what does this invocation's platform tell us?
 *
 * Per process (the resource block): provider, function name/version, region, memory,
 * architecture, from the variables each platform sets. Per invocation: the id, trigger
 * and trace context, from the handler's arguments in their documented shapes: AWS
 * `(event, context)`; Azure Functions v4 `(trigger, InvocationContext)`; GCP
 * functions-framework's express `(req, res)` or a CloudEvent. Strange input gives a
 * plain invocation; nothing here throws.
 */
import { randomUUID } from "node:crypto";
import { arch, hostname } from "node:os";
import { basename } from "node:path";
import type { Env, ShipperConfig } from "./config";

const MIB = 1024 * 1024;
export type Trigger = "http" | "pubsub" | "datasource" | "timer" | "other";

/** What the handler's arguments say about one invocation. */
export interface InvocationInfo {
  executionId: string | null;
  trigger: Trigger | null;
  traceId: string | null;
  spanId: string | null;
  /** Resource fields this invocation states itself (they win over the process's). */
  fields: Record<string, unknown> | null;
  /** AWS: ms left before the platform's deadline, for the timeout record. */
  remainingMs: (() => number) | null;
  /** The attempt number where the platform states it (Azure's retryContext). */
  attempt: number | null;
}

export const PLAIN: InvocationInfo = Object.freeze({
  executionId: null,
  trigger: null,
  traceId: null,
  spanId: null,
  fields: null,
  remainingMs: null,
  attempt: null,
});

function info(executionId: string | null, trigger: Trigger | null): InvocationInfo {
  return { executionId, trigger, traceId: null, spanId: null, fields: null, remainingMs: null, attempt: null };
}

/** A random version-4 UUID. */
export function newExecutionId(): string {
  return randomUUID();
}

// ------------------------------------------------------------------ trace context parsing

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

function nonZero(text: string): boolean {
  return /[1-9a-f]/.test(text);
}

/** W3C `traceparent` -> [trace id, parent span id], or null if malformed. */
export function parseTraceparent(value: unknown): [string, string] | null {
  if (typeof value !== "string") return null;
  const parts = value.trim().toLowerCase().split("-");
  if (parts.length < 4 || parts[0]!.length !== 2 || parts[0] === "ff") return null;
  const [, trace, span] = parts as [string, string, string];
  if (!HEX32.test(trace) || !nonZero(trace) || !HEX16.test(span) || !nonZero(span)) return null;
  return [trace, span];
}

/** X-Ray `Root=1-5759e988-bd86...;Parent=53995c3f42cd8ad8;Sampled=1` -> [trace, span|null]. */
export function parseXray(value: unknown): [string, string | null] | null {
  if (typeof value !== "string") return null;
  let root: string | null = null;
  let parent: string | null = null;
  for (const part of value.split(";")) {
    const eq = part.indexOf("=");
    const key = (eq < 0 ? part : part.slice(0, eq)).trim();
    const val = eq < 0 ? "" : part.slice(eq + 1);
    if (key === "Root") root = val;
    else if (key === "Parent") parent = val.toLowerCase();
  }
  if (!root) return null;
  const pieces = root.split("-");
  if (pieces.length !== 3 || pieces[0] !== "1") return null;
  const trace = (pieces[1]! + pieces[2]!).toLowerCase();
  if (!HEX32.test(trace) || !nonZero(trace)) return null;
  return [trace, parent && HEX16.test(parent) && nonZero(parent) ? parent : null];
}

/** GCP `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1` (span id decimal) -> ids. */
export function parseCloudTrace(value: unknown): [string, string | null] | null {
  if (typeof value !== "string") return null;
  const slash = value.indexOf("/");
  const trace = (slash < 0 ? value : value.slice(0, slash)).trim().toLowerCase();
  if (!HEX32.test(trace) || !nonZero(trace)) return null;
  const spanDec = slash < 0 ? "" : value.slice(slash + 1).split(";")[0]!;
  let span: string | null = null;
  if (/^\d+$/.test(spanDec)) {
    const n = BigInt(spanDec);
    if (n > 0n && n < 1n << 64n) span = n.toString(16).padStart(16, "0");
  }
  return [trace, span];
}

/** A header from a plain object (any case), a fetch `Headers`, or an express request. */
function header(headers: unknown, name: string): unknown {
  if (headers === null || typeof headers !== "object") return undefined;
  try {
    const getter = (headers as { get?: unknown }).get;
    if (typeof getter === "function") return getter.call(headers, name) ?? undefined;
    const obj = headers as Record<string, unknown>;
    const direct = obj[name] ?? obj[name.toLowerCase()];
    if (direct !== undefined) return Array.isArray(direct) ? direct[0] : direct;
    const lowered = name.toLowerCase();
    for (const key of Object.keys(obj)) if (key.toLowerCase() === lowered) return obj[key];
  } catch {
    // a foreign headers object: its failure is not ours to throw
  }
  return undefined;
}

function traceFromHeaders(headers: unknown, out: InvocationInfo): void {
  const tp = parseTraceparent(header(headers, "traceparent"));
  if (tp !== null) {
    out.traceId = tp[0];
    return;
  }
  const ct = parseCloudTrace(header(headers, "X-Cloud-Trace-Context"));
  if (ct !== null) [out.traceId, out.spanId] = ct;
}

// ------------------------------------------------------------------ per process

function machine(): string {
  const a = arch();
  return ({ x64: "x86_64", arm64: "arm64", ia32: "x86", arm: "arm" } as Record<string, string>)[a] ?? a;
}

/** `aws`, `azure`, `gcp` or `local`, from the variables each platform sets. */
export function detectProvider(env: Env): string {
  if (env.AWS_LAMBDA_FUNCTION_NAME || (env.AWS_EXECUTION_ENV ?? "").startsWith("AWS_Lambda")) return "aws";
  if (env.FUNCTIONS_WORKER_RUNTIME || env.FUNCTIONS_EXTENSION_VERSION) return "azure";
  if (env.FUNCTION_TARGET || env.FUNCTION_SIGNATURE_TYPE || (env.FUNCTION_NAME && (env.GCP_PROJECT || env.FUNCTION_REGION))) {
    return "gcp";
  }
  return "local";
}

/** The resource block (`res`) for this process. Settings win over the platform's. */
export function resourceFromEnv(env: Env, config: ShipperConfig): Record<string, unknown> {
  const provider = detectProvider(env);
  const res: Record<string, unknown> = { "cloud.provider": provider, "host.architecture": machine() };
  let name: string | undefined;
  let version: string | undefined;
  let region: string | undefined;
  let account: string | undefined;
  let node: string | undefined;
  let memoryMb: string | number | undefined;
  if (provider === "aws") {
    name = env.AWS_LAMBDA_FUNCTION_NAME;
    version = env.AWS_LAMBDA_FUNCTION_VERSION;
    region = env.AWS_REGION || env.AWS_DEFAULT_REGION;
    memoryMb = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
    node = env.AWS_LAMBDA_LOG_STREAM_NAME;
  } else if (provider === "azure") {
    name = env.WEBSITE_SITE_NAME;
    region = (env.REGION_NAME ?? "").replace(/ /g, "").toLowerCase() || undefined;
    account = (env.WEBSITE_OWNER_NAME ?? "").split("+")[0] || undefined;
    node = env.WEBSITE_INSTANCE_ID || env.COMPUTERNAME;
    memoryMb = env.WEBSITE_MEMORY_LIMIT_MB;
  } else if (provider === "gcp") {
    name = env.K_SERVICE || env.FUNCTION_NAME || env.FUNCTION_TARGET;
    version = env.K_REVISION || env.X_GOOGLE_FUNCTION_VERSION;
    region = env.FUNCTION_REGION;
    account = env.GOOGLE_CLOUD_PROJECT || env.GCP_PROJECT;
    memoryMb = env.FUNCTION_MEMORY_MB || env.X_GOOGLE_FUNCTION_MEMORY_MB;
  }
  if (config.functionName) name = config.functionName;
  if (config.region) region = config.region;
  if (config.memoryMb) memoryMb = config.memoryMb;
  const script = process.argv[1] ? basename(process.argv[1]) : undefined;
  const service = config.service || name || script;
  const pairs: [string, string | null | undefined][] = [
    ["service.name", service],
    ["service.version", config.serviceVersion],
    ["service.environment", config.environment],
    ["service.node.name", node || hostname()],
    ["faas.name", name],
    ["faas.version", version],
    ["cloud.region", region],
    ["cloud.account.id", account],
  ];
  for (const [key, value] of pairs) if (value) res[key] = String(value).slice(0, 256);
  const mb = Number(memoryMb);
  if (memoryMb && Number.isInteger(mb)) res["faas.max_memory"] = mb * MIB;
  return res;
}

// ------------------------------------------------------------------ per invocation

const AWS_SOURCES: Record<string, Trigger> = {
  "aws:sqs": "pubsub",
  "aws:sns": "pubsub",
  "aws:kinesis": "pubsub",
  "aws:kafka": "pubsub",
  "aws:mq": "pubsub",
  "aws:s3": "datasource",
  "aws:dynamodb": "datasource",
  "aws:ses": "other",
  "aws:codecommit": "other",
};

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object";
}

function awsTrigger(event: unknown): Trigger {
  if (!isObject(event) || Array.isArray(event)) return "other";
  if ("requestContext" in event || "httpMethod" in event || "routeKey" in event) return "http";
  const records = event.Records;
  if (Array.isArray(records) && records.length && isObject(records[0])) {
    const first = records[0];
    return AWS_SOURCES[String(first.eventSource ?? first.EventSource)] ?? "other";
  }
  if (event.source === "aws.events" && event["detail-type"] === "Scheduled Event") return "timer";
  if ("detail-type" in event) return "pubsub";
  return "other";
}

const awsFieldsCache = new Map<string, Record<string, unknown>>();

function awsFields(ctx: Record<string, unknown>): Record<string, unknown> {
  const name = ctx.functionName;
  const version = ctx.functionVersion;
  const memory = ctx.memoryLimitInMB;
  const arn = ctx.invokedFunctionArn;
  const key = `${String(name)}\u0000${String(version)}\u0000${String(memory)}\u0000${String(arn)}`;
  const cached = awsFieldsCache.get(key);
  if (cached !== undefined) return cached;
  const fields: Record<string, unknown> = { "cloud.provider": "aws" };
  if (name) fields["faas.name"] = String(name);
  if (version) fields["faas.version"] = String(version);
  const mb = Number(memory);
  if (memory && Number.isInteger(mb)) fields["faas.max_memory"] = mb * MIB;
  if (typeof arn === "string") {
    const parts = arn.split(":");
    if (parts.length >= 7 && parts[0] === "arn") {
      fields["cloud.region"] = parts[3];
      fields["cloud.account.id"] = parts[4];
      fields["faas.id"] = parts.slice(0, 7).join(":"); // the function's ARN, without alias
    }
  }
  if (awsFieldsCache.size < 64) awsFieldsCache.set(key, fields);
  return fields;
}

/** AWS Lambda: `(event, context)` with the Node runtime's context object. */
export function fromAws(event: unknown, ctx: Record<string, unknown>, env: Env): InvocationInfo {
  const out = info(String(ctx.awsRequestId).slice(0, 128), awsTrigger(event));
  out.fields = awsFields(ctx);
  if (isObject(event) && isObject(event.headers)) {
    const headers = event.headers;
    const tp = parseTraceparent(headers.traceparent ?? headers.Traceparent ?? headers.TraceParent);
    if (tp !== null) out.traceId = tp[0];
  }
  if (out.traceId === null) {
    const xr = parseXray(env._X_AMZN_TRACE_ID);
    if (xr !== null) [out.traceId, out.spanId] = xr;
  }
  const remaining = ctx.getRemainingTimeInMillis;
  if (typeof remaining === "function") out.remainingMs = () => Number(remaining.call(ctx));
  return out;
}

// Azure Functions v4 trigger binding types (InvocationContext.options.trigger.type).
const AZURE_TRIGGERS: Record<string, Trigger> = {
  httpTrigger: "http",
  timerTrigger: "timer",
  queueTrigger: "pubsub",
  serviceBusTrigger: "pubsub",
  eventHubTrigger: "pubsub",
  eventGridTrigger: "pubsub",
  blobTrigger: "datasource",
  cosmosDBTrigger: "datasource",
  sqlTrigger: "datasource",
};

/** Azure Functions v4: `(trigger input, InvocationContext)`. */
export function fromAzure(input: unknown, ctx: Record<string, unknown>, env: Env): InvocationInfo {
  const out = info(String(ctx.invocationId).slice(0, 128), null);
  const fields: Record<string, unknown> = { "cloud.provider": "azure" };
  const fn = ctx.functionName;
  if (fn) {
    const site = env.WEBSITE_SITE_NAME;
    fields["faas.name"] = site ? `${site}/${String(fn)}` : String(fn); // OTel: "<app>/<function>"
  }
  out.fields = fields;
  const retry = ctx.retryContext;
  const retryCount = isObject(retry) ? retry.retryCount : undefined;
  if (typeof retryCount === "number" && Number.isInteger(retryCount) && retryCount >= 0) out.attempt = retryCount + 1;
  const traceContext = ctx.traceContext;
  const tp = parseTraceparent(isObject(traceContext) ? traceContext.traceParent : undefined);
  if (tp !== null) out.traceId = tp[0];
  const options = ctx.options;
  const trigger = isObject(options) && isObject(options.trigger) ? options.trigger.type : undefined;
  if (typeof trigger === "string") {
    out.trigger = AZURE_TRIGGERS[trigger] ?? "other";
  } else if (isObject(input) && "headers" in input && "method" in input) {
    out.trigger = "http";
  }
  if (out.trigger === "http" && out.traceId === null && isObject(input)) traceFromHeaders(input.headers, out);
  return out;
}

function cloudEventTrigger(type: unknown): Trigger {
  const text = String(type);
  if (text.includes(".pubsub.")) return "pubsub";
  if ([".storage.", "firestore", ".database.", "datastore"].some((k) => text.includes(k))) return "datasource";
  if (text.includes("scheduler")) return "timer";
  return "other";
}

/** GCP CloudEvent function (functions-framework's CloudEvent, or its plain object). */
export function fromCloudEvent(ce: Record<string, unknown>): InvocationInfo {
  const id = ce.id;
  const out = info(id ? String(id).slice(0, 128) : null, cloudEventTrigger(ce.type));
  out.fields = { "cloud.provider": "gcp" };
  const tp = parseTraceparent(ce.traceparent);
  if (tp !== null) out.traceId = tp[0];
  return out;
}

/** GCP HTTP function: the express request. */
export function fromGcpRequest(req: Record<string, unknown>): InvocationInfo {
  const headers = req.headers;
  const id = header(headers, "function-execution-id");
  const out = info(id ? String(id).slice(0, 128) : null, "http");
  out.fields = { "cloud.provider": "gcp" };
  traceFromHeaders(headers, out);
  return out;
}

function isCloudEvent(value: unknown): value is Record<string, unknown> {
  return isObject(value) && "specversion" in value && "id" in value && "type" in value;
}

/** Invocation facts from a handler's arguments (the shared empty info when none). */
export function extract(args: readonly unknown[], env: Env): InvocationInfo {
  const [first, second] = args;
  if (isObject(second)) {
    if ("awsRequestId" in second) return fromAws(first, second, env);
    if ("invocationId" in second) return fromAzure(first, second, env);
    if (typeof second.setHeader === "function" && isObject(first) && "headers" in first) return fromGcpRequest(first);
  }
  if (isCloudEvent(first)) return fromCloudEvent(first);
  return PLAIN;
}

// ------------------------------------------------------------------ the handler's answer

/**
 * The HTTP status a handler answered with, in its platform's shapes, else null: an AWS
 * API Gateway / function URL / ALB proxy result `{ statusCode: 500, ... }`; an Azure
 * Functions v4 `HttpResponse` or `HttpResponseInit` (`{ status: 500 }`); the
 * functions-framework (express) response object, whose `statusCode` is the status
 * sent. A status is an integer 100-999 (or its digits as a string).
 */
export function httpStatus(result: unknown): number | null {
  if (result === null || typeof result !== "object") return null;
  let code: unknown;
  try {
    const answer = result as { statusCode?: unknown; status?: unknown };
    code = answer.statusCode;
    if (code === undefined) code = answer.status;
  } catch {
    return null; // a foreign object's getter: its failure is not ours
  }
  if (typeof code === "string" && /^\d{3}$/.test(code)) code = Number(code);
  return typeof code === "number" && Number.isInteger(code) && code >= 100 && code <= 999 ? code : null;
}
