"""Fixtures for the real services: Elasticsearch and Prometheus.

* ``es_url``: ``$ES_URL`` if set; else a testcontainers Elasticsearch when a Docker
  engine answers; else the local stack (``scripts/stack up es``).
* ``es_prefix``: a unique index prefix per test; its indices and templates are
  deleted afterwards.
* ``prometheus``: a Prometheus of our own for the whole test run (a process of the Debian
  binary, or a container when Docker answers) scraping every second through file_sd.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.stack import run_stack
from tests.runtimes import GcpRuntime, LambdaRuntime, runtimes
from tests.runtimes import Receiver as UdpReceiver
from tests.support import Prometheus, delete_es_prefix, http_json, poll_until

REPO = Path(__file__).resolve().parent.parent
STACK_SCRIPT = REPO / "scripts" / "stack"
RULES_DIR = REPO / "prometheus" / "rules"
PROMETHEUS_BIN = "/usr/bin/prometheus"
ES_IMAGE = "docker.elastic.co/elasticsearch/elasticsearch:8.19.21"
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
START_TIMEOUT_S = 120.0


def _docker_available() -> bool:
    """True when a Docker engine answers quickly (the CLI alone is not enough)."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


# Loaded here, not in the forked child: dlopen there could block on a lock another thread held.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when pytest dies, even from SIGKILL."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _es_healthy(url: str) -> bool:
    try:
        status, body = http_json(
            "GET", f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=5
        )
    except OSError:
        return False
    return status == 200 and body.get("status") in ("green", "yellow")


# ---------------------------------------------------------------- Elasticsearch


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """Base URL of a real Elasticsearch 8.19 (no trailing slash), healthy when yielded."""
    url = os.environ.get("ES_URL", "").rstrip("/")
    container: Any = None
    if not url and _docker_available():
        try:
            from testcontainers.community.elasticsearch import ElasticSearchContainer
        except ImportError:  # testcontainers before the "community" split
            from testcontainers.elasticsearch import ElasticSearchContainer

        container = ElasticSearchContainer(ES_IMAGE, mem_limit="2g").with_env(
            "ES_JAVA_OPTS", "-Xms1g -Xmx1g"
        )
        container.start()
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(9200)}"
    elif not url:
        subprocess.run([str(STACK_SCRIPT), "up", "es"], check=True)
        status = subprocess.run(
            [str(STACK_SCRIPT), "status", "es", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        url = json.loads(status.stdout)[0]["url"]
    try:
        poll_until(lambda: _es_healthy(url), timeout=START_TIMEOUT_S, what=f"{url} healthy")
        yield url
    finally:
        if container is not None:
            container.stop()


@pytest.fixture
def es_prefix(es_url: str) -> Iterator[str]:
    """A fresh ``t<8 hex>`` prefix; indices and templates ``<prefix>-*`` are removed after."""
    prefix = "t" + secrets.token_hex(4)
    yield prefix
    delete_es_prefix(es_url, prefix)


def _stack_node(service: str) -> list[dict[str, Any]]:
    """Start a test node of ``scripts/stack`` (a no-op when it runs) and return its status.

    Started once per run (``scripts/test`` starts them up front; a node left running from
    an earlier run is reused); its own port and state directory, never the shared node's.
    """
    run_stack("up", service)
    return run_stack("status", service)


@pytest.fixture(scope="session")
def es_secure() -> dict[str, Any]:
    """The secured node: ``url``, ``ca_certs``, ``fingerprint``, ``admin`` / ``writer`` /
    ``reader`` (``username``, ``password``, ``role``) and the worker's ``api_key``
    (``id``, ``encoded``) made by ``scripts/stack`` with the writer role only."""
    (node,) = _stack_node("es-secure")
    creds: dict[str, Any] = json.loads(Path(node["credentials"]).read_text())
    return creds


@pytest.fixture(scope="session")
def es_cluster() -> list[str]:
    """URLs of the 2-node test cluster (node 1 master + data, node 2 data only)."""
    return [node["url"] for node in _stack_node("es-cluster")]


# ---------------------------------------------------------------- Prometheus


def _prometheus_config(workdir: Path, rule_files: list[str]) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": "faaslens",
                "file_sd_configs": [
                    {"files": [str(workdir / "targets.json")], "refresh_interval": "1s"}
                ],
            }
        ],
    }
    path = workdir / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    (workdir / "targets.json").write_text("[]")
    return path


