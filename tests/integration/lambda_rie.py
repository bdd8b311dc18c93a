"""A Python handler under the AWS Lambda Runtime Interface Emulator with awslambdaric.

The emulator (``aws-lambda-rie``, Go) comes from ``scripts/build-rie`` (one pinned build,
cached; :func:`rie_binary`); awslambdaric is a dev
dependency. :class:`LambdaRuntime` runs one function: the emulator on two
free loopback ports, starting ``python -m awslambdaric <module>.<handler>`` as
the runtime on the first invocation, and again after the runtime process
died, as Lambda does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from tests import runtimes
from tests.support import http_json, poll_until

# A pinned commit of the emulator (Go pseudo-version), so every machine builds the same.
REPO = Path(__file__).resolve().parents[2]


def rie_binary() -> Path:
    """The emulator's binary, from ``scripts/build-rie`` (one pinned build, cached)."""
    return runtimes.rie_binary()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LambdaRuntime:
    """``with LambdaRuntime(dir, "handler.handler", env) as fn: fn.invoke({...})``.

    ``task_root`` holds the handler module; ``env`` adds to the function's
    environment (e.g. ``FAASLENS_ENDPOINT``, ``AWS_LAMBDA_FUNCTION_TIMEOUT``).
    The emulator's and the runtime's output go to ``<task_root>/rie.log``.
    """

    def __init__(
        self, task_root: Path, handler: str, env: dict[str, str], function: str = "crashy"
    ) -> None:
        self.task_root = task_root
        self.handler = handler
        self.env = env
        self.function = function
        self.port = _free_port()
        self.log_path = task_root / "rie.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LambdaRuntime:
        rie = rie_binary()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": os.pathsep.join([str(self.task_root), str(REPO)]),
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "AWS_LAMBDA_FUNCTION_NAME": self.function,
            "AWS_REGION": "eu-west-1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            **self.env,
        }
        log = open(self.log_path, "ab")  # owned by the emulator process, closed in __exit__
        self._log = log
        self._proc = subprocess.Popen(
            [
                str(rie),
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{self.port}",
                "--runtime-api-address",
                f"127.0.0.1:{_free_port()}",
                sys.executable,
                "-m",
                "awslambdaric",
                self.handler,
            ],
            cwd=self.task_root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the runtime goes with it
        )
        poll_until(self._listening, timeout=30, what="aws-lambda-rie listening")
        return self

    def _listening(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"aws-lambda-rie exited: {self.log()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def invoke(self, event: Any, timeout: float = 60.0) -> tuple[int, Any]:
        """One invocation through the emulator's invoke API: (HTTP status, body)."""
        return http_json(
            "POST",
            f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations",
            orjson.loads(orjson.dumps(event)),
            timeout=timeout,
        )

    def log(self) -> str:
        """What the emulator and the runtime printed so far."""
        return self.log_path.read_text(errors="replace")[-6000:]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the group we made: emulator + runtime
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._log.close()
