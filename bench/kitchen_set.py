"""A second recipe generator, unlike ``jrs sample-data``: cooking steps composed from real emoji artwork.

Every other recipe set of the quality benchmark comes from the project's own generator (PIL primitives,
its own grammar), and the defaults were screened on it. This one shares neither the drawing nor the wording:
a step photo is a scene put together from the emoji vendors' artwork (:mod:`bench.emoji_set`'s data: the
``emoji-datasource-*`` PNGs): the method's utensil drawn large (a frying pan for 炒める, a pot for 煮る, a
knife and a board for 切る, flames for 焼く, ...), the main ingredient's emoji on or around it (small and
many when cut, darker when fried or grilled, among ice cubes when chilled), now and then an unnamed second
ingredient, on a light background. The step texts come from a grammar of their own (polite and plain
endings, method-specific lead-ins, seasonings that are not drawn, alternative spellings).

One draw (``seed``): the gallery's vendor is one of the three (by seed) and the training recipes are drawn by
the other two; a quarter of the ingredient x method pairs never occur in training (``kitchen/never
trained``: the gallery's unseen pairs); gallery steps are phrased with other templates and, half the time,
other words for the ingredient and the method. Labels for graded precision: ``main`` = the ingredient,
``method`` = the method. Needs the emoji data (``$JRS_EMOJI_DIR``, see :mod:`bench.emoji_set`).
"""

from __future__ import annotations

import colorsys
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.emoji_set import CANVAS, VENDORS

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class Ingredient:
    key: str
    code: str  # emoji image file name
    names: tuple[str, ...]  # the usual word first, then other spellings / words


@dataclass(frozen=True)
class Method:
    key: str
    verb: tuple[str, str, str]  # plain, polite, te-form
    other: tuple[str, str, str]  # another verb for the same thing (same three forms)
    leads: tuple[str, ...]  # what a step of this method may start with


