"""``faaslens demo``: a simulated fleet of functions sending through the real shipper.

Each simulated function has warm instances; each instance is a real
:class:`~shipper.core.Shipper` (its own source id, sequence numbers and cold
start), and each invocation calls a real ``@instrument``-ed handler with the
argument shapes of its platform: AWS ``(event, LambdaContext)``, Azure
``(binding, func.Context)``, GCP flask ``Request`` or ``CloudEvent``. Only
time is simulated: handlers report their duration to the instance's clock
instead of sleeping, so any rate can be sustained. Half way through, one
function deploys a new version that brings a new kind of error.

    faaslens demo --rate 50 --duration 60
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faaslens.commandline import EXIT_EMPTY, EXIT_OK, EXIT_USAGE, Parser, bounded, fail
from faaslens.shipper import context as _context
from faaslens.shipper.config import ConfigError, ShipperConfig, load_config, parse_endpoint
from faaslens.shipper.core import Clock, Shipper
from faaslens.shipper.logs import Logger
from faaslens.shipper.metrics import Counter, Gauge, Histogram

# ------------------------------------------------------------------ platform shapes


class LambdaContext:
    """AWS LambdaContext's documented attributes."""

    def __init__(  # noqa: PLR0917 - the context's own attributes
        self,
        request_id: str,
        name: str,
        version: str,
        memory_mb: int,
        arn: str,
        remaining_ms: int = 0,
    ):
        self.remaining_ms = remaining_ms  # 0: simulated time, no watchdog
        self.aws_request_id = request_id
        self.function_name = name
        self.function_version = version
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = arn
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "demo"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class TraceContext:
    """azure.functions.TraceContext."""

    def __init__(self, trace_parent: str) -> None:
        self.trace_parent = trace_parent
        self.trace_state = ""
        self.attributes: dict[str, str] = {}


class AzureContext:
    """azure.functions.Context's documented attributes (no retry context: a first attempt)."""

    def __init__(self, invocation_id: str, function_name: str, trace_parent: str = "") -> None:
        self.invocation_id = invocation_id
        self.function_name = function_name
        self.function_directory = f"/home/site/wwwroot/{function_name}"
        self.trace_context = TraceContext(trace_parent)
        self.retry_context = None


class HttpRequest:
    """Named as azure.functions.HttpRequest, whose class name tells the trigger."""

    method = "POST"

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


class TimerRequest:
    """Named as azure.functions.TimerRequest."""

    past_due = False


class FlaskRequest:
    """What functions-framework hands an HTTP function (flask.Request's parts)."""

    method = "POST"
    path = "/"

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.environ = {"REQUEST_METHOD": "POST"}


class CloudEvent:
    """cloudevents.http.CloudEvent's interface."""

    def __init__(self, attributes: dict[str, str], data: Any = None) -> None:
        self._attributes = attributes
        self.data = data

    def get_attributes(self) -> dict[str, str]:
        return self._attributes


# ------------------------------------------------------------------ errors with stable fingerprints


class PaymentDeclinedError(Exception):
    """A card was declined."""


class UpstreamTimeoutError(TimeoutError):
    """A dependency did not answer in time."""


def _charge_card(amount: float) -> None:
    raise PaymentDeclinedError(f"card declined for amount {amount:.2f}")


def _call_inventory() -> None:
    raise UpstreamTimeoutError("inventory service did not answer within 3000 ms")


def _parse_payload(raw: str) -> None:
    raise ValueError(f"invalid payload: expected an object, got {raw[:12]!r}")


def _resize(width: int) -> None:
    raise MemoryError(f"image too large to resize: {width}px")


def _lookup_tenant(tenant: str) -> None:
    raise KeyError(tenant)


ERRORS: dict[str, Callable[[random.Random], None]] = {
    "declined": lambda r: _charge_card(r.uniform(5, 500)),
    "timeout": lambda r: _call_inventory(),
    "payload": lambda r: _parse_payload("[" + str(r.randint(1, 99)) + "]"),
    "resize": lambda r: _resize(r.choice([8000, 12000, 16000])),
    "tenant": lambda r: _lookup_tenant(f"tenant-{r.randint(100, 999)}"),
}


# ------------------------------------------------------------------ the fleet


