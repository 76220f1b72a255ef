"""Rejected records: every bad input is named with its stage and reason, in JSON lines."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class Reject:
    """One rejected record: ``record`` names it (e.g. ``line 12`` or ``r001:3``)."""

    record: str
    stage: str
    reason: str

    def __str__(self) -> str:
        return f"{self.record} [{self.stage}]: {self.reason}"


class RejectsWriter:
    """Appends :class:`Reject` rows to a JSONL file (opened lazily, flushed per row)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._fh: IO[str] | None = None
        self.count = 0
        self.by_stage: Counter[str] = Counter()

    def write(self, reject: Reject) -> None:
        self.count += 1
        self.by_stage[reject.stage] += 1
        if self.path is None:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(asdict(reject), ensure_ascii=False) + "\n")
        self._fh.flush()

    def summary(self) -> dict[str, Any]:
        """``{"count": N, "by_stage": {stage: n}}`` of what was written so far (stages sorted)."""
        return {"count": self.count, "by_stage": dict(sorted(self.by_stage.items()))}

    def extend(self, rejects: Iterable[Reject]) -> None:
        for r in rejects:
            self.write(r)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_rejects_file(path: str | Path, fix: str) -> None:
    """Make ``path`` ready for a run's rejects before the run does any work: an old file is removed, and
    :func:`check_rejects_file` (none is left when nothing is rejected), so that a run never stops part-way at
    its first reject."""
    target = Path(path)
    try:
        target.unlink(missing_ok=True)
    except OSError as e:
        raise _cannot_write(target, e, fix) from e
    check_rejects_file(target, fix)


def check_rejects_file(path: str | Path, fix: str) -> None:
    """A :class:`~toolkit.errors.ConfigError` naming ``path`` and saying ``fix`` when a run could not write its
    rejects there; what is there already is kept (a resumed run adds to it), and nothing is left behind."""
    target = Path(path)
    existed = target.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.open("a", encoding="utf-8").close()
        if not existed:
            target.unlink()
    except OSError as e:
        raise _cannot_write(target, e, fix) from e


def _cannot_write(target: Path, error: OSError, fix: str) -> Exception:
    """The :class:`~toolkit.errors.ConfigError` of a rejects file that cannot be written, saying ``fix``."""
    from toolkit.errors import ConfigError

    return ConfigError(f"cannot write the rejects file {target} ({error.strerror or error}): {fix}")


def stage_counts(by_stage: Mapping[str, int]) -> str:
    """``"image 1, read 2"``: reject counts by stage, stages sorted (messages for people)."""
    return ", ".join(f"{stage} {n}" for stage, n in sorted(by_stage.items()))


def read_rejects(path: str | Path) -> Iterator[Reject]:
    """Read a rejects file back."""
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield Reject(**json.loads(line))