def _prometheus_args(workdir: Path, config: Path, port: int) -> list[str]:
    return [
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        # Also makes Prometheus ask targets for OpenMetrics, the format that carries exemplars.
        "--enable-feature=exemplar-storage",
    ]


def _wait_ready(url: str, alive: Callable[[], bool], logs: Callable[[], str]) -> None:
    def ready() -> bool:
        if not alive():
            raise RuntimeError(f"prometheus exited:\n{logs()[-3000:]}")
        try:
            return http_json("GET", f"{url}/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    poll_until(ready, timeout=START_TIMEOUT_S, interval=0.1, what=f"{url}/-/ready")


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus for the whole test run; see :class:`tests.support.Prometheus`."""
    workdir = tmp_path_factory.mktemp("prometheus")
    rule_files = [str(p) for p in sorted(RULES_DIR.glob("*.yml"))]
    log = workdir / "prometheus.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    if _docker_available():
        yield from _prometheus_container(workdir, rule_files, port)
        return
    config = _prometheus_config(workdir, rule_files)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PROMETHEUS_BIN, *_prometheus_args(workdir, config, port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509  (a single prctl call, libc preloaded)
        )
    try:
        _wait_ready(url, lambda: proc.poll() is None, lambda: log.read_text(errors="replace"))
        yield Prometheus(url, workdir / "targets.json")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _prometheus_container(workdir: Path, rule_files: list[str], port: int) -> Iterator[Prometheus]:
    """The same Prometheus in a container; host networking so 127.0.0.1 targets resolve."""
    from testcontainers.core.container import DockerContainer

    mounted_rules = [f"/rules/{Path(p).name}" for p in rule_files]
    config = _prometheus_config(workdir, [])
    # Paths inside the container: the work dir is mounted at the same place.
    data = json.loads(config.read_text())
    data["rule_files"] = mounted_rules
    config.write_text(json.dumps(data, indent=2))
    container = (
        DockerContainer(PROMETHEUS_IMAGE)
        .with_volume_mapping(str(workdir), str(workdir), "rw")
        .with_command(_prometheus_args(workdir, config, port))
        .with_kwargs(network_mode="host", user=f"{os.getuid()}:{os.getgid()}")
    )
    if rule_files:
        container.with_volume_mapping(str(RULES_DIR), "/rules", "ro")
    container.start()
    url = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        return bool(wrapped.status == "running")

    def logs() -> str:
        out, err = container.get_logs()
        return bytes(out + err).decode(errors="replace")

    try:
        _wait_ready(url, alive, logs)
        yield Prometheus(url, workdir / "targets.json")
    finally:
        container.stop()


# ---------------------------------------------------------------- real function runtimes


@pytest.fixture
def udp_receiver() -> Iterator[UdpReceiver]:
    """A UDP socket collecting the frames a shipper in another process sends."""
    rx = UdpReceiver()
    try:
        yield rx
    finally:
        rx.close()


@pytest.fixture
def lambda_runtime(tmp_path: Path) -> Iterator[Callable[..., LambdaRuntime]]:
    """``start(source, env={...}, timeout_s=3, handler="app.handler") -> LambdaRuntime``:
    the module ``source`` under the Lambda emulator + awslambdaric; stopped afterwards."""
    yield from runtimes(tmp_path, "lambda")


@pytest.fixture
def gcp_runtime(tmp_path: Path) -> Iterator[Callable[..., GcpRuntime]]:
    """``start(source, target=, signature="http"|"cloudevent", env={...}) -> GcpRuntime``:
    the module ``source`` served by functions-framework; stopped afterwards."""
    yield from runtimes(tmp_path, "gcp")
