"""Silence one kind of warning around a block, safely when threads do it at once (a search service)."""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
#: (category, message) -> [threads inside, the filter entry added for them (None: it was there already)]
_active: dict[tuple[type[Warning], str], list] = {}


@contextmanager
def silenced(category: type[Warning], message: str = "") -> Iterator[None]:
    """Ignore warnings of ``category`` (whose text starts with ``message``, a regular expression) inside the
    block.

    ``warnings.catch_warnings`` saves the process-wide filter list on entry and puts that copy back on exit:
    two threads inside at once leave the filter installed for good (the second saved the list with the first's
    filter in it) or drop a filter another thread added meanwhile. Here one filter entry is added while any
    thread is inside and that entry alone is removed when the last one leaves; an equal filter the application
    installed itself is left where it is."""
    key = (category, message)
    with _lock:
        state = _active.get(key)
        if state is None:
            entry: tuple[Any, ...] | None = (
                "ignore",
                re.compile(message, re.I) if message else None,
                category,
                None,
                0,
            )
            if entry in warnings.filters:
                entry = None
            else:
                warnings.filterwarnings("ignore", message, category)
            state = _active[key] = [0, entry]
        state[0] += 1
    try:
        yield
    finally:
        with _lock:
            state[0] -= 1
            if state[0] == 0:
                del _active[key]
                if state[1] is not None:
                    with contextlib.suppress(ValueError):  # the application reset the filters meanwhile
                        # typeshed declares the filters a Sequence: they are a list (what filterwarnings edits)
                        warnings.filters.remove(state[1])  # type: ignore[attr-defined]
                    # as warnings.filterwarnings does: caches of which warning was shown where start again
                    getattr(warnings, "_filters_mutated", lambda: None)()
