"""The one progress-bar factory: tqdm on stderr, off unless ``enabled`` (callers pass ``progress: bool``).

A bar that is off is no tqdm at all: every tqdm, even ``tqdm(disable=True)``, starts tqdm's monitor thread
(``tqdm_monitor``), which then outlives the library call that made it."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def progress_bar(
    enabled: bool, desc: str, unit: str, *, total: int | None = None, initial: int = 0, leave: bool = True
) -> Any:
    """A tqdm bar (a no-op one when not ``enabled``); use it as a context manager or close it."""
    if not enabled:
        return NoBar(())
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
    if not enabled:
        return NoBar(iterable)
    from tqdm import tqdm

    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=leave
    )


class NoBar(Generic[T]):
    """A progress bar that is off: iterates ``iterable`` and ignores what a tqdm bar would show."""

    def __init__(self, iterable: Iterable[T]) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator[T]:
        return iter(self._iterable)

    def update(self, n: float = 1) -> None:
        """Nothing to show."""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> NoBar[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
