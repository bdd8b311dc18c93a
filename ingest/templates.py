"""Elasticsearch templates: load ``es-templates/`` for a prefix and install them.

Layout of the directory::

    component/<name>.json   -> component template "<prefix>-<name>"
    index/<kind>.json       -> index template "<prefix>-<kind>" (patterns "<prefix>-<kind>-*")

Strings in the files may hold ``{{prefix}}``, ``{{shards}}`` and ``{{replicas}}``;
the files stay valid JSON (Elasticsearch accepts "1" for a numeric setting).
Installing is idempotent (PUT). It also adds the current mappings to indices
that already exist, so a worker upgraded mid-day does not refuse the new
optional fields of today's documents until tomorrow's index.

Mappings are ``dynamic: strict``. The worker is the only writer and removes
unknown event keys before building documents, so an unmapped field can only
come from a mismatch between the worker and these files; strict turns that
into a 400 that lands in the dead-letter file (with the document) instead of
a field silently stored but never searchable. Free-form keys live in the
``labels`` field (``flattened``), which never adds mappings, and
``total_fields.limit`` stays guarded at 1000.

Daily indices plus :mod:`ingest.retention` stand in for ILM and data streams,
which the integration-test distribution lacks; the same templates work on the
full distribution.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch

from faaslens.ingest.config import ConfigError, IngestConfig

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# Lowercase, no characters Elasticsearch refuses in index names, not starting with - _ +.
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start an index name, else raise ConfigError."""
    if not _PREFIX_RE.match(prefix) or prefix in (".", ".."):
        raise ConfigError(
            f"es_index_prefix {prefix!r}: use 1-64 of a-z 0-9 . _ - "
            "(starting with a letter or digit)"
        )
    return prefix


@dataclass(frozen=True, slots=True)
class TemplateSet:
    """Rendered templates, ready to PUT, in install order (components first)."""

    components: dict[str, dict[str, Any]]
    indices: dict[str, dict[str, Any]]


def render(value: Any, values: dict[str, str]) -> Any:
    """Substitute ``{{name}}`` placeholders in every string of a JSON value."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise ConfigError(f"template placeholder {{{{{key}}}}} has no value")
            return values[key]

        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, list):
        return [render(v, values) for v in value]
    if isinstance(value, dict):
        return {render(k, values): render(v, values) for k, v in value.items()}
    return value


def load_templates(
    directory: str | os.PathLike[str], prefix: str, shards: int = 1, replicas: int = 0
) -> TemplateSet:
    """Read and render the templates of ``directory`` for ``prefix``."""
    check_prefix(prefix)
    root = Path(directory)
    values = {"prefix": prefix, "shards": str(shards), "replicas": str(replicas)}
    loaded: dict[str, dict[str, dict[str, Any]]] = {"component": {}, "index": {}}
    for sub, found in loaded.items():
        folder = root / sub
        if not folder.is_dir():
            raise ConfigError(f"es_templates_dir {str(root)!r}: no {sub}/ folder in it")
        for path in sorted(folder.glob("*.json")):
            try:
                body = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise ConfigError(f"es_templates_dir: template {path}: {exc}") from exc
            found[f"{prefix}-{path.stem}"] = render(body, values)
    if not loaded["index"]:
        raise ConfigError(f"es_templates_dir {str(root)!r}: no index templates in index/")
    return TemplateSet(components=loaded["component"], indices=loaded["index"])


def templates_for(config: IngestConfig) -> TemplateSet:
    """The templates as configured (directory, prefix, shards, replicas)."""
    return load_templates(
        config.es_templates_dir, config.es_index_prefix, config.es_shards, config.es_replicas
    )


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)  # never alias the templates' own dicts


def composed_mappings(templates: TemplateSet, index_template: str) -> dict[str, Any]:
    """The mappings an index created from ``index_template`` gets (components merged in order)."""
    body = templates.indices[index_template]
    merged: dict[str, Any] = {}
    for name in body.get("composed_of", []):
        _merge(merged, templates.components[name].get("template", {}).get("mappings", {}))
    _merge(merged, body.get("template", {}).get("mappings", {}))
    return merged


async def install_templates(client: AsyncElasticsearch, templates: TemplateSet) -> None:
    """PUT every component template, then every index template, then update the
    mappings of existing indices. Raises the client's errors (ApiError, TransportError)."""
    for name, body in templates.components.items():
        await client.perform_request(
            "PUT", f"/_component_template/{name}", body=body, headers=_JSON_HEADERS
        )
    for name, body in templates.indices.items():
        await client.perform_request(
            "PUT", f"/_index_template/{name}", body=body, headers=_JSON_HEADERS
        )
    for name, body in templates.indices.items():
        mappings = composed_mappings(templates, name)
        if not mappings:
            continue
        patterns = ",".join(body.get("index_patterns", []))
        # Only additions are accepted: a changed type fails here, loudly, at start.
        await client.perform_request(
            "PUT",
            f"/{patterns}/_mapping",
            params={"allow_no_indices": "true", "expand_wildcards": "open"},
            body=mappings,
            headers=_JSON_HEADERS,
        )


async def delete_templates(client: AsyncElasticsearch, templates: TemplateSet) -> None:
    """Remove the index templates, then the components (for tests and uninstalling)."""
    for name in templates.indices:
        await client.options(ignore_status=404).perform_request(
            "DELETE", f"/_index_template/{name}", headers=_JSON_HEADERS
        )
    for name in templates.components:
        await client.options(ignore_status=404).perform_request(
            "DELETE", f"/_component_template/{name}", headers=_JSON_HEADERS
        )
