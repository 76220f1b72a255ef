"""The one progress-bar factory: tqdm on stderr, off unless ``enabled`` (callers pass ``progress: bool``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def progress_bar(
    enabled: bool, desc: str, unit: str, *, total: int | None = None, initial: int = 0, leave: bool = True
) -> Any:
    """A tqdm bar (a no-op one when not ``enabled``); use it as a context manager or close it."""
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=leave
    )


def track(
    iterable: Iterable[T],
    enabled: bool,
    desc: str,
    unit: str,
    *,
    total: int | None = None,
    leave: bool = True,
) -> Any:
    """``iterable`` with a progress bar (a tqdm) (see :func:`progress_bar`)."""
    from tqdm import tqdm

    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=leave
    )