INGREDIENTS = (
    Ingredient("onion", "1f9c5.png", ("玉ねぎ", "たまねぎ", "玉葱")),
    Ingredient("carrot", "1f955.png", ("人参", "にんじん")),
    Ingredient("potato", "1f954.png", ("じゃがいも", "ジャガイモ")),
    Ingredient("tomato", "1f345.png", ("トマト", "完熟トマト")),
    Ingredient("greens", "1f96c.png", ("白菜", "青菜")),
    Ingredient("broccoli", "1f966.png", ("ブロッコリー", "ブロッコリ")),
    Ingredient("eggplant", "1f346.png", ("なす", "茄子")),
    Ingredient("corn", "1f33d.png", ("とうもろこし", "コーン")),
    Ingredient("mushroom", "1f344.png", ("きのこ", "マッシュルーム")),
    Ingredient("fish", "1f41f.png", ("魚", "白身魚")),
    Ingredient("chicken", "1f357.png", ("鶏肉", "とり肉")),
    Ingredient("beef", "1f969.png", ("牛肉", "ステーキ肉")),
    Ingredient("shrimp", "1f990.png", ("えび", "海老")),
    Ingredient("pepper", "1fad1.png", ("ピーマン", "パプリカ")),
    Ingredient("cucumber", "1f952.png", ("きゅうり", "胡瓜")),
    Ingredient("squid", "1f991.png", ("いか", "イカ")),
)
METHODS = (
    Method("fry", ("炒める", "炒めます", "炒めて"), ("ソテーする", "ソテーします", "ソテーして"),
           ("フライパンに油をひき、", "強火で", "フライパンで")),
    Method("simmer", ("煮る", "煮ます", "煮て"), ("煮込む", "煮込みます", "煮込んで"),
           ("鍋にだしを入れ、", "弱火で", "鍋で")),
    Method("cut", ("切る", "切ります", "切って"), ("刻む", "刻みます", "刻んで"),
           ("まな板の上で", "食べやすい大きさに", "包丁で")),
    Method("grill", ("焼く", "焼きます", "焼いて"), ("あぶる", "あぶります", "あぶって"),
           ("直火で", "グリルで", "網にのせて")),
    Method("mix", ("混ぜる", "混ぜます", "混ぜて"), ("和える", "和えます", "和えて"),
           ("ボウルに入れ、", "スプーンで", "ボウルで")),
    Method("chill", ("冷やす", "冷やします", "冷やして"), ("冷ます", "冷まします", "冷まして"),
           ("氷水に入れ、", "冷蔵庫で", "氷で")),
    Method("boil", ("茹でる", "茹でます", "茹でて"), ("ゆがく", "ゆがきます", "ゆがいて"),
           ("たっぷりの湯で", "湯を沸かし、", "塩を入れた湯で")),
    Method("plate", ("盛り付ける", "盛り付けます", "盛り付けて"), ("盛る", "盛ります", "盛って"),
           ("皿に", "器に", "最後に皿へ")),
)  # fmt: skip
SEASONINGS = ("塩こしょうをして", "醤油を少し加えて", "砂糖をひとつまみ入れて", "酒をふって", "")
ADVERBS = ("しっかり", "軽く", "手早く", "じっくり", "さっと")
#: the method's scene: its utensil emoji (large), the props around it, how the ingredient is shown
SCENES = {
    "fry": {"base": "1f373.png", "props": (), "pieces": (2, 4), "size": (0.22, 0.32), "dark": 0.72},
    "simmer": {"base": "1f372.png", "props": (), "pieces": (2, 3), "size": (0.2, 0.3), "dark": 0.9},
    "cut": {"base": None, "props": ("1f52a.png",), "pieces": (5, 8), "size": (0.12, 0.2), "dark": 1.0},
    "grill": {"base": None, "props": ("1f525.png",) * 3, "pieces": (1, 2), "size": (0.35, 0.48), "dark": 0.7},
    "mix": {"base": "1f963.png", "props": ("1f944.png",), "pieces": (3, 5), "size": (0.16, 0.24), "dark": 1.0},
    "chill": {"base": None, "props": ("1f9ca.png",) * 4, "pieces": (1, 2), "size": (0.3, 0.42), "dark": 1.0},
    "boil": {"base": "1fad5.png", "props": ("1f4a7.png",) * 3, "pieces": (2, 3), "size": (0.18, 0.26), "dark": 1.0},
    "plate": {"base": "1f37d-fe0f.png", "props": (), "pieces": (1, 2), "size": (0.28, 0.38), "dark": 1.0},
}  # fmt: skip
UNSEEN_PAIR_SHARE = 0.25
EXTRA_SHARE = 0.2  # photos that show an unnamed second ingredient
TRAIN_PHOTO_SHARE = 0.9
STEPS = (3, 4)

TRAIN_TEMPLATES = (
    "{lead}{ing}を{v}。",
    "{ing}を{adv}{v}。",
    "{lead}{ing}を{vm}。",
    "{ing}を{season}{v}。",
    "次に{ing}を{adv}{vm}。",
)
GALLERY_TEMPLATES = (
    "{ing}は{adv}{vt}おく。",
    "{ing}、{v}。",
    "{season}{ing}を{vm}",
    "{ing}を{vt}ください。",
    "そのあと{ing}を{vt}から使う。",
)


def _word(rng: random.Random, words: tuple[str, ...], other: float) -> str:
    """The usual word, or (with probability ``other``) one of the others."""
    return rng.choice(words[1:]) if len(words) > 1 and rng.random() < other else words[0]


def step_text(rng: random.Random, ing: Ingredient, method: Method, gallery: bool) -> str:
    """A step that names ``ing`` and ``method``: training wording, or the gallery's (other templates, other
    words half the time; training uses them a fifth of the time, so Word2Vec has seen them)."""
    other = 0.5 if gallery else 0.2
    forms = method.other if rng.random() < other else method.verb
    template = rng.choice(GALLERY_TEMPLATES if gallery else TRAIN_TEMPLATES)
    return template.format(
        ing=_word(rng, ing.names, other),
        v=forms[0],
        vm=forms[1],
        vt=forms[2],
        lead=rng.choice(method.leads),
        adv=rng.choice(ADVERBS),
        season=rng.choice(SEASONINGS),
    )


