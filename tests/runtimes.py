"""Real function runtimes for tests: the AWS Lambda Runtime Interface Emulator running a
handler through ``awslambdaric``, and functions-framework serving a GCP function.

Each runs the handler in its own process, as the platform does, and keeps the runtime's
own output (``START``/``END``/``REPORT`` lines, ``INIT REPORT``) to compare with what the
shipper recorded. Fixtures (``lambda_runtime``, ``gcp_runtime``) are in ``tests/conftest.py``.

The emulator binary comes from ``scripts/build-rie`` (built once, cached); ``$FAASLENS_RIE``
names a binary already built.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from tests.support import poll_until

REPO = Path(__file__).resolve().parent.parent
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
# REPORT RequestId: <id>\t[Init Duration: x ms\t]Duration: x ms\tBilled Duration: x ms\t...
_REPORT = re.compile(r"^REPORT RequestId: (?P<id>\S+)\t(?P<rest>.*)$")
_FIELD = re.compile(r"(?P<name>[A-Za-z ]+): (?P<value>[0-9.]+) (?:ms|MB)")
_INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: (?P<ms>[0-9.]+)\)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rie_binary() -> Path:
    """The emulator: ``$FAASLENS_RIE``, else built (or found in the cache) by scripts/build-rie."""
    given = os.environ.get("FAASLENS_RIE")
    if given:
        return Path(given)
    done = subprocess.run(
        [str(REPO / "scripts" / "build-rie")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/build-rie failed:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class Receiver:
    """A UDP socket on a free loopback port collecting the shipper's frames (unsigned)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.endpoint = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.envelopes: list[dict[str, Any]] = []

    def _drain(self) -> None:
        while True:
            try:
                self.envelopes.append(orjson.loads(self.sock.recv(70_000)))
            except (TimeoutError, BlockingIOError):
                return

    def events(self) -> list[dict[str, Any]]:
        """Every event received so far, in arrival order, over its frame's resource fields
        (as the worker merges them)."""
        self._drain()
        return [{**env.get("res", {}), **ev} for env in self.envelopes for ev in env["ev"]]

    def records(self) -> list[dict[str, Any]]:
        """Invocation records received so far."""
        return [ev for ev in self.events() if ev.get("t") == "inv"]

    def wait_records(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """At least ``n`` records, polled until ``timeout``."""
        poll_until(lambda: len(self.records()) >= n, timeout=timeout, what=f"{n} records")
        return self.records()

    def close(self) -> None:
        self.sock.close()


class _Output:
    """A child's merged stdout/stderr, read line by line on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pick: Callable[[list[str]], Any], timeout: float, what: str) -> Any:
        """The first non-None ``pick(lines)``, waiting for new output until ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = pick(self.lines)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(self.lines[-40:])
                    raise TimeoutError(f"no {what} within {timeout}s; output:\n{tail}")
                self._cond.wait(left)


class _Process:
    """A runtime process in its own process group, stopped (whole group) on close."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.output = _Output(self.proc)

    def wait_port(self, port: int, timeout: float = 30.0) -> None:
        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError("runtime exited:\n" + "\n".join(self.output.lines[-40:]))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return True

        poll_until(listening, timeout=timeout, what=f"runtime listening on {port}")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _child_env(app_dir: Path, env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FAASLENS_", "AWS_"))}
    # The handler imports faaslens from this tree, and its own module from app_dir.
    base["PYTHONPATH"] = os.pathsep.join([str(app_dir), str(REPO)])
    base.update(env)
    return base


class _Runtime:
    """A runtime process serving HTTP on ``self.port``."""

    port: int
    _process: _Process

    def _start(self, args: list[str], app_dir: Path, env: dict[str, str]) -> None:
        self._process = _Process(args, app_dir, env)
        self._process.wait_port(self.port)

    @property
    def lines(self) -> list[str]:
        """The runtime's output so far (stdout and stderr)."""
        return self._process.output.lines

    def post(
        self, path: str, body: bytes, headers: dict[str, str], timeout: float = 30.0
    ) -> tuple[int, bytes]:
        """POST to the runtime: (status, body), error statuses included."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def close(self) -> None:
        self._process.close()


class LambdaRuntime(_Runtime):
    """A handler under the Lambda emulator + awslambdaric, as Lambda's Python runtime runs it.

    ``invoke()`` posts an event (with a request id of our choice) and returns the status and
    body; ``report(id)`` is the emulator's ``REPORT`` line as numbers (``Duration``,
    ``Billed Duration``, ``Init Duration``...); ``init_reports()`` the ``INIT REPORT``
    durations (ms), one per init phase.
    """

    def __init__(
        self, rie: Path, app_dir: Path, handler: str, env: dict[str, str], timeout_s: int = 3
    ) -> None:
        self.port = free_port()
        api_port = free_port()
        child_env = _child_env(
            app_dir,
            {
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
                "AWS_LAMBDA_FUNCTION_NAME": "rie-fn",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                "AWS_REGION": "us-east-1",
                **env,
            },
        )
        self._start(
            [
                str(rie),
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{self.port}",
                "--runtime-api-address",
                f"127.0.0.1:{api_port}",
                sys.executable,
                "-m",
                "awslambdaric",
                handler,
            ],
            app_dir,
            child_env,
        )

    def invoke(self, event: object, request_id: str, timeout: float = 30.0) -> tuple[int, bytes]:
        """Invoke with ``event`` as ``request_id``: (status, the function's response)."""
        return self.post(
            INVOKE_PATH, orjson.dumps(event), {"X-Amzn-RequestId": request_id}, timeout
        )

    def report(self, request_id: str, timeout: float = 10.0) -> dict[str, float]:
        """The ``REPORT`` line of one request: field name -> number."""

        def pick(lines: list[str]) -> dict[str, float] | None:
            for line in lines:
                match = _REPORT.match(line)
                if match and match["id"] == request_id:
                    return {
                        f["name"].strip(): float(f["value"]) for f in _FIELD.finditer(match["rest"])
                    }
            return None

        found: dict[str, float] = self._process.output.wait_for(
            pick, timeout, f"REPORT for {request_id}"
        )
        return found

    def init_reports(self) -> list[float]:
        """``INIT REPORT`` durations (ms) so far, in order."""
        return [
            float(m["ms"]) for line in self.lines if (m := _INIT_REPORT.search(line)) is not None
        ]


class GcpRuntime(_Runtime):
    """A function served by ``functions-framework`` (its gunicorn server), as Cloud Run
    functions runs it: ``signature`` is ``http`` or ``cloudevent``."""

    def __init__(
        self, app_dir: Path, source: str, target: str, signature: str, env: dict[str, str]
    ) -> None:
        self.port = free_port()
        child_env = _child_env(
            app_dir,
            {"K_SERVICE": target, "FUNCTION_TARGET": target, "FUNCTION_REGION": "us-central1"}
            | env,
        )
        self._start(
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--source",
                source,
                "--target",
                target,
                "--signature-type",
                signature,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            app_dir,
            child_env,
        )


def write_app(directory: Path, source: str, name: str = "app") -> Path:
    """Write a handler module; returns its directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)
    return directory


def runtimes(tmp_path: Path, kind: str) -> Iterator[Callable[..., Any]]:
    """Fixture body: a factory starting runtimes of ``kind``, all stopped afterwards."""
    started: list[LambdaRuntime | GcpRuntime] = []
    rie = rie_binary() if kind == "lambda" else None

    def start(source: str, *, env: dict[str, str] | None = None, **kw: Any) -> Any:
        app_dir = write_app(tmp_path / f"app{len(started)}", source)
        runtime: LambdaRuntime | GcpRuntime
        if rie is not None:
            runtime = LambdaRuntime(rie, app_dir, kw.pop("handler", "app.handler"), env or {}, **kw)
        else:
            runtime = GcpRuntime(app_dir, "app.py", env=env or {}, **kw)
        started.append(runtime)
        return runtime

    try:
        yield start
    finally:
        for runtime in started:
            runtime.close()
