"""Convert the Cookpad recipe data (NII IDR distribution) to the JSONL layout.

Input (``src_dir``): ``recipes``, ``ingredients`` (optional) and ``steps`` tables, each one file
named ``<table>.txt``, ``.tsv`` or ``.csv``, tab- or comma-separated (sniffed), with or without a
header row; step photos at ``images/steps/<first char of id>/<recipe_id>_<position>.jpg``. A row with more cells
than columns has a separator inside a text field: it is joined back into a last free-text column (steps' memo),
and rejected where that cannot be told (``TEXT_COLUMNS``).

Text and photo are paired by step *position*, never by row order. Steps and ingredients are
grouped by recipe in a temporary SQLite file, so memory stays flat whatever the corpus size and
whatever the row order. See ``docs/data-format.md``.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, overload

from toolkit.data.jsonl import RECIPES_FILE, write_recipes_jsonl
from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.data.schema import (
    DEFAULT_MAX_TEXT_LEN,
    MAX_POSITION,
    Recipe,
    RecordError,
    Step,
    check_recipe_id,
    check_text,
    parse_recipe,
)
from toolkit.data.step_ids import format_step_id
from toolkit.errors import ToolkitError
from toolkit.progress import track
from toolkit.rejects import Reject, RejectsWriter

log = logging.getLogger(__name__)

EXTENSIONS = (".txt", ".tsv", ".csv")
#: Column order of header-less files (as in the NII IDR distribution).
COLUMNS: dict[str, tuple[str, ...]] = {
    "recipes": ("id", "user_id", "title", "description", "serving_for", "advice", "history", "published_at"),
    "ingredients": ("recipe_id", "name", "quantity"),
    "steps": ("recipe_id", "position", "memo"),
}
#: Columns each table must have; a first row naming all of them is a header.
REQUIRED: dict[str, tuple[str, ...]] = {
    "recipes": ("id", "title"),
    "ingredients": ("recipe_id", "name"),
    "steps": ("recipe_id", "position", "memo"),
}
#: Columns of free text, which may hold the separator (ids, positions and dates never do). A row with more
#: cells than columns has a separator inside one of them: the cells are only put back together when the last
#: column is the one free-text column (see :func:`_spill_column`).
TEXT_COLUMNS: dict[str, frozenset[str]] = {
    "recipes": frozenset({"title", "description", "serving_for", "advice", "history"}),
    "ingredients": frozenset({"name", "quantity"}),
    "steps": frozenset({"memo"}),
}
#: A header-less table is refused when most of this many or more sampled rows have more cells than its columns.
MIN_ROWS_FOR_LAYOUT = 5
_ALIASES = {"recipe_id": "id"}  # a recipes header may say recipe_id instead of id
_BAD_UTF8 = re.compile("[\udc80-\udcff]")
_BATCH = 5000


class CookpadError(ToolkitError):
    """The Cookpad source directory cannot be converted (missing or ambiguous table files)."""


@dataclass
class CookpadSummary:
    """Counts of a conversion: ``paired`` steps have a photo, ``text_only`` ones do not."""

    out_file: str
    recipes: int = 0
    steps: int = 0
    paired: int = 0
    text_only: int = 0
    rejects: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: How a table's fields are quoted: ``csv.QUOTE_MINIMAL`` or ``csv.QUOTE_NONE``
Quoting = Literal[0, 3]


@dataclass(frozen=True)
class _Table:
    kind: str  # recipes, ingredients or steps
    path: Path
    delimiter: str
    quoting: Quoting
    header: bool
    columns: dict[str, int]
    names: tuple[str, ...]  # every column a row has, in order: the header's, or COLUMNS[kind]

    @property
    def name(self) -> str:
        return self.path.name


def _spill_column(names: tuple[str, ...], table: str) -> int | None:
    """Index of the column that a row's cells beyond ``names`` belong to, or None when that cannot be told.

    Only the last column, when it is the table's one free-text column and every column before it is a known
    id, number or date (steps: ``recipe_id, position, memo``), can be the field the separator split."""
    *before, last = names
    text = TEXT_COLUMNS[table]
    if last not in text or any(n in text or n not in COLUMNS[table] for n in before):
        return None
    return len(names) - 1


@overload
def find_table(src: Path, table: str, required: Literal[True] = ...) -> Path: ...
@overload
def find_table(src: Path, table: str, required: bool) -> Path | None: ...
def find_table(src: Path, table: str, required: bool = True) -> Path | None:
    """The one file holding ``table`` in ``src`` (``<table>.txt|.tsv|.csv``)."""
    found = [src / f"{table}{ext}" for ext in EXTENSIONS if (src / f"{table}{ext}").is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise CookpadError(f"more than one {table} table in {str(src)!r} ({names}); keep one")
    if not found:
        if required:
            raise CookpadError(f"no {table} table in {str(src)!r} (expected {table}.txt, .tsv or .csv)")
        return None
    return found[0]


class _Lines:
    """The physical lines of a table for ``csv.reader``, keeping those the row being read took (``taken``) and
    whether the reader asked past the last one (``ended``: only a quoted field never closed does)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.taken: list[str] = []
        self.ended = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._lines)
        except StopIteration:
            self.ended = True
            raise
        self.taken.append(line)
        return line

    def after_first_taken(self) -> _Lines:
        """The lines after the first one the last row took, then those not read yet."""
        return _Lines(itertools.chain(self.taken[1:], self._lines))


