"""A synthetic "concepts" collection: many distinct everyday objects, each drawn several times, each
drawing with a one-line Japanese description (``SampleVariant(content="concepts")``).

Concept ``i`` is the noun ``NOUNS[i]`` with a look of its own, fixed by ``(seed, i)``: a shape, a
colour, a second colour for a pattern (dots, stripes or none), a count and a size. A description
names the object and some of its looks ("赤い丸い傘の絵。"), so a model can learn both the nouns it
saw and the look words that carry over to nouns it never saw. One concept is one record (a "recipe"
whose steps are its drawings); its tags give the labels graded relevance uses: ``main:`` the colour,
``method:`` the shape, ``concept:`` the noun.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from toolkit.data.sample_draw import (
    SUPERSAMPLE,
    _background,
    _ellipse,
    _jitter,
    _palette,
    _photometric,
    _restyle,
)
from toolkit.data.sample_variant import SampleVariant
from toolkit.data.schema import Recipe, Step
from toolkit.errors import ConfigError

RGB = tuple[int, int, int]

NOUNS: tuple[str, ...] = tuple(
    [
        "傘",
        "自転車",
        "時計",
        "椅子",
        "机",
        "本",
        "鉛筆",
        "花",
        "木",
        "家",
        "車",
        "船",
        "飛行機",
        "山",
        "川",
        "月",
        "星",
        "太陽",
        "雲",
        "魚",
        "鳥",
        "馬",
        "牛",
        "豚",
        "羊",
        "うさぎ",
        "犬",
        "猫",
        "りんご",
        "バナナ",
        "みかん",
        "ぶどう",
        "いちご",
        "メロン",
        "スイカ",
        "パン",
        "ケーキ",
        "帽子",
        "靴",
        "鞄",
        "眼鏡",
        "鍵",
        "電話",
        "テレビ",
        "カメラ",
        "ギター",
        "ピアノ",
        "太鼓",
        "ボール",
        "凧",
        "風船",
        "手袋",
        "靴下",
        "シャツ",
        "ズボン",
        "スカート",
        "指輪",
        "財布",
        "切手",
        "封筒",
        "はさみ",
        "定規",
        "消しゴム",
        "ノート",
        "地図",
        "旗",
        "橋",
        "塔",
        "城",
        "門",
        "窓",
        "扉",
        "階段",
        "電車",
        "バス",
        "信号",
        "看板",
        "ポスト",
        "灯台",
        "テント",
        "風車",
        "ロケット",
        "地球",
        "虹",
        "雪だるま",
        "貝",
        "かに",
        "たこ",
        "亀",
        "蛇",
        "蛙",
        "蝶",
        "蜂",
        "蟻",
        "くじら",
        "いるか",
        "ペンギン",
        "きりん",
        "象",
        "熊",
        "狐",
        "猿",
        "鶏",
        "卵",
        "茶碗",
        "箸",
        "皿",
        "鍋",
        "やかん",
        "コップ",
        "瓶",
        "缶",
        "箱",
        "ろうそく",
        "電球",
        "扇風機",
        "時計台",
        "ベッド",
        "枕",
        "布団",
        "鏡",
        "櫛",
        "歯ブラシ",
        "石鹸",
        "タオル",
        "バケツ",
        "スコップ",
        "植木鉢",
        "サボテン",
        "ひまわり",
        "チューリップ",
        "桜",
        "紅葉",
        "どんぐり",
        "きのこ",
        "栗",
        "かぼちゃ",
        "人参",
        "大根",
        "玉ねぎ",
        "トマト",
        "太鼓橋",
        "提灯",
        "鈴",
        "扇子",
        "お面",
        "こま",
        "人形",
        "積み木",
        "風鈴",
    ]
)
SHAPES: dict[str, str] = {
    "circle": "丸い",
    "square": "四角い",
    "triangle": "三角の",
    "star": "星形の",
    "bar": "細長い",
    "heart": "ハート形の",
    "ring": "リング状の",
    "cross": "十字の",
    "diamond": "ひし形の",
    "halfmoon": "半月形の",
}
COLOURS: dict[str, tuple[str, RGB]] = {
    "red": ("赤い", (210, 40, 35)),
    "blue": ("青い", (40, 80, 200)),
    "yellow": ("黄色い", (240, 205, 40)),
    "green": ("緑の", (50, 150, 60)),
    "white": ("白い", (245, 245, 240)),
    "black": ("黒い", (30, 30, 35)),
    "brown": ("茶色の", (130, 80, 40)),
    "pink": ("ピンクの", (240, 140, 180)),
    "purple": ("紫の", (130, 60, 170)),
    "orange": ("オレンジ色の", (245, 140, 30)),
}
PATTERNS = {"none": "", "dots": "水玉模様", "stripes": "しま模様"}
COUNTS = {1: "一つ", 2: "二つ", 3: "三つ"}
SIZES = {"big": "大きな", "small": "小さな"}
TEMPLATES = (
    "{C}{N}の絵。",
    "{S}{N}。",
    "{C}{S}{N}。",
    "{Z}{C}{N}のイラスト。",
    "{N}が{K}。{C}色合い。",
    "{C}{S}{N}が{K}。",
    "{P}の{N}。",
    "{N}。{C2}{P}がある。",
)


@dataclass(frozen=True)
class Concept:
    """How concept ``index`` looks (fixed by the collection's seed)."""

    index: int
    noun: str
    shape: str
    colour: str
    colour2: str
    pattern: str
    count: int
    size: str


def concept(seed: int, index: int) -> Concept:
    """Concept ``index`` of a collection with ``seed``."""
    if not 0 <= index < len(NOUNS):
        raise ConfigError(f"the concepts collection has {len(NOUNS)} concepts; index {index} is out of range")
    rng = np.random.default_rng([seed, index, 99])
    colours = list(COLOURS)
    c1, c2 = (colours[int(i)] for i in rng.permutation(len(colours))[:2])
    return Concept(
        index=index,
        noun=NOUNS[index],
        shape=list(SHAPES)[int(rng.integers(len(SHAPES)))],
        colour=c1,
        colour2=c2,
        pattern=list(PATTERNS)[int(rng.integers(len(PATTERNS)))],
        count=int(rng.integers(1, 4)),
        size=list(SIZES)[int(rng.integers(len(SIZES)))],
    )


def describe(c: Concept, rng: np.random.Generator) -> str:
    """One short description of a drawing of ``c`` (a template drawn from ``rng``)."""
    usable = [t for t in TEMPLATES if c.pattern != "none" or "{P}" not in t]
    template = usable[int(rng.integers(len(usable)))]
    colour = COLOURS[c.colour][0]
    return template.format(
        N=c.noun,
        C=colour,
        C2=COLOURS[c.colour2][0],
        S=SHAPES[c.shape],
        P=PATTERNS[c.pattern],
        K=COUNTS[c.count],
        Z=SIZES[c.size],
    )


def _outline(shape: str, cx: float, cy: float, s: float, a: float) -> list[tuple[float, float]]:
    """The polygon of ``shape`` of radius ``s`` at (cx, cy), rotated by ``a``."""
    t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    if shape in ("circle", "ring"):
        return _ellipse(cx, cy, s, s, a, n=24)
    if shape == "bar":
        return _ellipse(cx, cy, s * 1.3, s * 0.35, a, n=24)
    if shape == "heart":
        xs = 16 * np.sin(t) ** 3
        ys = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        xs, ys = xs * s / 16, ys * s / 16
    elif shape == "star":
        k = np.arange(10)
        r = np.where(k % 2 == 0, s, s * 0.45)
        xs, ys = r * np.cos(k * math.pi / 5), r * np.sin(k * math.pi / 5)
    elif shape == "cross":
        w = s * 0.35
        xs = np.array([-w, w, w, s, s, w, w, -w, -w, -s, -s, -w])
        ys = np.array([-s, -s, -w, -w, w, w, s, s, w, w, -w, -w])
    elif shape == "halfmoon":
        u = np.linspace(0, math.pi, 16)
        xs, ys = s * np.cos(u), -s * np.sin(u) + s * 0.4
    else:
        corners = {"square": 4, "triangle": 3, "diamond": 4}[shape]
        k = np.arange(corners)
        off = math.pi / 4 if shape == "square" else -math.pi / 2
        sx = 0.7 if shape == "diamond" else 1.0
        xs, ys = s * sx * np.cos(k * 2 * math.pi / corners + off), s * np.sin(k * 2 * math.pi / corners + off)
    ca, sa = math.cos(a), math.sin(a)
    return list(zip((cx + xs * ca - ys * sa).tolist(), (cy + xs * sa + ys * ca).tolist(), strict=True))


def draw_concept(c: Concept, rng: np.random.Generator, size: int, variant: SampleVariant) -> Image.Image:
    """A drawing of ``c`` in ``variant``'s style, palette and background (randomness from ``rng``)."""
    big = size * SUPERSAMPLE
    img = _background(rng, big, variant.background)
    draw = ImageDraw.Draw(img)
    fill = COLOURS[c.colour][1]
    second = COLOURS[c.colour2][1]
    scale = (0.26 if c.size == "big" else 0.15) / math.sqrt(c.count)
    centres = [(big / 2, big / 2)] if c.count == 1 else []
    while len(centres) < c.count:
        centres.append(tuple(rng.uniform(big * 0.28, big * 0.72, 2).tolist()))
    for cx, cy in centres:
        s = big * scale * rng.uniform(0.85, 1.15)
        a = rng.uniform(-0.5, 0.5)
        poly = _outline(c.shape, cx, cy, s, a)
        colour = _jitter(rng, fill, 10)
        draw.polygon(poly, fill=colour, outline=(20, 20, 20))
        if c.shape == "ring":
            draw.polygon(_ellipse(cx, cy, s * 0.55, s * 0.55, a, n=20), fill=img.getpixel((1, 1)))
        if c.pattern == "dots":
            for _ in range(5):
                dx, dy = rng.uniform(-0.45, 0.45, 2).tolist()
                r = s * 0.12
                draw.ellipse(
                    [cx + dx * s - r, cy + dy * s - r, cx + dx * s + r, cy + dy * s + r], fill=second
                )
        elif c.pattern == "stripes":
            for k in (-0.4, 0.0, 0.4):
                draw.line(
                    [(cx - s * 0.6, cy + k * s), (cx + s * 0.6, cy + k * s)],
                    fill=second,
                    width=max(2, int(s / 6)),
                )
    small = img.reduce(SUPERSAMPLE)
    return _photometric(_palette(_restyle(small, variant.style), variant.palette), rng)


def make_concept_record(
    seed: int, index: int, n_records: int, photo_ratio: float, variant: SampleVariant, drawings: int = 4
) -> tuple[Recipe, Concept]:
    """Concept ``index`` as a record: ``drawings`` steps, each a description (and a photo path)."""
    from toolkit.data.sample import IMAGES_DIR, recipe_id_for

    c = concept(seed, index)
    rid = recipe_id_for(index, n_records, variant.id_prefix)
    rng = np.random.default_rng([seed, index, 0, *variant.id_prefix.encode()])
    steps = []
    for pos in range(1, drawings + 1):
        image = f"{IMAGES_DIR}/{rid}/{pos}.jpg" if rng.random() < photo_ratio else None
        steps.append(Step(position=pos, text=describe(c, rng), image=image))
    record = Recipe(
        recipe_id=rid,
        title=c.noun,
        description=f"{COLOURS[c.colour][0]}{SHAPES[c.shape]}{c.noun}",
        steps=tuple(steps),
        tags=(f"main:{c.colour}", f"method:{c.shape}", f"concept:{c.noun}"),
    )
    return record, c


def concept_photo_jpeg(c: Concept, rng: np.random.Generator, size: int, variant: SampleVariant) -> bytes:
    buf = io.BytesIO()
    draw_concept(c, rng, size, variant).save(buf, format="JPEG", quality=int(rng.integers(80, 95)))
    return buf.getvalue()
