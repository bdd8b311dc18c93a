"""The naming rules ``promtool check metrics`` enforces, for names chosen by users.

Metrics named by senders (the aggregator's lines) are exposed under their own
names, and the exposition must stay clean for promtool: a name it would flag is
refused when the metric is declared, with the problem stated. The rules are
those of Prometheus's promlint (client_golang ``testutil/promlint``), written
out here: snake_case, no ``:``, no type or abbreviated unit as a name token,
base units, ``_total`` on counters only, ``_bucket``/``_count``/``_sum`` and
``le`` on histograms only, ``quantile`` never (no summaries here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["label_problem", "name_problem"]

_CAMEL: Final = re.compile(r"[a-z][A-Z]")
_TYPES: Final = ("counter", "gauge", "histogram", "summary", "gauge_histogram")
_ABBREVIATIONS: Final = (
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
)  # fmt: skip
_BASE: Final = {
    "amperes": "amperes", "bytes": "bytes", "celsius": "celsius", "grams": "grams",
    "joules": "joules", "kelvin": "kelvin", "meters": "meters", "metres": "metres",
    "seconds": "seconds", "volts": "volts",
    "minutes": "seconds", "hours": "seconds", "days": "seconds", "weeks": "seconds",
    "kelvins": "kelvin", "fahrenheit": "celsius", "rankine": "celsius",
    "inches": "meters", "yards": "meters", "miles": "meters", "bits": "bytes",
    "calories": "joules", "pounds": "grams", "ounces": "grams",
}  # fmt: skip
_PREFIXES: Final = (
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi",
    "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
)  # fmt: skip


def _has_token(lowered: str, token: str) -> bool:
    return f"_{token}_" in lowered or lowered.endswith("_" + token)


def _unit_problem(name: str) -> str | None:
    """promlint reads the first token that is a known unit, bare or prefixed."""
    for token in name.split("_"):
        base = _BASE.get(token)
        if base is None:
            for p in _PREFIXES:
                if token.startswith(p) and token[len(p) :] in _BASE:
                    base = _BASE[token[len(p) :]]
                    break
            else:
                continue
        return None if base == token else f'use base unit "{base}" instead of "{token}"'
    return None


def name_problem(exposed: str, kind: str) -> str | None:
    """What promtool says about metric family ``exposed`` of type ``kind``
    (``counter`` | ``gauge`` | ``histogram``), or None when it is clean.
    For a counter, ``exposed`` is the name with its ``_total``."""
    lowered = exposed.lower()
    if ":" in exposed:
        return "metric names should not contain ':'"
    if _CAMEL.search(exposed):
        return "metric names should be written in 'snake_case' not 'camelCase'"
    for t in _TYPES:
        if _has_token(lowered, t):
            return f"metric name should not include type '{t}'"
    if any(_has_token(lowered, a) for a in _ABBREVIATIONS):
        return "metric names should not contain abbreviated units"
    unit = _unit_problem(exposed)
    if unit is not None:
        return unit
    if (kind == "counter") != exposed.endswith("_total"):
        return "counters, and only counters, end in _total"
    if kind != "histogram" and exposed.endswith(("_bucket", "_count", "_sum")):
        return "only histograms end in _bucket, _count or _sum"
    return None


def label_problem(names: Iterable[str]) -> str | None:
    """What promtool says about these label names, or None when they are clean."""
    for n in names:
        if _CAMEL.search(n):
            return "label names should be written in 'snake_case' not 'camelCase'"
        if n in ("le", "quantile"):  # a histogram's own "le" would clash with its buckets
            return f'label "{n}" is reserved'
    return None
