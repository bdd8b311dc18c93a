"""Worker health: what the ingest workers receive, reject, lose and index."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import prometheus

from grafana.kit import (
    UID_WORKER,
    Board,
    increase,
    prom,
    prom_var,
    quantiles,
    rate,
    stat,
    timeseries,
)

#: Every panel filters on the picked workers (their scrape instance).
INST = 'instance=~"$instance"'


def _series(metric: str, legend: str, by: str = "") -> prometheus.Dataquery:
    """``metric`` per second over the picked workers, summed (by ``by`` when given)."""
    return prom(rate(metric, by=by, selector=INST), legend)


def _net_lost(func: Callable[..., str], window: str | None) -> str:
    """Sequence gaps minus the late frames that filled them (both counters only grow)."""
    args = (window,) if window else ()
    gaps = func("faaslens_frames_lost_total", *args, by="", selector=INST)
    late = func("faaslens_frames_late_total", *args, by="", selector=INST)
    return f"{gaps} - {late}"


def build() -> Board:
    board = Board(UID_WORKER, "faaslens / Worker health", time_from="now-1h")
    board.variables(
        prom_var("instance", "label_values(faaslens_datagrams_received_total, instance)")
    )
    queue = f"sum(faaslens_queue_depth{{{INST}}})"
    spool = f"sum(faaslens_spool_bytes{{{INST}}})"
    return board.add(
        stat(
            "Elasticsearch reachable",
            prom(f"min(faaslens_es_up{{{INST}}})", "up", instant=True),
            unit="bool_yes_no",
        ),
        stat("Queue depth", prom(queue, "queue"), unit="short"),
        stat("Spool size", prom(spool, "spool"), unit="bytes"),
        stat(
            "Frames lost (range)",
            prom(_net_lost(increase, "$__range"), "lost"),
            unit="short",
        ),
        timeseries(
            "Received",
            [
                _series("faaslens_datagrams_received_total", "datagrams/s"),
                _series("faaslens_events_accepted_total", "accepted {{type}}/s", by="type"),
            ],
        ),
        timeseries(
            "Bytes received",
            _series("faaslens_received_bytes_total", "{{transport}} bytes/s", by="transport"),
            unit="Bps",
        ),
        timeseries(
            "Rejected by reason",
            [
                _series("faaslens_frames_rejected_total", "frame {{reason}}", by="reason"),
                _series("faaslens_events_rejected_total", "event {{reason}}", by="reason"),
                _series("faaslens_unknown_fields_total", "unknown fields dropped"),
            ],
        ),
        timeseries(
            "Lost",
            [
                prom(
                    _net_lost(rate, None),
                    "lost before the worker (sequence gaps, net of late frames)",
                ),
                _series(
                    "faaslens_frames_dropped_total",
                    "dropped by the worker ({{reason}})",
                    by="reason",
                ),
                _series("faaslens_udp_receive_buffer_drops_total", "of the gaps: kernel buffer"),
            ],
            description="Frames that never reached the worker (sequence gaps, net of late "
            "frames) and frames the worker dropped itself are disjoint: their sum is what "
            "this worker lost. Kernel receive buffer drops are part of the gaps, not in "
            "addition. Gaps are exact only while each sender reaches one worker; across "
            "workers and restarts use `faaslens query loss`.",
        ),
        timeseries(
            "Indexed / failed documents",
            [
                _series("faaslens_docs_indexed_total", "indexed {{index_kind}}", by="index_kind"),
                _series("faaslens_docs_failed_total", "failed {{reason}}", by="reason"),
                _series("faaslens_dead_letter_total", "dead-lettered"),
                _series("faaslens_bulk_retries_total", "bulk retries {{reason}}", by="reason"),
            ],
        ),
        timeseries(
            "Bulk request latency",
            quantiles(
                "faaslens_bulk_duration_seconds",
                ["0.5", "0.95", "0.99"],
                by="le",
                selector=INST,
                legend="",
            ),
            unit="s",
        ),
        timeseries(
            "Queue depth and spool",
            [prom(queue, "queue depth"), prom(spool, "spool bytes")],
        ),
        timeseries(
            "Pending starts",
            [
                prom(f"sum(faaslens_pending_invocations{{{INST}}})", "pending"),
                _series("faaslens_pending_overflow_total", "not tracked (table full)/s"),
                _series("faaslens_unfinished_replaced_total", "late records replacing/s"),
            ],
            description="Started invocations waiting for their record (each is settled by "
            "its record or, past its timeout plus grace, as unfinished); starts refused "
            "because pending_max was reached; records that came after their invocation had "
            "been settled as unfinished.",
        ),
    )
