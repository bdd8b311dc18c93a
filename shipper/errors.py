"""Exceptions as ECS ``error.*`` fields, with a fingerprint stable across line shifts.

Only reached when something failed, so ``traceback`` and ``hashlib`` are
imported here lazily and stay off the import path of the function.
"""

from __future__ import annotations

import os

from faaslens.protocol import MAX_ERROR_MESSAGE, MAX_ERROR_TYPE, MAX_STACK
from faaslens.shipper.wire import safe_str, shrink_stack, truncate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The decorator's wrapper frame says nothing about the error: left out of both.
_WRAPPER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "record.py")
FINGERPRINT_FRAMES = 5


def error_type(exc: BaseException) -> str:
    """``module.QualName``, or just ``QualName`` for builtins."""
    cls = type(exc)
    module = cls.__module__
    name = cls.__qualname__
    return name if module in ("builtins", "__main__") else f"{module}.{name}"


_message = safe_str


def fingerprint_of(error_type_name: str, frames: list[tuple[str, str]]) -> str:
    """The protocol's fingerprint (docs/protocol.md, "Error fingerprint").

    ``frames``: (file basename, function name) from the outermost to the innermost
    frame. The first 16 hex digits of SHA-256 over the UTF-8 text
    ``type|file:function|...`` of the type and the innermost five frames.
    """
    import hashlib

    parts = [error_type_name, *(f"{file}:{func}" for file, func in frames[-FINGERPRINT_FRAMES:])]
    return hashlib.sha256("|".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def fingerprint(exc: BaseException) -> str:
    """Fingerprint of an exception: its type and innermost frames (file basename + function).

    Line numbers are left out so that editing code above the failing line keeps
    the fingerprint; so is the decorator's own frame.
    """
    import traceback

    frames = [
        (os.path.basename(f.filename), f.name)
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename != _WRAPPER_FILE
    ]
    return fingerprint_of(error_type(exc), frames)


def stack_trace(exc: BaseException) -> str:
    """The formatted traceback (frames and source lines, never local variables); a long
    one keeps its header, innermost frames and exception line (see ``wire.shrink_stack``)."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _WRAPPER_FILE:
        tb = tb.tb_next  # the decorator's own frame: noise in every trace
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:  # formatting a hostile exception must not fail the record
        text = f"{error_type(exc)}: {_message(exc)}"
    return shrink_stack(text, MAX_STACK)


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The four ``error.*`` fields of an exception."""
    return {
        "error.type": truncate(error_type(exc), MAX_ERROR_TYPE),
        "error.message": truncate(_message(exc), MAX_ERROR_MESSAGE),
        "error.stack_trace": stack_trace(exc),
        "error.grouping_key": fingerprint(exc),
    }


def exception_from(exc_info: object) -> BaseException | None:
    """The exception a logging call refers to (``exc_info=True``, a tuple, or one)."""
    if exc_info is None or exc_info is False:
        return None
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    import sys

    return sys.exc_info()[1]