def _misquoted(lines: list[str], delimiter: str, quoting: Quoting) -> bool:
    """Whether the row read from ``lines`` only holds together by a quote that is not closed where it should be:
    a ``"`` never closed, or closed with more text after it (``"..."x``) that pairs it with a later row's."""
    try:
        list(csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True))
    except csv.Error:
        return True
    return False


def _csv_rows(
    lines: Iterable[str], delimiter: str, quoting: Quoting
) -> Iterator[tuple[int, list[str] | None, str]]:
    """Yield (line number where the row ends, cells or None, reason when None) for each row of ``lines``.

    A ``"`` that opens a field and is not closed where the field ends would swallow the following rows into
    that field (the rest of the table, or up to the next row's quote): a row that only reads as several lines
    that way is rejected at the line it starts on, and the lines after that one are read again as rows."""
    source, before = _Lines(lines), 0
    reader = csv.reader(source, delimiter=delimiter, quoting=quoting, strict=False)
    while True:
        source.taken = []
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # e.g. a field over csv.field_size_limit()
            yield before + reader.line_num, None, f"unreadable row: {e}"
            continue
        end = before + reader.line_num
        spans = source.ended or len(source.taken) > 1
        if not spans or not _misquoted(source.taken, delimiter, quoting):
            yield end, row, ""
            continue
        start = end - len(source.taken) + 1
        log.debug("misquoted row on lines %d-%d; reading on from line %d", start, end, start + 1)
        yield start, None, _misquoted_reason(start, end)
        source, before = source.after_first_taken(), start
        reader = csv.reader(source, delimiter=delimiter, quoting=quoting, strict=False)


def _misquoted_reason(start: int, end: int) -> str:
    """The reason a row whose quoted field opened on line ``start`` is not closed where it should be."""
    lines = f"lines {start}-{end} would be one row" if end > start else "it runs to the end of the table"
    return (
        f"a quoted field opened on line {start} is never closed where it ends (a '\"' without its closing '\"', "
        f"or text after the closing one): {lines}; row dropped, the lines after line {start} read as rows"
    )


def _sample_rows(text: str, delimiter: str, quoting: Quoting) -> list[list[str]]:
    rows = (row for _, row, _ in _csv_rows(io.StringIO(text, newline=""), delimiter, quoting))
    return [r for r in rows if r][:50]


