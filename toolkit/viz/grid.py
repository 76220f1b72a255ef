"""A query's top-k photos as one PNG: the query on top, each photo with rank, score, recipe title and step.

Photos are opened only through :func:`toolkit.data.paths.resolve_under_root`; a missing, unsafe or
unreadable photo becomes a grey "no photo" tile (the hit is still shown).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.image.loading import ImageRejected, load_image
from toolkit.search.engine import Hit
from toolkit.viz.fonts import pil_font

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
ACCENT = (180, 40, 30)
NO_PHOTO = (215, 215, 215)


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


def render_grid(
    query: str,
    hits: Sequence[Hit],
    dataset_root: str | Path,
    subtitle: str = "",
    layout: GridLayout | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """Draw the grid; return the image and a summary (one entry per cell, with its pixel box)."""
    lay = layout or GridLayout()
    root = Path(dataset_root)
    title_font, body_font = pil_font(lay.title_size), pil_font(lay.body_size)
    small_font = pil_font(max(10, lay.body_size - 2))
    columns = max(1, min(lay.columns, len(hits) or 1))
    width = columns * lay.photo_w + (columns + 1) * lay.pad
    query_lines = wrap_text(f"「{query}」", title_font, width - 2 * lay.pad, 2)
    header_h = lay.pad + len(query_lines) * (lay.title_size + 8) + (lay.body_size + 8 if subtitle else 0)
    rows = max(1, math.ceil(len(hits) / columns))
    height = header_h + rows * (lay.cell_h + lay.pad) + lay.pad
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = lay.pad
    for line in query_lines:
        draw.text((lay.pad, y), line, font=title_font, fill=INK)
        y += lay.title_size + 8
    if subtitle:
        draw.text((lay.pad, y), subtitle, font=body_font, fill=MUTED)
    if not hits:
        draw.text((lay.pad, header_h + lay.pad), "結果なし (no hits)", font=title_font, fill=MUTED)
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
    summary = {"query": query, "width": width, "height": height, "columns": columns, "cells": cells}
    return canvas, summary


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_grid(
    query: str,
    hits: Sequence[Hit],
    dataset_root: str | Path,
    out: str | Path,
    subtitle: str = "",
    layout: GridLayout | None = None,
) -> dict[str, Any]:
    """Render the grid to the PNG file ``out``; return the summary with ``path`` and ``bytes``."""
    image, summary = render_grid(query, hits, dataset_root, subtitle, layout)
    data = png_bytes(image)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {**summary, "path": str(path), "bytes": len(data)}
