"""Capturing a toolkit module logger's records with pytest's ``caplog``.

The CLI's :func:`toolkit.cli.common.set_log_level` stops ``toolkit`` records at its own handler
(``propagate = False``), so after a CLI test in the same process they never reach the root logger
that ``caplog`` listens on; this attaches ``caplog``'s handler to the logger itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def captured_log(caplog: pytest.LogCaptureFixture, name: str, level: int = logging.INFO) -> Iterator[None]:
    """Records of logger ``name`` at ``level`` and above land in ``caplog.records`` inside the block."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(level)
    caplog.handler.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(before)
