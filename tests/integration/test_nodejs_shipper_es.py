"""NodeJS functions through the real worker into the real Elasticsearch.

The functions in ``tests/integration/nodejs/functions.js`` use the NodeJS shipper as a
user would (configured by ``FAASLENS_*``). Each invocation is then found by
``faaslens query invocation <id>`` with its lines in order: called directly with
Lambda-shaped arguments (async and callback handlers), under
``@google-cloud/functions-framework``, and under the AWS Lambda Runtime Interface
Emulator (built by scripts/build-rie) running the NodeJS runtime interface client, npm
``aws-lambda-ric`` (built by scripts/build-lambda-ric). A function whose process dies
mid-invocation becomes one unfinished invocation with the line the periodic flush sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from faaslens.ingest.documents import UNFINISHED_REASON
from faaslens.ingest.runner import Worker
from tests.support import apoll_until, worker_test_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NODEJS = ROOT / "nodejs"
FUNCTIONS = Path(__file__).resolve().parent / "nodejs" / "functions.js"
LINES = 8


@pytest.fixture(scope="module")
def node_package() -> Path:
    """The built NodeJS shipper (scripts/test-node builds it; built here when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the NodeJS shipper's tests (Node 20+)")
    env = {**os.environ, "npm_config_cache": str(Path.home() / ".cache/faaslens/npm")}
    if not (NODEJS / "node_modules" / ".bin" / "tsc").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODEJS, env=env, check=True)
    if not (NODEJS / "dist" / "src" / "index.js").exists():
        subprocess.run(["npm", "run", "--silent", "build"], cwd=NODEJS, env=env, check=True)
    return NODEJS


@pytest.fixture
async def worker(es_url: str, es_prefix: str, tmp_path: Path) -> AsyncIterator[Worker]:
    w = Worker(worker_test_config(es_url, es_prefix, tmp_path), registry=CollectorRegistry())
    async with w:
        yield w


