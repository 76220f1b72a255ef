"""The one "fingerprints -> resume / refuse / start over" decision for resumable work.

A resumable job (image features, a SimCLR run, a bulk load) records the fingerprints of its inputs next to
its partial or finished state. A later run compares them with its own: all equal -> resume (or reuse); any
different -> a mismatch, which features and SimCLR refuse (naming each difference) unless told to overwrite,
and a bulk load answers by starting a new load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ResumeDecision:
    """``fresh`` (no state, or overwrite), ``resume`` (same inputs) or ``mismatch`` (other inputs)."""

    action: Literal["fresh", "resume", "mismatch"]
    differences: list[str] = field(default_factory=list)

    def refusal(
        self, where: Any, what: str, hint: str = "use another output directory or --overwrite"
    ) -> str:
        """The message refusing a mismatch: where, what was found, each difference, how to proceed."""
        return f"{where} holds {what} made with different inputs ({'; '.join(self.differences)}); {hint}"


def decide_resume(
    found: Mapping[str, Any] | None,
    expected: Mapping[str, Any],
    *,
    overwrite: bool = False,
    labels: Mapping[str, str] | None = None,
) -> ResumeDecision:
    """Compare a recorded state ``found`` (None: there is none) with the ``expected`` values of its keys.

    ``labels`` names keys for people in the differences (default: the key itself).
    """
    if found is None or overwrite:
        return ResumeDecision("fresh")
    names = labels or {}
    diffs = [
        f"{names.get(key, key)} {found.get(key)} != {value}"
        for key, value in expected.items()
        if found.get(key) != value
    ]
    return ResumeDecision("mismatch", diffs) if diffs else ResumeDecision("resume")