def _icon(
    root: Path, vendor: str, code: str, side: int, rng: random.Random, dark: float = 1.0
) -> Image.Image:
    """One vendor's emoji ``code``, ``side`` px, darkened by ``dark`` (< 1) and slightly turned."""
    from PIL import Image, ImageEnhance

    icon = Image.open(root / vendor / "img" / vendor / "64" / code).convert("RGBA")
    icon = icon.resize((side, side), Image.Resampling.BICUBIC)
    if dark < 1.0:
        rgb = ImageEnhance.Brightness(icon.convert("RGB")).enhance(dark * rng.uniform(0.9, 1.1))
        rgb.putalpha(icon.getchannel("A"))
        icon = rgb
    return icon.rotate(rng.uniform(-25, 25), resample=Image.Resampling.BICUBIC, expand=True)


def _paste(canvas: Image.Image, icon: Image.Image, cx: float, cy: float) -> None:
    """``icon`` centred on ``(cx, cy)``, at least two thirds of it inside the canvas (clipped, not moved in)."""
    x = min(max(round(cx - icon.width / 2), -icon.width // 3), CANVAS - 2 * icon.width // 3)
    y = min(max(round(cy - icon.height / 2), -icon.height // 3), CANVAS - 2 * icon.height // 3)
    canvas.paste(icon, (x, y), icon)


def draw_step(
    root: Path, vendor: str, ing: Ingredient, method: Method, extra: Ingredient | None, rng: random.Random
) -> Image.Image:
    """The step photo (RGB, ``CANVAS`` px): the method's scene with the ingredient (and ``extra``) in it."""
    from PIL import Image, ImageDraw

    scene = SCENES[method.key]
    h, s, v = rng.random(), rng.uniform(0.0, 0.2), rng.uniform(0.85, 1.0)
    canvas = Image.new(
        "RGBA", (CANVAS, CANVAS), (*(round(255 * x) for x in colorsys.hsv_to_rgb(h, s, v)), 255)
    )
    cx, cy = CANVAS * rng.uniform(0.42, 0.58), CANVAS * rng.uniform(0.42, 0.58)
    if method.key == "cut":  # a wooden board (no emoji draws one)
        w, hgt = CANVAS * rng.uniform(0.6, 0.8), CANVAS * rng.uniform(0.45, 0.6)
        wood = tuple(round(255 * x) for x in colorsys.hsv_to_rgb(0.08, rng.uniform(0.35, 0.55), 0.75))
        ImageDraw.Draw(canvas).rounded_rectangle(
            (cx - w / 2, cy - hgt / 2, cx + w / 2, cy + hgt / 2), radius=12, fill=(*wood, 255)
        )
    if scene["base"]:
        _paste(
            canvas, _icon(root, vendor, scene["base"], round(CANVAS * rng.uniform(0.62, 0.82)), rng), cx, cy
        )
    for prop in scene["props"]:  # around the middle
        angle = rng.uniform(0, 2 * math.pi)
        r = CANVAS * rng.uniform(0.28, 0.4)
        side = round(CANVAS * rng.uniform(0.14, 0.22))
        px, py = cx + r * math.cos(angle), cy + r * math.sin(angle)
        if method.key == "grill":  # flames below
            px, py = cx + CANVAS * rng.uniform(-0.3, 0.3), cy + CANVAS * rng.uniform(0.22, 0.34)
        _paste(canvas, _icon(root, vendor, prop, side, rng), px, py)
    lo, hi = scene["pieces"]
    shown = [ing] * rng.randint(lo, hi) + ([extra] * rng.randint(1, 2) if extra else [])
    rng.shuffle(shown)
    spread = CANVAS * (0.22 if method.key in ("cut", "mix") else 0.14)
    for item in shown:
        side = round(CANVAS * rng.uniform(*scene["size"]))
        icon = _icon(root, vendor, item.code, side, rng, dark=scene["dark"])
        _paste(canvas, icon, cx + rng.uniform(-spread, spread), cy + rng.uniform(-spread, spread))
    return canvas.convert("RGB")


def _save(img: Image.Image, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.save(dest, quality=90)


def write_kitchen_set(
    root: Path, out: Path, seed: int, train_recipes: int = 320, gallery_steps: int = 480
) -> tuple[Path, Path]:
    """Write draw ``seed`` as ``out/train`` and ``out/gallery`` (recipes.jsonl + images; reused when there).
    The gallery is one photo step per recipe, tagged with its labels and ``twin:`` every training recipe that
    has its ingredient x method pair (none: a pair never trained on)."""
    train, gallery = out / "train", out / "gallery"
    if (train / "recipes.jsonl").is_file() and (gallery / "recipes.jsonl").is_file():
        return train, gallery
    rng = random.Random(seed)
    gallery_vendor = VENDORS[seed % len(VENDORS)]
    train_vendors = [v for v in VENDORS if v != gallery_vendor]
    pairs = [(i, m) for i in range(len(INGREDIENTS)) for m in range(len(METHODS))]
    unseen = set(rng.sample(pairs, round(UNSEEN_PAIR_SHARE * len(pairs))))
    seen_methods = {
        i: [m for m in range(len(METHODS)) if (i, m) not in unseen] for i in range(len(INGREDIENTS))
    }
    has_pair: dict[tuple[int, int], list[str]] = {}
    train_rows = []
    for r in range(train_recipes):
        rid = f"k{r:05d}"
        i = rng.randrange(len(INGREDIENTS))
        ing = INGREDIENTS[i]
        methods = rng.sample(seen_methods[i], min(rng.randint(*STEPS), len(seen_methods[i])))
        steps = []
        for pos, m in enumerate(methods, start=1):
            method = METHODS[m]
            step = {"position": pos, "text": step_text(rng, ing, method, gallery=False)}
            if rng.random() < TRAIN_PHOTO_SHARE:
                extra = (
                    rng.choice([x for x in INGREDIENTS if x != ing]) if rng.random() < EXTRA_SHARE else None
                )
                step["image"] = f"images/{rid}/{pos}.jpg"
                _save(
                    draw_step(root, rng.choice(train_vendors), ing, method, extra, rng), train / step["image"]
                )
                has_pair.setdefault((i, m), []).append(rid)
            steps.append(step)
        train_rows.append(
            {
                "recipe_id": rid,
                "title": f"{ing.names[0]}の{rng.choice(('おかず', '一品', '料理', '副菜'))}",
                "description": "",
                "ingredients": [{"name": ing.names[0]}],
                "steps": steps,
                "tags": [f"main:{ing.key}", f"style:{'+'.join(train_vendors)}"],
            }
        )
    gallery_rows = []
    for g in range(gallery_steps):
        gid = f"q{g:05d}"
        i, m = pairs[g % len(pairs)] if g < len(pairs) else rng.choice(pairs)
        ing, method = INGREDIENTS[i], METHODS[m]
        extra = rng.choice([x for x in INGREDIENTS if x != ing]) if rng.random() < EXTRA_SHARE else None
        image = f"images/{gid}/1.jpg"
        _save(draw_step(root, gallery_vendor, ing, method, extra, rng), gallery / image)
        gallery_rows.append(
            {
                "recipe_id": gid,
                "title": ing.names[0],
                "description": "",
                "ingredients": [],
                "steps": [{"position": 1, "text": step_text(rng, ing, method, gallery=True), "image": image}],
                "tags": [f"main:{ing.key}", f"method:{method.key}", f"style:{gallery_vendor}"]
                + [f"twin:{t}" for t in has_pair.get((i, m), [])],
            }
        )
    for path, rows in ((train, train_rows), (gallery, gallery_rows)):
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "recipes.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(path / "recipes.jsonl")
    return train, gallery
