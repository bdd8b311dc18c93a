"""scripts/run end to end: templates, a real worker, demo traffic into the real
Elasticsearch, and an orderly worker stop (after the demo, and on Ctrl-C).

The script runs with ``--no-stack`` against the tests' Elasticsearch and on
free ports, so it leaves the local stack and other runs alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import es_request, http_json, poll_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    # UDP and TCP share the worker's port number: find one free for both.
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@pytest.fixture
def run_env(es_url: str, es_prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    data_port, http_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "ES_URL": es_url,
        "FAASLENS_ES_INDEX_PREFIX": es_prefix,
        "FAASLENS_UDP_LISTEN": f"127.0.0.1:{data_port}",
        "FAASLENS_TCP_LISTEN": f"127.0.0.1:{data_port}",
        "FAASLENS_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "FAASLENS_STACK_DIR": str(tmp_path / "stack"),
    }
    env.pop("FAASLENS_ENDPOINT", None)
    yield env


def _count(es_url: str, prefix: str) -> int:
    es_request(es_url, "POST", f"/{prefix}-invocations-*/_refresh?allow_no_indices=true")
    body = es_request(es_url, "GET", f"/{prefix}-invocations-*/_count?allow_no_indices=true")
    count: int = body["count"]
    return count


def test_run_sends_demo_traffic_and_stops_the_worker(
    run_env: dict[str, str], es_url: str, es_prefix: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            str(REPO / "scripts/run"),
            "--no-install",
            "--no-stack",
            "--once",
            "--rate",
            "50",
            "--duration",
            "2",
        ],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worker exited with status 0" in done.stderr
    # The worker flushed before exiting: everything it received is searchable.
    assert _count(es_url, es_prefix) > 0
    log = (tmp_path / "stack" / "worker" / "worker.log").read_text()
    assert "worker stopped" in log
    assert not (tmp_path / "stack" / "worker" / "worker.pid").exists()


def test_ctrl_c_stops_the_worker_gracefully(run_env: dict[str, str], tmp_path: Path) -> None:
    http = run_env["FAASLENS_HTTP_LISTEN"]
    # Its own process group, like a terminal's foreground job: Ctrl-C goes to the group.
    proc = subprocess.Popen(
        [
            str(REPO / "scripts/run"),
            "--no-install",
            "--no-stack",
            "--rate",
            "20",
            "--duration",
            "600",
        ],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        poll_until(lambda: _ready(http) or proc.poll() is not None, timeout=90, what="worker ready")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, output[-3000:]
    assert "worker exited with status 0" in output
    assert "worker stopped" in (tmp_path / "stack" / "worker" / "worker.log").read_text()
    assert not _ready(http)


def _ready(hostport: str) -> bool:
    try:
        return http_json("GET", f"http://{hostport}/readyz", timeout=2)[0] == 200
    except OSError:
        return False
