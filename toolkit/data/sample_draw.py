"""Draw a synthetic step photo whose content follows the step text.

The method picks the scene (cutting board, frying pan, pot, fryer, oven tray, steamer, bowl,
plate), each ingredient brings its colour and shape, the cut decides the pieces, and heat and
doneness brown them. Random background, placement, rotation, lighting and noise keep the link
learnable but not trivial: the same text never draws the same photo twice.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from toolkit.data.sample_grammar import CUTS, INGREDIENTS, METHODS, SEASONINGS, step_labels
from toolkit.data.sample_variant import SampleVariant

RGB = tuple[int, int, int]
SUPERSAMPLE = 2

_BACKGROUNDS: tuple[tuple[RGB, str], ...] = (
    ((196, 160, 112), "wood"),
    ((140, 98, 62), "wood"),
    ((226, 224, 218), "speckle"),
    ((96, 100, 108), "speckle"),
    ((214, 206, 190), "plain"),
    ((176, 196, 214), "check"),
    ((212, 172, 168), "check"),
    ((62, 60, 58), "plain"),
)

#: The ``cloth`` background set of :class:`SampleVariant`: table cloths and mats the default never draws.
_CLOTH_BACKGROUNDS: tuple[tuple[RGB, str], ...] = (
    ((40, 70, 140), "stripe"),
    ((150, 40, 45), "stripe"),
    ((60, 120, 80), "dots"),
    ((235, 200, 80), "dots"),
    ((120, 60, 140), "plain"),
    ((30, 110, 120), "stripe"),
)
#: Per-channel gains of the palettes, and how much colour each keeps (1: all).
_PALETTES: dict[str, tuple[tuple[float, float, float], float]] = {
    "natural": ((1.0, 1.0, 1.0), 1.0),
    "warm": ((1.12, 0.98, 0.78), 1.0),
    "cool": ((0.82, 0.97, 1.15), 1.0),
    "muted": ((1.0, 1.0, 1.0), 0.45),
}

_LIQUID = {"煮る": (196, 150, 88), "茹でる": (196, 218, 228), "揚げる": (222, 178, 66)}
_BROWN: RGB = (112, 64, 24)
_DONE_BROWNING = {
    "飴色になるまで": 0.45,
    "こんがりと": 0.35,
    "きつね色になるまで": 0.3,
    "カラッと": 0.25,
    "火が通るまで": 0.1,
    "しんなりするまで": 0.05,
}
_HEAT_BROWNING = {"弱火": 0.0, "中火": 0.08, "強火": 0.18}
_BASE_COUNTS = {
    "round": (3, 5),
    "long": (2, 4),
    "leafy": (3, 6),
    "blocky": (3, 6),
    "grain": (60, 90),
    "flat": (4, 7),
    "curved": (5, 8),
    "floret": (4, 7),
    "cap": (5, 8),
    "blob": (1, 3),
    "small": (3, 6),
}
_BASE_SIZE = {"grain": 0.018, "small": 0.05, "curved": 0.08, "floret": 0.07, "cap": 0.07, "blob": 0.16}


def _clip(c: tuple[float, float, float]) -> RGB:
    return (min(255, max(0, int(c[0]))), min(255, max(0, int(c[1]))), min(255, max(0, int(c[2]))))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    u = 1.0 - t
    return _clip((a[0] * u + b[0] * t, a[1] * u + b[1] * t, a[2] * u + b[2] * t))


def _jitter(rng: np.random.Generator, c: RGB, amount: float) -> RGB:
    d = rng.normal(0, amount, 3).tolist()
    return _clip((c[0] + d[0], c[1] + d[1], c[2] + d[2]))


def _poly(cx: float, cy: float, xs: np.ndarray, ys: np.ndarray, angle: float) -> list[tuple[float, float]]:
    ca, sa = math.cos(angle), math.sin(angle)
    px = cx + xs * ca - ys * sa
    py = cy + xs * sa + ys * ca
    return list(zip(px.tolist(), py.tolist(), strict=True))


_UNIT: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 14
) -> list[tuple[float, float]]:
    if n not in _UNIT:
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        _UNIT[n] = (np.cos(t), np.sin(t))
    cos_t, sin_t = _UNIT[n]
    return _poly(cx, cy, rx * cos_t, ry * sin_t, angle)


class _Frame:
    """The scene's placement: a rotation by ``angle`` about the image centre plus a shift."""

    def __init__(self, size: float, angle: float, dx: float, dy: float) -> None:
        self.c = size / 2
        self.ca, self.sa = math.cos(angle), math.sin(angle)
        self.angle, self.dx, self.dy = angle, dx, dy

    def pt(self, x: float, y: float) -> tuple[float, float]:
        x, y = x - self.c, y - self.c
        return (self.c + self.dx + x * self.ca - y * self.sa, self.c + self.dy + x * self.sa + y * self.ca)

    def pts(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [self.pt(x, y) for x, y in points]

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
        return self.pts([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def circle(self, cx: float, cy: float, r: float) -> list[float]:
        x, y = self.pt(cx, cy)
        return [x - r, y - r, x + r, y + r]


def _piece(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    kind: str,
    cx: float,
    cy: float,
    s: float,
    fill: RGB,
    edge: RGB,
) -> None:
    """Draw one piece of food of shape ``kind`` and size ``s`` (pixels) centred at (cx, cy)."""
    a = rng.uniform(0, 2 * math.pi)
    r: float | np.ndarray  # one radius, or one per vertex
    if kind in ("round", "small"):
        r = s * rng.uniform(0.85, 1.1)
        draw.polygon(_ellipse(cx, cy, r, r * rng.uniform(0.85, 1.0), a), fill=edge)
        draw.polygon(_ellipse(cx, cy, r * 0.8, r * 0.75, a), fill=fill)
    elif kind == "long":
        draw.polygon(_ellipse(cx, cy, s * 1.8, s * 0.45, a), fill=edge)
        draw.polygon(_ellipse(cx, cy, s * 1.6, s * 0.3, a), fill=fill)
    elif kind in ("leafy", "rough"):
        n = 12
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        r = s * (1 + 0.25 * np.sin(3 * t + rng.uniform(0, 6))) * rng.uniform(0.8, 1.1)
        draw.polygon(_poly(cx, cy, r * np.cos(t), r * 0.8 * np.sin(t), a), fill=fill, outline=edge)
        draw.line(_poly(cx, cy, np.array([-s * 0.8, s * 0.8]), np.array([0.0, 0.0]), a), fill=edge, width=1)
    elif kind in ("blocky", "square"):
        w, h = s * rng.uniform(0.8, 1.0), s * rng.uniform(0.7, 1.0)
        xs, ys = np.array([-w, w, w, -w]), np.array([-h, -h, h, h])
        draw.polygon(_poly(cx, cy, xs, ys, a), fill=fill, outline=edge)
    elif kind == "grain":
        draw.polygon(_ellipse(cx, cy, s * 1.4, s * 0.8, a, n=8), fill=fill, outline=edge)
    elif kind == "flat":
        draw.polygon(_ellipse(cx, cy, s * 1.4, s * 0.7, a, n=10), fill=fill, outline=edge)
        draw.line(_poly(cx, cy, np.array([-s, s]), np.array([s * 0.2, s * 0.2]), a), fill=edge, width=1)
    elif kind == "curved":
        t = np.linspace(0.2 * math.pi, 1.3 * math.pi, 8)
        outer = np.stack([np.cos(t), np.sin(t)]) * s
        inner = np.stack([np.cos(t[::-1]), np.sin(t[::-1])]) * s * 0.5
        xs = np.concatenate([outer[0], inner[0]])
        ys = np.concatenate([outer[1], inner[1]])
        draw.polygon(_poly(cx, cy, xs, ys, a), fill=fill, outline=edge)
    elif kind == "floret":
        draw.line(
            _poly(cx, cy, np.array([0.0, 0.0]), np.array([0.0, s * 1.2]), a),
            fill=fill,
            width=max(1, int(s / 3)),
        )
        for _ in range(4):
            ox, oy = rng.normal(0, s * 0.35, 2)
            draw.polygon(_ellipse(cx + ox, cy + oy, s * 0.45, s * 0.45, 0.0, n=8), fill=edge)
    elif kind == "cap":
        draw.polygon(
            _poly(cx, cy, np.array([-s * 0.2, s * 0.2, s * 0.2, -s * 0.2]), np.array([0.0, 0.0, s, s]), a),
            fill=fill,
        )
        t = np.linspace(math.pi, 2 * math.pi, 9)
        draw.polygon(_poly(cx, cy, s * 0.8 * np.cos(t), s * 0.6 * np.sin(t), a), fill=edge)
    elif kind == "blob":
        n = 12
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        r = s * rng.uniform(0.75, 1.15, n)
        draw.polygon(_poly(cx, cy, r * np.cos(t), r * np.sin(t), a), fill=fill)
    elif kind == "slice":
        draw.polygon(_ellipse(cx, cy, s, s * rng.uniform(0.18, 0.3), a, n=12), fill=fill, outline=edge)
    elif kind == "irregular":
        n = int(rng.integers(5, 7))
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        r = s * rng.uniform(0.7, 1.2, n)
        draw.polygon(_poly(cx, cy, r * np.cos(t), r * np.sin(t), a), fill=fill, outline=edge)
    elif kind == "strip":
        w = max(s * 0.08, 1.0)
        xs, ys = np.array([-s, s, s, -s]), np.array([-w, -w, w, w])
        draw.polygon(_poly(cx, cy, xs, ys, a), fill=fill)
    elif kind == "wedge":
        t = np.linspace(-0.55, 0.55, 7)
        xs = np.concatenate([[0.0], s * np.cos(t)])
        ys = np.concatenate([[0.0], s * np.sin(t)])
        draw.polygon(_poly(cx, cy, xs - s / 2, ys, a), fill=fill, outline=edge)
        draw.line(_poly(cx, cy, s * np.cos(t) - s / 2, s * np.sin(t), a), fill=edge, width=max(1, int(s / 6)))
    else:  # "chunk"
        n = 10
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        r = s * rng.uniform(0.8, 1.1, n)
        draw.polygon(_poly(cx, cy, r * np.cos(t), r * np.sin(t), a), fill=fill, outline=edge)


def _background(rng: np.random.Generator, size: int, kind: str = "kitchen") -> Image.Image:
    choices = _CLOTH_BACKGROUNDS if kind == "cloth" else _BACKGROUNDS
    base, pattern = choices[int(rng.integers(len(choices)))]
    base = _jitter(rng, base, 14)
    img = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(img)
    step: int | float
    if pattern == "wood":
        darker = _mix(base, (60, 35, 15), 0.25)
        for _ in range(int(rng.integers(6, 12))):
            y = rng.uniform(0, size)
            draw.line(
                [(0, y), (size, y + rng.normal(0, size * 0.05))], fill=darker, width=int(rng.integers(1, 4))
            )
    elif pattern == "check":
        step = int(size / rng.uniform(4, 8))
        other = _mix(base, (255, 255, 255), 0.45)
        for i in range(0, size, step):
            for j in range(0, size, step):
                if (i // step + j // step) % 2:
                    draw.rectangle([i, j, i + step, j + step], fill=other)
    elif pattern == "speckle":
        dots = _mix(base, (0, 0, 0), 0.3)
        for x, y in rng.uniform(0, size, (40, 2)).tolist():
            draw.point((x, y), fill=dots)
    elif pattern == "stripe":
        light = _mix(base, (255, 255, 255), 0.55)
        step = int(size / rng.uniform(5, 9))
        for x in range(0, 2 * size, 2 * step):
            draw.polygon([(x, 0), (x + step, 0), (x + step - size, size), (x - size, size)], fill=light)
    elif pattern == "dots":
        light = _mix(base, (255, 255, 255), 0.6)
        step = size / rng.uniform(5, 8)
        for i in range(int(size / step) + 1):
            for j in range(int(size / step) + 1):
                cx, cy = (i + 0.5 * (j % 2)) * step, j * step
                draw.ellipse([cx - step * 0.2, cy - step * 0.2, cx + step * 0.2, cy + step * 0.2], fill=light)
    return img


def _container(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    f: _Frame,
    labels: dict[str, Any],
    r: float,
) -> tuple[float, bool]:
    """Draw the vessel of the step's scene; return the radius pieces may use and whether it is round."""
    scene, method, seasonings = labels["scene"] or "plate", labels["method"], labels["seasonings"]
    c = f.c
    if scene == "board":
        wood = _jitter(rng, (222, 186, 132), 12)
        draw.polygon(
            f.rect(c - r, c - r * 0.75, c + r, c + r * 0.75), fill=wood, outline=_mix(wood, (0, 0, 0), 0.3)
        )
        if rng.random() < 0.6:  # a knife
            y = c + r * rng.uniform(0.45, 0.65)
            blade = [(c - r * 0.9, y), (c + r * 0.2, y - r * 0.12), (c + r * 0.2, y)]
            draw.polygon(f.pts(blade), fill=(205, 208, 212))
            draw.polygon(f.rect(c + r * 0.2, y - r * 0.1, c + r * 0.7, y), fill=(40, 30, 25))
        return r * 0.8, False
    if scene == "pan":
        grey = _jitter(rng, (58, 58, 62), 8)
        ang = rng.uniform(0, 2 * math.pi)
        handle = [f.pt(c, c), f.pt(c + math.cos(ang) * r * 1.6, c + math.sin(ang) * r * 1.6)]
        draw.line(handle, fill=(30, 30, 30), width=max(2, int(r * 0.16)))
        draw.ellipse(f.circle(c, c, r), fill=grey)
        inner = _mix(grey, (90, 90, 95), 0.5)
        if "ごま油" in seasonings or "バター" in seasonings:
            inner = _mix(inner, (190, 140, 50), 0.25)
        draw.ellipse(f.circle(c, c, r * 0.88), fill=inner)
        return r * 0.75, True
    if scene in ("pot", "fryer"):
        metal = _jitter(rng, (175, 178, 184), 10)
        for side in (-1, 1):
            x = c + side * r * 1.05
            draw.polygon(
                f.rect(x - r * 0.12, c - r * 0.1, x + r * 0.12, c + r * 0.1), fill=_mix(metal, (0, 0, 0), 0.4)
            )
        draw.ellipse(f.circle(c, c, r), fill=metal)
        liquid = _LIQUID.get(method or "", _LIQUID["煮る"]) if scene == "pot" else _LIQUID["揚げる"]
        if method == "煮る":
            for name in seasonings:
                if name in ("醤油", "味噌", "ケチャップ", "コンソメ"):
                    liquid = _mix(liquid, SEASONINGS[name], 0.35)
        liquid = _jitter(rng, liquid, 8)
        draw.ellipse(f.circle(c, c, r * 0.86), fill=liquid)
        if method in ("茹でる", "揚げる"):
            bubble = _mix(liquid, (255, 255, 255), 0.6)
            for _ in range(int(rng.integers(6, 16))):
                bx, by = rng.normal(c, r * 0.4, 2).tolist()
                draw.ellipse(f.circle(bx, by, r * rng.uniform(0.03, 0.07)), outline=bubble)
        return r * 0.72, True
    if scene == "tray":
        draw.polygon(f.rect(c - r, c - r * 0.8, c + r, c + r * 0.8), fill=_jitter(rng, (70, 70, 74), 8))
        if rng.random() < 0.6:
            paper = _jitter(rng, (236, 226, 200), 6)
            draw.polygon(f.rect(c - r * 0.88, c - r * 0.68, c + r * 0.88, c + r * 0.68), fill=paper)
        return r * 0.75, False
    if scene == "steamer":
        bamboo = _jitter(rng, (204, 172, 112), 10)
        draw.ellipse(f.circle(c, c, r), fill=bamboo, outline=_mix(bamboo, (0, 0, 0), 0.35), width=3)
        line = _mix(bamboo, (0, 0, 0), 0.2)
        for k in range(-4, 5):
            x = c + k * r * 0.2
            draw.line([f.pt(x, c - r * 0.8), f.pt(x, c + r * 0.8)], fill=line, width=1)
        return r * 0.75, True
    if scene == "bowl":
        glaze = _jitter(rng, ((240, 240, 236), (70, 90, 140), (214, 190, 150))[int(rng.integers(3))], 10)
        draw.ellipse(f.circle(c, c, r), fill=glaze)
        draw.ellipse(f.circle(c, c, r * 0.82), fill=_mix(glaze, (0, 0, 0), 0.1))
        return r * 0.68, True
    plate = _jitter(rng, (246, 246, 242) if rng.random() < 0.7 else (180, 120, 90), 6)
    draw.ellipse(f.circle(c, c, r), fill=_mix(plate, (0, 0, 0), 0.08))
    draw.ellipse(f.circle(c, c, r * 0.8), fill=plate)
    return r * 0.72, True


def _browning(labels: dict[str, Any]) -> float:
    method = labels["method"]
    b = METHODS[method].browning if method else 0.0
    if method not in (None, "切る", "茹でる", "蒸す", "混ぜる"):
        b += _HEAT_BROWNING.get(labels["heat"] or "", 0.04)
        b += _DONE_BROWNING.get(labels["doneness"] or "", 0.0)
        b += min(labels["minutes"] or 0, 15) * 0.01
    return float(min(b, 0.85))


def _extra_ingredient(labels: dict[str, Any], rng: np.random.Generator) -> str:
    """An ingredient the step does not name (drawn into its photo by the ``extra`` variant)."""
    others = [n for n in INGREDIENTS if n not in labels["ingredients"]]
    return others[int(rng.integers(len(others)))]


def draw_step_photo(
    text: str, rng: np.random.Generator, size: int = 96, variant: SampleVariant | None = None
) -> Image.Image:
    """Draw an RGB ``size`` x ``size`` photo for the step ``text`` (randomness from ``rng``).

    ``variant`` changes the drawing style, palette and background, and may add an unnamed ingredient
    (its own randomness comes after the default drawing's, so the default photo is unchanged).
    """
    labels = step_labels(text)
    v = variant or SampleVariant()
    shown = list(labels["ingredients"][:3])
    if v.extra > 0 and rng.random() < v.extra:
        shown = shown[:2] + [_extra_ingredient(labels, rng)]
    big = size * SUPERSAMPLE
    img = _background(rng, big, v.background)
    draw = ImageDraw.Draw(img)
    shift = rng.normal(0, big * 0.04, 2).tolist()
    f = _Frame(big, rng.uniform(-math.pi, math.pi), shift[0], shift[1])
    c = f.c
    r = big * rng.uniform(0.36, 0.46)
    room, round_ = _container(draw, rng, f, labels, r)

    browning = _browning(labels)
    target = (200, 140, 50) if labels["method"] == "揚げる" else _BROWN
    broth = _LIQUID["煮る"] if labels["method"] == "煮る" else None
    clear = labels["doneness"] == "透き通るまで"
    cut = CUTS[labels["cut"]] if labels["cut"] else None
    for k, name in enumerate(shown):
        spec = INGREDIENTS[name]
        if cut is not None and k == 0 and name != "卵":
            kind, size_f, (lo, hi) = cut.piece, cut.size, cut.count
            fill, edge = spec.flesh, spec.skin
        else:
            kind = spec.shape
            size_f = _BASE_SIZE.get(kind, 0.09)
            lo, hi = _BASE_COUNTS[kind]
            fill, edge = spec.skin, _mix(spec.skin, (0, 0, 0), 0.25)
        count = int(rng.integers(lo, hi + 1))
        if k > 0:
            count = max(1, int(count * 0.6))
        browns = np.clip(browning + rng.normal(0, 0.06, count), 0, 0.9).tolist()
        for b in browns:
            pf = _mix(_jitter(rng, fill, 10), target, b)
            pe = _mix(edge, target, b)
            if clear:
                pf = _mix(pf, (250, 248, 240), 0.35)
            if broth is not None:
                pf = _mix(pf, broth, 0.2)
            if round_:
                rad = room * math.sqrt(rng.random())
                ang = rng.uniform(0, 2 * math.pi)
                px, py = f.pt(c + rad * math.cos(ang), c + rad * math.sin(ang))
            else:
                px, py = f.pt(c + rng.uniform(-room, room), c + rng.uniform(-room * 0.7, room * 0.7))
            _piece(draw, rng, kind, px, py, size_f * big * rng.uniform(0.75, 1.25), pf, pe)

    if labels["method"] in ("蒸す", "茹でる") and rng.random() < 0.7:  # steam
        for _ in range(int(rng.integers(2, 5))):
            sx, sy = rng.normal(c, r * 0.5, 2).tolist()
            draw.arc(f.circle(sx, sy, r * rng.uniform(0.15, 0.3)), 180, 300, fill=(245, 245, 245), width=2)
    small = img.reduce(SUPERSAMPLE)
    if not v.plain_photos:
        small = _palette(_restyle(small, v.style), v.palette)
    return _photometric(small, rng)


def _restyle(img: Image.Image, style: str) -> Image.Image:
    """Another drawing style: ``ink`` outlines over pale washes, ``soft`` painterly blur, ``mosaic`` tiles."""
    size = img.size[0]
    if style == "ink":
        edges = img.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda p: 255 - min(255, p * 3))
        pale = Image.blend(img, Image.new("RGB", img.size, (250, 248, 240)), 0.55)
        return Image.composite(pale, Image.new("RGB", img.size, (25, 25, 30)), edges)
    if style == "soft":
        blurred = img.filter(ImageFilter.GaussianBlur(radius=max(1.0, size / 40)))
        return blurred.quantize(colors=12, method=Image.Quantize.MEDIANCUT).convert("RGB")
    if style == "mosaic":
        tiles = max(4, size // 6)
        return img.resize((tiles, tiles), Image.Resampling.BOX).resize(img.size, Image.Resampling.NEAREST)
    return img


def _palette(img: Image.Image, palette: str) -> Image.Image:
    gains, keep = _PALETTES[palette]
    if palette == "natural":
        return img
    arr = np.asarray(img, dtype=np.float32)
    if keep < 1.0:
        grey = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        arr = grey[..., None] + keep * (arr - grey[..., None])
    arr = arr * np.asarray(gains, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}
#: Gaussian noise drawn once; each photo takes a random window of it (deterministic, and cheap).
_NOISE = np.random.default_rng(20240).standard_normal(1 << 21, dtype=np.float32)


def _photometric(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Lighting gradient, white balance, brightness and sensor noise."""
    size = img.size[0]
    if size not in _GRIDS:
        g = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        _GRIDS[size] = (g[None, :], g[:, None])
    gx, gy = _GRIDS[size]
    arr: np.ndarray = np.asarray(img, dtype=np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    light = 1.0 + np.float32(rng.uniform(0.0, 0.18)) * (
        np.float32(math.cos(ang)) * gx + np.float32(math.sin(ang)) * gy
    )
    gain = (rng.uniform(0.85, 1.12) * (1.0 + rng.normal(0, 0.04, 3))).astype(np.float32)
    arr = arr * light[..., None] * gain
    n = arr.size
    if n <= _NOISE.size // 2:
        start = int(rng.integers(0, _NOISE.size - n))
        noise = _NOISE[start : start + n].reshape(arr.shape)
    else:
        noise = rng.standard_normal(arr.shape, dtype=np.float32)
    arr += noise * np.float32(rng.uniform(2.0, 8.0))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def step_photo_jpeg(
    text: str, rng: np.random.Generator, size: int = 96, variant: SampleVariant | None = None
) -> bytes:
    """The JPEG bytes of :func:`draw_step_photo` (quality varies a little, from ``rng``)."""
    img = draw_step_photo(text, rng, size, variant)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(80, 95)))
    return buf.getvalue()
