/**
 * faaslens for NodeJS functions: one invocation record per call, with its log lines,
 * errors and custom metrics, sent over UDP or TCP to the faaslens worker (wire
 * protocol v1, docs/protocol.md). Configured by `FAASLENS_*` variables, as the Python
 * shipper. Never throws into a handler.
 *
 *   const faaslens = require("faaslens");
 *   const log = faaslens.getLogger("orders");
 *   exports.handler = faaslens.lambda(async (event, context) => { log.info("hi"); ... });
 */
import { getShipper } from "./core";

export { ConfigError, loadConfig, type ShipperConfig } from "./config";
export { Shipper, configure, getShipper, setLabel, systemClock, type Clock, type ShipperOptions } from "./core";
export { errorFields, fingerprintOf } from "./errors";
export { Logger, getLogger } from "./logger";
export { Counter, Gauge, Histogram, counter, gauge, histogram } from "./metrics";
export { azure, gcpCloudEvent, gcpHttp, instrument, lambda, type WrapOptions } from "./providers";
export { currentInvocation, type Invocation } from "./record";
export { Stats, TcpTransport, UdpTransport, type Transport } from "./transport";
export { truncate, truncateBytes } from "./wire";

/** Counters of the process's shipper (frames sent, send errors, drops...). */
export function stats(): Record<string, number> {
  return getShipper().snapshot();
}

/** Retry frames waiting for the TCP connection. */
export function flush(): void {
  getShipper().flush();
}
