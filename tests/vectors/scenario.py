"""Language-neutral shipper scenarios (tests/vectors/scenarios/*.json), run by the Python shipper.

A scenario is data: settings (``FAASLENS_*`` variables), the source id, the resource
block, a clock that moves only when a step says so, the peak RSS, the ids and random
draws the shipper will ask for, and steps (invocations on a platform, log lines,
metrics, labels, a thrown error with given frames, the periodic flush timer firing).
The NodeJS shipper runs the same files (nodejs/test/scenarios.test.ts). Both must
produce the frames named in ``expect_frames``, compared as :func:`frames_match`
says (docs/protocol.md, "Shipper scenarios").
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import math
import re
from pathlib import Path
from typing import Any

import orjson

from faaslens.shipper.config import load_config
from faaslens.shipper.core import Clock, Shipper
from faaslens.shipper.logs import Logger
from faaslens.shipper.metrics import Counter, Gauge, Histogram
from faaslens.shipper.transport import Transport

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
_METRICS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


class _Capture(Transport):
    """Keeps the frames instead of sending them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frames: Any) -> None:
        self.frames.extend(frames)

    def close(self) -> None:
        pass


class ScenarioClock(Clock):
    """Stands still until a ``tick`` step moves it."""

    def __init__(self, wall_ms: int, mono_ns: int, age_ns: int) -> None:
        self.wall_ms = wall_ms
        self.mono_ns = mono_ns
        self.age_ns = age_ns

    def time_ns(self) -> int:
        return self.wall_ms * 1_000_000

    def perf_ns(self) -> int:
        return self.mono_ns

    def process_age_ns(self) -> int:
        return self.age_ns


def text_of(spec: Any) -> str:
    """A string given as data: plain, ``{"repeat": s, "times": n}``, ``{"concat": [...]}``
    or ``{"code_unit": n}``: one UTF-16 code unit, e.g. a lone surrogate (55296, U+D800),
    which a runtime's strings may hold but JSON files cannot."""
    if isinstance(spec, str):
        return spec
    if "code_unit" in spec:
        return chr(int(spec["code_unit"]))
    if "repeat" in spec:
        return str(spec["repeat"]) * int(spec["times"])
    return "".join(text_of(part) for part in spec["concat"])


_CODE_UNIT = re.compile(r"\\u\{([0-9a-fA-F]{4})\}")


def key_text(key: str) -> str:
    """A key given as data: ``\\u{dce9}`` in it stands for that UTF-16 code unit."""
    return _CODE_UNIT.sub(lambda m: chr(int(m.group(1), 16)), key)


def data_of(value: Any) -> Any:
    """Fields or labels given as data: ``{"$text": spec}`` is :func:`text_of` the spec,
    keys go through :func:`key_text`, the rest is as written."""
    if isinstance(value, dict):
        if len(value) == 1 and "$text" in value:
            return text_of(value["$text"])
        return {key_text(k): data_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [data_of(v) for v in value]
    return value


def _substitute(value: Any, var: str, i: int) -> Any:
    if value == f"${var}":
        return i
    if isinstance(value, dict):
        return {k: _substitute(v, var, i) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, var, i) for v in value]
    return value


# ------------------------------------------------------------------ platform shapes


class _LambdaContext:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.aws_request_id = spec["request_id"]
        self.function_name = spec.get("function_name")
        self.function_version = spec.get("function_version")
        self.memory_limit_in_mb = spec.get("memory_mb")
        self.invoked_function_arn = spec.get("arn")
        remaining = spec.get("remaining_ms")
        if remaining is not None:  # the runtime's method; absent unless the scenario gives it
            self.get_remaining_time_in_millis = lambda: remaining


class _AzureTrace:
    def __init__(self, traceparent: str | None) -> None:
        self.trace_parent = traceparent


class _AzureRetry:
    def __init__(self, retry_count: int) -> None:
        self.retry_count = retry_count


