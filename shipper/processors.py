"""structlog processors: ``(logger, method_name, event_dict) -> event_dict``.

Usable in any structlog chain (``shipper.logs.configure_structlog`` builds one)
and used by the shipper's own fast logger. They decide in ``__init__`` and act
in ``__call__``; none imports structlog unless it has to drop an event.

* :func:`add_invocation_context`: ``faas.execution`` and ``trace.id`` of the
  current invocation.
* :class:`RedactKeys`: hides values of sensitive keys (case-insensitive,
  nested), and :meth:`RedactKeys.clean` also applies the protocol's limits.
* :class:`DebugBuffer`: lines an invocation should not ship right away
  (below the level, or not sampled) are handed to it and dropped from the
  chain; it ships them if it fails.
"""

from __future__ import annotations

from collections.abc import Mapping

from faaslens.protocol import LEVEL_ALIASES, LEVEL_NUMBERS, MAX_LOG_LABELS
from faaslens.shipper.state import current_invocation
from faaslens.shipper.wire import LOG_LABEL_BUDGET, dumps, safe_str, truncate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping
    from typing import Any

    EventDict = MutableMapping[str, Any]

REDACTED = "[REDACTED]"
TOO_DEEP = "[TOO DEEP]"
# Nesting redaction walks; below it a value becomes TOO_DEEP, never its raw text.
REDACT_DEPTH = 32
_SCALARS = (str, int, float, bool, type(None))
# Any level name a logger may use -> its number.
LEVELS = {alias: LEVEL_NUMBERS[name] for alias, name in LEVEL_ALIASES.items()}


def add_invocation_context(logger: object, method_name: str, event_dict: EventDict) -> EventDict:
    """Add the current invocation's id and trace id (no-op outside an invocation)."""
    inv = current_invocation()
    if inv is not None:
        event_dict.setdefault("faas.execution", inv.execution_id)
        if inv.trace_id is not None:
            event_dict.setdefault("trace.id", inv.trace_id)
    return event_dict


def _normalize(key: str) -> str:
    return key.lower().replace("-", "_")


class RedactKeys:
    """Replace the value of any key containing a sensitive word, at any depth.

    Matching is case-insensitive, ``-`` equals ``_``, and a word matches inside a
    key (``db_password``, ``X-Api-Key``, ``access_token``): leaking a secret is
    worse than hiding a harmless value.
    """

    __slots__ = ("_cache", "_words", "replacement")

    def __init__(self, keys: Iterable[str], replacement: str = REDACTED) -> None:
        self._words = tuple(_normalize(k) for k in keys if k)
        self._cache: dict[str, bool] = {}
        self.replacement = replacement

    def sensitive(self, key: str) -> bool:
        """Whether a key's value must be hidden."""
        hit = self._cache.get(key)
        if hit is None:
            norm = _normalize(key)
            hit = any(w in norm for w in self._words)
            if len(self._cache) < 4096:
                self._cache[key] = hit
        return hit

    def __call__(self, logger: object, method_name: str, event_dict: EventDict) -> EventDict:
        for key in list(event_dict):
            if self.sensitive(safe_str(key)):
                event_dict[key] = self.replacement
            else:
                value = event_dict[key]
                if not isinstance(value, _SCALARS):
                    event_dict[key] = self._redact(value, REDACT_DEPTH)
        return event_dict

    def _redact(self, value: Any, budget: int) -> Any:
        """A copy of ``value`` with sensitive keys hidden at every depth; containers
        nested deeper than ``budget`` become :data:`TOO_DEEP` (never their text)."""
        if isinstance(value, _SCALARS):
            return value
        if budget <= 0:
            return TOO_DEEP
        if isinstance(value, Mapping):
            return {
                k: self.replacement if self.sensitive(safe_str(k)) else self._redact(v, budget - 1)
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._redact(v, budget - 1) for v in value]
        return value

    def clean(self, labels: dict[Any, Any]) -> dict[str, Any]:
        """Redacted copy of a log line's key-values within the protocol's limits.

        At most 64 keys (the rest counted under ``_truncated_keys``); objects
        nested deeper than the worker accepts become the compact JSON text of
        their redacted copy (see :meth:`_redact`).
        """
        if len(labels) > MAX_LOG_LABELS:
            kept = dict(list(labels.items())[: MAX_LOG_LABELS - 1])
            kept["_truncated_keys"] = len(labels) - len(kept)
            labels = kept
        cache = self._cache
        out: dict[str, Any] = {}
        for key, value in labels.items():
            k = key if type(key) is str else safe_str(key)
            hit = cache.get(k)
            if hit is None:
                hit = self.sensitive(k)
            if hit:
                out[k] = self.replacement
                continue
            t = type(value)
            if t is str or t is int or t is float or t is bool or value is None:
                out[k] = value
            elif t is dict or t is list or t is tuple:
                out[k] = self._clean(value, LOG_LABEL_BUDGET - 1)
            else:
                out[k] = self._clean_other(value, LOG_LABEL_BUDGET - 1)
        return out

    def _clean_other(self, value: Any, budget: int) -> Any:
        """Mappings and sets that are not dicts or lists: as the dict or list they hold."""
        if isinstance(value, Mapping):
            return self._clean(dict(value), budget)
        if isinstance(value, (set, frozenset)):
            return self._clean(list(value), budget)
        return value  # serialized by its str()

    def _clean(self, value: Any, budget: int) -> Any:
        """``value`` is at ``budget``: its children are allowed ``budget - 1``."""
        if budget <= 0:
            if not value:
                return value
            return truncate(dumps(self._redact(value, REDACT_DEPTH)).decode(), 1024)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = k if type(k) is str else safe_str(k)
                if self.sensitive(key):
                    out[key] = self.replacement
                elif isinstance(v, (dict, list, tuple)):
                    out[key] = self._clean(v, budget - 1)
                elif isinstance(v, _SCALARS):
                    out[key] = v
                else:
                    out[key] = self._clean_other(v, budget - 1)
            return out
        return [
            self._clean(v, budget - 1)
            if isinstance(v, (dict, list, tuple))
            else (v if isinstance(v, _SCALARS) else self._clean_other(v, budget - 1))
            for v in value
        ]


class DebugBuffer:
    """Lines the current invocation should not ship now are handed to it and dropped.

    That is, lines below ``FAASLENS_LOG_LEVEL``, and debug/info lines of an
    invocation left out by sampling (``FAASLENS_LOG_SAMPLE_RATE``, decided once
    per invocation so that its lines stay whole). The invocation keeps the
    latest of them (``FAASLENS_DEBUG_BUFFER``) and ships them only if it fails.
    For chains that render lines themselves; :func:`shipper.logs.ship` applies
    the same rule on its own.
    """

    __slots__ = ()

    def __call__(self, logger: object, method_name: str, event_dict: EventDict) -> EventDict:
        inv = current_invocation()
        if inv is None:
            return event_dict
        level = LEVELS.get(str(event_dict.get("level", method_name)), 20)
        if level >= inv.keep_level:
            return event_dict
        inv.defer_event(level, event_dict)
        import structlog

        raise structlog.DropEvent
