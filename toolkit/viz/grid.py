"""A query's top-k photos as one picture: the query on top, each photo with rank, score, recipe title and step.

Photos are opened only through :func:`toolkit.data.paths.resolve_under_root`; a missing, unsafe or
unreadable photo becomes a grey "no photo" tile (the hit is still shown). The file's format follows its
suffix (:data:`SUFFIX_FORMATS`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, features

from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.errors import ToolkitError
from toolkit.image.loading import ImageRejected, load_image
from toolkit.search.engine import Hit
from toolkit.viz.fonts import pil_font

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
ACCENT = (180, 40, 30)
NO_PHOTO = (215, 215, 215)
#: What a grid without hits says under its header.
NO_HITS = "一致する写真はありません (no photo matched)"
#: Lines the subtitle or the no-hit note may wrap to when even a full row of photos is too narrow.
HEADER_LINES = 3
#: Pillow format of each file suffix a grid can be written as (WebP only where Pillow has it).
SUFFIX_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: Pillow's save options for each format.
SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "PNG": {"optimize": True},
    "JPEG": {"quality": 90},
    "WEBP": {"quality": 90},
}


class GridFormatError(ToolkitError):
    """The grid's output path has a suffix that names no image format it can be written as."""


@dataclass(frozen=True)
class GridLayout:
    """Sizes in pixels; ``columns`` photos per row."""

    columns: int = 5
    photo_w: int = 240
    photo_h: int = 180
    pad: int = 12
    text_lines: int = 3
    title_size: int = 26
    body_size: int = 15

    @property
    def line_h(self) -> int:
        return self.body_size + 5

    @property
    def cell_h(self) -> int:
        # rank/score line, title line, step text lines
        return self.photo_h + 8 + 3 * self.line_h + self.text_lines * self.line_h


#: characters a line does not start with (closing brackets, punctuation, joiners: they end the line before)
NO_LINE_START = frozenset(",.;:!?)]}>%-_/、。，．・：；？！）」』】〕〉》ー")
#: characters a line does not end with (opening brackets: they go to the next line with what they open)
NO_LINE_END = frozenset("([{<（「『【〔〈《")
ELLIPSIS = "…"


def wrap_text(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Break ``text`` into at most ``max_lines`` lines no wider than ``width`` px: at a space or after
    punctuation when the line has one, else anywhere (Japanese has no spaces; a word wider than a line is
    cut); the last line ends with an ellipsis when text is left over."""
    lines: list[str] = []
    rest = text.replace("\n", " ").strip()
    while rest and len(lines) < max_lines - 1:
        line, rest = _next_line(rest, font, width)
        lines.append(line)
    if rest and max_lines > 0:
        lines.append(ellipsize(rest, font, width))
    return lines


def ellipsize(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """``text`` if it fits in ``width`` px, else its longest start that fits followed by an ellipsis."""
    if font.getlength(text) <= width:
        return text
    n = _fitting(text, font, width - font.getlength(ELLIPSIS))
    return text[:n].rstrip() + ELLIPSIS


def _fitting(text: str, font: ImageFont.FreeTypeFont, width: float) -> int:
    """How many characters from the start of ``text`` fit in ``width`` px (binary search)."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(text[:mid]) <= width:
            low = mid
        else:
            high = mid - 1
    return low


def _next_line(text: str, font: ImageFont.FreeTypeFont, width: int) -> tuple[str, str]:
    """The first line of ``text`` (no wider than ``width``) and the rest: broken at the last place
    :func:`_breakable` allows, else after as many characters as fit (at least one)."""
    n = max(1, _fitting(text, font, width))
    if n >= len(text):
        return text, ""
    at = next((i for i in range(n, 0, -1) if _breakable(text[i - 1], text[i])), n)
    return text[:at].rstrip(), text[at:].lstrip()


def _breakable(before: str, after: str) -> bool:
    """A line may break between ``before`` and ``after``: at a space; not inside a word of Latin letters or
    digits, before closing punctuation or after an opening bracket; anywhere else (Japanese)."""
    if before.isspace() or after.isspace():
        return True
    if after in NO_LINE_START or before in NO_LINE_END:
        return False
    return not (_word_char(before) and _word_char(after))


def _word_char(ch: str) -> bool:
    """A letter or digit of a script written with spaces between words (before the CJK blocks)."""
    return ch.isalnum() and ord(ch) < 0x2E80


def _photo_tile(root: Path, rel: str | None, size: tuple[int, int]) -> tuple[Image.Image, str]:
    """The photo fitted into ``size`` (letterboxed), and ``"ok"`` or why it is missing."""
    tile = Image.new("RGB", size, NO_PHOTO)
    if not rel:
        return tile, "text only"
    try:
        img = load_image(resolve_under_root(root, rel), draft_size=max(size))
    except (UnsafePathError, ImageRejected) as e:
        return tile, f"unavailable: {e}"
    scale = min(size[0] / img.width, size[1] / img.height)
    fitted = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS
    )
    tile.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return tile, "ok"


