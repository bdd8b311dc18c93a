"""The demo fleet: valid frames for the worker, every provider shape, stable fingerprints."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest

from faaslens.demo import main, run_demo
from faaslens.ingest.validate import Validator
from tests.unit.shipper.kit import Receiver


def test_demo_frames_are_all_accepted_by_the_worker() -> None:
    rx = Receiver()
    try:
        stats = run_demo(rx.endpoint, rate=400, duration=1.0, seed=3, progress=False)
        frames = rx.frames()
    finally:
        rx.close()
    assert stats.invocations >= 300 and stats.send_errors == 0
    assert stats.frames_sent == len(frames)
    validator = Validator()
    kinds: Counter[str] = Counter()
    providers, envs, triggers = set(), set(), set()
    fingerprints: dict[tuple[str, str], set[str]] = defaultdict(set)
    starts = 0
    for frame in frames:
        result = validator.validate(frame)
        assert result.rejected is None and result.event_rejections == []
        assert result.unknown_fields == 0
        starts += len(result.starts)
        for doc in result.docs:
            kinds[doc.kind] += 1
            src = orjson.loads(doc.source)
            providers.add(src["cloud.provider"])
            envs.add(src.get("service.environment"))
            if doc.kind == "invocations":
                triggers.add(src.get("faas.trigger.type"))
            if doc.kind == "errors" and "faas.coldstart" in src:
                fingerprints[(src["faas.name"], src["error.type"])].add(src["error.grouping_key"])
    assert starts == stats.invocations  # every invocation announced its start
    assert kinds["invocations"] == stats.invocations - stats.crashes  # the dead send no record
    assert stats.crashes > 0
    assert kinds["logs"] > stats.invocations
    assert kinds["errors"] >= stats.errors > 0
    assert providers == {"aws", "azure", "gcp"}
    assert envs == {"prod", "staging"}
    assert triggers == {"http", "pubsub", "timer", "datasource"}
    assert fingerprints and all(len(keys) == 1 for keys in fingerprints.values())


def test_demo_command_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse refuses a bad number itself: the same exit status 2, one line naming it.
    with pytest.raises(SystemExit) as exited:
        main(["--rate", "0", "--no-progress"])
    assert exited.value.code == 2
    assert "--rate" in capsys.readouterr().err
    assert main(["--endpoint", "http://nope:1", "--no-progress"]) == 2
