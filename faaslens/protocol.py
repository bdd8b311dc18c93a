"""Wire protocol v1 as data: the one definition of every limit, level and kind.

Both sides read these: the shipper (:mod:`faaslens.shipper.wire`) to truncate
and pack, the worker (:mod:`faaslens.ingest.validate`) to accept or reject, and
docs/protocol.md states the same numbers. Standard library only: importing this
costs the shipper nothing measurable.
"""

from __future__ import annotations

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
# the shipper pre-aggregates observations into the buckets the worker exposes. A unit
# not listed, or none, gets HISTOGRAM_BUCKETS: 0.01 .. 1e6 in steps 1 / 2.5 / 5.
HISTOGRAM_BUCKETS: Final = (
    *(round(m * 10.0**e, 6) for e in range(-2, 6) for m in (1.0, 2.5, 5.0)),
    1e6,
)
_SECONDS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
)  # fmt: skip
_BYTES: Final = tuple(float(64 * 4**i) for i in range(13))  # 64 B .. 1 GiB, x4
UNIT_BUCKETS: Final[dict[str, tuple[float, ...]]] = {}
for _names, _bounds in (
    (("s", "sec", "second", "seconds"), _SECONDS),
    (("ms", "millisecond", "milliseconds"), tuple(round(b * 1e3, 9) for b in _SECONDS)),
    (("us", "µs", "microsecond", "microseconds"), tuple(round(b * 1e6, 9) for b in _SECONDS)),
    (("ns", "nanosecond", "nanoseconds"), tuple(round(b * 1e9, 9) for b in _SECONDS)),
    (("b", "by", "byte", "bytes"), _BYTES),
    (("kb", "kib", "kilobyte", "kilobytes"), tuple(b / 1024 for b in _BYTES[3:])),
    (("mb", "mib", "megabyte", "megabytes"), tuple(b / 1024**2 for b in _BYTES[6:])),
    (("%", "percent"), (1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 100.0)),  # noqa: E501
    (("ratio", "fraction"), (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)),  # noqa: E501
):
    for _name in _names:
        UNIT_BUCKETS[_name] = _bounds


def histogram_buckets(unit: str | None) -> tuple[float, ...]:
    """The bucket upper bounds of a custom histogram whose samples carry ``unit``
    (matched case-insensitively; unknown or none: :data:`HISTOGRAM_BUCKETS`)."""
    if not unit:
        return HISTOGRAM_BUCKETS
    return UNIT_BUCKETS.get(unit.lower(), HISTOGRAM_BUCKETS)

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
