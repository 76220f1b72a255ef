"""Shared CLI plumbing: JSON output, user-facing errors, connection options, secret scrubbing."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from toolkit.errors import ToolkitError
from toolkit.fingerprint import FingerprintMismatch

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of text."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


def emit(data: Any, as_json: bool, text: str | Callable[[], str] | None = None) -> None:
    """Print ``data`` as JSON, or ``text`` (a string or a function making one) for people."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif text is not None:
        click.echo(text() if callable(text) else text)
    else:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def scrub(message: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in ``message`` with ``***``."""
    for s in secrets:
        if s:
            message = message.replace(s, "***")
    return message


def user_errors(fn: Callable) -> Callable:
    """Turn toolkit errors into a one-line ``Error: ...`` and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ToolkitError, FingerprintMismatch) as e:
            from toolkit.es.config import known_secrets

            msg = scrub(str(e), known_secrets())
            click.echo(f"Error: {msg}", err=True)
            sys.exit(2)

    return wrapper


def progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()
