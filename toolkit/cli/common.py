"""Shared CLI plumbing: JSON output, logging levels, the one error adapter, exit codes, secret scrubbing.

Exit codes (documented in the README, "Exit codes"):

====  ==========================================================================
0     success
1     finished, but some records were rejected (``jrs validate``, ``jrs import-cookpad``, ``jrs index``)
2     usage or configuration error, bad input, model/data mismatch (any ToolkitError), a path that
      cannot be written or read
3     Elasticsearch unreachable or failing
130   interrupted (Ctrl-C or SIGTERM)
====  ==========================================================================
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from toolkit.errors import ToolkitError

EXIT_OK, EXIT_REJECTS, EXIT_ERROR, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of text."
)


class _ClickEchoHandler(logging.Handler):
    """Log records as plain lines on the current stderr (so Click's test runner captures them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.WARNING:
                msg = f"{record.levelname.lower()}: {msg}"
            click.echo(msg, err=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


_handler = _ClickEchoHandler()
_handler.setFormatter(logging.Formatter("%(message)s"))


def set_log_level(level: int) -> None:
    """Send the ``toolkit`` loggers' records at ``level`` and above to stderr."""
    logger = logging.getLogger("toolkit")
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
        logger.propagate = False
    logger.setLevel(level)


def _quiet_callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        set_log_level(logging.WARNING)
    return value


quiet_option = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    expose_value=True,
    callback=_quiet_callback,
    help="No progress bars; only warnings and errors on stderr.",
)


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


def exit_code_of(error: ToolkitError) -> int:
    """The documented exit status of a toolkit error."""
    from toolkit.es.client import EsUnavailable

    return EXIT_UNAVAILABLE if isinstance(error, EsUnavailable) else EXIT_ERROR


def report_error(error: ToolkitError) -> int:
    """Print ``Error: <message>`` (secrets scrubbed) on stderr; return the error's exit status."""
    from toolkit.es.config import known_secrets

    click.echo(f"Error: {scrub(str(error), known_secrets())}", err=True)
    return exit_code_of(error)


def file_error(error: OSError) -> ToolkitError | None:
    """An operating-system error on a named file (a path that cannot be created, written or read) as the
    toolkit error ``cannot write|read PATH: reason`` (exit 2); ``None`` for one that names no file."""
    from toolkit.errors import os_error_path, os_error_verb

    path = os_error_path(error)  # a write to a full disk names no file: the one being written
    if path is None:
        return None
    reason = error.strerror or type(error).__name__
    blocker = _file_in_the_way(path) if error.errno in (errno.EEXIST, errno.ENOTDIR) else None
    if blocker is not None:  # "File exists" alone does not say which
        reason += f" ({blocker} is a file, not a folder)"
    return ToolkitError(f"cannot {os_error_verb(error)} {path}: {reason}")


def nearest_existing_parent(path: str | Path) -> Path:
    """The nearest parent of ``path`` (``path`` itself excluded) that exists: where creating it would start."""
    folder = Path(path).parent  # a relative path stays relative (messages name what was given)
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _file_in_the_way(path: str) -> str | None:
    """The nearest existing parent of ``path`` when it is not a folder but a file."""
    folder = nearest_existing_parent(path)
    return str(folder) if os.path.lexists(folder) and not folder.is_dir() else None


def run_reporting_errors(call: Callable[[], Any], exit: Callable[[int], Any]) -> Any:
    """``call()``; a toolkit or Elasticsearch error, or a file the system refused (an :class:`OSError` naming
    it), becomes ``Error: ...`` and ``exit(its status)``, Ctrl-C ``exit(130)``; anything else propagates (a
    bug: its traceback is wanted)."""
    try:
        return call()
    except ToolkitError as e:
        return exit(report_error(e))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return exit(EXIT_INTERRUPTED)
    except Exception as e:
        from toolkit.es.client import es_failure

        failure = es_failure(e)
        if failure is None and isinstance(e, OSError):
            failure = file_error(e)
        if failure is None:
            raise
        return exit(report_error(failure))


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM (``kill``, ``timeout``, a service or container stopping) ends a command as
    Ctrl-C does: its cleanups run (an index's load settings restored, temporary files removed), one
    ``interrupted`` line, exit 130. Without it Python dies at once, skipping them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:  # told to ignore it (nohup-like wrappers): keep that
        yield
        return
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def refuse_model_dir(out_dir: str | Path, command: str) -> None:
    """Refuse writing ``command``'s output into a model directory of `jrs build` (one holding its
    ``manifest.json``): its files would mix with the model's."""
    from toolkit.model import MANIFEST

    if (Path(out_dir) / MANIFEST).is_file():
        raise ToolkitError(
            f"{out_dir} is a model directory (it holds {MANIFEST}): {command} would write its files among the "
            "model's; choose another output directory"
        )


def user_errors(fn: Callable) -> Callable:
    """The CLI error adapter: a toolkit or Elasticsearch error becomes ``Error: ...`` and its exit code;
    Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run_reporting_errors(lambda: fn(*args, **kwargs), sys.exit)

    return wrapper


def progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()