def _node_env(worker: Worker, **extra: str) -> dict[str, str]:
    host, port = worker.udp_address or ("", 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASLENS_")}
    env.update(
        FAASLENS_ENDPOINT=f"udp://{host}:{port}",
        FAASLENS_SERVICE="shop-node",
        FAASLENS_ENVIRONMENT="test",
        NODE_PATH=str(NODEJS / "node_modules"),
        **extra,
    )
    return env


async def _run(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60, ok: tuple[int, ...] = (0,)
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    code = proc.returncode or 0
    assert code in ok, f"{argv[:3]} -> {code}: {err.decode()[-2000:]}"
    return code, out.decode()


async def _query(es_url: str, prefix: str, exec_id: str) -> Any:
    """``faaslens query invocation <id> --json``, as a user runs it; None while not found
    (exit status 1)."""
    code, out = await _run(
        sys.executable, "-m", "faaslens.cli", "query", "invocation", exec_id, "--json",
        "--es-url", es_url, "--es-index-prefix", prefix, ok=(0, 1),
    )  # fmt: skip
    return json.loads(out) if code == 0 else None


async def _found(es_url: str, prefix: str, exec_id: str) -> Any:
    """The invocation once its record and all its lines are searchable."""

    async def probe() -> Any:
        view = await _query(es_url, prefix, exec_id)
        if view is None:
            return None
        complete = view["invocation"] is not None and len(view["logs"]) == LINES
        return view if complete else None

    return await apoll_until(probe, timeout=60, what=f"invocation {exec_id} in Elasticsearch")


def _check(view: Any, exec_id: str, provider: str, trigger: str | None) -> None:
    record = view["invocation"]
    assert record["faas.execution"] == exec_id
    assert record["event.outcome"] == "success"
    assert record["cloud.provider"] == provider
    assert record["service.name"] == "shop-node"
    assert record["faas.mem_usage"] > 0
    if trigger is not None:
        assert record["faas.trigger.type"] == trigger
    logs = view["logs"]
    assert [line["event.sequence"] for line in logs] == list(range(LINES))
    assert [line["labels"]["step"] for line in logs] == list(range(LINES))
    assert all(line["labels"]["password"] == "[REDACTED]" for line in logs)
    assert all(line["log.logger"] == "orders" for line in logs)


_LAMBDA_DRIVER = """
const f = require(process.argv[1]);
const [name, id] = process.argv.slice(2);
const context = {
  awsRequestId: id, functionName: "orders-node", functionVersion: "3", memoryLimitInMB: "256",
  invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:orders-node",
  getRemainingTimeInMillis: () => 30000,
};
const done = (result) => process.stdout.write(JSON.stringify(result));
if (name === "callbackHandler") {
  f.callbackHandler({ httpMethod: "GET" }, context, (err, result) => {
    if (err) throw err;
    done(result);
  });
} else {
  f.lambdaHandler({ httpMethod: "GET" }, context).then(done);
}
"""


@pytest.mark.parametrize("handler", ["lambdaHandler", "callbackHandler"])
async def test_lambda_handler_found_by_id_with_lines_in_order(
    node_package: Path, worker: Worker, es_url: str, es_prefix: str, handler: str
) -> None:
    exec_id = f"node-{uuid.uuid4()}"
    _, out = await _run(
        "node", "-e", _LAMBDA_DRIVER, str(FUNCTIONS), handler, exec_id, env=_node_env(worker)
    )
    assert json.loads(out)["requestId"] == exec_id
    view = await _found(es_url, es_prefix, exec_id)
    _check(view, exec_id, "aws", "http")
    record = view["invocation"]
    assert record["faas.name"] == "orders-node"
    assert record["faas.cost.price_id"] == "aws-x86_64-2025-01"
    assert record["faas.coldstart"] is True


_CRASH_DRIVER = """
const f = require(process.argv[1]);
const [finishedId, dyingId, how] = process.argv.slice(2);
const context = (id) => ({
  awsRequestId: id, functionName: "orders-node", functionVersion: "3", memoryLimitInMB: "256",
  invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:orders-node",
  getRemainingTimeInMillis: () => 1000,
});
f.lambdaHandler({ httpMethod: "GET" }, context(finishedId))
  .then(() => f.crashHandler({ die: how }, context(dyingId)));
"""


# How the process dies, and the exit status that follows (-9: killed by SIGKILL).
_DEATHS = {"exit": 137, "kill": -9}


@pytest.mark.parametrize("how", sorted(_DEATHS))
async def test_a_process_that_dies_mid_invocation_leaves_an_unfinished_invocation_with_its_line(
    node_package: Path, worker: Worker, es_url: str, es_prefix: str, how: str
) -> None:
    finished, dying = f"node-ok-{uuid.uuid4()}", f"node-dies-{uuid.uuid4()}"
    env = _node_env(worker, FAASLENS_FLUSH_INTERVAL_MS="200", FAASLENS_TIMEOUT_MARGIN_MS="0")
    argv = ("node", "-e", _CRASH_DRIVER, str(FUNCTIONS), finished, dying, how)
    await _run(*argv, env=env, ok=(_DEATHS[how],))

    async def unfinished() -> Any:
        view = await _query(es_url, es_prefix, dying)
        return view if view is not None and view["invocation"] and view["logs"] else None

    view = await apoll_until(unfinished, timeout=60, what=f"unfinished invocation {dying}")
    doc = view["invocation"]
    assert doc["faas.execution"] == dying
    assert doc["event.outcome"] == "unknown"
    assert doc["event.reason"] == UNFINISHED_REASON
    assert doc["faas.name"] == "orders-node"
    assert doc["faas.timeout"] == 1_000_000_000  # the deadline left at the start, 1 s
    assert doc["@timestamp"] == doc["event.start"] > 0
    assert "event.duration" not in doc
    (line,) = view["logs"]
    assert (line["message"], line["labels"]["id"]) == ("last words", dying)
    assert line["faas.name"] == "orders-node"
    # The invocation that ended normally in the same process was settled by its record.
    done = await _found(es_url, es_prefix, finished)
    assert done["invocation"]["event.outcome"] == "success"
    reg = worker.registry
    fn = {"function": "orders-node", "version": "3", "environment": "test", "provider": "aws"}
    fn["region"] = "eu-west-1"
    assert reg.get_sample_value("faas_invocations_started_total", fn) == 2
    assert reg.get_sample_value("faas_invocations_unfinished_total", fn) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _http(url: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, str]:
    import urllib.request

    def call() -> tuple[int, str]:
        request = urllib.request.Request(url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()

    return await asyncio.to_thread(call)


async def _listening(port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    async def probe() -> bool | None:
        assert proc.returncode is None, f"{what} exited with {proc.returncode}"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return None
        writer.close()
        return True

    await apoll_until(probe, timeout=60, what=f"{what} listening on {port}")


Serve = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def serve(node_package: Path) -> AsyncIterator[Serve]:
    """``await serve(port, what, *argv, **kwargs)``: start a server process (output
    discarded) and wait until it listens on ``port``. Every one is ended (by its own
    pid) and reaped when the test is over."""
    started: list[asyncio.subprocess.Process] = []

    async def start(port: int, what: str, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, **kwargs
        )
        started.append(proc)
        await _listening(port, proc, what)
        return proc

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_functions_framework_http_function(
    serve: Serve, worker: Worker, es_url: str, es_prefix: str
) -> None:
    port = _free_port()
    ff = NODEJS / "node_modules" / ".bin" / "functions-framework"
    env = _node_env(
        worker, FUNCTION_TARGET="hello", FUNCTION_REGION="europe-west1", FUNCTION_MEMORY_MB="256"
    )
    await serve(
        port, "functions-framework",
        str(ff), "--target=hello", f"--source={FUNCTIONS}", f"--port={port}", env=env,
    )  # fmt: skip
    exec_id = f"gcp-{uuid.uuid4().hex[:16]}"
    status, text = await _http(f"http://127.0.0.1:{port}/", {"Function-Execution-Id": exec_id})
    assert (status, text) == (200, f"hello {exec_id}")
    view = await _found(es_url, es_prefix, exec_id)
    _check(view, exec_id, "gcp", "http")
    assert view["invocation"]["faas.cost.price_id"] == "gcp-gen2-tier1-2025-01"


def _built(script: str) -> Path:
    """A tool a project script builds once and caches under ~/.cache/faaslens."""
    done = subprocess.run(
        [str(ROOT / "scripts" / script)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"scripts/{script} failed:\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


# The first build of the runtime interface client (native curl and aws-lambda-cpp) takes
# minutes on 2 cores; later runs reuse it.
@pytest.mark.timeout(900)
async def test_lambda_runtime_interface_emulator_with_the_nodejs_ric(
    serve: Serve, worker: Worker, es_url: str, es_prefix: str
) -> None:
    rie = await asyncio.to_thread(_built, "build-rie")
    ric = await asyncio.to_thread(_built, "build-lambda-ric")
    port, api_port = _free_port(), _free_port()
    await serve(
        port, "the Lambda Runtime Interface Emulator",
        str(rie),
        f"--runtime-interface-emulator-address=127.0.0.1:{port}",
        f"--runtime-api-address=127.0.0.1:{api_port}",
        str(ric), "functions.lambdaHandler",
        cwd=str(FUNCTIONS.parent), env=_node_env(worker),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    status, text = await _http(url, {"Content-Type": "application/json"}, b'{"httpMethod": "GET"}')
    assert status == 200
    exec_id = json.loads(text)["requestId"]
    view = await _found(es_url, es_prefix, exec_id)
    _check(view, exec_id, "aws", "http")
    assert view["invocation"]["faas.coldstart"] is True
