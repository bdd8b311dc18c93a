"""The Kibana saved objects parse and every reference resolves inside the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
NDJSON = REPO / "kibana" / "saved_objects.ndjson"


def _objects() -> list[dict[str, Any]]:
    lines = NDJSON.read_text().splitlines()
    assert lines and all(line.strip() for line in lines)
    return [json.loads(line) for line in lines]


def test_every_line_is_a_saved_object_with_a_fixed_id() -> None:
    objects = _objects()
    ids = [(o["type"], o["id"]) for o in objects]
    assert len(ids) == len(set(ids))
    for obj in objects:
        assert {"type", "id", "attributes", "references"} <= set(obj)


def test_data_views_for_the_three_index_kinds() -> None:
    views = {o["id"]: o["attributes"] for o in _objects() if o["type"] == "index-pattern"}
    for kind in ("invocations", "logs", "errors"):
        view = views[f"faaslens-{kind}"]
        assert view["title"] == f"faaslens-{kind}-*"
        assert view["timeFieldName"] == "@timestamp"
        json.loads(view["fieldFormatMap"])


def test_error_search_columns_and_references_resolve() -> None:
    objects = _objects()
    known = {(o["type"], o["id"]) for o in objects}
    searches = {o["id"]: o for o in objects if o["type"] == "search"}
    errors = searches["faaslens-errors-search"]
    assert errors["attributes"]["columns"][:3] == ["error.type", "error.message", "faas.name"]
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in known, ref
        meta = obj["attributes"].get("kibanaSavedObjectMeta")
        if meta:
            source = json.loads(meta["searchSourceJSON"])
            names = {r["name"] for r in obj["references"]}
            assert source["indexRefName"] in names
