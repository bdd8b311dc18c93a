"""Wire protocol v1 as data: the one definition of every limit, level and kind.

Both sides read these: the shipper (:mod:`faaslens.shipper.wire`) to truncate
and pack, the worker (:mod:`faaslens.ingest.validate`) to accept or reject, and
docs/protocol.md states the same numbers. Standard library only: importing this
costs the shipper nothing measurable.
"""

from __future__ import annotations

import os  # loaded by the interpreter at start: free

# typing is not imported at run time: the shipper's import cost counts.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

VERSION: Final = 1
MARKER: Final = "…[truncated]"

# Frame sizes (bytes).
UDP_MAX: Final = 65_507  # the IPv4 UDP payload limit
TCP_MAX: Final = 1 << 20  # the worker's default max_frame_bytes

# Field limits of docs/protocol.md (characters; the marker counts towards the limit).
MAX_EXECUTION_ID: Final = 128  # faas.execution: ids are cut, never marked
MAX_MESSAGE: Final = 32 * 1024
MAX_ERROR_MESSAGE: Final = 8 * 1024
MAX_STACK: Final = 32 * 1024
MAX_ERROR_TYPE: Final = 256
MAX_LOGGER: Final = 256
# Per frame and per record.
MAX_EVENTS: Final = 1000
MAX_INV_LABELS: Final = 32
MAX_INV_LABEL_VALUE: Final = 1024
MAX_LOG_LABELS: Final = 64
# Levels of objects/arrays in a log line's labels, the labels object itself included.
LOG_LABELS_DEPTH: Final = 4
MAX_METRICS: Final = 64
MAX_METRIC_LABELS: Final = 5
MAX_METRIC_LABEL_VALUE: Final = 64
MAX_METRIC_UNIT: Final = 16
# A label key (at any depth): at most this many characters, never U+0000 (Elasticsearch's
# flattened fields refuse it, and index key and value as one term of bounded size).
MAX_LABEL_KEY: Final = 256
# Observations one histogram object may stand for (``count``), and attempts of one id.
MAX_HISTOGRAM_COUNT: Final = 1 << 31
MAX_ATTEMPT: Final = 1000
# Bucket upper bounds of custom histograms (+Inf implied), by the unit of the samples:
# the shipper pre-aggregates observations into the buckets the worker exposes. The table
# is data, histogram_buckets.json beside this module, read by the NodeJS shipper too (it
# copies the file at build), so the languages cannot drift. A unit not listed, or none,
# gets HISTOGRAM_BUCKETS: 0.01 .. 1e6 in steps 1 / 2.5 / 5. The file is read on first use
# (histogram_buckets(), or HISTOGRAM_BUCKETS / UNIT_BUCKETS through __getattr__), not at
# import: the shipper imports this module in every cold start.
BUCKETS_FILE: Final = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "histogram_buckets.json"
)
if TYPE_CHECKING:
    from collections.abc import Mapping

    HISTOGRAM_BUCKETS: tuple[float, ...]
    UNIT_BUCKETS: Mapping[str, tuple[float, ...]]

# The loaded table, once read: (default bounds, bounds by unit name).
_loaded: list[tuple[tuple[float, ...], dict[str, tuple[float, ...]]]] = []


def _bounds(value: object, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: a non-empty list of bounds is needed")
    out: list[float] = []
    for bound in value:
        # bool is an int: refuse it; +Inf is implied, so every bound is finite.
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise ValueError(f"{where}: {bound!r} is not a number")
        if not 0 < bound < float("inf"):
            raise ValueError(f"{where}: {bound!r} is not a finite positive number")
        if out and bound <= out[-1]:
            raise ValueError(f"{where}: bounds must increase ({out[-1]!r} then {bound!r})")
        out.append(float(bound))
    return tuple(out)


def load_histogram_buckets(
    path: str = BUCKETS_FILE,
) -> tuple[tuple[float, ...], dict[str, tuple[float, ...]]]:
    """Read a bucket table (the shape of histogram_buckets.json): returns the default
    bounds and the bounds by lower-case unit name. Raises OSError when the file cannot
    be read and ValueError when it is not JSON of that shape (bounds finite, > 0 and
    strictly increasing; names non-empty, lower-case and listed once)."""
    import json  # here, not at import: see BUCKETS_FILE

    with open(path, "rb") as fh:
        data = json.loads(fh.read())
    if not isinstance(data, dict) or not isinstance(data.get("units"), list):
        raise ValueError(f"{path}: an object with 'default' and a 'units' list is needed")
    default = _bounds(data.get("default"), f"{path}: default")
    by_unit: dict[str, tuple[float, ...]] = {}
    for i, group in enumerate(data["units"]):
        where = f"{path}: units[{i}]"
        names = group.get("names") if isinstance(group, dict) else None
        if not isinstance(names, list) or not names:
            raise ValueError(f"{where}: a non-empty 'names' list is needed")
        bounds = _bounds(group.get("bounds"), where)
        for name in names:
            if not isinstance(name, str) or not name or name != name.lower():
                raise ValueError(f"{where}: unit name {name!r} is not a lower-case string")
            if name in by_unit:
                raise ValueError(f"{where}: unit name {name!r} is listed twice")
            by_unit[name] = bounds
    return default, by_unit


def _table() -> tuple[tuple[float, ...], dict[str, tuple[float, ...]]]:
    if not _loaded:
        _loaded.append(load_histogram_buckets())
    return _loaded[0]


def histogram_buckets(unit: str | None) -> tuple[float, ...]:
    """The bucket upper bounds (ascending, +Inf implied) of a custom histogram whose
    samples carry ``unit`` (matched case-insensitively; unknown or none:
    :data:`HISTOGRAM_BUCKETS`). The first call reads :data:`BUCKETS_FILE`."""
    default, by_unit = _loaded[0] if _loaded else _table()
    if not unit:
        return default
    return by_unit.get(unit.lower(), default)


def __getattr__(name: str) -> object:
    # HISTOGRAM_BUCKETS and UNIT_BUCKETS, loaded on first access (see BUCKETS_FILE).
    if name == "HISTOGRAM_BUCKETS":
        return _table()[0]
    if name == "UNIT_BUCKETS":
        return _table()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Log levels: the wire names, their numbers (stdlib logging's), and the aliases
# that loggers use for them.
LEVEL_NUMBERS: Final[dict[str, int]] = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "error": 40,
    "critical": 50,
}
LEVEL_NAMES: Final[dict[int, str]] = {number: name for name, number in LEVEL_NUMBERS.items()}
LEVEL_ALIASES: Final[dict[str, str]] = {
    **{name: name for name in LEVEL_NUMBERS},
    "warn": "warning",
    "exception": "error",
    "fatal": "critical",
}
LEVELS: Final = frozenset(LEVEL_NUMBERS)
ERROR_LEVELS: Final = frozenset({"error", "critical"})

# The fields of a frame's resource block (``res``): what stays the same for every
# event of a sender. An event may repeat one to override it.
RESOURCE_KEYS: Final = frozenset(
    {
        "service.name",
        "service.version",
        "service.environment",
        "service.node.name",
        "faas.name",
        "faas.version",
        "faas.id",
        "faas.max_memory",
        "cloud.provider",
        "cloud.region",
        "cloud.account.id",
        "host.architecture",
    }
)

METRIC_KINDS: Final = frozenset({"counter", "gauge", "histogram"})

# The Elasticsearch index kinds, one daily index (or data stream) each:
# ``<prefix>-<kind>-YYYY.MM.DD`` (typed as ``faaslens.ingest.events.IndexKind``).
INDEX_KINDS: Final = ("invocations", "logs", "errors")
