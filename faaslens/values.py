"""Parsing of setting values shared by the shipper's and the worker's configuration.

Standard library only (the shipper imports it inside functions).
"""

from __future__ import annotations

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_bool(raw: object, default: bool | None = None) -> bool:
    """A boolean from a bool or a word (``1/true/yes/on``, ``0/false/no/off``, any case).

    An empty or blank string means "not set": ``default`` when one is given
    (an environment variable set to nothing keeps the default), else an error.

    Raises:
        ValueError: anything else, naming the value.
    """
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    if not text and default is not None:
        return default
    raise ValueError(f"not a boolean: {raw!r} (use true/false, yes/no, on/off or 1/0)")
