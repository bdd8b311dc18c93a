// NodeJS functions instrumented with the faaslens NodeJS shipper, as a user writes them,
// for the end-to-end tests (tests/integration/test_nodejs_shipper_es.py). The shipper is
// configured from FAASLENS_* variables; the package is the built nodejs/ folder.
"use strict";
const faaslens = require(process.env.FAASLENS_NODE_PACKAGE || "../../../nodejs");

const log = faaslens.getLogger("orders");
const orders = faaslens.counter("orders");
const LINES = 8;

async function work(id) {
  for (let step = 0; step < LINES; step++) {
    log.info("step", { step, id, password: "hunter2" });
    // Each line on its own turn of the event loop: order must not depend on timing.
    await new Promise((resolve) => setImmediate(resolve));
  }
  orders.inc(1, { region: "eu" });
}

// AWS Lambda, async style: returns its own request id so callers can look it up.
exports.lambdaHandler = faaslens.lambda(async (event, context) => {
  await work(context.awsRequestId);
  return { requestId: context.awsRequestId, echo: event };
});

// AWS Lambda, callback style.
exports.callbackHandler = faaslens.lambda((event, context, callback) => {
  work(context.awsRequestId).then(
    () => callback(null, { requestId: context.awsRequestId }),
    (err) => callback(err),
  );
});

// AWS Lambda, a process that dies mid-invocation (event.die: "exit" for process.exit(137),
// "kill" for SIGKILL, as the out-of-memory killer sends): it logs a line, lets the
// periodic flush send it (FAASLENS_FLUSH_INTERVAL_MS), then dies before its record.
exports.crashHandler = faaslens.lambda(async (event, context) => {
  log.info("last words", { id: context.awsRequestId });
  const deadline = Date.now() + 10_000;
  while (faaslens.stats().lines_flushed < 1 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await faaslens.getShipper().settled(); // the flushed frame has left the process
  if (event.die === "kill") process.kill(process.pid, "SIGKILL");
  process.exit(137);
});

// Google Cloud Functions HTTP function (functions-framework --target=hello).
const functions = (() => {
  try {
    return require("@google-cloud/functions-framework");
  } catch {
    return null; // not running under the framework
  }
})();
if (functions) {
  functions.http(
    "hello",
    faaslens.gcpHttp(async (req, res) => {
      await work(req.get("Function-Execution-Id"));
      res.send(`hello ${req.get("Function-Execution-Id")}`);
    }),
  );
}