#: A line of text drawn on the grid: the text, its font and its colour.
_Line = tuple[str, ImageFont.FreeTypeFont, tuple[int, int, int]]


def _lines(
    text: str, font: ImageFont.FreeTypeFont, fill: tuple[int, int, int], width: int, n: int
) -> list[_Line]:
    return [(line, font, fill) for line in wrap_text(text, font, width, n)] if text else []


def _lines_h(lines: Sequence[_Line]) -> int:
    return sum(int(font.size) + 8 for _, font, _ in lines)


def _draw_lines(draw: ImageDraw.ImageDraw, lines: Sequence[_Line], x: int, y: int) -> None:
    for text, font, fill in lines:
        draw.text((x, y), text, font=font, fill=fill)
        y += int(font.size) + 8


def _canvas_width(lay: GridLayout, columns: int, texts: Sequence[tuple[str, ImageFont.FreeTypeFont]]) -> int:
    """The photos' width, widened for the header ``texts`` up to the width of a full row of photos."""
    tiles = columns * lay.photo_w + (columns + 1) * lay.pad
    full_row = lay.columns * lay.photo_w + (lay.columns + 1) * lay.pad
    needed = max((math.ceil(font.getlength(text)) for text, font in texts if text), default=0)
    return max(tiles, min(needed + 2 * lay.pad, full_row))


def _header(
    lay: GridLayout, columns: int, query: str, subtitle: str, has_hits: bool
) -> tuple[int, list[_Line], list[_Line]]:
    """Canvas width, the header lines (query, subtitle) and the lines said instead of photos (none if hits)."""
    title_font, body_font = pil_font(lay.title_size), pil_font(lay.body_size)
    heading = f"「{query}」"
    texts = [(heading, title_font), (subtitle, body_font)] + ([] if has_hits else [(NO_HITS, title_font)])
    width = _canvas_width(lay, columns, texts)
    text_w = width - 2 * lay.pad
    header = _lines(heading, title_font, INK, text_w, 2)
    header += _lines(subtitle, body_font, MUTED, text_w, HEADER_LINES)
    notes = [] if has_hits else _lines(NO_HITS, title_font, MUTED, text_w, HEADER_LINES)
    return width, header, notes


