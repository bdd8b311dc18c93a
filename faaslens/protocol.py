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
# Observations one histogram object may stand for (``count``), and attempts of one id.
MAX_HISTOGRAM_COUNT: Final = 1 << 31
MAX_ATTEMPT: Final = 1000
# Bucket upper bounds of custom histograms (prometheus_client's defaults, +Inf implied):
# the shipper pre-aggregates observations into the same buckets the worker exposes.
HISTOGRAM_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
# A label key (at any depth): at most this many characters, never U+0000 (Elasticsearch's
# flattened fields refuse it, and index key and value as one term of bounded size).
MAX_LABEL_KEY: Final = 256

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
