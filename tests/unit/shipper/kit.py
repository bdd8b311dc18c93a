"""Helpers for the shipper's tests: a real receiving socket, fixed clocks, shaped contexts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import orjson

from faaslens.shipper.config import ShipperConfig
from faaslens.shipper.core import Clock, Shipper

TS = 1_764_028_800_123  # 2025-11-25T00:00:00.123Z


class Receiver:
    """A UDP socket on 127.0.0.1:<free port>. Loopback delivers a datagram during the
    sender's send() call, so after a handler returns its frames are already here."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.endpoint = f"udp://127.0.0.1:{self.port}"

    def frames(self) -> list[bytes]:
        """Every datagram waiting now."""
        out: list[bytes] = []
        while True:
            try:
                out.append(self.sock.recv(70_000))
            except BlockingIOError:
                return out

    def envelopes(self) -> list[dict[str, Any]]:
        """The waiting frames parsed (unsigned frames only)."""
        return [orjson.loads(f) for f in self.frames()]

    def events(self) -> list[dict[str, Any]]:
        """All events of the waiting frames, in order."""
        return [ev for env in self.envelopes() for ev in env["ev"]]

    def close(self) -> None:
        self.sock.close()


class FixedClock(Clock):
    """Wall clock fixed at TS (+1 ms per reading); monotonic +1 ms per reading."""

    def __init__(self, start_ms: int = TS, init_ns: int = 250_000_000) -> None:
        self._wall = start_ms
        self._perf = 0
        self._init = init_ns

    def time_ns(self) -> int:
        now = self._wall
        self._wall += 1
        return now * 1_000_000

    def perf_ns(self) -> int:
        self._perf += 1_000_000
        return self._perf

    def process_age_ns(self) -> int:
        return self._init


def make_shipper(
    receiver: Receiver,
    *,
    environ: dict[str, str] | None = None,
    resource: dict[str, Any] | None = None,
    clock: Clock | None = None,
    **settings: Any,
) -> Shipper:
    """A shipper sending to ``receiver`` with a given environment (empty by default).

    Start events are off unless asked for: most tests look at the record alone
    (tests/unit/shipper/test_shipper_start.py covers the start events)."""
    settings.setdefault("endpoint", receiver.endpoint)
    settings.setdefault("start_events", False)
    ids = iter(f"exec-{i:04d}" for i in range(1, 100_000))
    return Shipper(
        ShipperConfig(**settings),
        environ=environ or {},
        resource=resource,
        clock=clock,
        src="test-src",
        rss=lambda: 64 * 1024 * 1024,
        new_id=lambda: next(ids),
    )


class LambdaContext:
    """AWS LambdaContext's documented attributes."""

    def __init__(
        self,
        request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678",
        remaining_ms: int = 3000,
        function_name: str = "checkout",
        memory_mb: int = 512,
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:eu-west-1:123456789012:function:{function_name}:prod"
        )
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/11/25/[$LATEST]0123456789abcdef"
        self.identity = None
        self.client_context = None
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining


class HttpRequest:
    """Named like azure.functions.HttpRequest (context.py matches binding class names)."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.method = "GET"
        self.url = "https://app.azurewebsites.net/api/hello"
        self.headers = headers or {}


class TimerRequest:
    """Named like azure.functions.TimerRequest."""

    past_due = False


class Headers:
    """Case-insensitive headers with ``get``, as werkzeug's EnvironHeaders."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = {k.lower(): v for k, v in values.items()}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)


class FlaskRequest:
    """The parts of flask.Request that functions-framework passes to an HTTP function."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = Headers(headers)
        self.environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/"}
        self.method = "POST"
        self.path = "/"


class CloudEvent:
    """The interface of cloudevents.http.CloudEvent that functions-framework passes."""

    def __init__(self, attributes: dict[str, Any], data: Any = None) -> None:
        self._attributes = attributes
        self.data = data

    def get_attributes(self) -> dict[str, Any]:
        return self._attributes

    def __getitem__(self, key: str) -> Any:
        return self._attributes[key]


class BackgroundContext:
    """GCP 1st gen background function context (google.cloud.functions.Context)."""

    def __init__(self, event_id: str, event_type: str) -> None:
        self.event_id = event_id
        self.event_type = event_type
        self.timestamp = "2026-11-25T00:00:00.000Z"
        self.resource = {"service": "pubsub.googleapis.com", "name": "projects/p/topics/t"}


def by_type(events: list[dict[str, Any]], t: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("t") == t]


def receivers() -> Iterator[Receiver]:
    """Fixture body: a receiver closed afterwards."""
    rx = Receiver()
    try:
        yield rx
    finally:
        rx.close()
