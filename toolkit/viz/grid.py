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


def wrap_text(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Break ``text`` into lines no wider than ``width`` px (by character: Japanese has no spaces);
    the last kept line ends with an ellipsis when text is left over."""
    lines: list[str] = []
    current = ""
    for ch in text.replace("\n", " "):
        if font.getlength(current + ch) <= width:
            current += ch
            continue
        lines.append(current)
        current = ch
        if len(lines) == max_lines:
            break
    else:
        if current:
            lines.append(current)
        return lines
    last = lines[-1]
    while last and font.getlength(last + "…") > width:
        last = last[:-1]
    lines[-1] = last + "…"
    return lines


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
    fitted = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    tile.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return tile, "ok"


#: A line of text drawn on the grid: the text, its font and its colour.
_Line = tuple[str, ImageFont.FreeTypeFont, tuple[int, int, int]]


def _lines(
    text: str, font: ImageFont.FreeTypeFont, fill: tuple[int, int, int], width: int, n: int
) -> list[_Line]:
    return [(line, font, fill) for line in wrap_text(text, font, width, n)] if text else []


def _lines_h(lines: Sequence[_Line]) -> int:
    return sum(font.size + 8 for _, font, _ in lines)


def _draw_lines(draw: ImageDraw.ImageDraw, lines: Sequence[_Line], x: int, y: int) -> None:
    for text, font, fill in lines:
        draw.text((x, y), text, font=font, fill=fill)
        y += font.size + 8


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
    the no-hit note; one entry per cell with its pixel box). Text too wide for a full row of photos wraps:
    none is cut at the edge."""
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
        ty = y0 + lay.photo_h + 8
        draw.text((x0, ty), f"#{i + 1}", font=body_font, fill=ACCENT)
        draw.text((x0 + 40, ty), f"score {hit.score:.4f}", font=body_font, fill=INK)
        ty += lay.line_h
        title = wrap_text(hit.title, body_font, lay.photo_w, 1)
        draw.text((x0, ty), title[0] if title else "", font=body_font, fill=INK)
        ty += lay.line_h
        draw.text((x0, ty), f"{hit.step_id} (step {hit.position})", font=small_font, fill=MUTED)
        ty += lay.line_h
        for line in wrap_text(hit.text, body_font, lay.photo_w, lay.text_lines):
            draw.text((x0, ty), line, font=body_font, fill=INK)
            ty += lay.line_h
        cells.append(
            {
                "rank": i + 1,
                "step_id": hit.step_id,
                "score": hit.score,
                "image_path": hit.image_path,
                "photo": status,
                "box": [x0, y0, x0 + lay.photo_w, y0 + lay.photo_h],
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
