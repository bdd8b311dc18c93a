"""The real Elasticsearch and Prometheus over plain HTTP (urllib).

Plain urllib on purpose: fixtures, cleanup and tools must not depend on the code under test.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from devkit.wait import poll_until


class ServiceError(RuntimeError):
    """Elasticsearch or Prometheus answered with an error."""


def http_json(
    method: str, url: str, body: object | None = None, timeout: float = 30.0
) -> tuple[int, Any]:
    """One JSON request; returns (status, decoded body or None). Never raises on 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def es_request(es_url: str, method: str, path: str, body: object | None = None) -> Any:
    """A request to Elasticsearch that must succeed (2xx), else :class:`ServiceError`."""
    status, payload = http_json(method, es_url.rstrip("/") + path, body)
    if not 200 <= status < 300:
        raise ServiceError(f"{method} {path} -> {status}: {payload}")
    return payload


def delete_es_prefix(es_url: str, prefix: str) -> list[str]:
    """Delete the indices and the index/component/legacy templates named ``<prefix>-*``.

    Wildcard index deletion is refused by default (``action.destructive_requires_name``),
    so names are listed first. Index templates go before the component templates they use.
    Returns what was deleted.
    """
    pattern = urllib.parse.quote(f"{prefix}-*")
    deleted: list[str] = []
    _, rows = http_json(
        "GET", f"{es_url}/_cat/indices/{pattern}?format=json&h=index&expand_wildcards=all"
    )
    indices = [row["index"] for row in rows or [] if isinstance(row, dict)]
    for start in range(0, len(indices), 50):
        chunk = indices[start : start + 50]
        es_request(es_url, "DELETE", "/" + ",".join(chunk))
        deleted += chunk
    for kind, key in (
        ("_index_template", "index_templates"),
        ("_component_template", "component_templates"),
    ):
        status, payload = http_json("GET", f"{es_url}/{kind}/{pattern}")
        names = [t["name"] for t in payload.get(key, [])] if status == 200 else []
        for name in names:
            es_request(es_url, "DELETE", f"/{kind}/{name}")
            deleted.append(f"{kind}/{name}")
    status, legacy = http_json("GET", f"{es_url}/_template/{pattern}")
    for name in legacy if status == 200 and isinstance(legacy, dict) else {}:
        es_request(es_url, "DELETE", f"/_template/{name}")
        deleted.append(f"_template/{name}")
    return deleted


class Prometheus:
    """A real Prometheus started once per test run (see the ``prometheus`` fixture).

    Targets are fed through a file_sd file that :meth:`add_target` rewrites; the
    server scrapes every second and stores exemplars (it asks for OpenMetrics).
    """

    def __init__(self, url: str, targets_file: Path) -> None:
        self.url = url.rstrip("/")
        self.targets_file = targets_file
        self._targets: set[str] = set()
        self._lock = threading.Lock()

    # -- targets
    def add_target(self, target: str) -> None:
        """Scrape ``host:port`` (``/metrics``) from now on."""
        with self._lock:
            self._targets.add(target)
            self._write_targets()

    def remove_target(self, target: str) -> None:
        """Stop scraping ``host:port``."""
        with self._lock:
            self._targets.discard(target)
            self._write_targets()

    def _write_targets(self) -> None:
        # Atomic replace: file_sd must never read a half-written file.
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": sorted(self._targets)}]))
        tmp.replace(self.targets_file)

    def targets(self) -> list[dict[str, Any]]:
        """The active targets as the API reports them."""
        data = self._api("/api/v1/targets", {"state": "active"})
        result: list[dict[str, Any]] = data["activeTargets"]
        return result

    def wait_for_target_up(self, target: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until ``host:port`` has been scraped successfully; returns its target entry."""

        def up() -> dict[str, Any] | None:
            for entry in self.targets():
                if entry["labels"].get("instance") == target and entry["health"] == "up":
                    return entry
            return None

        return poll_until(up, timeout=timeout, interval=0.2, what=f"target {target} up")

    # -- queries
    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query: the ``result`` list (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        params = {"query": expr} if at is None else {"query": expr, "time": str(at)}
        data = self._api("/api/v1/query", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        """Range query: ``[{"metric": {...}, "values": [[t, "v"], ...]}]``."""
        params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
        result: list[dict[str, Any]] = self._api("/api/v1/query_range", params)["result"]
        return result

    def query_exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """``[{"seriesLabels": {...}, "exemplars": [{"labels": {...}, "value", "timestamp"}]}]``."""
        params = {"query": expr, "start": str(start), "end": str(end)}
        result: list[dict[str, Any]] = self._api("/api/v1/query_exemplars", params)
        return result or []

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups."""
        groups: list[dict[str, Any]] = self._api("/api/v1/rules", {})["groups"]
        return groups

    def _api(self, path: str, params: dict[str, str]) -> Any:
        query = urllib.parse.urlencode(params)
        status, payload = http_json(
            "GET", f"{self.url}{path}?{query}" if query else self.url + path
        )
        if status != 200 or not isinstance(payload, dict) or payload.get("status") != "success":
            raise ServiceError(f"prometheus {path} {params} -> {status}: {payload}")
        return payload["data"]
