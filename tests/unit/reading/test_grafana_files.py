"""Static checks of the Grafana provisioning files and the generated dashboards.

The accepted keys below are written from Grafana's provisioning documentation
(https://grafana.com/docs/grafana/latest/administration/provisioning/,
"Data sources" and "Dashboards" sections) and the Prometheus / Elasticsearch
data source pages (jsonData options).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import generate
from grafana.emulate import (
    VARIABLE_RE,
    Variables,
    es_search_body,
    iter_targets,
    load_dashboards,
    prom_variable_query,
)

REPO = Path(__file__).resolve().parents[3]
GRAFANA = REPO / "grafana"
DASHBOARDS = load_dashboards(GRAFANA / "dashboards")

# -- Grafana's documented provisioning schema --------------------------------------------

DATASOURCE_FILE_KEYS = {
    "apiVersion": int,
    "datasources": list,
    "deleteDatasources": list,
    "prune": bool,
}
DATASOURCE_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "type": str,
    "access": str,
    "orgId": int,
    "uid": str,
    "url": str,
    "user": str,
    "database": str,
    "basicAuth": bool,
    "basicAuthUser": str,
    "withCredentials": bool,
    "isDefault": bool,
    "jsonData": dict,
    "secureJsonData": dict,
    "version": int,
    "editable": bool,
}
REQUIRED_DATASOURCE_KEYS = {"name", "type"}
ACCESS_VALUES = {"proxy", "direct"}
PROMETHEUS_JSONDATA: dict[str, type | tuple[type, ...]] = {
    "httpMethod": str,
    "timeInterval": str,
    "queryTimeout": str,
    "prometheusType": str,
    "prometheusVersion": str,
    "manageAlerts": bool,
    "cacheLevel": str,
    "incrementalQuerying": bool,
    "incrementalQueryOverlapWindow": str,
    "disableRecordingRules": bool,
    "customQueryParameters": str,
    "exemplarTraceIdDestinations": list,
}
EXEMPLAR_DESTINATION_KEYS = {"name": str, "datasourceUid": str, "url": str, "urlDisplayLabel": str}
ELASTICSEARCH_JSONDATA: dict[str, type | tuple[type, ...]] = {
    "index": str,
    "interval": str,
    "timeField": str,
    "timeInterval": str,
    "esVersion": str,
    "maxConcurrentShardRequests": int,
    "logMessageField": str,
    "logLevelField": str,
    "includeFrozen": bool,
    "dataLinks": list,
}
ES_DATALINK_KEYS = {"field": str, "url": str, "urlDisplayLabel": str, "datasourceUid": str}
PROVIDER_FILE_KEYS = {"apiVersion": int, "providers": list}
PROVIDER_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "orgId": int,
    "folder": str,
    "folderUid": str,
    "type": str,
    "disableDeletion": bool,
    "updateIntervalSeconds": int,
    "allowUiUpdates": bool,
    "options": dict,
}
PROVIDER_OPTIONS = {"path": str, "foldersFromFilesStructure": bool}


def _check_keys(where: str, obj: dict[str, Any], schema: dict[str, Any]) -> None:
    unknown = set(obj) - set(schema)
    assert not unknown, f"{where}: keys Grafana does not know: {sorted(unknown)}"
    for key, value in obj.items():
        assert isinstance(value, schema[key]), f"{where}.{key}: {value!r} is not {schema[key]}"


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


DATASOURCES = _yaml(GRAFANA / "provisioning" / "datasources" / "faaslens.yml")["datasources"]
DS_BY_UID = {ds["uid"]: ds for ds in DATASOURCES}
UIDS = {d["uid"] for d in DASHBOARDS.values()}


def test_generated_dashboards_are_up_to_date() -> None:
    """The JSON files are what the builders make now: regenerated in memory and compared."""
    made = generate.rendered()
    for name, text in made.items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, (
            f"{name} is out of date: run python -m grafana.generate"
        )
    assert (
        set(DASHBOARDS)
        == set(made)
        == {
            "overview.json",
            "invocations.json",
            "errors.json",
            "worker-health.json",
            "seed-compat.json",
        }
    )


def test_stale_check_names_changed_missing_and_unknown_files(tmp_path: Path) -> None:
    for path in (GRAFANA / "dashboards").glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    assert generate.stale(tmp_path) == []
    (tmp_path / "errors.json").write_text((tmp_path / "errors.json").read_text() + " ")
    (tmp_path / "overview.json").unlink()
    (tmp_path / "hand-made.json").write_text("{}")
    assert generate.stale(tmp_path) == ["errors.json", "hand-made.json", "overview.json"]


def test_datasource_file_matches_grafana_schema() -> None:
    data = _yaml(GRAFANA / "provisioning" / "datasources" / "faaslens.yml")
    _check_keys("file", data, DATASOURCE_FILE_KEYS)
    assert data["apiVersion"] == 1
    for ds in data["datasources"]:
        where = ds.get("name", "?")
        _check_keys(where, ds, DATASOURCE_KEYS)
        assert set(ds) >= REQUIRED_DATASOURCE_KEYS
        assert ds["access"] in ACCESS_VALUES
        schema = PROMETHEUS_JSONDATA if ds["type"] == "prometheus" else ELASTICSEARCH_JSONDATA
        _check_keys(f"{where}.jsonData", ds["jsonData"], schema)
        for dest in ds["jsonData"].get("exemplarTraceIdDestinations", []):
            _check_keys(f"{where}.exemplar", dest, EXEMPLAR_DESTINATION_KEYS)
            assert "datasourceUid" in dest or "url" in dest
        for link in ds["jsonData"].get("dataLinks", []):
            _check_keys(f"{where}.dataLink", link, ES_DATALINK_KEYS)


def test_datasources_have_the_fixed_uids_and_indices() -> None:
    assert set(DS_BY_UID) == {
        "faaslens-prom",
        "faaslens-es-invocations",
        "faaslens-es-logs",
        "faaslens-es-errors",
    }
    assert [d["uid"] for d in DATASOURCES if d.get("isDefault")] == ["faaslens-prom"]
    prom = DS_BY_UID["faaslens-prom"]
    assert prom["type"] == "prometheus"
    assert "http://prometheus:9090" in prom["url"]
    dests = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert {d["name"] for d in dests} == {"invocation_id"}
    assert any(d.get("datasourceUid") == "faaslens-es-invocations" for d in dests)
    assert any("/d/faaslens-invocations/" in d.get("url", "") for d in dests)
    for kind in ("invocations", "logs", "errors"):
        ds = DS_BY_UID[f"faaslens-es-{kind}"]
        assert ds["type"] == "elasticsearch"
        assert ds["jsonData"]["index"] == f"faaslens-{kind}-*"
        assert ds["jsonData"]["timeField"] == "@timestamp"
        assert ds["jsonData"]["logLevelField"] == "log.level"
    assert DS_BY_UID["faaslens-es-logs"]["jsonData"]["logMessageField"] == "message"


def test_dashboard_provider_matches_grafana_schema() -> None:
    data = _yaml(GRAFANA / "provisioning" / "dashboards" / "faaslens.yml")
    _check_keys("file", data, PROVIDER_FILE_KEYS)
    assert data["apiVersion"] == 1
    for provider in data["providers"]:
        _check_keys(provider["name"], provider, PROVIDER_KEYS)
        assert provider["type"] == "file"
        _check_keys(f"{provider['name']}.options", provider["options"], PROVIDER_OPTIONS)
        assert provider["options"]["path"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_structure(name: str) -> None:
    dash = DASHBOARDS[name]
    assert dash["uid"].startswith("faaslens-")
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
    names = {v["name"] for v in dash["templating"]["list"]}
    targets = list(iter_targets(dash))
    assert targets
    for t in targets:
        ds = DS_BY_UID.get(t.datasource_uid)
        assert ds is not None, f"{t.label}: unknown datasource {t.datasource_uid}"
        assert ds["type"] == t.datasource_type
        text = t.target["expr"] if t.datasource_type == "prometheus" else t.target["query"]
        for m in VARIABLE_RE.finditer(text):
            var = m.group("plain") or m.group("brk") or m.group("brace")
            assert var.startswith("__") or var in names, f"{t.label}: undefined ${var}"


def _links(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("url"), str):
            found.append(node["url"])
        for value in node.values():
            found += _links(value)
    elif isinstance(node, list):
        for value in node:
            found += _links(value)
    return found


def test_links_point_at_existing_dashboards_and_variables() -> None:
    vars_by_uid = {
        d["uid"]: {v["name"] for v in d["templating"]["list"]} for d in DASHBOARDS.values()
    }
    links = [u for d in DASHBOARDS.values() for u in _links(d["panels"])]
    links += [u for ds in DATASOURCES for u in _links(ds["jsonData"])]
    assert links
    for url in links:
        m = re.match(r"/d/([\w-]+)/[\w-]+\?(.*)", url)
        assert m, url
        assert m.group(1) in UIDS, url
        for param in m.group(2).split("&"):
            if param.startswith("var-"):
                assert param[4:].split("=")[0] in vars_by_uid[m.group(1)], url


def test_overview_covers_what_users_ask_for() -> None:
    exprs = " ".join(t.target["expr"] for t in iter_targets(DASHBOARDS["overview.json"]))
    for needle in (
        "faas_invocations_total",
        "faas_errors_total",
        "histogram_quantile(0.99",
        "faas_invoke_duration_seconds_bucket",
        "faas_coldstarts_total",
        "faas_init_duration_seconds_bucket",
        "faas_mem_usage_bytes_bucket",
        "faas_billed_gigabyte_seconds_total",
        "faas_cost_usd_total",
        "faas_custom_",
    ):
        assert needle in exprs, needle
    exemplar = [t for t in iter_targets(DASHBOARDS["overview.json"]) if t.target.get("exemplar")]
    assert exemplar and all("faas_invoke_duration" in t.target["expr"] for t in exemplar)
    names = {v["name"] for v in DASHBOARDS["overview.json"]["templating"]["list"]}
    assert {"function", "environment", "provider", "region"} <= names


def test_prometheus_queries_are_counter_reset_safe() -> None:
    """Counters and histogram buckets are only read through rate() / increase()."""
    for dash in DASHBOARDS.values():
        for t in iter_targets(dash):
            if t.datasource_type != "prometheus":
                continue
            expr = t.target["expr"]
            assert "offset" not in expr, t.label
            for m in re.finditer(r"(\w+_(?:total|bucket))\{", expr):
                before = expr[: m.start()]
                assert re.search(r"(rate|increase)\($", before), f"{t.label}: raw {m.group(1)}"
            if "$custom_counter" in expr or "$custom_histogram" in expr:
                assert "rate(" in expr, t.label


def _substituted(dash: dict[str, Any]) -> Variables:
    return Variables(
        values={v["name"]: ["x"] for v in dash["templating"]["list"]},
        builtins={"__rate_interval": "1m", "__interval": "15s", "__range": "6h"},
    )


def test_prometheus_expressions_parse(tmp_path: Path) -> None:
    """promtool parses every expression (as recording rules) after substitution."""
    rules = []
    for dash in DASHBOARDS.values():
        variables = _substituted(dash)
        for i, t in enumerate(iter_targets(dash)):
            if t.datasource_type == "prometheus":
                expr = variables.interpolate(t.target["expr"], "prometheus")
                assert "$" not in expr, expr
                rules.append({"record": f"check:{dash['uid'].replace('-', '_')}:{i}", "expr": expr})
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_variable_queries_translate() -> None:
    for dash in DASHBOARDS.values():
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            if var["datasource"]["type"] == "prometheus":
                assert prom_variable_query(var["query"]["query"]).path.startswith("/api/v1/")
            else:
                assert json.loads(var["query"])["find"] == "terms"


def test_elasticsearch_targets_translate() -> None:
    count = 0
    for dash in DASHBOARDS.values():
        variables = _substituted(dash)
        for t in iter_targets(dash):
            if t.datasource_type != "elasticsearch":
                continue
            query = variables.interpolate(t.target["query"], "elasticsearch")
            assert "$" not in query, query
            body = es_search_body(t.target, query, 0, 1000, "1m")
            assert body["query"]["bool"]["filter"][1]["query_string"]["query"] == query
            count += 1
    assert count >= 8


def test_grafana_link_variables_are_escaped_from_env_expansion() -> None:
    """Provisioning expands $VAR / ${VAR}: Grafana's own ${__value.raw} must be written $$."""
    text = (GRAFANA / "provisioning" / "datasources" / "faaslens.yml").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    body = "\n".join(lines).replace("$$", "")
    assert "$" not in body, [line for line in lines if "$" in line.replace("$$", "")]
    assert "$${__value.raw}" in text
