"""``faaslens setup`` against the real Elasticsearch: what a refusal and an unreachable
cluster look like to the person running it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faaslens.commandline import EXIT_ELASTICSEARCH
from faaslens.ingest.setup import main as setup_main
from tests.unit.test_cli import closed_port

pytestmark = pytest.mark.integration


def test_refused_templates_are_one_line_with_elasticsearch_reason(
    es_url: str, es_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "component").mkdir()
    (tmp_path / "index").mkdir()
    bad = {"template": {"settings": {"number_of_shards": "many"}}}
    (tmp_path / "component" / "bad.json").write_text(json.dumps(bad))
    index = {"index_patterns": ["{{prefix}}-x-*"], "composed_of": ["{{prefix}}-bad"]}
    (tmp_path / "index" / "x.json").write_text(json.dumps(index))
    args = ["--es-url", es_url, "--es-index-prefix", es_prefix]
    code = setup_main([*args, "--es-templates-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == EXIT_ELASTICSEARCH
    assert err.splitlines() == [
        f"faaslens setup: Elasticsearch at {es_url} refused the templates (400): "
        "Failed to parse value [many] for setting [index.number_of_shards]"
    ]


def test_unreachable_elasticsearch_names_the_cause(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code = setup_main(["--es-url", url, "--es-index-prefix", "tnever"])
    err = capsys.readouterr().err
    assert code == EXIT_ELASTICSEARCH
    assert err.startswith(f"faaslens setup: cannot reach Elasticsearch at {url} (")
    assert "Connect call failed" in err and len(err.splitlines()) == 1
