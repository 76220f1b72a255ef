"""Assertions on what a CLI command printed."""

from __future__ import annotations


def one_clear_error_line(code: int, out: str, *fragments: str) -> None:
    """The command failed with exit 2 and printed exactly one ``Error: ...`` line (no traceback) holding every
    one of ``fragments``."""
    assert code == 2, out
    assert out.startswith("Error: ") and out.count("\n") == 1 and "Traceback" not in out, out
    for fragment in fragments:
        assert fragment in out, out
