"""``faaslens query`` against the real Elasticsearch, fed by the real worker.

Frames are packed by the shipper's wire code, sent over UDP to a real
:class:`ingest.runner.Worker` (real Elasticsearch sink, templates installed),
and read back through the CLI's ``main``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from faaslens.commandline import EXIT_ELASTICSEARCH, EXIT_EMPTY, EXIT_USAGE
from faaslens.ingest.config import IngestConfig
from faaslens.ingest.runner import Worker
from faaslens.query import cli
from faaslens.shipper.wire import Packer
from tests.support import delete_es_prefix, es_request, poll_until, worker_test_config

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
HOUR_MS = 3_600_000
RES = {
    "service.name": "shop",
    "service.environment": "test",
    "cloud.provider": "aws",
    "cloud.region": "eu-west-1",
    "faas.max_memory": 512 * 1024 * 1024,
}
STACK = 'Traceback (most recent call last):\n  File "handler.py", line 12, in pay\nTimeoutError'


def _ids() -> dict[str, str]:
    return {k: f"{k}-{secrets.token_hex(6)}" for k in ("cold", "slow", "keyerr", "old")}


def _events(ids: dict[str, str]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(resource, events) per invocation."""
    cold, slow, keyerr, old = ids["cold"], ids["slow"], ids["keyerr"], ids["old"]
    timeout = {
        "error.type": "TimeoutError",
        "error.message": "upstream payments timed out after 900 ms",
        "error.stack_trace": STACK,
        "error.grouping_key": "fp-timeout",
    }

    def inv(
        exec_id: str, ts: int, ms: int, outcome: str, cold: bool, **extra: Any
    ) -> dict[str, Any]:
        return {
            "t": "inv",
            "faas.execution": exec_id,
            "@timestamp": ts,
            "event.duration": ms * 1_000_000,
            "event.outcome": outcome,
            "faas.coldstart": cold,
            "faas.trigger.type": "http",
            "faas.billed_duration": ms + 1,
            "faas.mem_usage": 90 * 1024 * 1024,
            "faas.cost.usd": 0.0000021,
            **extra,
        }

    def log(exec_id: str, ts: int, seq: int, msg: str, level: str = "info", **extra: Any) -> Any:
        return {
            "t": "log",
            "faas.execution": exec_id,
            "@timestamp": ts,
            "event.sequence": seq,
            "log.level": level,
            "message": msg,
            **extra,
        }

    t0 = NOW_MS - 60_000
    checkout = {**RES, "faas.name": "checkout"}
    search = {**RES, "faas.name": "search"}
    return [
        (
            checkout,
            # Sent out of order, same millisecond: only event.sequence orders them.
            [
                log(cold, t0, 2, "third line"),
                log(cold, t0, 0, "first line"),
                log(cold, t0, 1, "second line"),
                inv(cold, t0, 120, "success", True, **{"faas.coldstart_duration": 300_000_000}),
            ],
        ),
        (
            checkout,
            [
                log(slow, t0 + 1000, 0, "charging card"),
                log(slow, t0 + 1900, 1, "payment failed", "error", **timeout),
                inv(slow, t0 + 1000, 950, "failure", False, **timeout),
            ],
        ),
        (
            search,
            [
                inv(
                    keyerr,
                    t0 + 2000,
                    30,
                    "failure",
                    False,
                    **{
                        "error.type": "KeyError",
                        "error.message": "missing key 'q'",
                        "error.grouping_key": "fp-key",
                    },
                )
            ],
        ),
        (checkout, [inv(old, NOW_MS - 3 * HOUR_MS, 800, "failure", False, **timeout)]),
    ]