class _AzureContext:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.invocation_id = spec["invocation_id"]
        self.function_name = spec.get("function_name")
        self.trace_context = _AzureTrace(spec.get("traceparent"))
        if spec.get("retry_count") is not None:
            self.retry_context = _AzureRetry(spec["retry_count"])


class _AzureHttpResponse:
    """What an Azure HTTP function returns (``func.HttpResponse``), as far as read."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def answer_of(step: dict[str, Any]) -> object:
    """The handler's answer, ``{"status": n}`` in the step's platform's shape (or None).

    An HTTP function on functions-framework always answers with a status (NodeJS: the
    express response's ``statusCode``, 200 unless set): there it defaults to 200.
    """
    answer = step.get("answer")
    platform = step["platform"]
    if answer is None and platform == "gcp_http":
        answer = {"status": 200}
    if answer is None:
        return None
    status = int(answer["status"])
    if platform == "aws":
        return {"statusCode": status, "body": ""}
    if platform == "azure":
        return _AzureHttpResponse(status)
    if platform == "gcp_http":
        return ("", status)
    raise ValueError(f"no HTTP answer on platform {platform!r}")


# azure.functions binding classes by the protocol's trigger type (the shipper reads the name).
_AZURE_BINDING = {"http": "HttpRequest", "timer": "TimerRequest", "pubsub": "QueueMessage"}


def _azure_input(trigger: str | None, spec: dict[str, Any]) -> object:
    cls = type(_AZURE_BINDING.get(trigger or "", "Unknown"), (), {})
    obj = cls()
    obj.headers = dict(spec.get("headers") or {})  # type: ignore[attr-defined]
    obj.method = spec.get("method")  # type: ignore[attr-defined]
    return obj


class _CloudEvent:
    def __init__(self, attributes: dict[str, Any]) -> None:
        self._attributes = attributes

    def get_attributes(self) -> dict[str, Any]:
        return dict(self._attributes)


class _FlaskRequest:
    """What functions-framework hands an HTTP function (a flask Request), as far as read."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.environ: dict[str, Any] = {}


def handler_args(step: dict[str, Any]) -> tuple[Any, ...]:
    """The handler's arguments on the step's platform, in the Python runtime's shapes."""
    platform = step["platform"]
    if platform == "aws":
        return (step.get("event"), _LambdaContext(step["context"]))
    if platform == "azure":
        ctx = step["context"]
        return (_azure_input(ctx.get("trigger"), step.get("input") or {}), _AzureContext(ctx))
    if platform == "gcp_cloudevent":
        return (_CloudEvent(step["event"]),)
    if platform == "gcp_http":
        return (_FlaskRequest(dict(step.get("headers") or {})),)
    if platform == "plain":
        return ()
    raise ValueError(f"unknown platform {platform!r}")


def _exception_class(name: str) -> type[BaseException]:
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    return type(name, (Exception,), {"__module__": "__main__"})


def failing_handler(spec: dict[str, Any], body: Any) -> Any:
    """A handler whose traceback holds exactly the frames the scenario names.

    Each (file, function) is compiled under ``/var/task/<file>``; the outermost runs
    the steps, then each calls the next, and the innermost raises.
    """
    frames = spec["frames"]
    ns: dict[str, Any] = {
        "__name__": "__main__",
        "__body__": body,
        "__exc__": _exception_class(spec["type"])(text_of(spec["message"])),
    }
    for i, (file, func) in enumerate(frames):
        call = "raise __exc__" if i == len(frames) - 1 else f"return {frames[i + 1][1]}()"
        prelude = "__body__()\n    " if i == 0 else ""
        source = f"def {func}(*args, **kwargs):\n    {prelude}{call}\n"
        exec(compile(source, f"/var/task/{file}", "exec"), ns)
    return ns[frames[0][1]]


# ------------------------------------------------------------------ running


class _TimerSteps:
    """Stands in for the shipper's flusher thread: the scenario's ``timer`` steps fire the
    periodic flush instead, at the scenario clock's time (a thread on the real clock
    would make the frames depend on how fast the scenario runs)."""

    def stop(self) -> None:
        pass


class _Run:
    def __init__(self, scenario: dict[str, Any]) -> None:
        clock = scenario["clock"]
        self.clock = ScenarioClock(clock["wall_ms"], clock["mono_ns"], scenario["process_age_ns"])
        self.capture = _Capture()
        ids = iter(scenario["ids"])
        draws = iter(scenario["random"])
        rss = scenario["rss_bytes"]
        self.shipper = Shipper(
            load_config(scenario["settings"]),
            environ={},
            resource=scenario["resource"],
            transport=self.capture,
            clock=self.clock,
            src=scenario["src"],
            rss=lambda: rss,
            new_id=lambda: next(ids),
            sample=lambda: next(draws),
        )
        self.shipper._flusher = _TimerSteps()

    def op_timer(self, step: dict[str, Any]) -> None:
        self.shipper._flush_running(self.clock.mono_ns)

    def steps(self, steps: list[dict[str, Any]]) -> None:
        for step in steps:
            getattr(self, "op_" + step["op"])(step)

    def op_tick(self, step: dict[str, Any]) -> None:
        self.clock.wall_ms += step.get("wall_ms", 0)
        self.clock.mono_ns += step.get("mono_ns", 0)

    def op_repeat(self, step: dict[str, Any]) -> None:
        for i in range(step["times"]):
            self.steps(_substitute(step["steps"], step["var"], i))

    def op_log(self, step: dict[str, Any]) -> None:
        name = step.get("logger")
        logger = Logger(None if name is None else text_of(name), shipper=self.shipper)
        logger.log(step["level"], text_of(step["message"]), **data_of(step.get("fields") or {}))

    def op_metric(self, step: dict[str, Any]) -> None:
        kind = step["kind"]
        metric = _METRICS[kind](step["name"], unit=step.get("unit"), shipper=self.shipper)
        update = getattr(metric, {"counter": "inc", "gauge": "set", "histogram": "observe"}[kind])
        update(step.get("value", 1), **data_of(step.get("labels") or {}))

    def op_label(self, step: dict[str, Any]) -> None:
        from faaslens.shipper.record import current_invocation

        inv = current_invocation()
        assert inv is not None, "a label step belongs inside an invocation"
        inv.set_label(key_text(step["key"]), text_of(step["value"]))

    def op_invoke(self, step: dict[str, Any]) -> None:
        args = handler_args(step)
        inner = step.get("steps") or []

        def body() -> None:
            self.steps(inner)

        raising = step.get("raise")
        assert raising is None or "answer" not in step, "a handler that raises gives no answer"
        answer = answer_of(step) if raising is None else None
        if raising is None:

            def handler(*_: Any, **__: Any) -> object:
                body()
                return answer

        else:
            handler = failing_handler(raising, body)
        name, trigger = step.get("name"), step.get("trigger")
        if step.get("execution_id") is not None:
            # The scope's own frame would enter a traceback: no raise with a given id.
            assert raising is None, "execution_id and raise cannot be combined"
            assert answer is None, "execution_id and answer cannot be combined"
            with self.shipper.invocation(
                *args, name=name, trigger=trigger, execution_id=step["execution_id"]
            ):
                body()
            return
        try:
            self.shipper.instrument(handler, name=name, trigger=trigger)(*args)
        except Exception as exc:
            if raising is None or type(exc).__name__ != raising["type"]:
                raise


def load(name: str) -> dict[str, Any]:
    """A scenario by name."""
    data: dict[str, Any] = orjson.loads((SCENARIOS / f"{name}.json").read_bytes())
    return data


def names() -> list[str]:
    """Every scenario's name."""
    return sorted(p.stem for p in SCENARIOS.glob("*.json"))


def run(scenario: dict[str, Any]) -> list[bytes]:
    """The frames the Python shipper sends for a scenario."""
    runner = _Run(scenario)
    runner.steps(scenario["steps"])
    return runner.capture.frames


# ------------------------------------------------------------------ comparison rules


def split_frame(frame: bytes) -> tuple[str | None, str | None, bytes]:
    """(key id, signature, JSON body) of a frame; key id and signature None when unsigned.
    A signing time (``s2``) is part of what the signature covers: it stays with it."""
    if frame.startswith(b"s2 "):
        _, key_id, stamp, signature, body = frame.split(b" ", 4)
        return key_id.decode(), f"{stamp.decode()} {signature.decode()}", body
    if frame.startswith(b"s1 "):
        _, key_id, signature, body = frame.split(b" ", 3)
        return key_id.decode(), signature.decode(), body
    return None, None, frame


def _same(expected: Any, actual: Any, path: str, raised: dict[str, Any] | None) -> list[str]:
    if path.endswith("/error.stack_trace") and raised is not None:
        return _stack_rule(actual, raised, path)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return [] if expected is actual else [f"{path}: {actual!r} != {expected!r}"]
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if expected == actual:
            return []
        close = isinstance(expected, float) or isinstance(actual, float)
        if close and math.isclose(expected, actual, rel_tol=1e-9, abs_tol=0.0):
            return []
        return [f"{path}: {actual!r} != {expected!r}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = [f"{path}: missing key {k!r}" for k in expected if k not in actual]
        problems += [f"{path}: unexpected key {k!r}" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                problems += _same(expected[k], actual[k], f"{path}/{k}", raised)
        return problems
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(actual)} items != {len(expected)}"]
        out: list[str] = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += _same(e, a, f"{path}/{i}", raised)
        return out
    return [] if expected == actual else [f"{path}: {actual!r} != {expected!r}"]


def _stack_rule(actual: Any, raised: dict[str, Any], path: str) -> list[str]:
    """A stack trace is the runtime's own text: it must name the type and every frame's function."""
    if not isinstance(actual, str) or not actual or len(actual) > 32 * 1024:
        return [f"{path}: not a stack trace within 32 KiB"]
    wanted = [raised["type"], *(func for _, func in raised["frames"])]
    return [f"{path}: does not name {w!r}" for w in wanted if w not in actual]


def raised_in(scenario: dict[str, Any]) -> dict[str, Any] | None:
    """The scenario's thrown error spec, if any (there is at most one)."""

    def walk(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
        for step in steps:
            if step.get("raise"):
                found: dict[str, Any] = step["raise"]
                return found
            found_inner = walk(step.get("steps") or [])
            if found_inner:
                return found_inner
        return None

    return walk(scenario["steps"])


def frames_match(scenario: dict[str, Any], expected: list[bytes], actual: list[bytes]) -> list[str]:
    """Differences between expected and produced frames under the protocol's comparison rules.

    Exact: the frame count, every JSON value (keys in any order), the signature's key id.
    By rule: numbers that are not integers within a relative 1e-9 (float formatting and
    rounding differ between languages); ``error.stack_trace`` is the runtime's own text
    and must name the error type and each frame's function; a signature must be the
    HMAC-SHA256 of the body as sent, with the scenario's key.
    """
    if len(expected) != len(actual):
        return [f"{len(actual)} frames != {len(expected)}"]
    raised = raised_in(scenario)
    key = scenario["settings"].get("FAASLENS_HMAC_KEY")
    problems: list[str] = []
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        e_id, _, e_body = split_frame(e)
        a_id, a_sig, a_body = split_frame(a)
        if e_id != a_id:
            problems.append(f"frame {i}: key id {a_id!r} != {e_id!r}")
        if a_sig is not None:
            stamp, _, digest = a_sig.rpartition(" ")  # s2: "<signing time> <digest>"
            signed = (stamp.encode() + b" " if stamp else b"") + a_body
            good = hmac.new(str(key).encode(), signed, hashlib.sha256).hexdigest()
            if digest != good:
                problems.append(f"frame {i}: signature does not match the body")
        problems += _same(orjson.loads(e_body), orjson.loads(a_body), f"frame {i}", raised)
    return problems
