"""The Prometheus rules are valid and their alerts fire (and stay quiet) as intended."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "prometheus" / "rules" / "faaslens.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)


def test_rules_check() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_unit_tests() -> None:
    done = _promtool("test", "rules", str(Path(__file__).parent / "rules_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_worker_failure_mode_has_an_alert() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    exprs = " ".join(r["expr"] for g in groups for r in g["rules"] if "alert" in r)
    for metric in (
        "faas_errors_total",  # via the recorded error ratio
        "faaslens_frames_lost_total",
        "faaslens_udp_receive_buffer_drops_total",
        "faaslens_frames_dropped_total",
        "faaslens_events_rejected_total",
        "faaslens_frames_rejected_total",
        "faaslens_docs_failed_total",
        "faaslens_es_up",
        "faaslens_spool_bytes",
    ):
        recorded = " ".join(r["expr"] for g in groups for r in g["rules"] if "record" in r)
        assert metric in exprs or metric in recorded, metric
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert {"FaasHighErrorRatio", "FaasHighLatencyP95", "FaasHighColdStartRatio"} <= alerts
    assert "FaasCostBurnAboveBudget" in alerts
    assert "FaasInvocationsUnfinished" in alerts
    assert "faas_invocations_unfinished_total" in exprs
