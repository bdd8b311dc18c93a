"""Variable substitution and Elasticsearch request building, as Grafana does them."""

from __future__ import annotations

from typing import Any

import pytest

from grafana.emulate import (
    DashboardError,
    Variables,
    es_response_has_data,
    es_search_body,
    es_variable_body,
    format_value,
    prom_variable_query,
)


def test_all_syntaxes_are_substituted() -> None:
    v = Variables(values={"fn": ["a"]}, builtins={"__rate_interval": "1m"})
    text = 'x{f="$fn"} ${fn} [[fn]] ${fn:raw} [$__rate_interval] $unknown'
    assert v.interpolate(text, "prometheus") == 'x{f="a"} a a a [1m] $unknown'


def test_prometheus_multi_value_is_an_escaped_regex_alternation() -> None:
    v = Variables(values={"fn": ["a.b", "c"]})
    # Two backslashes: the value lands inside a PromQL double-quoted string.
    assert v.interpolate('f=~"$fn"', "prometheus") == r'f=~"(a\\.b|c)"'
    assert v.interpolate("${fn:regex}", "prometheus") == r"(a\.b|c)"
    assert v.interpolate("${fn:pipe}", "prometheus") == "a.b|c"


def test_all_inserts_the_custom_all_value_unformatted() -> None:
    v = Variables(values={"fn": None}, all_values={"fn": "*"})
    assert v.interpolate("faas.name:${fn:lucene}", "elasticsearch") == "faas.name:*"


def test_lucene_format_escapes_and_quotes() -> None:
    assert format_value(["my-fn"], "lucene", "elasticsearch") == r"my\-fn"
    assert format_value(["a b", "c"], "lucene", "elasticsearch") == r'("a\ b" OR "c")'
    # Elasticsearch's default format for a bare $var is lucene.
    v = Variables(values={"fn": ["x:y"]})
    assert v.interpolate("faas.name:$fn", "elasticsearch") == r"faas.name:x\:y"


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(DashboardError):
        format_value(["a"], "nonsense", "prometheus")


def test_date_histogram_inside_terms_with_metrics_innermost() -> None:
    target = {
        "query": "q",
        "timeField": "@timestamp",
        "metrics": [
            {"id": "1", "type": "count"},
            {"id": "4", "type": "max", "field": "@timestamp"},
            {"id": "5", "type": "percentiles", "field": "d", "settings": {"percents": ["95"]}},
        ],
        "bucketAggs": [
            {"id": "3", "type": "terms", "field": "faas.name", "settings": {"size": "5"}},
            {"id": "2", "type": "date_histogram", "field": "@timestamp", "settings": {}},
        ],
    }
    body = es_search_body(target, "faas.name:x", 100, 200, "30s")
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"][0]["range"]["@timestamp"] == {
        "gte": 100,
        "lte": 200,
        "format": "epoch_millis",
    }
    terms = body["aggs"]["3"]
    assert terms["terms"]["field"] == "faas.name"
    assert terms["terms"]["size"] == 5
    hist = terms["aggs"]["2"]
    assert hist["date_histogram"]["fixed_interval"] == "30s"
    assert hist["date_histogram"]["extended_bounds"] == {"min": 100, "max": 200}
    assert hist["aggs"] == {
        "4": {"max": {"field": "@timestamp"}},
        "5": {"percentiles": {"field": "d", "percents": [95.0]}},
    }


def test_raw_data_is_a_sorted_document_search() -> None:
    target = {"query": "", "metrics": [{"id": "1", "type": "raw_data", "settings": {"size": "7"}}]}
    body = es_search_body(target, "", 0, 1, "1m")
    assert body["size"] == 7
    assert body["sort"][0] == {"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}
    assert body["query"]["bool"]["filter"][1]["query_string"]["query"] == "*"
    assert "aggs" not in body


def test_logs_query_adds_a_histogram() -> None:
    target = {"metrics": [{"id": "1", "type": "logs"}]}
    body = es_search_body(target, "x", 0, 1, "1m")
    assert body["size"] == 500
    assert "date_histogram" in body["aggs"]["1"]


def test_top_metrics() -> None:
    target = {
        "metrics": [
            {
                "id": "6",
                "type": "top_metrics",
                "settings": {
                    "order": "desc",
                    "orderBy": "@timestamp",
                    "metrics": ["faas.execution"],
                },
            }
        ],
        "bucketAggs": [{"id": "2", "type": "terms", "field": "k", "settings": {}}],
    }
    body = es_search_body(target, "x", 0, 1)
    assert body["aggs"]["2"]["aggs"]["6"] == {
        "top_metrics": {"metrics": [{"field": "faas.execution"}], "sort": {"@timestamp": "desc"}}
    }


def test_unsupported_aggregations_are_errors() -> None:
    with pytest.raises(DashboardError):
        es_search_body({"metrics": [{"id": "1", "type": "moving_fn"}]}, "", 0, 1)
    with pytest.raises(DashboardError):
        es_search_body({"bucketAggs": [{"id": "2", "type": "geohash_grid"}]}, "", 0, 1)


def test_has_data() -> None:
    agg_body = {"size": 0}
    empty: dict[str, Any] = {"aggregations": {"3": {"buckets": []}}}
    assert not es_response_has_data(agg_body, empty)
    filled = {"aggregations": {"3": {"buckets": [{"key": "a", "doc_count": 2, "4": {"value": 5}}]}}}
    assert es_response_has_data(agg_body, filled)
    null_metric = {
        "aggregations": {"3": {"buckets": [{"key": "a", "doc_count": 2, "4": {"value": None}}]}}
    }
    assert not es_response_has_data(agg_body, null_metric)
    assert es_response_has_data({"size": 5}, {"hits": {"hits": [{"_id": "x"}]}})
    assert not es_response_has_data({"size": 5}, {"hits": {"hits": []}})


def test_variable_queries() -> None:
    q = prom_variable_query("label_values(faas_invocations_total, function)")
    assert q.path == "/api/v1/label/function/values"
    assert q.params == (("match[]", "faas_invocations_total"),)
    m = prom_variable_query("metrics(^faas_custom_.+_total$)")
    assert m.path == "/api/v1/label/__name__/values"
    assert m.name_filter == "^faas_custom_.+_total$"
    with pytest.raises(DashboardError):
        prom_variable_query("query_result(up)")
    body = es_variable_body('{"find": "terms", "field": "faas.name"}', 0, 1)
    assert body["aggs"]["1"]["terms"]["field"] == "faas.name"
