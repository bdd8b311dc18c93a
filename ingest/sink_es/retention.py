"""Retention without ILM: delete daily indices whose date is past the retention.

Indices are named ``<prefix>-<kind>-YYYY.MM.DD``; the date in the name (the
UTC day of the documents' ``@timestamp``) decides, not the creation date, so
back-filled old documents expire with their day. Only names that match the
pattern exactly are touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import cast

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch

from faaslens.ingest.sink_es.metrics import SinkMetrics
from faaslens.protocol import INDEX_KINDS

log = structlog.get_logger("faaslens.sink_es")

# Names per DELETE request: keeps the URL short whatever the backlog.
DELETE_CHUNK = 32


def index_day(name: str, prefix: str) -> date | None:
    """The day of a ``<prefix>-<kind>-YYYY.MM.DD`` index, or None for any other name."""
    match = re.fullmatch(
        re.escape(prefix) + r"-(?:" + "|".join(INDEX_KINDS) + r")-(\d{4})\.(\d{2})\.(\d{2})", name
    )
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:  # e.g. 2026.02.31
        return None


def expired(names: Iterable[str], prefix: str, today: date, retention_days: int) -> list[str]:
    """Names of the daily indices dated before ``today - retention_days``, sorted."""
    if retention_days < 0:
        raise ValueError("retention_days must be >= 0")
    cutoff = today - timedelta(days=retention_days)
    out = []
    for name in names:
        day = index_day(name, prefix)
        if day is not None and day < cutoff:
            out.append(name)
    return sorted(out)


async def list_indices(client: AsyncElasticsearch, prefix: str) -> list[str]:
    """Names of the indices starting with ``<prefix>-`` (open or closed)."""
    rows = await client.cat.indices(
        index=f"{prefix}-*", h="index", format="json", expand_wildcards="open,closed"
    )
    body = cast(list[dict[str, str]], rows.body)  # format=json: a list of rows
    return [str(row["index"]) for row in body]


async def delete_expired(
    client: AsyncElasticsearch,
    prefix: str,
    retention_days: int,
    today: datetime | None = None,
) -> list[str]:
    """Delete the expired daily indices of ``prefix``; returns their names."""
    now = today or datetime.now(UTC)
    day = (now.astimezone(UTC) if now.tzinfo else now).date()
    names = expired(await list_indices(client, prefix), prefix, day, retention_days)
    for start in range(0, len(names), DELETE_CHUNK):
        chunk = names[start : start + DELETE_CHUNK]
        # Exact names (no wildcard), so destructive_requires_name does not get in the way.
        await client.indices.delete(index=",".join(chunk), ignore_unavailable=True)
    return names


async def apply(
    client: AsyncElasticsearch,
    prefix: str,
    retention_days: int,
    metrics: SinkMetrics,
    today: datetime | None = None,
) -> list[str]:
    """One retention pass; returns the deleted index names (errors logged and counted)."""
    try:
        deleted = await delete_expired(client, prefix, retention_days, today)
    except (ApiError, TransportError) as exc:
        metrics.retention_errors.inc()
        log.warning("es_retention_failed", error=str(exc))
        return []
    if deleted:
        metrics.retention_deleted.inc(len(deleted))
        log.info("es_retention_deleted", indices=deleted)
    return deleted