def sniff_table(path: Path, table: str) -> _Table:
    """Work out the delimiter (tab or comma), quoting and header of a table file."""
    with path.open("rb") as fh:
        head = fh.read(2)
    # a UTF-16/32 byte order mark, or an ASCII character as two or four bytes
    if head in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
        raise CookpadError(f"{path.name} is UTF-16 or UTF-32 encoded, not UTF-8: save it as UTF-8")
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        text = fh.read(256 * 1024)
        truncated = bool(fh.read(1))
    if truncated:  # the last line may be cut short
        text = text[: text.rfind("\n") + 1] or text
    if text.startswith("\ufeff"):
        text = text[1:]
    # without a header the recipes table's columns are Cookpad's order (title third); a header names them
    headless_need = len(REQUIRED[table]) if table != "recipes" else 3
    need = headless_need
    candidates: list[tuple[str, Quoting, list[list[str]]]] = []
    for delimiter in ("\t", ","):
        quoting: Quoting = csv.QUOTE_MINIMAL
        if delimiter == "\t" and not text.startswith('"'):
            quoting = csv.QUOTE_NONE
        rows = _sample_rows(text, delimiter, quoting)
        widths = Counter(len(r) for r in rows)
        if rows:
            width, freq = widths.most_common(1)[0]
            need = len(REQUIRED[table]) if _is_header(rows[0], table) else headless_need
            if width >= need and freq >= 0.8 * len(rows):
                candidates.append((delimiter, quoting, rows))
    if not candidates:
        raise CookpadError(
            f"{path.name}: cannot tell the delimiter (tab or comma): rows do not have a consistent "
            f"number of columns (at least {need} expected)"
        )
    preferred = "," if path.suffix == ".csv" else "\t"
    delimiter, quoting, rows = next((c for c in candidates if c[0] == preferred), candidates[0])
    named = _header_names(rows[0], table)
    header = _is_header(rows[0], table)
    known = [c for c in named if c in COLUMNS[table]]
    if not header and len(known) >= 2:  # a header that lacks a column: its rows must not be read by position
        missing = [c for c in REQUIRED[table] if c not in named]
        raise CookpadError(
            f"{path.name}: the first row names the columns {', '.join(known)} but not {', '.join(missing)} "
            f"(a {table} table needs {', '.join(REQUIRED[table])})"
        )
    while header and not named[-1]:  # a separator at the end of the header names no column
        named.pop()
    names = tuple(named) if header else COLUMNS[table]
    if not header:
        _refuse_more_columns(path, table, rows, len(names))
    columns = {name: i for i, name in reversed(list(enumerate(names)))}
    return _Table(table, path, delimiter, quoting, header, columns, names)


def _refuse_more_columns(path: Path, table: str, rows: list[list[str]], width: int) -> None:
    """A header-less table whose rows mostly have text beyond its ``width`` known columns has columns of its
    own, not separators inside a text: joining or rejecting every row would be wrong, so it is refused."""
    longer = [r for r in rows if any(c.strip() for c in r[width:])]
    if len(rows) >= MIN_ROWS_FOR_LAYOUT and len(longer) >= 0.8 * len(rows):
        cells = Counter(len(r) for r in longer).most_common(1)[0][0]
        raise CookpadError(
            f"{path.name}: {len(longer)} of the first {len(rows)} rows have {cells} or more columns, and a {table} "
            f"table without a header has {width} ({', '.join(COLUMNS[table])}): add a header row naming the "
            "columns (those the toolkit does not use are ignored)"
        )


def _header_names(row: list[str], table: str) -> list[str]:
    first = [cell.strip().lstrip("\ufeff").lower() for cell in row]
    return [_ALIASES.get(c, c) if table == "recipes" else c for c in first]


def _is_header(row: list[str], table: str) -> bool:
    """The row names every column the table needs."""
    named = _header_names(row, table)
    return all(col in named for col in REQUIRED[table])


def _read_rows(tbl: _Table) -> Iterator[tuple[int, dict[str, str] | None, str]]:
    """Yield (line number, row as {column: stripped text} or None, reason when None).

    A row with more cells than columns has the separator inside a text field: its extra cells are joined back
    into the last column when that is the free-text one (:func:`_spill_column`), else the row is rejected.
    Extra cells that are empty (separators at the end of the line) hold no text and are ignored."""
    width, spill = len(tbl.names), _spill_column(tbl.names, tbl.kind)
    need = max(tbl.columns[c] for c in REQUIRED[tbl.kind]) + 1
    sep = "tab" if tbl.delimiter == "\t" else "comma"
    rows = joined = first_joined = 0
    with tbl.path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        first, header_pending = True, tbl.header
        for line, row, why in _csv_rows(fh, tbl.delimiter, tbl.quoting):
            if row is None:
                yield line, None, why
                continue
            if first:
                first = False
                if row and row[0].startswith("\ufeff"):
                    row[0] = row[0][1:]
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header_pending:  # the first non-blank row, as sniff_table saw it
                header_pending = False
                continue
            bad = next((c for c in row if _BAD_UTF8.search(c)), None)
            if bad is not None:
                byte = ord(_BAD_UTF8.search(bad).group(0)) - 0xDC00  # type: ignore[union-attr]
                yield line, None, f"not valid UTF-8 (undecodable byte 0x{byte:02x})"
                continue
            if len(row) < need:
                yield line, None, f"has {len(row)} columns, expected at least {need}"
                continue
            if len(row) > width and any(c.strip() for c in row[width:]):
                if spill is None:
                    yield line, None, _too_many_reason(tbl, len(row), sep)
                    continue
                log.debug("%s:line %d: %d columns, the last ones kept as one", tbl.name, line, len(row))
                row[spill] = tbl.delimiter.join(row[spill:])
                joined, first_joined = joined + 1, first_joined or line
            row = row + [""] * (width - len(row))
            rows += 1
            yield line, {c: row[i].strip() for c, i in tbl.columns.items()}, ""
    if joined:
        _warn_joined(tbl, joined, rows, first_joined, sep)