async def _feed(config: IngestConfig, ids: dict[str, str]) -> None:
    async with Worker(config) as worker:
        assert worker.udp_address is not None
        seq = iter(range(1, 1000))
        packer = Packer("clitest" + secrets.token_hex(3), 1400, 65000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for res, events in _events(ids):
                for frame in packer.pack(orjson.dumps(res), events, lambda: next(seq)):
                    sock.sendto(frame, worker.udp_address)

        def indexed() -> bool:
            es_request(config.es_url, "POST", f"/{config.es_index_prefix}-*/_refresh")
            counts = {
                kind: es_request(
                    config.es_url, "GET", f"/{config.es_index_prefix}-{kind}-*/_count"
                )["count"]
                for kind in ("invocations", "logs", "errors")
            }
            return counts == {"invocations": 4, "logs": 5, "errors": 4}

        await asyncio.to_thread(poll_until, indexed, 60.0, 0.2, "documents indexed")


@pytest.fixture(scope="module")
def indexed(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Index the scenario once for the module; yields ids, prefix and URL."""
    prefix = "t" + secrets.token_hex(4)
    work: Path = tmp_path_factory.mktemp("query-cli")
    config = worker_test_config(
        es_url, prefix, work, tcp_listen="", http_listen="", batch_max_wait_s=0.05
    )
    ids = _ids()
    try:
        asyncio.run(_feed(config, ids))
        yield {"ids": ids, "prefix": prefix, "es_url": es_url}
    finally:
        delete_es_prefix(es_url, prefix)


def run(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any], *args: str
) -> tuple[int, str, str]:
    argv = [*args, "--es-url", indexed["es_url"], "--es-index-prefix", indexed["prefix"]]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_invocation_shows_record_logs_in_order_and_error(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]
) -> None:
    slow = indexed["ids"]["slow"]
    code, out, _ = run(capsys, indexed, "invocation", slow)
    assert code == 0
    assert f"invocation {slow}" in out
    assert "faas.name" in out and "checkout" in out
    assert "950.0ms" in out  # event.duration, humanized
    record_at, logs_at, errors_at = (
        out.index("faas.name"),
        out.index("logs ("),
        out.index("errors ("),
    )
    assert record_at < logs_at < errors_at
    assert out.index("charging card") < out.index("payment failed")
    assert "TimeoutError: upstream payments timed out after 900 ms" in out
    assert 'File "handler.py", line 12, in pay' in out  # the stack trace


def test_invocation_logs_are_ordered_by_sequence_not_arrival(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]
) -> None:
    code, out, _ = run(capsys, indexed, "invocation", indexed["ids"]["cold"], "--json")
    assert code == 0
    view = json.loads(out)
    assert view["invocation"]["faas.coldstart"] is True
    assert [line["event.sequence"] for line in view["logs"]] == [0, 1, 2]
    assert [line["message"] for line in view["logs"]] == ["first line", "second line", "third line"]
    assert view["errors"] == []


def test_unknown_invocation_is_a_clear_miss(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]
) -> None:
    code, out, err = run(capsys, indexed, "invocation", "no-such-invocation")
    assert code == EXIT_EMPTY
    assert out == ""
    assert "no invocation 'no-such-invocation'" in err


def test_invocations_filters(capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]) -> None:
    ids = indexed["ids"]

    def listed(*args: str) -> list[str]:
        code, out, _ = run(capsys, indexed, "invocations", "--json", *args)
        assert code == 0, args
        return [d["faas.execution"] for d in json.loads(out)]

    assert set(listed()) == {ids["cold"], ids["slow"], ids["keyerr"]}  # default: last hour
    assert listed("--since", "4h")[-1] == ids["old"]  # newest first
    assert listed("--function", "checkout", "--outcome", "failure") == [ids["slow"]]
    assert set(listed("--function", "checkout", "--outcome", "failure", "--since", "4h")) == {
        ids["slow"],
        ids["old"],
    }
    assert listed("--coldstart") == [ids["cold"]]
    assert set(listed("--no-coldstart")) == {ids["slow"], ids["keyerr"]}
    assert listed("--min-duration", "500") == [ids["slow"]]
    assert len(listed("--since", "4h", "--limit", "2")) == 2
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((NOW_MS - 2 * HOUR_MS) / 1000))
    assert listed("--since", "1d", "--until", until) == [ids["old"]]


def test_invocations_table(capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]) -> None:
    code, out, _ = run(capsys, indexed, "invocations", "--outcome", "failure")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "time",
        "function",
        "invocation",
        "id",
        "outcome",
        "cold",
        "duration",
        "error",
    ]
    assert any(indexed["ids"]["slow"] in line and "TimeoutError" in line for line in lines)
    assert any(indexed["ids"]["keyerr"] in line and "KeyError" in line for line in lines)


def test_invocations_nothing_matches(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]
) -> None:
    code, _, err = run(capsys, indexed, "invocations", "--function", "nope")
    assert code == EXIT_EMPTY
    assert "no invocations match" in err


def test_errors_grouped_by_fingerprint(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]
) -> None:
    code, out, _ = run(capsys, indexed, "errors", "--json")
    assert code == 0
    groups = {g["grouping_key"]: g for g in json.loads(out)}
    assert set(groups) == {"fp-timeout", "fp-key"}
    timeout = groups["fp-timeout"]
    # the failed invocations (slow, old) and the error log line of slow
    assert timeout["count"] == 3
    assert timeout["first_seen"] == NOW_MS - 3 * HOUR_MS
    assert timeout["last_seen"] == NOW_MS - 60_000 + 1900
    assert timeout["error_type"] == "TimeoutError"
    assert timeout["sample_invocation_id"] == indexed["ids"]["slow"]
    assert timeout["functions"] == ["checkout"]
    assert groups["fp-key"]["count"] == 1
    assert list(groups) == ["fp-timeout", "fp-key"]  # most frequent first


def test_errors_text_search_and_since(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]
) -> None:
    code, out, _ = run(capsys, indexed, "errors", "payments", "timed", "--json")
    assert code == 0
    assert [g["grouping_key"] for g in json.loads(out)] == ["fp-timeout"]
    code, out, _ = run(capsys, indexed, "errors", "--since", "1h", "--json")
    assert {g["grouping_key"]: g["count"] for g in json.loads(out)} == {
        "fp-timeout": 2,
        "fp-key": 1,
    }
    code, out, _ = run(capsys, indexed, "errors", "--type", "KeyError")
    assert code == 0
    assert "fp-key" in out and "fp-timeout" not in out
    assert out.splitlines()[0].split()[:3] == ["count", "first", "seen"]


def test_errors_nothing_matches(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any]
) -> None:
    code, _, err = run(capsys, indexed, "errors", "zzzznomatch")
    assert code == EXIT_EMPTY
    assert "no errors match" in err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("command", [["invocation", "x"], ["invocations"], ["errors"]])
def test_unreachable_elasticsearch_is_a_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    code = cli.main([*command, "--es-url", url, "--es-request-timeout-s", "2"])
    out, err = capsys.readouterr()
    assert code == EXIT_ELASTICSEARCH
    assert out == ""
    assert f"cannot reach Elasticsearch at {url}" in err
    assert "Traceback" not in err


def test_es_url_comes_from_the_environment(
    capsys: pytest.CaptureFixture[str], indexed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAASLENS_ES_URL", indexed["es_url"])
    prefix = indexed["prefix"]
    code = cli.main(["invocation", indexed["ids"]["keyerr"], "--es-index-prefix", prefix])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "KeyError: missing key 'q'" in out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["invocations", "--since", "yesterday-ish"])
    assert exc.value.code == EXIT_USAGE
    assert "bad time" in capsys.readouterr().err


def test_console_script_runs_the_query_command(indexed: dict[str, Any]) -> None:
    """``faaslens query ...`` through the installed entry point, as a user types it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "faaslens.cli",
            "query",
            "errors",
            "timed",
            "--es-url",
            indexed["es_url"],
            "--es-index-prefix",
            indexed["prefix"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "fp-timeout" in done.stdout and "fp-key" not in done.stdout