@dataclass
class FunctionSpec:
    """One simulated function."""

    name: str
    provider: str  # aws | azure | gcp
    shape: str  # aws-http | aws-sqs | azure-http | azure-timer | gcp-http | gcp-event
    region: str
    environment: str
    version: str
    arch: str = "x86_64"
    memory_mb: int = 512
    p50_ms: float = 40.0
    error_rate: float = 0.02
    errors: tuple[str, ...] = ("payload",)
    new_version_error: str | None = None  # appears after the mid-run deploy
    gcp_generation: int = 2
    # Share of invocations whose process dies mid-way (killed out of memory, say): the
    # start event and a line leave, the record never does. AWS shapes only, where the
    # start carries the function's timeout (timeout_ms), so the worker settles them soon.
    crash_rate: float = 0.0
    timeout_ms: int = 3000


FLEET: tuple[FunctionSpec, ...] = (
    FunctionSpec("checkout-api", "aws", "aws-http", "eu-west-1", "prod", "41",
                 memory_mb=1024, p50_ms=85, error_rate=0.03, errors=("declined", "payload"),
                 new_version_error="tenant"),
    FunctionSpec("orders-worker", "aws", "aws-sqs", "us-east-1", "prod", "17", arch="arm64",
                 memory_mb=512, p50_ms=30, error_rate=0.02, errors=("timeout",),
                 crash_rate=0.03, timeout_ms=3000),
    FunctionSpec("image-resize", "gcp", "gcp-event", "europe-west1", "prod", "image-resize-00012",
                 memory_mb=2048, p50_ms=350, error_rate=0.015, errors=("resize",)),
    FunctionSpec("report-http", "gcp", "gcp-http", "us-central1", "staging", "report-http-00003",
                 memory_mb=256, p50_ms=120, error_rate=0.05, errors=("payload", "timeout"),
                 gcp_generation=1),
    FunctionSpec("billing-nightly", "azure", "azure-timer", "westeurope", "prod", "2026.11.1",
                 memory_mb=1536, p50_ms=900, error_rate=0.04, errors=("timeout",)),
    FunctionSpec("webhook-relay", "azure", "azure-http", "eastus", "staging", "2026.11.3",
                 memory_mb=1536, p50_ms=25, error_rate=0.01, errors=("payload",)),
)  # fmt: skip


def fleet(n: int) -> list[FunctionSpec]:
    """``n`` functions: the six shapes above, repeated with numbered names past six."""
    out = []
    for i in range(n):
        base = FLEET[i % len(FLEET)]
        if i < len(FLEET):
            out.append(base)
        else:
            copy = FunctionSpec(**{**base.__dict__, "name": f"{base.name}-{i // len(FLEET)}"})
            out.append(copy)
    return out


class SimClock(Clock):
    """Real wall clock; monotonic time advanced by what the handler says it took."""

    def __init__(self, init_ms: float) -> None:
        self._offset = 0
        self._init_ns = int(init_ms * 1_000_000)

    def perf_ns(self) -> int:
        return time.perf_counter_ns() + self._offset

    def advance(self, ms: float) -> None:
        self._offset += int(ms * 1_000_000)

    def process_age_ns(self) -> int:
        return self._init_ns


@dataclass
class Instance:
    """A warm container of a function: one shipper, one clock, one peak memory."""

    shipper: Shipper
    clock: SimClock
    handler: Callable[..., Any]
    rss: list[int]