def _warn_joined(tbl: _Table, joined: int, rows: int, first: int, sep: str) -> None:
    """Say once per table how many rows had their extra cells joined back into the last column."""
    hint = ""
    if joined == rows > 1 and not tbl.header:
        hint = f"; every row did: if the file has more columns than {', '.join(tbl.names)}, add a header row naming them"
    log.warning(
        "%s: %d row(s) had more than %d columns (first on line %d): the extra cells were kept as part of %s, "
        "joined by a %s (likely a %s inside the text)%s",
        tbl.name,
        joined,
        len(tbl.names),
        first,
        tbl.names[-1],
        sep,
        sep,
        hint,
    )


def _too_many_reason(tbl: _Table, cells: int, sep: str) -> str:
    """Why a row with ``cells`` cells, more than its table's columns, is dropped."""
    return (
        f"has {cells} columns, expected {len(tbl.names)} ({', '.join(tbl.names)}): likely a {sep} inside a text "
        "field, and which field cannot be told, so the row cannot be split into its columns; row dropped"
    )


def _load(db: sqlite3.Connection, tbl: _Table, sink: _Rejects, progress: bool) -> None:
    kind = tbl.kind
    batch: list[tuple[Any, ...]] = []
    sql = (
        "INSERT INTO steps VALUES (?, ?, ?, ?)"
        if kind == "steps"
        else "INSERT INTO ingredients VALUES (?, ?, ?, ?)"
    )
    for line, row, why in track(_read_rows(tbl), progress, f"load {tbl.name}", " rows"):
        if row is None:
            sink.add(Reject(f"{tbl.name}:line {line}", "read", why))
            continue
        if kind == "steps":
            batch.append((row["recipe_id"], line, row["position"], row["memo"]))
        else:
            batch.append((row["recipe_id"], line, row["name"], row.get("quantity", "")))
        if len(batch) >= _BATCH:
            db.executemany(sql, batch)
            batch.clear()
    db.executemany(sql, batch)
    db.execute(f"CREATE INDEX {kind}_by_recipe ON {kind} (recipe_id, line)")


class _Rejects:
    def __init__(self, writer: RejectsWriter | None) -> None:
        self.writer = writer
        self.count = 0

    def add(self, reject: Reject) -> None:
        self.count += 1
        if self.writer is not None:
            self.writer.write(reject)
        else:
            log.warning("rejected %s", reject)


