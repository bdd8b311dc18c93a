"""Rate-limited rejection logging."""

from __future__ import annotations

import pytest
import structlog
from prometheus_client import CollectorRegistry

from faaslens.ingest.selfmetrics import RejectionLog, SelfMetrics


def test_one_line_per_reason_per_interval_with_count() -> None:
    now = [0.0]
    rl = RejectionLog(interval_s=10, clock=lambda: now[0])
    with structlog.testing.capture_logs() as logs:
        assert rl.note("frame", "bad_json") is True
        for _ in range(99):
            assert rl.note("frame", "bad_json") is False
        assert rl.note("frame", "too_large") is True  # another reason logs on its own
        now[0] = 10.0
        assert rl.note("frame", "bad_json", src="x") is True
    assert [(x["reason"], x["count"]) for x in logs] == [
        ("bad_json", 1),
        ("too_large", 1),
        ("bad_json", 100),
    ]
    assert logs[-1]["src"] == "x" and logs[-1]["log_level"] == "warning"


def test_kernel_drops_exposed_at_scrape() -> None:
    reg = CollectorRegistry()
    m = SelfMetrics(reg)
    drops = [3]
    m.watch_kernel_drops(lambda: drops[0])
    assert reg.get_sample_value("faaslens_udp_receive_buffer_drops_total") == 3
    drops[0] = 8
    assert reg.get_sample_value("faaslens_udp_receive_buffer_drops_total") == 8


@pytest.mark.parametrize("reason", ["queue_full", "shutdown"])
def test_drop_reasons_exist_from_start(reason: str) -> None:
    reg = CollectorRegistry()
    SelfMetrics(reg)
    assert reg.get_sample_value("faaslens_frames_dropped_total", {"reason": reason}) == 0
