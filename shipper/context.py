"""Where are we running, and what does this invocation's platform tell us?

Two kinds of facts:

* per process (the resource block): provider, function name/version, region,
  memory, architecture, read once from the environment the platform sets;
* per invocation: the id, trigger type and trace context, read from the
  handler's arguments in their documented shapes: AWS ``(event, context)``
  with a ``LambdaContext``; Azure ``func.Context`` (``invocation_id``,
  ``function_name``, ``trace_context``) beside the trigger's binding object;
  GCP functions-framework's flask ``Request`` (``Function-Execution-Id``,
  ``traceparent``, ``X-Cloud-Trace-Context``) or ``CloudEvent``; GCP legacy
  background ``(data, context)``; anything else is a plain invocation.

Nothing here raises on strange input: unknown shapes give a plain invocation.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from faaslens.protocol import MAX_EXECUTION_ID

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from faaslens.shipper.config import ShipperConfig

_HEX = frozenset("0123456789abcdef")
_MIB = 1024 * 1024

# OTel faas.trigger values.
HTTP, PUBSUB, DATASOURCE, TIMER, OTHER = "http", "pubsub", "datasource", "timer", "other"

_AWS_SOURCES = {
    "aws:sqs": PUBSUB,
    "aws:sns": PUBSUB,
    "aws:kinesis": PUBSUB,
    "aws:kafka": PUBSUB,
    "aws:mq": PUBSUB,
    "aws:s3": DATASOURCE,
    "aws:dynamodb": DATASOURCE,
    "aws:ses": OTHER,
    "aws:codecommit": OTHER,
}
# Azure binding classes (azure.functions) by name, so the SDK need not be importable here.
_AZURE_BINDINGS = {
    "HttpRequest": HTTP,
    "TimerRequest": TIMER,
    "QueueMessage": PUBSUB,
    "ServiceBusMessage": PUBSUB,
    "EventHubEvent": PUBSUB,
    "EventGridEvent": PUBSUB,
    "InputStream": DATASOURCE,
    "DocumentList": DATASOURCE,
    "SqlRowList": DATASOURCE,
}


class InvocationInfo:
    """What the handler's arguments say about one invocation."""

    __slots__ = (
        "attempt",
        "execution_id",
        "fields",
        "remaining_ms",
        "span_id",
        "trace_id",
        "trigger",
    )

    def __init__(  # noqa: PLR0917 - built on the hot path
        self,
        execution_id: str | None = None,
        trigger: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        fields: dict[str, Any] | None = None,
        remaining_ms: Callable[[], int] | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.trigger = trigger
        self.trace_id = trace_id
        self.span_id = span_id
        # Resource fields this invocation states itself (they win over the process's).
        self.fields = fields
        # AWS: context.get_remaining_time_in_millis, for the timeout watchdog.
        self.remaining_ms = remaining_ms
        # The attempt number when the platform states it (Azure's retry_context).
        self.attempt: int | None = None


def new_execution_id() -> str:
    """A random version-4 UUID string, from os.urandom (cheaper than uuid.uuid4)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ------------------------------------------------------------------ trace context parsing


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX and text.strip("0") != ""


def parse_traceparent(value: object) -> tuple[str, str] | None:
    """W3C ``traceparent`` -> (trace id, parent span id), or None if malformed."""
    if not isinstance(value, str):
        return None
    parts = value.strip().lower().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    if not (_is_hex(parts[1], 32) and _is_hex(parts[2], 16)):
        return None
    return parts[1], parts[2]


def parse_xray(value: object) -> tuple[str, str | None] | None:
    """X-Ray ``Root=1-5759e988-bd86...;Parent=53995c3f42cd8ad8;Sampled=1`` -> (trace, span)."""
    if not isinstance(value, str):
        return None
    root = parent = None
    for part in value.split(";"):
        key, _, val = part.strip().partition("=")
        if key == "Root":
            root = val
        elif key == "Parent":
            parent = val.lower()
    if not root:
        return None
    pieces = root.split("-")
    if len(pieces) != 3 or pieces[0] != "1":
        return None
    trace = (pieces[1] + pieces[2]).lower()
    if not _is_hex(trace, 32):
        return None
    return trace, parent if parent and _is_hex(parent, 16) else None


def parse_cloud_trace(value: object) -> tuple[str, str | None] | None:
    """GCP ``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`` (span id decimal) -> ids."""
    if not isinstance(value, str):
        return None
    trace, _, rest = value.partition("/")
    trace = trace.strip().lower()
    if not _is_hex(trace, 32):
        return None
    span_dec = rest.partition(";")[0]
    span = None
    if span_dec.isdigit() and 0 < int(span_dec) < 1 << 64:
        span = f"{int(span_dec):016x}"
    return trace, span


def _header(headers: object, name: str) -> object:
    """A header from a dict (any case) or a case-insensitive headers object."""
    if headers is None:
        return None
    if isinstance(headers, dict):
        value = headers.get(name)
        if value is None:
            lowered = name.lower()
            for key, val in headers.items():
                if isinstance(key, str) and key.lower() == lowered:
                    return val
        return value
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    try:
        return getter(name)
    except Exception:  # a foreign headers object: its failure is not ours to raise
        return None


def _traceparent_of(headers: dict[str, Any]) -> object:
    """``traceparent`` from an event's header dict, without scanning every header:
    API Gateway v2 and function URLs lowercase names; v1 keeps the client's case."""
    value = headers.get("traceparent")
    if value is None:
        value = headers.get("Traceparent") or headers.get("TraceParent")
    return value


def _trace_from_headers(headers: object, info: InvocationInfo) -> None:
    tp = parse_traceparent(_header(headers, "traceparent"))
    if tp is not None:
        info.trace_id = tp[0]
        return
    ct = parse_cloud_trace(_header(headers, "X-Cloud-Trace-Context"))
    if ct is not None:
        info.trace_id, info.span_id = ct


# ------------------------------------------------------------------ per process


def _arch() -> str:
    machine = os.uname().machine.lower() if hasattr(os, "uname") else "unknown"
    return {"aarch64": "arm64", "arm64": "arm64", "amd64": "x86_64", "x64": "x86_64"}.get(
        machine, machine
    )


def detect_provider(env: Mapping[str, str]) -> str:
    """``aws``, ``azure``, ``gcp`` or ``local``, from the variables each platform sets."""
    if env.get("AWS_LAMBDA_FUNCTION_NAME") or env.get("AWS_EXECUTION_ENV", "").startswith(
        "AWS_Lambda"
    ):
        return "aws"
    if env.get("FUNCTIONS_WORKER_RUNTIME") or env.get("FUNCTIONS_EXTENSION_VERSION"):
        return "azure"
    if (
        env.get("FUNCTION_TARGET")
        or env.get("FUNCTION_SIGNATURE_TYPE")
        or (env.get("FUNCTION_NAME") and (env.get("GCP_PROJECT") or env.get("FUNCTION_REGION")))
    ):
        return "gcp"
    return "local"


def _azure_region(name: str) -> str:
    return name.replace(" ", "").lower()


def resource_from_env(env: Mapping[str, str], config: ShipperConfig) -> dict[str, Any]:
    """The resource block (``res``) for this process. Settings win over the platform's."""
    provider = detect_provider(env)
    res: dict[str, Any] = {"cloud.provider": provider, "host.architecture": _arch()}
    name = version = region = account = node = None
    memory_mb: str | int | None = None
    if provider == "aws":
        name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        memory_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        node = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
    elif provider == "azure":
        name = env.get("WEBSITE_SITE_NAME")
        region = _azure_region(env.get("REGION_NAME", "")) or None
        owner = env.get("WEBSITE_OWNER_NAME", "")
        account = owner.partition("+")[0] or None
        node = env.get("WEBSITE_INSTANCE_ID") or env.get("COMPUTERNAME")
        memory_mb = env.get("WEBSITE_MEMORY_LIMIT_MB")
    elif provider == "gcp":
        name = env.get("K_SERVICE") or env.get("FUNCTION_NAME") or env.get("FUNCTION_TARGET")
        version = env.get("K_REVISION") or env.get("X_GOOGLE_FUNCTION_VERSION")
        region = env.get("FUNCTION_REGION")
        account = env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT")
        memory_mb = env.get("FUNCTION_MEMORY_MB") or env.get("X_GOOGLE_FUNCTION_MEMORY_MB")
    if config.function_name:
        name = config.function_name
    if config.region:
        region = config.region
    if config.memory_mb:
        memory_mb = config.memory_mb
    service = config.service or name or os.path.basename(sys.argv[0] if sys.argv else "") or None
    for key, value in (
        ("service.name", service),
        ("service.version", config.service_version),
        ("service.environment", config.environment),
        ("service.node.name", node or (os.uname().nodename if hasattr(os, "uname") else None)),
        ("faas.name", name),
        ("faas.version", version),
        ("cloud.region", region),
        ("cloud.account.id", account),
    ):
        if value:
            res[key] = str(value)[:256]
    try:
        if memory_mb:
            res["faas.max_memory"] = int(memory_mb) * _MIB
    except ValueError:
        pass
    return res


# ------------------------------------------------------------------ per invocation


def _aws_trigger(event: object) -> str:
    if not isinstance(event, dict):
        return OTHER
    if "requestContext" in event or "httpMethod" in event or "routeKey" in event:
        return HTTP
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        first = records[0]
        source = first.get("eventSource") or first.get("EventSource")
        return _AWS_SOURCES.get(str(source), OTHER)
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return TIMER
    if "detail-type" in event:
        return PUBSUB
    return OTHER


_aws_fields_cache: dict[tuple[object, ...], dict[str, Any]] = {}


def _aws_fields(ctx: object) -> dict[str, Any]:
    name = getattr(ctx, "function_name", None)
    version = getattr(ctx, "function_version", None)
    memory = getattr(ctx, "memory_limit_in_mb", None)
    arn = getattr(ctx, "invoked_function_arn", None)
    key = (name, version, memory, arn)
    fields = _aws_fields_cache.get(key)
    if fields is not None:
        return fields
    fields = {"cloud.provider": "aws"}
    if name:
        fields["faas.name"] = str(name)
    if version:
        fields["faas.version"] = str(version)
    try:
        if memory:
            fields["faas.max_memory"] = int(memory) * _MIB
    except (TypeError, ValueError):
        pass
    if isinstance(arn, str):
        parts = arn.split(":")
        if len(parts) >= 7 and parts[0] == "arn":
            fields["cloud.region"] = parts[3]
            fields["cloud.account.id"] = parts[4]
            fields["faas.id"] = ":".join(parts[:7])  # the function's ARN, without alias
    if len(_aws_fields_cache) < 64:  # one entry per function+version in practice
        _aws_fields_cache[key] = fields
    return fields


def _from_aws(event: object, ctx: object, env: Mapping[str, str]) -> InvocationInfo:
    info = InvocationInfo(str(ctx.aws_request_id)[:MAX_EXECUTION_ID], _aws_trigger(event))  # type: ignore[attr-defined]
    info.fields = _aws_fields(ctx)
    if isinstance(event, dict):
        headers = event.get("headers")
        if headers and isinstance(headers, dict):
            tp = parse_traceparent(_traceparent_of(headers))
            if tp is not None:
                info.trace_id = tp[0]
    if info.trace_id is None:
        xr = parse_xray(env.get("_X_AMZN_TRACE_ID"))
        if xr is not None:
            info.trace_id, info.span_id = xr
    remaining = getattr(ctx, "get_remaining_time_in_millis", None)
    if callable(remaining):
        info.remaining_ms = remaining
    return info


def _from_azure(ctx: object, args: tuple[object, ...], env: Mapping[str, str]) -> InvocationInfo:
    info = InvocationInfo(str(ctx.invocation_id)[:MAX_EXECUTION_ID])  # type: ignore[attr-defined]
    function = getattr(ctx, "function_name", None)
    fields: dict[str, Any] = {"cloud.provider": "azure"}
    if function:
        site = env.get("WEBSITE_SITE_NAME")
        # OTel: Azure's faas.name is "<function app>/<function>".
        fields["faas.name"] = f"{site}/{function}" if site else str(function)
    info.fields = fields
    retry_count = getattr(getattr(ctx, "retry_context", None), "retry_count", None)
    if type(retry_count) is int and retry_count >= 0:
        info.attempt = retry_count + 1
    trace_context = getattr(ctx, "trace_context", None)
    tp = parse_traceparent(getattr(trace_context, "trace_parent", None))
    if tp is not None:
        info.trace_id = tp[0]
    for arg in args:
        if arg is ctx:
            continue
        trigger = _AZURE_BINDINGS.get(type(arg).__name__)
        if trigger is not None:
            info.trigger = trigger
            if info.trace_id is None and trigger == HTTP:
                _trace_from_headers(getattr(arg, "headers", None), info)
            break
    return info


def _cloudevent_trigger(ce_type: object) -> str:
    text = str(ce_type)
    if ".pubsub." in text:
        return PUBSUB
    if any(k in text for k in (".storage.", "firestore", ".database.", "datastore")):
        return DATASOURCE
    if "scheduler" in text:
        return TIMER
    return OTHER


def _from_cloudevent(ce: Any) -> InvocationInfo:
    attributes = ce.get_attributes() if hasattr(ce, "get_attributes") else ce
    ce_id = attributes.get("id")
    info = InvocationInfo(str(ce_id)[:MAX_EXECUTION_ID] if ce_id else None)
    info.trigger = _cloudevent_trigger(attributes.get("type"))
    info.fields = {"cloud.provider": "gcp"}
    tp = parse_traceparent(attributes.get("traceparent"))
    if tp is not None:
        info.trace_id = tp[0]
    return info


def _from_gcp_request(request: object) -> InvocationInfo:
    headers = getattr(request, "headers", None)
    exec_id = _header(headers, "Function-Execution-Id")
    info = InvocationInfo(str(exec_id)[:MAX_EXECUTION_ID] if exec_id else None, HTTP)
    info.fields = {"cloud.provider": "gcp"}
    _trace_from_headers(headers, info)
    return info


def _from_gcp_background(ctx: object) -> InvocationInfo:
    event_id = getattr(ctx, "event_id", None)
    event_type = str(getattr(ctx, "event_type", ""))
    trigger = PUBSUB if "pubsub" in event_type else _cloudevent_trigger(event_type)
    if trigger == OTHER and ("storage" in event_type or "firestore" in event_type):
        trigger = DATASOURCE
    info = InvocationInfo(str(event_id)[:MAX_EXECUTION_ID] if event_id else None, trigger)
    info.fields = {"cloud.provider": "gcp"}
    return info


_PLAIN = InvocationInfo()


def extract(
    args: tuple[object, ...], kwargs: Mapping[str, object], env: Mapping[str, str]
) -> InvocationInfo:
    """Invocation facts from a handler's arguments (a shared empty info when none)."""
    n = len(args)
    if n >= 2 and hasattr(args[1], "aws_request_id"):  # the hot path: Lambda
        return _from_aws(args[0], args[1], env)
    candidates = args + tuple(kwargs.values()) if kwargs else args
    for arg in candidates:
        if hasattr(arg, "invocation_id"):
            return _from_azure(arg, candidates, env)
        if hasattr(arg, "aws_request_id"):
            return _from_aws(candidates[0], arg, env)
    for arg in candidates:
        if hasattr(arg, "get_attributes") or (
            isinstance(arg, dict) and "specversion" in arg and "id" in arg
        ):
            return _from_cloudevent(arg)
        if hasattr(arg, "environ") and hasattr(arg, "headers"):  # werkzeug / flask Request
            return _from_gcp_request(arg)
        if hasattr(arg, "event_id") and hasattr(arg, "event_type"):
            return _from_gcp_background(arg)
    return _PLAIN


# ------------------------------------------------------------------ the handler's answer


def http_status(result: object) -> int | None:
    """The HTTP status a handler answered with, in its platform's shapes, else None.

    AWS API Gateway / function URL / ALB proxy result ``{"statusCode": 500, ...}``;
    Flask / functions-framework ``(body, status)`` or ``(body, status, headers)``
    (status an int or ``"500 INTERNAL SERVER ERROR"``), a werkzeug/Flask ``Response``;
    Azure ``func.HttpResponse``; anything else with an integer ``status_code``.
    """
    if type(result) is dict:
        code: object = result.get("statusCode")
    elif type(result) is tuple:
        code = None
        if 2 <= len(result) <= 3:
            code = result[1]
            if type(code) is str:
                head = code.split(" ", 1)[0]
                code = int(head) if head.isdigit() else None
            elif type(code) is not int:  # (body, headers): the status is the body's
                code = getattr(result[0], "status_code", None)
    elif result is None or type(result) in (str, bytes, list, int, float, bool):
        return None
    else:
        try:
            code = getattr(result, "status_code", None)
        except Exception:  # a foreign object's property: its failure is not ours
            return None
    if type(code) is str and code.isdigit():
        code = int(code)
    if type(code) is int and 100 <= code <= 999:
        return code
    return None
