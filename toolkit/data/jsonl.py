"""The JSONL dataset layout: ``<root>/recipes.jsonl`` (one recipe per line) plus photos under the root.

Reading streams the file line by line and never stops at a bad line: every problem becomes a
:class:`~toolkit.rejects.Reject` and every valid record (and every valid step of a partly bad
record) comes through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.atomic import atomic_path
from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.data.schema import (
    DEFAULT_MAX_TEXT_LEN,
    Recipe,
    RecordError,
    json_object,
    parse_recipe,
    recipe_to_json,
)
from toolkit.errors import ToolkitError
from toolkit.rejects import Reject, RejectsWriter

if TYPE_CHECKING:
    from toolkit.text.tokenizer import Tokenizer

RECIPES_FILE = "recipes.jsonl"

log = logging.getLogger(__name__)


class DatasetError(ToolkitError):
    """A dataset that cannot be read at all: a missing root or ``recipes.jsonl``, a ``recipes.jsonl`` that is
    a directory or encoded in UTF-16/32, or one holding no recipe (``jrs validate``). A bad record is not one:
    it is rejected, and reading goes on."""


def recipes_path(root: str | Path) -> Path:
    """``<root>/recipes.jsonl``, with a clear error when the root or the file is missing."""
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "does not exist"
        raise DatasetError(f"dataset root {str(root)!r} {what} (expected a directory holding {RECIPES_FILE})")
    path = root / RECIPES_FILE
    if path.is_dir():
        raise DatasetError(f"{RECIPES_FILE} in dataset root {str(root)!r} is a directory, not a file")
    if not path.is_file():
        raise DatasetError(f"no {RECIPES_FILE} in dataset root {str(root)!r}")
    return path


def _emit(reject: Reject, sink: RejectsWriter | None) -> None:
    if sink is not None:
        sink.write(reject)
    else:
        log.warning("rejected %s", reject)


#: A UTF-8 byte order mark: read past at the start of any line.
_UTF8_BOM = b"\xef\xbb\xbf"
#: How a UTF-16 or UTF-32 file starts: a byte order mark, or a record's ``{`` as two or four bytes.
_WIDE_STARTS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"{\x00", b"\x00{", b"\x00\x00\x00{")


def _records(path: Path, max_text_len: int) -> Iterator[tuple[Recipe | None, list[Reject]]]:
    """Yield (recipe or None, rejects) per non-blank line, streaming the file."""
    first_line: dict[str, int] = {}
    offset = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            start, offset = offset, offset + len(raw)
            name = f"{RECIPES_FILE}:line {lineno}"
            if raw.startswith(_UTF8_BOM):  # the file's, or, mid-file, that of a file joined to it (cat a b)
                raw, start = raw[3:], start + 3
            if lineno == 1 and raw[:4].startswith(_WIDE_STARTS):
                # a UTF-16/32 byte order mark, or a record's "{" as two or four bytes
                raise DatasetError(f"{path} is UTF-16 or UTF-32 encoded, not UTF-8: save it as UTF-8")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                reason = (
                    f"not valid UTF-8: {e.reason} at byte offset {e.start} of the line "
                    f"(byte {start + e.start} of the file)"
                )
                yield None, [Reject(name, "read", reason)]
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line.rstrip(), object_pairs_hook=json_object)
            except json.JSONDecodeError as e:
                reason = f"malformed JSON: {e.msg} (column {e.pos + 1})"
                if e.msg == "Extra data" and "\r" in line.rstrip():
                    reason += "; the file's lines end in a bare CR: save it with LF or CRLF line ends"
                elif e.msg == "Extra data":
                    reason += ": more than one JSON value on the line (one recipe per line)"
                yield None, [Reject(name, "read", reason)]
                continue
            except RecursionError:
                yield None, [Reject(name, "read", "malformed JSON: nested too deeply")]
                continue
            except ValueError as e:  # e.g. an integer of more digits than Python converts (4,300)
                yield None, [Reject(name, "read", f"unreadable JSON value: {e}")]
                continue
            try:
                recipe, rejects = parse_recipe(obj, name, max_text_len)
            except RecordError as e:
                yield None, [Reject(name, "validate", e.detail)]
                continue
            seen = first_line.get(recipe.recipe_id)
            if seen is not None:
                reason = (
                    f"duplicate recipe_id {recipe.recipe_id!r} (first seen on line {seen}); record dropped"
                )
                yield None, [Reject(name, "validate", reason)]
                continue
            first_line[recipe.recipe_id] = lineno
            yield recipe, rejects


@dataclass
class _ImageCheck:
    missing: int = 0
    unsafe: int = 0
    undecodable: int = 0


def _check_images(
    root: Path, recipe: Recipe, tally: _ImageCheck, decode: bool = False
) -> tuple[Recipe, list[Reject]]:
    """Make steps whose photo is unsafe or missing (or, with ``decode``, does not decode as the image
    stage will decode it) text-only, with a reject (stage ``image``) each."""
    rejects: list[Reject] = []
    steps = []
    changed = False
    for step in recipe.steps:
        if step.image is not None:
            why = ""
            try:
                real = resolve_under_root(root, step.image)
            except UnsafePathError as e:
                tally.unsafe += 1
                why = f"unsafe image path: {e}"
            else:
                what = _not_a_file(real)
                if what:
                    tally.missing += 1
                    why = f"image file {what}: {step.image!r}"
                elif decode:
                    why = _decode_error(real)
                    tally.undecodable += bool(why)
            if why:
                rejects.append(Reject(recipe.step_id(step), "image", f"{why}; step kept as text-only"))
                step = replace(step, image=None)
                changed = True
        steps.append(step)
    return (replace(recipe, steps=tuple(steps)) if changed else recipe), rejects


def _not_a_file(path: Path) -> str:
    """``""`` when ``path`` is a file, else what is wrong with it (``"not found"``, ...)."""
    try:
        if path.is_file():
            return ""
        if path.is_dir():
            return "is a directory, not a file"
        return "is not a regular file" if path.exists() else "not found"  # a FIFO or a device
    except OSError as e:  # e.g. a name longer than the file system allows (ENAMETOOLONG)
        return f"cannot be read ({e.strerror or e})"


def _decode_error(path: Path) -> str:
    """``""`` when ``path`` decodes as the image stage will decode it, else the reason it is not used."""
    from toolkit.image.loading import ImageRejected, load_image

    try:
        load_image(path, draft_size=64)
    except ImageRejected as e:
        return f"photo not used: {e}"
    return ""


def iter_recipes(
    root: str | Path,
    rejects: RejectsWriter | None = None,
    *,
    check_images: bool = False,
    max_text_len: int = DEFAULT_MAX_TEXT_LEN,
) -> Iterator[Recipe]:
    """Stream the valid recipes of the dataset at ``root``.

    Bad lines, records, steps, ingredients and tags go to ``rejects`` (or are logged as warnings
    when it is ``None``). With ``check_images``, a step whose photo is unsafe or missing becomes
    text-only (and is reported with stage ``image``). Consumers that open photos must still go
    through :func:`toolkit.data.paths.resolve_under_root`.
    """
    path = recipes_path(root)
    tally = _ImageCheck()
    for recipe, found in _records(path, max_text_len):
        for r in found:
            _emit(r, rejects)
        if recipe is None:
            continue
        if check_images:
            recipe, found = _check_images(Path(root), recipe, tally)
            for r in found:
                _emit(r, rejects)
        yield recipe


#: Stage of the notes on steps kept without a text vector (as the build's text stage and the index name them).
TEXT_STAGE = "text"


def wordless_steps(recipe: Recipe, tokenizer: Tokenizer) -> list[Reject]:
    """A note (stage ``text``) per step of ``recipe`` whose text gives no filtered token (emoji, symbols or
    particles only): such a step is kept, but it can have no text vector, whatever the Word2Vec model."""
    from toolkit.text.tokenizer import NO_WORD_REASON

    reason = (
        f"{NO_WORD_REASON}: the step is kept (indexed for its photo and keywords) without a text vector, "
        "so it is not used to train the model nor found by text-vector (kNN) search"
    )
    return [
        Reject(recipe.step_id(s), TEXT_STAGE, reason) for s in recipe.steps if not tokenizer.tokenize(s.text)
    ]


@dataclass
class ValidationReport:
    """What :func:`validate_dataset` found; ``ok`` when nothing was rejected."""

    recipes: int = 0
    steps: int = 0
    steps_with_image: int = 0
    missing_images: int = 0
    unsafe_paths: int = 0
    undecodable_images: int = 0
    #: steps kept without a text vector: their text has no word the tokenizer keeps (:func:`wordless_steps`)
    steps_without_words: int = 0
    #: whether photos were decoded (``decode_images``), not only checked for presence and safe paths
    decoded: bool = False
    rejects: list[Reject] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejects

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def validate_dataset(
    root: str | Path,
    check_images: bool = True,
    *,
    rejects: RejectsWriter | None = None,
    max_text_len: int = DEFAULT_MAX_TEXT_LEN,
    decode_images: bool = False,
) -> ValidationReport:
    """Read the whole dataset once and report counts and every reject (also written to ``rejects``).

    ``steps_with_image`` counts steps whose photo is usable (safe and present when
    ``check_images``, and decodable too with ``decode_images``, the check build and index make;
    merely declared otherwise). A step whose text has no word the default tokenizer keeps is noted with
    stage ``text`` (:func:`wordless_steps`): the earliest a build would know it has no text vector.
    """
    from toolkit.text.tokenizer import Tokenizer

    if decode_images and not check_images:
        raise ValueError("decode_images needs check_images")
    path = recipes_path(root)
    report = ValidationReport(decoded=decode_images)
    tally = _ImageCheck()
    tokenizer = Tokenizer()

    def keep(found: list[Reject]) -> None:
        report.rejects.extend(found)
        if rejects is not None:
            rejects.extend(found)

    for recipe, found in _records(path, max_text_len):
        keep(found)
        if recipe is None:
            continue
        if check_images:
            recipe, found = _check_images(Path(root), recipe, tally, decode_images)
            keep(found)
        found = wordless_steps(recipe, tokenizer)
        report.steps_without_words += len(found)
        keep(found)
        report.recipes += 1
        report.steps += len(recipe.steps)
        report.steps_with_image += sum(1 for s in recipe.steps if s.image is not None)
    report.missing_images = tally.missing
    report.unsafe_paths = tally.unsafe
    report.undecodable_images = tally.undecodable
    return report


def recipe_line(recipe: Recipe) -> str:
    """One JSONL line (without the newline) for ``recipe``; refuses a recipe the reader would not accept."""
    obj = recipe_to_json(recipe)
    try:
        back, rejects = parse_recipe(obj, f"recipe {recipe.recipe_id!r}")
    except RecordError as e:
        raise ToolkitError(f"cannot write invalid recipe: {e}") from None
    if rejects or back != recipe:
        if rejects:
            detail = "; ".join(str(r) for r in rejects)
        elif back.steps != recipe.steps and sorted(recipe.steps, key=lambda s: s.position) == list(
            back.steps
        ):
            detail = "steps must be sorted by position"
        else:
            detail = "text fields must not have surrounding whitespace"
        raise ToolkitError(f"cannot write invalid recipe {recipe.recipe_id!r}: {detail}")
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_recipes_jsonl(path: str | Path, recipes: Iterable[Recipe]) -> int:
    """Write ``recipes`` (any iterable, consumed lazily) to ``path`` atomically; return the count.

    Raises :class:`~toolkit.errors.ToolkitError` on a recipe the reader would reject or a
    duplicate ``recipe_id``; the target is then left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for recipe in recipes:
            if recipe.recipe_id in seen:
                raise ToolkitError(f"cannot write duplicate recipe_id {recipe.recipe_id!r}")
            seen.add(recipe.recipe_id)
            fh.write(recipe_line(recipe) + "\n")
            count += 1
    return count
