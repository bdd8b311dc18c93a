"""Signed frames: verification of the HMAC and of the signing time.

Two forms (docs/protocol.md, "Frame")::

    s1 <key-id> <hex> <json>          HMAC-SHA256(key, json)
    s2 <key-id> <ms> <hex> <json>     HMAC-SHA256(key, ms + " " + json)

``s2`` carries the sender's clock (epoch milliseconds) under the signature,
so a captured frame cannot be replayed later than ``max_age_s`` after it was
signed (nor earlier than ``max_age_s`` before, for a clock running ahead):
such a frame is rejected as ``stale``. Within that window a replay only
repeats what was already received: documents are written with ids that make
a second write a no-op, and the aggregates count an invocation once (see
:class:`faaslens.ingest.aggregates.Aggregates`). ``s1`` frames (no time) are
still verified and accepted; they have no such bound.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from typing import Final

__all__ = ["Verifier"]

_KEY_ID_RE: Final = re.compile(rb"[A-Za-z0-9_.\-]{1,32}")
_SIG_RE: Final = re.compile(rb"[0-9a-f]{64}")
_MS_RE: Final = re.compile(rb"[0-9]{1,15}")


class Verifier:
    """Checks a frame's signature; stateless apart from its configuration."""

    __slots__ = ("_clock_ms", "_keys", "_max_age_ms", "_require")

    def __init__(
        self,
        keys: Mapping[str, str] | None = None,
        *,
        require: bool = False,
        max_age_s: float = 60.0,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._keys: dict[bytes, bytes] = {k.encode(): v.encode() for k, v in (keys or {}).items()}
        self._require = require
        self._max_age_ms = int(max_age_s * 1000)
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)

    def unwrap(self, frame: bytes) -> bytes | str:
        """The JSON body of a frame whose signature (if any) holds, else a frame reason:
        ``unsigned``, ``bad_signature``, ``unknown_key`` or ``stale``."""
        head = frame[:3]
        if head == b"s2 ":
            parts = frame.split(b" ", 4)
            if len(parts) != 5 or _MS_RE.fullmatch(parts[2]) is None:
                return "bad_signature"
            _, key_id, stamp, sig, body = parts
            signed = stamp + b" " + body
        elif head == b"s1 ":
            parts = frame.split(b" ", 3)
            if len(parts) != 4:
                return "bad_signature"
            _, key_id, sig, body = parts
            signed = body
            stamp = b""
        else:
            return "unsigned" if self._require else frame
        if _KEY_ID_RE.fullmatch(key_id) is None or _SIG_RE.fullmatch(sig) is None:
            return "bad_signature"
        secret = self._keys.get(key_id)
        if secret is None:
            return "unknown_key"
        expected = hmac.new(secret, signed, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, sig):
            return "bad_signature"
        if stamp and abs(self._clock_ms() - int(stamp)) > self._max_age_ms:
            return "stale"
        return body