def _position(text: str) -> tuple[int | None, str]:
    """``(position, "")`` of a step row's position text, or ``(None, reason)``."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    if not (text.isascii() and text.isdigit() and text.strip("0")):
        return None, f"position must be a positive integer, got {shown!r}"
    if len(text.lstrip("0")) > len(str(MAX_POSITION)) or int(text) > MAX_POSITION:
        return (
            None,
            f"position must be at most {MAX_POSITION} (the index stores it as an integer), got {shown!r}",
        )
    return int(text), ""


def _steps_for(
    db: sqlite3.Connection, rid: str, steps_name: str, max_len: int, sink: _Rejects
) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT line, position, memo FROM steps WHERE recipe_id = ? ORDER BY line", (rid,)
    ).fetchall()
    good: dict[int, list[tuple[int, str]]] = {}
    for line, pos_text, memo in rows:
        where = f"{steps_name} line {line}"
        pos, why = _position(pos_text)
        if pos is None:
            sink.add(Reject(f"{rid}:{pos_text}", "validate", f"{where}: {why}"))
            continue
        text, why = check_text(memo, max_len, allow_empty=False)
        if text is None:
            sink.add(Reject(format_step_id(rid, pos), "validate", f"{where}: memo {why}"))
            continue
        good.setdefault(pos, []).append((line, text))
    steps = []
    for pos in sorted(good):
        if len(good[pos]) > 1:
            lines = ", ".join(str(line) for line, _ in good[pos])
            for line, _ in good[pos]:
                reason = f"{steps_name} line {line}: duplicate position {pos} (lines {lines}); all dropped"
                sink.add(Reject(format_step_id(rid, pos), "validate", reason))
            continue
        steps.append({"position": pos, "text": good[pos][0][1]})
    return steps


def _ingredients_for(db: sqlite3.Connection, rid: str, name: str, sink: _Rejects) -> list[dict[str, str]]:
    out = []
    for line, ing, qty in db.execute(
        "SELECT line, name, quantity FROM ingredients WHERE recipe_id = ? ORDER BY line", (rid,)
    ):
        if not ing:
            sink.add(Reject(f"{name}:line {line}", "validate", f"recipe {rid}: ingredient name is empty"))
            continue
        out.append({"name": ing, "quantity": qty})
    return out


class _Photos:
    """Finds a step's photo in ``src`` and places it under ``out`` (hard link, else copy)."""

    def __init__(self, src: Path, out: Path, link: bool) -> None:
        self.src, self.out, self.link = src, out, link
        same = os.path.realpath(src / "images") == os.path.realpath(out / "images")
        self.in_place = same and (src / "images").is_dir()

    @staticmethod
    def rel(rid: str, position: int) -> str:
        return f"images/steps/{rid[0]}/{rid}_{position}.jpg"

    def place(self, rid: str, position: int) -> tuple[str | None, str]:
        """Return (relative path, "") when the photo exists, (None, reason) when unusable, (None, "") if absent."""
        if "/" in rid or "\\" in rid or "\x00" in rid or rid.startswith("."):
            return None, f"recipe id {rid!r} cannot name a photo file; step kept as text-only"
        rel = self.rel(rid, position)
        try:
            source = resolve_under_root(self.src, rel)
        except UnsafePathError as e:
            return None, f"unsafe photo path: {e}; step kept as text-only"
        try:
            if not source.is_file():
                return None, ""
        except OSError as e:  # e.g. a recipe id too long for a file name (ENAMETOOLONG)
            return None, f"photo {rel!r} cannot be looked up ({e.strerror or e}); step kept as text-only"
        if self.in_place:
            return rel, ""
        dest = self.out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            if dest.exists() and os.path.samefile(dest, source):
                return rel, ""
            dest.unlink()
        if self.link:
            try:
                os.link(source, dest)
                return rel, ""
            except OSError:
                pass  # another file system, or links not allowed: copy instead
        shutil.copyfile(source, dest)
        return rel, ""


def convert_cookpad(
    src_dir: str | Path,
    out_root: str | Path,
    link_images: bool = True,
    *,
    rejects: RejectsWriter | None = None,
    progress: bool = False,
    max_text_len: int = DEFAULT_MAX_TEXT_LEN,
) -> CookpadSummary:
    """Write ``<out_root>/recipes.jsonl`` (and ``<out_root>/images/steps/...``) from a Cookpad export.

    Photos are hard-linked into ``out_root`` when ``link_images`` (copied when linking fails or
    when ``link_images`` is False); converting in place (``out_root == src_dir``) touches no photo.
    Every dropped row or step goes to ``rejects`` (logged when it is ``None``).
    """
    src, out = Path(src_dir), Path(out_root)
    if not src.is_dir():
        raise CookpadError(f"Cookpad source {str(src)!r} is not a directory")
    old_limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long field is refused by its length, with its row
    try:
        return _convert(src, out, link_images, rejects, progress, max_text_len)
    finally:
        csv.field_size_limit(old_limit)