@dataclass
class DemoStats:
    """What a demo run sent."""

    invocations: int = 0
    errors: int = 0
    crashes: int = 0  # invocations whose process died: unfinished for the worker
    cold_starts: int = 0
    frames_sent: int = 0
    send_errors: int = 0
    elapsed_s: float = 0.0
    per_function: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Invocations per second achieved."""
        return self.invocations / self.elapsed_s if self.elapsed_s > 0 else 0.0


_orders = Counter("orders_total")
_queue = Gauge("queue_depth")
_payload = Histogram("payload_bytes", unit="bytes")
_retries = Counter("upstream_retries_total")


class Fleet:
    """Builds instances and invokes them with platform-shaped arguments."""

    def __init__(self, config: ShipperConfig, specs: list[FunctionSpec], rng: random.Random):
        self.config = config
        self.specs = specs
        self.rng = rng
        self.instances: dict[str, list[Instance]] = {s.name: [] for s in specs}
        self.deployed: set[str] = set()
        self.retired_stats: dict[str, int] = {"frames_sent": 0, "send_errors": 0}

    # -------------------------------------------------------------- instances

    def _env(self, spec: FunctionSpec) -> dict[str, str]:
        if spec.provider == "aws":
            return {
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
                "AWS_REGION": spec.region,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_LOG_STREAM_NAME": f"2026/11/25/[{spec.version}]{os.urandom(8).hex()}",
            }
        if spec.provider == "azure":
            return {
                "FUNCTIONS_WORKER_RUNTIME": "python",
                "WEBSITE_SITE_NAME": spec.name,
                "REGION_NAME": spec.region,
                "WEBSITE_INSTANCE_ID": os.urandom(16).hex(),
                "WEBSITE_OWNER_NAME": "0f1e2d3c-demo+rg-demo-webspace",
            }
        return {
            "K_SERVICE": spec.name,
            "K_REVISION": spec.version,
            "FUNCTION_TARGET": spec.name.replace("-", "_"),
            "FUNCTION_REGION": spec.region,
            "GOOGLE_CLOUD_PROJECT": "demo-project",
            "FUNCTION_MEMORY_MB": str(spec.memory_mb),
        }

    def _new_instance(self, spec: FunctionSpec) -> Instance:
        rng = self.rng
        env = self._env(spec)
        cfg = self.config.replace(
            service=spec.name,
            environment=spec.environment,
            service_version=spec.version,
            gcp_generation=spec.gcp_generation,
        )
        resource = _context.resource_from_env(env, cfg)
        resource["host.architecture"] = spec.arch
        if spec.provider == "azure":
            resource["faas.version"] = spec.version
        clock = SimClock(init_ms=rng.lognormvariate(math.log(350), 0.5))
        rss = [int(spec.memory_mb * rng.uniform(0.15, 0.35)) * 1024 * 1024]
        sh = Shipper(cfg, environ=env, resource=resource, clock=clock, rss=lambda: rss[0])
        init_log = Logger("init", shipper=sh)
        init_log.info("instance starting", runtime="python3.11", region=spec.region)
        handler = sh.instrument(self._handler(spec, clock, rss))
        return Instance(sh, clock, handler, rss)

    def instance(self, spec: FunctionSpec) -> tuple[Instance, bool]:
        """A warm instance, or a new one (a cold start) now and then."""
        pool = self.instances[spec.name]
        cold = not pool or self.rng.random() < 0.02
        if cold:
            if len(pool) >= 4:  # scale-in: the oldest container goes away
                self._retire(pool.pop(0))
            pool.append(self._new_instance(spec))
            return pool[-1], True
        return self.rng.choice(pool), False

    def _retire(self, inst: Instance) -> None:
        snap = inst.shipper.snapshot()
        self.retired_stats["frames_sent"] += snap["frames_sent"]
        self.retired_stats["send_errors"] += snap["send_errors"]
        inst.shipper.close()

    def crash(self, spec: FunctionSpec, inst: Instance) -> None:
        """An invocation whose process dies: its start event and a line leave (the line
        by the periodic flush, as for a long invocation), then nothing more."""
        event, ctx = self.arguments(spec)
        ctx.remaining_ms = spec.timeout_ms
        sh = inst.shipper
        scope = sh.invocation(event, ctx)
        inv = scope.__enter__()
        Logger(spec.name.replace("-", "."), shipper=sh).info(
            "handling request", items=self.rng.randint(1, 5)
        )
        # Simulated time: run the periodic flush as if the interval had passed.
        sh._flush_running(inst.clock.perf_ns() + sh.config.flush_interval_ms * 1_000_000)
        inv.done = True  # the process is gone: no record, no watchdog, no more flushes
        scope.__exit__(None, None, None)  # leaves the context; sends nothing: it is done
        self.instances[spec.name].remove(inst)
        self._retire(inst)

    def deploy(self, spec: FunctionSpec) -> None:
        """A new version: every instance is replaced (cold starts follow)."""
        major, _, rest = spec.version.partition(".")
        spec.version = f"{int(major) + 1}" if major.isdigit() and not rest else f"{spec.version}-b"
        self.deployed.add(spec.name)
        for inst in self.instances[spec.name]:
            self._retire(inst)
        self.instances[spec.name] = []

    def totals(self) -> dict[str, int]:
        """Frames sent and send errors over all instances, live and retired."""
        out = dict(self.retired_stats)
        for pool in self.instances.values():
            for inst in pool:
                snap = inst.shipper.snapshot()
                out["frames_sent"] += snap["frames_sent"]
                out["send_errors"] += snap["send_errors"]
        return out

    # -------------------------------------------------------------- handlers

    def _handler(self, spec: FunctionSpec, clock: SimClock, rss: list[int]) -> Callable[..., Any]:
        rng = self.rng
        fleet = self
        log = Logger(spec.name.replace("-", "."))

        def work(payload: Any) -> dict[str, Any]:
            # Slow tail: ~3% of calls take 5-15x the median.
            ms = rng.lognormvariate(math.log(spec.p50_ms), 0.35)
            if rng.random() < 0.03:
                ms *= rng.uniform(5, 15)
                log.warning("slow dependency", dependency="db", waited_ms=round(ms * 0.8))
                _retries.inc(dependency="db")
            clock.advance(ms)
            log.debug("payload parsed", size=len(str(payload)))
            log.info("handling request", items=rng.randint(1, 5))
            if spec.name.startswith("checkout"):
                _orders.inc(rng.randint(1, 3), currency=rng.choice(["eur", "usd"]))
            elif spec.name.startswith("orders"):
                _queue.set(rng.randint(0, 400), queue="orders")
            else:
                _payload.observe(rng.randint(200, 2_000_000))
            rss[0] = min(rss[0] + rng.randint(0, 2) * 1024 * 1024, spec.memory_mb * 1024 * 1024)
            kinds = list(spec.errors)
            if spec.name in fleet.deployed and spec.new_version_error:
                kinds.append(spec.new_version_error)
            if rng.random() < spec.error_rate * (3 if spec.name in fleet.deployed else 1):
                kind = rng.choice(kinds)
                log.error("request failed", kind=kind)
                ERRORS[kind](rng)
            log.info("done", status=200)
            return {"statusCode": 200}

        if spec.shape.startswith("aws"):

            def aws_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
                return work(event)

            return aws_handler
        if spec.shape == "azure-http":

            def azure_http(req: HttpRequest, context: AzureContext) -> dict[str, Any]:
                return work(req.headers)

            return azure_http
        if spec.shape == "azure-timer":

            def azure_timer(timer: TimerRequest, context: AzureContext) -> dict[str, Any]:
                return work("timer")

            return azure_timer
        if spec.shape == "gcp-http":

            def gcp_http(request: FlaskRequest) -> dict[str, Any]:
                return work(request.headers)

            return gcp_http

        def gcp_event(cloud_event: CloudEvent) -> dict[str, Any]:
            return work(cloud_event.data)

        return gcp_event

    def arguments(self, spec: FunctionSpec) -> tuple[Any, ...]:
        """Arguments shaped as the platform passes them, with fresh ids and traces."""
        rng = self.rng
        rid = _context.new_execution_id()
        traceparent = f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"
        if spec.shape == "aws-http":
            event = {
                "requestContext": {"http": {"method": "POST", "path": "/checkout"}},
                "headers": {"traceparent": traceparent, "content-type": "application/json"},
                "body": '{"cart": 3}',
            }
        elif spec.shape == "aws-sqs":
            event = {"Records": [{"eventSource": "aws:sqs", "messageId": rid, "body": "{}"}]}
        if spec.provider == "aws":
            arn = f"arn:aws:lambda:{spec.region}:123456789012:function:{spec.name}"
            ctx = LambdaContext(rid, spec.name, spec.version, spec.memory_mb, arn)
            return (event, ctx)
        if spec.shape == "azure-http":
            headers = {"traceparent": traceparent}
            return (HttpRequest(headers), AzureContext(rid, "HttpTrigger", traceparent))
        if spec.shape == "azure-timer":
            return (TimerRequest(), AzureContext(rid, "NightlyTimer", ""))
        if spec.shape == "gcp-http":
            return (FlaskRequest({"Function-Execution-Id": rid[:12], "traceparent": traceparent}),)
        attrs = {
            "id": str(rng.getrandbits(52)),
            "type": "google.cloud.storage.object.v1.finalized",
            "source": "//storage.googleapis.com/projects/_/buckets/uploads",
            "traceparent": traceparent,
        }
        return (CloudEvent(attrs, {"name": f"img-{rng.randint(1, 10**6)}.png"}),)


# ------------------------------------------------------------------ running it


def run_demo(
    endpoint: str,
    *,
    rate: float,
    duration: float,
    functions: int = 6,
    seed: int | None = None,
    progress: bool = True,
    config: ShipperConfig | None = None,
) -> DemoStats:
    """Send simulated traffic to ``endpoint`` at ``rate`` invocations/s for ``duration`` s.

    ``config`` supplies other settings (e.g. HMAC keys); its endpoint is replaced.
    The progress line is shown only when stderr is a terminal.
    """
    if rate <= 0 or duration < 0 or functions < 1:
        raise ValueError("rate must be > 0, duration >= 0, functions >= 1")
    cfg = (config or ShipperConfig()).replace(endpoint=endpoint)
    rng = random.Random(seed)
    specs = fleet(functions)
    # Busier functions get more traffic: weights 1, 1/2, 1/3...
    weights = [1.0 / (i + 1) for i in range(len(specs))]
    the_fleet = Fleet(cfg, specs, rng)
    stats = DemoStats(per_function={s.name: 0 for s in specs})
    show = progress and sys.stderr.isatty()
    start = time.monotonic()
    deadline = start + duration
    deploy_at = start + duration / 2
    deployed = False
    interval = 1.0 / rate
    next_at = start
    last_shown = 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if not deployed and now >= deploy_at:
                the_fleet.deploy(specs[0])
                deployed = True
            if next_at > now:
                time.sleep(min(next_at - now, deadline - now))
                continue
            next_at += interval
            if now - next_at > 1.0:  # fell behind by more than a second: do not burst
                next_at = now
            spec = rng.choices(specs, weights)[0]
            inst, cold = the_fleet.instance(spec)
            if spec.crash_rate and rng.random() < spec.crash_rate:
                the_fleet.crash(spec, inst)
                stats.crashes += 1
            else:
                try:
                    inst.handler(*the_fleet.arguments(spec))
                except Exception:
                    stats.errors += 1
            stats.invocations += 1
            stats.cold_starts += cold
            stats.per_function[spec.name] += 1
            if show and now - last_shown >= 0.25:
                last_shown = now
                elapsed = now - start
                sys.stderr.write(
                    f"\rdemo: {stats.invocations} invocations, {stats.errors} errors, "
                    f"{stats.invocations / max(elapsed, 1e-9):.0f}/s, "
                    f"{max(deadline - now, 0):.0f}s left   "
                )
                sys.stderr.flush()
    except KeyboardInterrupt:
        pass
    finally:
        stats.elapsed_s = time.monotonic() - start
        totals = the_fleet.totals()
        stats.frames_sent = totals["frames_sent"]
        stats.send_errors = totals["send_errors"]
        for pool in the_fleet.instances.values():
            for inst in pool:
                inst.shipper.close()
        if show:
            sys.stderr.write("\n")
    return stats


def main(argv: Sequence[str]) -> int:
    """``faaslens demo``: send simulated function traffic through the real shipper."""
    parser = Parser(
        prog="faaslens demo",
        description="Send simulated function traffic (a fleet of AWS, Azure and GCP "
        "functions) through the real shipper to a worker.",
    )
    parser.add_argument(
        "--endpoint",
        default=None,
        metavar="URL",
        help="udp://host:port or tcp://host:port of the worker (default: $FAASLENS_ENDPOINT, "
        "else udp://127.0.0.1:8518)",
    )
    parser.add_argument(
        "--rate",
        type=bounded(float, 0, inclusive=False),
        default=50.0,
        metavar="PER_SECOND",
        help="invocations per second, over the whole fleet (default: 50)",
    )
    parser.add_argument(
        "--duration",
        type=bounded(float, 0),
        default=60.0,
        metavar="SECONDS",
        help="how long to run, in seconds (default: 60)",
    )
    parser.add_argument(
        "--functions",
        type=bounded(int, 1),
        default=6,
        metavar="N",
        help="number of simulated functions (default: 6)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="random seed, for repeatable runs (default: a new one each run)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a progress line on stderr (default: on)",
    )
    args = parser.parse_args(list(argv))
    try:
        config = load_config(strict=True)  # a typo stops a command, unlike a function
        endpoint = args.endpoint or config.endpoint
        parse_endpoint(endpoint)
        stats = run_demo(
            endpoint,
            rate=args.rate,
            duration=args.duration,
            functions=args.functions,
            seed=args.seed,
            progress=args.progress,
            config=config,
        )
    except (ConfigError, ValueError) as exc:
        return fail("faaslens demo", str(exc), EXIT_USAGE)
    print(
        f"demo: {stats.invocations} invocations in {stats.elapsed_s:.1f}s "
        f"({stats.rate:.1f}/s), {stats.errors} errors, {stats.crashes} crashed, "
        f"{stats.cold_starts} cold starts, "
        f"{stats.frames_sent} frames sent, {stats.send_errors} send errors to {endpoint}"
    )
    for name, n in stats.per_function.items():
        print(f"  {name:<20} {n}")
    return EXIT_OK if stats.invocations == 0 or stats.frames_sent > 0 else EXIT_EMPTY
