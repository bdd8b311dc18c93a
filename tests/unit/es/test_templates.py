"""The template files: valid, fully rendered for a prefix, mappings that fit the protocol."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from faaslens.ingest.config import REPO_ROOT, ConfigError, IngestConfig
from faaslens.ingest.templates import (
    check_prefix,
    composed_mappings,
    load_templates,
    render,
    templates_for,
)

TEMPLATES = REPO_ROOT / "es-templates"


def _leaf_types(mappings: dict[str, Any], path: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in mappings.get("properties", {}).items():
        full = f"{path}{name}"
        if "type" in spec and spec["type"] != "object":
            out[full] = spec["type"]
        if "properties" in spec:
            out |= _leaf_types(spec, full + ".")
    return out


def test_every_placeholder_is_rendered() -> None:
    templates = load_templates(TEMPLATES, "acme", shards=3, replicas=1)
    raw = orjson.dumps({"c": templates.components, "i": templates.indices})
    assert b"{{" not in raw
    assert set(templates.indices) == {"acme-invocations", "acme-logs", "acme-errors"}
    settings = templates.components["acme-settings"]["template"]["settings"]["index"]
    assert settings["number_of_shards"] == "3" and settings["number_of_replicas"] == "1"
    assert settings["mapping"]["total_fields"]["limit"] == 1000
    for kind in ("invocations", "logs", "errors"):
        body = templates.indices[f"acme-{kind}"]
        assert body["index_patterns"] == [f"acme-{kind}-*"]
        assert all(name in templates.components for name in body["composed_of"])


def test_mappings_cover_the_protocol_fields_with_the_right_types() -> None:
    templates = templates_for(IngestConfig(es_index_prefix="fl"))
    inv = _leaf_types(composed_mappings(templates, "fl-invocations"))
    logs = _leaf_types(composed_mappings(templates, "fl-logs"))
    errors = _leaf_types(composed_mappings(templates, "fl-errors"))
    assert composed_mappings(templates, "fl-logs")["dynamic"] == "strict"
    assert inv["@timestamp"] == "date"
    for field in ("event.duration", "faas.billed_duration", "faas.mem_usage", "faas.max_memory"):
        assert inv[field] == "long", field
    assert inv["faas.coldstart"] == "boolean"
    assert inv["faas.cost.usd"] == "double"
    for field in ("faas.execution", "trace.id", "span.id", "error.type", "cloud.provider"):
        assert inv[field] == "keyword", field
    assert inv["labels"] == "flattened"
    assert logs["message"] == "text" and logs["event.sequence"] == "long"
    assert errors["error.stack_trace"] == "text" and errors["log.level"] == "keyword"
    assert "faas.cost.usd" not in logs  # strict per kind: a log never carries cost


def test_composing_does_not_alter_the_templates() -> None:
    templates = load_templates(TEMPLATES, "fl")
    before = copy.deepcopy(templates.components)
    for name in templates.indices:
        composed_mappings(templates, name)
    assert templates.components == before


@pytest.mark.parametrize("prefix", ["faaslens", "t0a1b2c3", "team.a-1", "a_b"])
def test_good_prefixes(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "Faaslens", "-x", "_x", "a b", "a*", "a,b", "x" * 65])
def test_bad_prefixes_are_config_errors(prefix: str) -> None:
    with pytest.raises(ConfigError):
        check_prefix(prefix)


def test_unknown_placeholder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nope"):
        render({"a": ["{{nope}}"]}, {"prefix": "x"})


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^es_templates_dir '.*': no component/ folder"):
        load_templates(tmp_path, "fl")


def test_templates_are_found_in_the_source_tree_then_where_the_wheel_puts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faaslens.ingest.config as config_module

    assert IngestConfig().es_templates_dir == str(REPO_ROOT / "es-templates")

    # Installed from a wheel: no source tree next to the package, a copy under <prefix>/share.
    site_packages = tmp_path / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    monkeypatch.setattr(config_module, "REPO_ROOT", site_packages)
    monkeypatch.setattr(config_module.site, "getuserbase", lambda: str(tmp_path / "user"))
    monkeypatch.setattr(config_module.sysconfig, "get_path", lambda name: str(tmp_path))
    assert IngestConfig().es_templates_dir == str(site_packages / "es-templates")  # none yet

    user_copy = tmp_path / "user" / "share" / "faaslens" / "es-templates"
    user_copy.mkdir(parents=True)
    assert IngestConfig().es_templates_dir == str(user_copy)
    prefix_copy = tmp_path / "share" / "faaslens" / "es-templates"
    prefix_copy.mkdir(parents=True)
    assert IngestConfig().es_templates_dir == str(prefix_copy)