def _convert(
    src: Path,
    out: Path,
    link_images: bool,
    rejects: RejectsWriter | None,
    progress: bool,
    max_text_len: int,
) -> CookpadSummary:
    """:func:`convert_cookpad` once the CSV field size limit is lifted."""
    recipes_tbl = sniff_table(find_table(src, "recipes"), "recipes")
    steps_tbl = sniff_table(find_table(src, "steps"), "steps")
    ing_path = find_table(src, "ingredients", required=False)
    ing_tbl = sniff_table(ing_path, "ingredients") if ing_path else None
    if ing_tbl is None:
        log.warning("no ingredients table in %s: recipes will have no ingredients", src)

    out.mkdir(parents=True, exist_ok=True)
    sink = _Rejects(rejects)
    summary = CookpadSummary(out_file=str(out / RECIPES_FILE))
    photos = _Photos(src, out, link_images)
    with tempfile.TemporaryDirectory(prefix=".cookpad-", dir=out) as tmp:
        db = sqlite3.connect(Path(tmp) / "group.sqlite")
        try:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.execute("CREATE TABLE steps (recipe_id TEXT, line INTEGER, position TEXT, memo TEXT)")
            db.execute("CREATE TABLE ingredients (recipe_id TEXT, line INTEGER, name TEXT, quantity TEXT)")
            db.execute("CREATE TABLE seen (recipe_id TEXT PRIMARY KEY, line INTEGER)")
            db.execute("CREATE TABLE rejected (recipe_id TEXT, line INTEGER)")
            _load(db, steps_tbl, sink, progress)
            if ing_tbl is not None:
                _load(db, ing_tbl, sink, progress)
            else:
                db.execute("CREATE INDEX ingredients_by_recipe ON ingredients (recipe_id, line)")
            recipes = _recipes(
                db, recipes_tbl, steps_tbl, ing_tbl, photos, sink, summary, max_text_len, progress
            )
            summary.recipes = write_recipes_jsonl(out / RECIPES_FILE, recipes)
            _orphans(db, steps_tbl, sink)
            if ing_tbl is not None:
                _orphans(db, ing_tbl, sink)
        finally:
            db.close()
    summary.rejects = sink.count
    return summary


def _recipes(
    db: sqlite3.Connection,
    recipes_tbl: _Table,
    steps_tbl: _Table,
    ing_tbl: _Table | None,
    photos: _Photos,
    sink: _Rejects,
    summary: CookpadSummary,
    max_len: int,
    progress: bool,
) -> Iterator[Recipe]:
    rows = track(_read_rows(recipes_tbl), progress, "convert", " recipes")
    for line, row, why in rows:
        where = f"{recipes_tbl.name}:line {line}"
        if row is None:
            sink.add(Reject(where, "read", why))
            continue
        rid = row["id"]
        first = db.execute("SELECT line FROM seen WHERE recipe_id = ?", (rid,)).fetchone()
        if first is not None:
            sink.add(
                Reject(where, "validate", f"duplicate recipe id {rid!r} (first on line {first[0]}); dropped")
            )
            continue
        obj = {
            "recipe_id": rid,
            "title": row["title"],
            "description": row.get("description", ""),
            "ingredients": _ingredients_for(db, rid, ing_tbl.name, sink) if ing_tbl else [],
            "steps": _steps_for(db, rid, steps_tbl.name, max_len, sink) if not check_recipe_id(rid) else [],
        }
        try:
            recipe, found = parse_recipe(obj, where, max_len)
        except RecordError as e:
            sink.add(Reject(where, "validate", e.detail))
            db.execute("INSERT INTO rejected VALUES (?, ?)", (rid, line))
            continue
        # seen once valid: a later valid row of an id whose first row was rejected is kept, not a duplicate
        db.execute("INSERT INTO seen VALUES (?, ?)", (rid, line))
        for r in found:
            sink.add(r)
        steps = []
        for step in recipe.steps:
            image, problem = photos.place(rid, step.position)
            if problem:
                sink.add(Reject(recipe.step_id(step), "image", problem))
            steps.append(Step(step.position, step.text, image))
            summary.paired += image is not None
        summary.steps += len(steps)
        summary.text_only = summary.steps - summary.paired
        yield Recipe(
            recipe.recipe_id, recipe.title, recipe.description, recipe.ingredients, tuple(steps), recipe.tags
        )


def _orphans(db: sqlite3.Connection, tbl: _Table, sink: _Rejects) -> None:
    """Report rows whose recipe_id is not in the recipes table (nothing is dropped silently)."""
    kind = tbl.kind
    query = (
        f"SELECT recipe_id, COUNT(*), MIN(line) FROM {kind} "
        "WHERE recipe_id NOT IN (SELECT recipe_id FROM seen) GROUP BY recipe_id ORDER BY MIN(line)"
    )
    for rid, count, line in db.execute(query).fetchall():
        rejected = db.execute("SELECT MIN(line) FROM rejected WHERE recipe_id = ?", (rid,)).fetchone()[0]
        where = (
            f"whose recipe row (line {rejected}) was rejected"
            if rejected is not None
            else "which is not among the recipes read (absent, or its row could not be read: see the "
            "recipes table's rejects)"
        )
        sink.add(
            Reject(
                f"{tbl.name}:line {line}",
                "validate",
                f"{count} {kind.rstrip('s')} row(s) for recipe id {rid!r}, {where}",
            )
        )
