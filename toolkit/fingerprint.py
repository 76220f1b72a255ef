"""Content fingerprints: models and indices carry the hash of what produced them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def fingerprint(*parts: Any, length: int = 16) -> str:
    """Hash numpy arrays, bytes, strings and JSON-able objects into a short hex digest.

    Arrays contribute dtype, shape and raw bytes; an iterator of bytes its concatenation (a large canonical
    JSON produced in pieces hashes as the whole would); everything else its canonical JSON.
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(_canonical([str(arr.dtype), list(arr.shape)]))
            h.update(arr.tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        elif isinstance(part, str):
            h.update(part.encode())
        elif isinstance(part, Iterator):
            for chunk in part:
                h.update(chunk)
        else:
            h.update(_canonical(part))
        h.update(b"\x00")
    return h.hexdigest()[:length]


class FingerprintMismatch(ToolkitError, ValueError):
    """Raised when a model or index was produced by something other than what is in hand."""

    def __init__(self, what: str, expected: str, actual: str, hint: str = "") -> None:
        msg = f"{what} fingerprint mismatch: expected {expected}, found {actual}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
        self.what = what
        self.expected = expected
        self.actual = actual


def check_fingerprint(what: str, expected: str, actual: str, hint: str = "") -> None:
    """Refuse (raise :class:`FingerprintMismatch`) unless the two fingerprints agree."""
    if expected != actual:
        raise FingerprintMismatch(what, expected, actual, hint)