def render_grid(
    query: str,
    hits: Sequence[Hit],
    dataset_root: str | Path,
    subtitle: str = "",
    layout: GridLayout | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """Draw the grid; return the image and a summary (``header``: the text lines drawn, query, subtitle and
    the no-hit note; one entry per cell with its pixel box and ``caption``, the lines drawn under it). Text too
    wide for a full row of photos wraps: none is cut at the edge; a caption is cut to its cell (an ellipsis
    marks the cut), so none runs into the next one."""
    lay = layout or GridLayout()
    root = Path(dataset_root)
    body_font, small_font = pil_font(lay.body_size), pil_font(max(10, lay.body_size - 2))
    columns = max(1, min(lay.columns, len(hits) or 1))
    width, header, notes = _header(lay, columns, query, subtitle, bool(hits))
    header_h = lay.pad + _lines_h(header)
    rows = math.ceil(len(hits) / columns)
    body_h = rows * (lay.cell_h + lay.pad) if hits else lay.pad + _lines_h(notes)
    height = header_h + body_h + lay.pad
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _draw_lines(draw, header, lay.pad, lay.pad)
    _draw_lines(draw, notes, lay.pad, header_h + lay.pad)
    cells: list[dict[str, Any]] = []
    for i, hit in enumerate(hits):
        x0 = lay.pad + (i % columns) * (lay.photo_w + lay.pad)
        y0 = header_h + (i // columns) * (lay.cell_h + lay.pad)
        tile, status = _photo_tile(root, hit.image_path, (lay.photo_w, lay.photo_h))
        canvas.paste(tile, (x0, y0))
        if status != "ok":
            draw.text((x0 + 8, y0 + 8), "写真なし", font=body_font, fill=MUTED)
        caption = _caption(hit, i + 1, lay, body_font, small_font)
        for row, parts in enumerate(caption):
            for dx, text, font, fill in parts:
                draw.text((x0 + dx, y0 + lay.photo_h + 8 + row * lay.line_h), text, font=font, fill=fill)
        cells.append(
            {
                "rank": i + 1,
                "step_id": hit.step_id,
                "score": hit.score,
                "image_path": hit.image_path,
                "photo": status,
                "box": [x0, y0, x0 + lay.photo_w, y0 + lay.photo_h],
                "caption": [" ".join(text for _, text, _, _ in parts) for parts in caption],
            }
        )
    summary = {
        "query": query,
        "width": width,
        "height": height,
        "columns": columns,
        "header": [line for line, _, _ in header + notes],
        "cells": cells,
    }
    return canvas, summary


#: where the score starts on a caption's first line, after the rank
SCORE_X = 40
#: A piece of a caption line: x offset in the cell, text, font, colour.
_Part = tuple[int, str, ImageFont.FreeTypeFont, tuple[int, int, int]]


def _caption(
    hit: Hit, rank: int, lay: GridLayout, body: ImageFont.FreeTypeFont, small: ImageFont.FreeTypeFont
) -> list[list[_Part]]:
    """The lines under a photo, each cut to the cell's width (an ellipsis marks the cut): rank and score, the
    recipe title, the step id (a long id is cut before its ``(step N)``) and the step text (wrapped)."""
    width = lay.photo_w
    step = f" (step {hit.position})"
    room = width - small.getlength(step)
    step_id = f"{hit.step_id}{step}"
    if small.getlength(step_id) > width:
        step_id = (
            ellipsize(hit.step_id, small, int(room)) + step if room > 0 else ellipsize(step_id, small, width)
        )
    lines = [
        [
            (0, f"#{rank}", body, ACCENT),
            (SCORE_X, ellipsize(f"score {hit.score:.4f}", body, width - SCORE_X), body, INK),
        ],
        [(0, ellipsize(hit.title, body, width), body, INK)],
        [(0, step_id, small, MUTED)],
    ]
    return lines + [[(0, line, body, INK)] for line in wrap_text(hit.text, body, width, lay.text_lines)]


def image_format(path: str | Path) -> str:
    """The Pillow format named by ``path``'s suffix (any case); :class:`GridFormatError` for another."""
    suffixes = supported_suffixes()
    suffix = Path(path).suffix.lower()
    if suffix not in suffixes:
        given = f"the suffix {suffix!r}" if suffix else "a name without a suffix"
        raise GridFormatError(f"{path}: cannot tell the image format from {given}; use {', '.join(suffixes)}")
    return SUFFIX_FORMATS[suffix]


def supported_suffixes() -> tuple[str, ...]:
    """The suffixes :func:`write_grid` can write (``.webp`` only where Pillow was built with WebP)."""
    return tuple(s for s, fmt in SUFFIX_FORMATS.items() if fmt != "WEBP" or features.check("webp"))


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    """``image`` encoded as ``fmt`` (a Pillow format of :data:`SUFFIX_FORMATS`)."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **SAVE_OPTIONS[fmt])
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG (the HTML report inlines grids so)."""
    return image_bytes(image, "PNG")


def write_grid(
    query: str,
    hits: Sequence[Hit],
    dataset_root: str | Path,
    out: str | Path,
    subtitle: str = "",
    layout: GridLayout | None = None,
) -> dict[str, Any]:
    """Render the grid to ``out`` in the format its suffix names (checked first); return the summary with
    ``path``, ``format`` and ``bytes``."""
    fmt = image_format(out)
    image, summary = render_grid(query, hits, dataset_root, subtitle, layout)
    data = image_bytes(image, fmt)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {**summary, "path": str(path), "format": fmt, "bytes": len(data)}
