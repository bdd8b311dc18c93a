"""docker-compose.yml, Dockerfile, the Prometheus configs and scripts/stack hang together.

No Docker engine (nor compose plugin) is needed: the files are checked statically,
and Prometheus configs with Debian's ``promtool``, which also validates the rule files.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from faaslens.ingest.config import IngestConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG_FLAGS = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(IngestConfig)}
SERVICES = {"elasticsearch", "kibana", "prometheus", "grafana", "worker"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def stack() -> ModuleType:
    """scripts/stack imported as a module (it has no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader("faaslens_stack", str(REPO / "scripts/stack"))
    spec = importlib.util.spec_from_loader("faaslens_stack", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    loader.exec_module(module)
    return module


def _flags(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def test_compose_has_every_service_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        image = service.get("image", "")
        if "build" not in service:
            assert re.search(r":v?\d+\.\d+\.\d+$", image), f"{name}: pin the image version"


def test_compose_publishes_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named, f"{name} uses undeclared volume {source}"


def test_compose_worker_uses_real_config_flags(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["command"][0] == "ingest"
    flags = _flags(worker["command"])
    assert flags <= CONFIG_FLAGS
    assert "--es-url" in flags
    assert "--es-url=http://elasticsearch:9200" in worker["command"]


def test_compose_prometheus_keeps_exemplars_and_rules(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    assert "--enable-feature=exemplar-storage" in prom["command"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in prom["volumes"]
    config = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    assert "/etc/prometheus/rules/*.yml" in config["rule_files"]
    (worker_job,) = [job for job in config["scrape_configs"] if job["job_name"] == "faaslens"]
    # Every replica: the service name resolves to one address per container.
    assert worker_job["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": 9108, "refresh_interval": "15s"}
    ]


def test_compose_worker_replicas_each_own_their_state(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    named = set(compose.get("volumes") or {})
    shared = [v for v in worker.get("volumes", []) if v.split(":", 1)[0] in named]
    assert shared == []  # a named volume would be one spool for every replica
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ENV FAASLENS_STATE_DIR=/app/var" in dockerfile
    assert 'VOLUME ["/app/var"]' in dockerfile  # anonymous: one per container
    published = {p.split(":", 1)[1] for p in worker["ports"]}
    assert published == {"8518-8520:8518/udp", "8518-8520:8518/tcp", "9108-9110:9108/tcp"}


def test_dockerfile_installs_the_worker_extra_and_runs_it() -> None:
    text = (REPO / "Dockerfile").read_text()
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    installed = re.findall(r"pip install '\.\[(\w+)\]'", text)
    assert installed == ["ingest"] and "ingest" in extras
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    assert cmd[0] == "ingest"
    assert _flags(cmd) <= CONFIG_FLAGS
    for copied in re.findall(r"^COPY (\S+) \./", text, re.M):
        if not copied.endswith("*"):
            assert (REPO / copied).exists(), f"Dockerfile copies missing {copied}"
    # The wheel built by `pip install .` carries the templates: they must be there first.
    assert text.index("COPY es-templates") < text.index("pip install")


def test_the_wheel_ships_every_elasticsearch_template() -> None:
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"
    ]
    shipped = {
        (target, path.name)
        for target, patterns in data_files.items()
        for pattern in patterns
        for path in REPO.glob(pattern)
    }
    on_disk = {
        (f"share/faaslens/{path.parent.relative_to(REPO).as_posix()}", path.name)
        for path in (REPO / "es-templates").rglob("*")
        if path.is_file()
    }
    assert on_disk and shipped == on_disk


def test_stack_generates_a_config_promtool_accepts(stack: ModuleType, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/test installs it)"
    rules = stack.rule_files()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        stack.prometheus_config(rules, str(tmp_path / "targets/*.json"), "5s", "127.0.0.1:9090")
    )

    parsed = yaml.safe_load(config.read_text())
    assert parsed["rule_files"] == [str(r) for r in rules]
    assert parsed["scrape_configs"][0]["job_name"] == "faaslens"
    # Also checks every rule file it names.
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool
    done = subprocess.run(
        [promtool, "check", "config", str(REPO / "prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_stack_cli_rejects_bad_usage_and_reports_json() -> None:
    script = str(REPO / "scripts/stack")
    bad = subprocess.run([sys.executable, script, "start"], capture_output=True, check=False)
    assert bad.returncode == 2
    status = subprocess.run(
        [sys.executable, script, "status", "all", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode in (0, 3)  # 3: something is stopped
    report = json.loads(status.stdout)
    assert [item["service"] for item in report] == ["es", "prometheus"]
    assert all(item["url"].startswith("http://127.0.0.1:") for item in report)


def test_the_built_wheel_installs_only_the_faaslens_import_name(tmp_path: Path) -> None:
    """A real wheel build: one top-level package, the folders mapped under it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("faaslens-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].startswith("faaslens-")}
    assert top == {"faaslens"}
    shipped = ("shipper/core.py", "ingest/runner.py", "ingest/sink_es/sink.py", "protocol.py")
    # The data files: the price table cost.py reads at import, the histogram buckets
    # protocol.py reads on first use.
    for module in (*shipped, "shipper/prices.json", "histogram_buckets.json"):
        assert f"faaslens/{module}" in names
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)
