"""The vocabulary and sentence grammar of the synthetic recipe corpus, and its inverse (:func:`step_labels`).

Everything a step photo shows is recoverable from the step text: the ingredients (each with a
colour and a shape), the cut, the cooking method (which decides the scene), the heat, the time and
the doneness. Evaluation can use :func:`step_labels` to label steps (main ingredient, method).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.data.sample_variant import combo_allowed

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class IngredientSpec:
    """A food: ``skin`` colours whole pieces and outlines, ``flesh`` fills cut pieces."""

    name: str
    skin: RGB
    flesh: RGB
    shape: str  # base shape when not cut: round, long, leafy, blocky, grain, flat, curved, floret, cap, blob, small
    kind: str  # veg, meat, fish, other
    cuts: tuple[str, ...]
    units: tuple[str, ...]
    peel: bool = False


@dataclass(frozen=True)
class CutSpec:
    """A cut: how it is said (``stem`` + ます, ``te``) and what pieces it makes."""

    name: str
    stem: str
    te: str
    piece: str  # slice, square, irregular, strip, wedge, rough, chunk
    size: float  # piece size as a fraction of the image side
    count: tuple[int, int]


@dataclass(frozen=True)
class MethodSpec:
    """A cooking method: its verb forms, the scene a photo shows, dishes and compatible doneness phrases."""

    name: str
    stem: str
    te: str
    scene: str  # board, pan, pot, fryer, tray, steamer, bowl, plate
    dishes: tuple[str, ...]
    doneness: tuple[str, ...]
    browning: float


def _ing(name: str, skin: RGB, flesh: RGB, shape: str, kind: str, cuts: str, units: str, peel: bool = False):
    return IngredientSpec(name, skin, flesh, shape, kind, tuple(cuts.split()), tuple(units.split()), peel)


INGREDIENTS: dict[str, IngredientSpec] = {
    i.name: i
    for i in [
        _ing(
            "玉ねぎ",
            (205, 160, 95),
            (238, 226, 190),
            "round",
            "veg",
            "薄切り みじん切り くし形切り 角切り",
            "1個 1/2個",
            True,
        ),
        _ing(
            "にんじん",
            (225, 105, 25),
            (242, 130, 40),
            "long",
            "veg",
            "薄切り みじん切り 乱切り 角切り 千切り",
            "1本 1/2本",
            True,
        ),
        _ing(
            "じゃがいも",
            (175, 135, 80),
            (232, 208, 145),
            "round",
            "veg",
            "乱切り 角切り 薄切り 千切り",
            "2個 3個",
            True,
        ),
        _ing(
            "キャベツ",
            (125, 185, 95),
            (200, 230, 160),
            "leafy",
            "veg",
            "千切り ざく切り 角切り",
            "1/4個 3枚 200g",
        ),
        _ing("トマト", (200, 30, 25), (225, 60, 45), "round", "veg", "くし形切り 角切り 薄切り", "1個 2個"),
        _ing("ピーマン", (30, 125, 40), (80, 165, 70), "round", "veg", "千切り 乱切り 角切り", "2個 3個"),
        _ing("なす", (75, 30, 85), (228, 218, 175), "long", "veg", "乱切り 薄切り 角切り", "1本 2本"),
        _ing("きのこ", (135, 95, 60), (215, 195, 160), "cap", "veg", "薄切り", "1パック 100g"),
        _ing("ブロッコリー", (40, 110, 45), (120, 170, 90), "floret", "veg", "", "1/2株 1株"),
        _ing("ほうれん草", (30, 95, 35), (55, 125, 50), "leafy", "veg", "ざく切り", "1束 1/2束"),
        _ing(
            "大根",
            (235, 235, 222),
            (245, 245, 235),
            "long",
            "veg",
            "薄切り 角切り 千切り 乱切り",
            "1/3本 10cm",
            True,
        ),
        _ing(
            "かぼちゃ",
            (45, 80, 40),
            (245, 170, 35),
            "blocky",
            "veg",
            "角切り 薄切り くし形切り",
            "1/4個 200g",
        ),
        _ing("ねぎ", (95, 160, 70), (215, 232, 190), "long", "veg", "薄切り みじん切り 千切り", "1本 1/2本"),
        _ing(
            "しょうが",
            (190, 155, 100),
            (235, 215, 150),
            "small",
            "veg",
            "みじん切り 千切り 薄切り",
            "1かけ",
            True,
        ),
        _ing(
            "にんにく",
            (235, 225, 205),
            (248, 242, 225),
            "small",
            "veg",
            "みじん切り 薄切り",
            "1かけ 2かけ",
            True,
        ),
        _ing("白菜", (150, 200, 110), (238, 242, 215), "leafy", "veg", "ざく切り 千切り", "1/8個 2枚"),
        _ing("れんこん", (200, 170, 125), (236, 224, 195), "round", "veg", "薄切り 乱切り", "1節 150g", True),
        _ing("鶏肉", (235, 195, 165), (240, 205, 180), "blocky", "meat", "一口大 角切り 薄切り", "1枚 300g"),
        _ing("豚肉", (230, 150, 150), (238, 170, 165), "flat", "meat", "一口大 千切り", "200g 150g"),
        _ing("牛ひき肉", (150, 55, 50), (165, 70, 60), "grain", "meat", "", "200g 150g"),
        _ing("鮭", (240, 120, 85), (248, 140, 105), "flat", "fish", "一口大 角切り", "2切れ 1切れ"),
        _ing("えび", (235, 140, 120), (245, 175, 160), "curved", "fish", "", "8尾 10尾"),
        _ing("豆腐", (245, 244, 232), (248, 248, 238), "blocky", "other", "角切り 一口大", "1丁 1/2丁"),
        _ing("卵", (250, 205, 55), (252, 220, 90), "blob", "other", "", "2個 3個"),
        _ing("ごはん", (248, 247, 240), (250, 250, 245), "grain", "other", "", "茶碗2杯 300g"),
        _ing("ベーコン", (200, 85, 85), (225, 130, 120), "flat", "meat", "角切り 千切り", "2枚 4枚"),
    ]
}

#: Ingredients that season rather than star in a dish.
AROMATICS = ("しょうが", "にんにく", "ねぎ")

CUTS: dict[str, CutSpec] = {
    c.name: c
    for c in [
        CutSpec("薄切り", "薄切りにし", "薄切りにして", "slice", 0.11, (8, 13)),
        CutSpec("みじん切り", "みじん切りにし", "みじん切りにして", "square", 0.022, (35, 55)),
        CutSpec("乱切り", "乱切りにし", "乱切りにして", "irregular", 0.085, (6, 9)),
        CutSpec("角切り", "角切りにし", "角切りにして", "square", 0.06, (9, 15)),
        CutSpec("千切り", "千切りにし", "千切りにして", "strip", 0.13, (25, 40)),
        CutSpec("くし形切り", "くし形切りにし", "くし形切りにして", "wedge", 0.11, (6, 9)),
        CutSpec("ざく切り", "ざく切りにし", "ざく切りにして", "rough", 0.1, (7, 11)),
        CutSpec("一口大", "一口大に切り", "一口大に切って", "chunk", 0.08, (6, 9)),
    ]
}

_ALL_DONE = {
    "amber": "飴色になるまで",
    "crisp": "こんがりと",
    "golden": "きつね色になるまで",
    "dry": "カラッと",
    "tender": "柔らかくなるまで",
    "wilt": "しんなりするまで",
    "cooked": "火が通るまで",
    "clear": "透き通るまで",
    "soaked": "味がしみるまで",
    "fluffy": "ふっくらと",
    "blend": "全体がなじむまで",
}
D = _ALL_DONE

METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in [
        MethodSpec("切る", "切り", "切って", "board", (), (), 0.0),
        MethodSpec(
            "炒める",
            "炒め",
            "炒めて",
            "pan",
            ("炒め物", "ソテー", "炒め"),
            (D["amber"], D["wilt"], D["cooked"], D["clear"], D["crisp"], D["golden"]),
            0.15,
        ),
        MethodSpec(
            "煮る",
            "煮",
            "煮て",
            "pot",
            ("煮物", "煮込み", "スープ"),
            (D["tender"], D["soaked"], D["cooked"], D["clear"]),
            0.05,
        ),
        MethodSpec(
            "焼く",
            "焼き",
            "焼いて",
            "tray",
            ("オーブン焼き", "グリル", "照り焼き"),
            (D["crisp"], D["golden"], D["cooked"], D["fluffy"]),
            0.3,
        ),
        MethodSpec(
            "揚げる",
            "揚げ",
            "揚げて",
            "fryer",
            ("唐揚げ", "フライ", "天ぷら"),
            (D["golden"], D["crisp"], D["dry"]),
            0.4,
        ),
        MethodSpec(
            "茹でる",
            "茹で",
            "茹でて",
            "pot",
            ("おひたし", "サラダ", "温サラダ"),
            (D["tender"], D["cooked"], D["wilt"]),
            0.0,
        ),
        MethodSpec(
            "蒸す",
            "蒸し",
            "蒸して",
            "steamer",
            ("酒蒸し", "蒸し物"),
            (D["fluffy"], D["tender"], D["cooked"]),
            0.0,
        ),
        MethodSpec("混ぜる", "混ぜ", "混ぜて", "bowl", ("和え物", "サラダ", "ごま和え"), (D["blend"],), 0.0),
        MethodSpec("盛り付ける", "盛り付け", "盛り付けて", "plate", (), (), 0.1),
    ]
}

#: Methods a recipe can be built around (its dish), with a companion method used in some steps.
DISH_METHODS: dict[str, str] = {
    "炒める": "混ぜる",
    "煮る": "炒める",
    "焼く": "混ぜる",
    "揚げる": "混ぜる",
    "茹でる": "混ぜる",
    "蒸す": "混ぜる",
    "混ぜる": "茹でる",
}

HEATS: tuple[str, ...] = ("弱火", "中火", "強火")
DONENESS: tuple[str, ...] = tuple(_ALL_DONE.values())
MINUTES: tuple[int, ...] = (2, 3, 5, 7, 8, 10, 15, 20)

SEASONINGS: dict[str, RGB] = {
    "醤油": (90, 45, 20),
    "みりん": (200, 150, 70),
    "砂糖": (245, 240, 230),
    "塩": (240, 240, 240),
    "こしょう": (60, 55, 50),
    "酒": (230, 230, 220),
    "酢": (225, 215, 170),
    "ごま油": (190, 130, 40),
    "バター": (245, 215, 110),
    "ケチャップ": (185, 30, 25),
    "味噌": (160, 110, 50),
    "コンソメ": (200, 160, 80),
}
SEASONING_UNITS = ("大さじ1", "大さじ2", "小さじ1", "小さじ1/2", "少々", "適量")

#: Sentence templates per method. Slots: {A} {B} ingredients, {CUTTE} cut te-form, {HEAT}, {MIN},
#: {DONE}, {SEAS} seasonings, {V} the verb with a polite ending. Templates ending in "。" already.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "切る": (
        "{A}を{V}",
        "{A}は{CUTTE}おきます。",
        "まず、{A}を{V}",
        "{A}と{B}をそれぞれ{V}",
        "{A}の皮をむいて、{V}",
    ),
    "炒める": (
        "{A}を{CUTTE}、{HEAT}で{MIN}分ほど{V}",
        "フライパンに油を熱し、{A}を入れて{HEAT}で{DONE}{V}",
        "{A}を加えて、{DONE}{V}",
        "フライパンに{SEAS}を熱し、{A}と{B}を{HEAT}で{V}",
        "{A}に{SEAS}を加えて、{HEAT}で{MIN}分{V}",
    ),
    "煮る": (
        "鍋に水と{A}を入れ、{HEAT}で{MIN}分ほど{V}",
        "{A}に{SEAS}を加え、{DONE}{V}",
        "{A}を{CUTTE}、鍋に入れて{HEAT}で{DONE}{V}",
        "鍋に{A}と{B}を入れ、ひたひたの水を加えて{HEAT}で{MIN}分{V}",
        "落とし蓋をして、{A}を{HEAT}で{MIN}分ほど{V}",
    ),
    "茹でる": (
        "たっぷりのお湯で{A}を{MIN}分ほど{V}",
        "鍋にお湯を沸かし、{A}を{DONE}{V}",
        "{A}を{CUTTE}、塩を入れたお湯で{MIN}分{V}",
    ),
    "揚げる": (
        "170度の油で{A}を{DONE}{V}",
        "{A}に片栗粉をまぶし、{HEAT}で{MIN}分ほど{V}",
        "{A}を{CUTTE}、油で{DONE}{V}",
    ),
    "焼く": (
        "オーブンの天板に{A}を並べ、{MIN}分{V}",
        "魚焼きグリルで{A}を{DONE}{V}",
        "{A}を{HEAT}で両面{DONE}{V}",
        "{A}と{B}を耐熱皿に並べ、オーブンで{MIN}分ほど{V}",
    ),
    "蒸す": (
        "蒸し器に{A}を入れて、{MIN}分ほど{V}",
        "{A}を{CUTTE}、湯気の立った蒸し器で{DONE}{V}",
        "{A}と{B}を蒸し器に並べ、{HEAT}で{MIN}分{V}",
    ),
    "混ぜる": (
        "ボウルに{A}と{B}を入れてよく{V}",
        "{A}に{SEAS}を加えて、さっと{V}",
        "{A}を{CUTTE}、{B}と一緒にボウルで{V}",
    ),
    "盛り付ける": (
        "器に{A}を{V}",
        "{A}を器に盛り付けて完成です。",
        "お皿に{A}と{B}を盛り付けて、お好みで{SEAS}をかけます。",
    ),
}

TITLE_PATTERNS = ("{A}と{B}の{DISH}", "{A}の{DISH}", "簡単！{A}と{B}の{DISH}", "{A}たっぷり{DISH}")
DESCRIPTION_OPENERS = (
    "簡単な",
    "優しい味の",
    "ご飯がすすむ",
    "彩りの良い",
    "忙しい日にぴったりの",
    "子どもも喜ぶ",
)
DESCRIPTION_CLOSERS = ("", "お弁当にもどうぞ。", "ぜひ作ってみてください。", "作り置きにも便利です。")


def _longest_first(words: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))


_ING_RE = _longest_first(list(INGREDIENTS))
_SEAS_RE = _longest_first(list(SEASONINGS))
_CUT_RE = _longest_first(list(CUTS))
_HEAT_RE = _longest_first(list(HEATS))
_DONE_RE = _longest_first(list(DONENESS))
_MIN_RE = re.compile(r"(\d+)分")
_VERB_FORMS = {form: name for name, m in METHODS.items() if name != "切る" for form in (m.stem + "ま", m.te)}
_VERB_RE = _longest_first(list(_VERB_FORMS))


def _all(pattern: re.Pattern[str], text: str) -> list[str]:
    out: list[str] = []
    for m in pattern.finditer(text):
        if m.group(0) not in out:
            out.append(m.group(0))
    return out


def step_labels(text: str) -> dict[str, Any]:
    """Parse a generated step back into its parts.

    Returns ``ingredients`` (in order of mention), ``main`` (the first, or None), ``seasonings``,
    ``method`` (the last cooking verb; ``"切る"`` for a cut-only step; None if neither),
    ``scene``, ``cut``, ``heat``, ``doneness`` and ``minutes`` (None when absent).
    """
    ingredients = _all(_ING_RE, text)
    verbs = [_VERB_FORMS[m.group(0)] for m in _VERB_RE.finditer(text)]
    cuts = _all(_CUT_RE, text)
    method = verbs[-1] if verbs else ("切る" if cuts else None)
    heat = _all(_HEAT_RE, text)
    done = _all(_DONE_RE, text)
    minutes = _MIN_RE.search(text)
    return {
        "ingredients": ingredients,
        "main": ingredients[0] if ingredients else None,
        "seasonings": _all(_SEAS_RE, text),
        "method": method,
        "scene": METHODS[method].scene if method else None,
        "cut": cuts[0] if cuts else None,
        "heat": heat[0] if heat else None,
        "doneness": done[0] if done else None,
        "minutes": int(minutes.group(1)) if minutes else None,
    }


@dataclass(frozen=True)
class StepPlan:
    """What the generator meant a step to say (tests check :func:`step_labels` recovers it)."""

    method: str
    main: str
    text: str


def _pick(rng: np.random.Generator, items: tuple[Any, ...] | list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _verb(rng: np.random.Generator, stem: str, te: str) -> str:
    u = rng.random()
    if u < 0.6:
        return f"{stem}ます。"
    if u < 0.8:
        return f"{stem}ましょう。"
    return f"{te}ください。"


#: Bumped whenever the same seed and options write other recipe texts or photos (a cache of generated
#: collections keys on it). 2: only onions are fried to amber (2026-12-06).
GRAMMAR_VERSION = 2

#: what is fried "to amber" (飴色): onions, browned slowly; the other foods are fried golden instead
AMBER_FOODS = ("玉ねぎ", "ねぎ")


def _doneness(picked: str, method: str, food: str) -> str:
    """The doneness a step says: ``picked`` from the method's phrases, except that frying takes onions to
    amber rather than golden or crisp, and nothing else to amber (no extra random draw: the rest of a
    seeded collection stays as it was)."""
    if method != "炒める":
        return picked
    if food in AMBER_FOODS and picked in (D["golden"], D["crisp"]):
        return D["amber"]
    if food not in AMBER_FOODS and picked == D["amber"]:
        return D["golden"]
    return picked


def make_step_text(
    rng: np.random.Generator, method: str, a: str, b: str, seasonings: list[str], allow_cut: bool = True
) -> str:
    """One step sentence for ``method`` about ingredient ``a`` (``b`` when the template wants two)."""
    m = METHODS[method]
    a_spec = INGREDIENTS[a]
    templates = [
        t
        for t in TEMPLATES[method]
        if ("{CUTTE}" not in t or (a_spec.cuts and allow_cut))
        and ("{B}" not in t or b != a)
        and ("{DONE}" not in t or m.doneness)
        and ("皮をむいて" not in t or a_spec.peel)
    ]
    if method == "切る":
        templates = [t for t in templates if "{B}" not in t or set(a_spec.cuts) & set(INGREDIENTS[b].cuts)]
    template = _pick(rng, templates)
    slots: dict[str, str] = {"A": a, "B": b}
    if method == "切る":
        cuts = a_spec.cuts
        if "{B}" in template:
            cuts = tuple(c for c in a_spec.cuts if c in INGREDIENTS[b].cuts)
        cut = CUTS[_pick(rng, cuts)]
        slots["CUTTE"] = cut.te
        slots["V"] = _verb(rng, cut.stem, cut.te)
    else:
        if "{CUTTE}" in template:
            slots["CUTTE"] = CUTS[_pick(rng, a_spec.cuts)].te
        slots["V"] = _verb(rng, m.stem, m.te)
    slots["HEAT"] = _pick(rng, HEATS)
    slots["MIN"] = str(_pick(rng, MINUTES))
    slots["DONE"] = _doneness(_pick(rng, m.doneness), method, a) if m.doneness else ""
    seas = seasonings or ["塩"]
    slots["SEAS"] = "と".join(seas[:2]) if rng.random() < 0.5 or len(seas) < 2 else seas[0]
    return template.format(**slots)


def make_recipe_parts(rng: np.random.Generator, combos: str = "all") -> dict[str, Any]:
    """The content of one recipe: title, description, ingredients, tags and planned steps.

    ``combos`` (see :func:`toolkit.data.sample_variant.combo_allowed`) restricts which ingredient x
    cooking-method pairs the recipe and its cooking steps use; ``"all"`` is the default generator.
    """
    dish_method = _pick(rng, tuple(DISH_METHODS))
    companion = DISH_METHODS[dish_method]
    stars = [n for n in INGREDIENTS if n not in AROMATICS]
    order = rng.permutation(len(stars))
    n_food = int(rng.integers(2, 6))
    if combos != "all":  # the recipe's main ingredient must be allowed with its dish method
        first = next(int(i) for i in order if combo_allowed(combos, stars[int(i)], dish_method))
        order = np.concatenate([[first], [int(i) for i in order if int(i) != first]])
    foods = [stars[int(i)] for i in order[:n_food]]
    if rng.random() < 0.4:
        foods.append(_pick(rng, AROMATICS))
    n_seas = int(rng.integers(1, 4))
    n_seas = max(1, min(n_seas, 8 - len(foods)))
    seas_names = list(SEASONINGS)
    seasonings = [seas_names[int(i)] for i in rng.permutation(len(seas_names))[:n_seas]]
    main, second = foods[0], foods[1]

    dish = _pick(rng, METHODS[dish_method].dishes)
    title = _pick(rng, TITLE_PATTERNS).format(A=main, B=second, DISH=dish)
    closer = _pick(rng, DESCRIPTION_CLOSERS)
    description = f"{main}と{second}で作る、{_pick(rng, DESCRIPTION_OPENERS)}{dish}です。{closer}"
    ingredients = [(f, _pick(rng, INGREDIENTS[f].units)) for f in foods]
    ingredients += [(s, _pick(rng, SEASONING_UNITS)) for s in seasonings]

    n_steps = int(rng.integers(3, 9))
    cuttable = [f for f in foods if INGREDIENTS[f].cuts]
    n_prep = min(len(cuttable), int(rng.integers(1, max(2, n_steps - 1))), n_steps - 2)
    plans: list[StepPlan] = []
    for k in range(n_prep):
        a = cuttable[k]
        b = _pick(rng, foods)
        plans.append(StepPlan("切る", a, make_step_text(rng, "切る", a, b, seasonings)))
    stars_here = [f for f in foods if f not in AROMATICS]
    for _ in range(n_steps - n_prep - 1):
        method = dish_method if rng.random() < 0.7 else companion
        a = main if rng.random() < 0.5 else _pick(rng, stars_here)
        if combos != "all" and not combo_allowed(combos, a, method):
            allowed = [f for f in stars_here if combo_allowed(combos, f, method)]
            method, a = (method, _pick(rng, allowed)) if allowed else (dish_method, main)
        b = _pick(rng, [f for f in foods if f != a])
        plans.append(StepPlan(method, a, make_step_text(rng, method, a, b, seasonings)))
    b = _pick(rng, [f for f in foods if f != main])
    plans.append(StepPlan("盛り付ける", main, make_step_text(rng, "盛り付ける", main, b, seasonings)))
    return {
        "title": title,
        "description": description.strip(),
        "ingredients": ingredients,
        "tags": (f"main:{main}", f"method:{dish_method}", f"dish:{dish}"),
        "plans": plans,
    }


# --- paraphrases: the same step said another way (other templates, endings and names) -------------

#: Other names for ingredients and verbs (most are words a model trained on the plain phrasing never saw).
INGREDIENT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "玉ねぎ": ("たまねぎ", "玉葱"),
    "にんじん": ("人参",),
    "じゃがいも": ("ジャガイモ",),
    "キャベツ": ("きゃべつ",),
    "トマト": ("完熟トマト",),
    "ピーマン": ("青ピーマン",),
    "なす": ("茄子", "ナス"),
    "きのこ": ("キノコ", "しめじ"),
    "ブロッコリー": ("ブロッコリ",),
    "ほうれん草": ("ほうれんそう",),
    "大根": ("だいこん",),
    "かぼちゃ": ("カボチャ", "南瓜"),
    "ねぎ": ("長ねぎ", "ネギ"),
    "しょうが": ("生姜",),
    "にんにく": ("ニンニク",),
    "白菜": ("はくさい",),
    "れんこん": ("蓮根",),
    "鶏肉": ("とり肉", "鶏もも肉"),
    "豚肉": ("豚バラ肉", "豚こま"),
    "牛ひき肉": ("合いびき肉", "ひき肉"),
    "鮭": ("サーモン", "生鮭"),
    "えび": ("海老", "エビ"),
    "豆腐": ("とうふ", "木綿豆腐"),
    "卵": ("たまご", "溶き卵"),
    "ごはん": ("ご飯", "白米"),
    "ベーコン": ("厚切りベーコン",),
}
#: Dictionary-form endings per method, and other verbs meaning the same.
VERB_SYNONYMS: dict[str, tuple[str, ...]] = {
    "炒める": ("炒め合わせる", "ソテーする"),
    "煮る": ("煮込む", "コトコト煮る"),
    "焼く": ("焼き上げる", "ローストする"),
    "揚げる": ("揚げ焼きにする", "素揚げする"),
    "茹でる": ("ゆでる", "下茹でする"),
    "蒸す": ("蒸し上げる", "蒸し焼きにする"),
    "混ぜる": ("和える", "混ぜ合わせる"),
    "盛り付ける": ("盛る", "よそう"),
}
PARAPHRASE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "切る": ("{A}は{CUT}。", "次に{A}を{CUT}。", "{A}と{B}は{CUT}。", "{A}を洗ったら{CUT}。"),
    "炒める": (
        "{HEAT}で熱したフライパンで{A}を{DONE}{V}",
        "油をひいたフライパンに{A}を入れ、{MIN}分くらい{V}",
        "{A}と{B}をフライパンで手早く{V}",
        "フライパンで{A}を{SEAS}と一緒に{V}",
    ),
    "煮る": (
        "{A}を鍋に入れ、{SEAS}を加えて{HEAT}のまま{MIN}分{V}",
        "鍋に{A}と{B}とだし汁を入れて{DONE}{V}",
        "鍋で{A}を{HEAT}で{V}",
    ),
    "茹でる": ("沸騰したお湯に{A}を入れ、{MIN}分{V}", "鍋のお湯で{A}を{DONE}{V}", "{A}を鍋でさっと{V}"),
    "揚げる": ("{A}を熱した油に入れて{DONE}{V}", "{A}に衣をつけ、{MIN}分くらい{V}", "揚げ油で{A}を{V}"),
    "焼く": ("天板に{A}をのせ、オーブンで{MIN}分{V}", "{A}をグリルで{DONE}{V}", "{A}と{B}をオーブンで{V}"),
    "蒸す": (
        "{A}を蒸し器にのせ、{MIN}分{V}",
        "蒸気の上がった蒸し器で{A}を{DONE}{V}",
        "{A}と{B}を蒸し器で{V}",
    ),
    "混ぜる": ("{A}と{B}をボウルで{V}", "ボウルの{A}に{SEAS}を加えて{V}", "{A}をボウルに移して{V}"),
    "盛り付ける": ("{A}を皿に{V}", "できあがった{A}を器に{V}", "{A}と{B}をお皿に{V}"),
}
_PARAPHRASE_ENDINGS = ("{D}。", "{TE}おく。", "{TE}いきます。", "{D}のがポイントです。")


def _cut_phrase(rng: np.random.Generator, cut: CutSpec) -> str:
    dictionary = cut.te[:-2] + ("る" if cut.te.endswith("って") else "する")
    u = rng.random()
    return dictionary if u < 0.5 else (cut.te + "おく" if u < 0.8 else cut.te + "おきます")


def _paraphrase_verb(rng: np.random.Generator, method: str) -> str:
    m = METHODS[method]
    if rng.random() < 0.35:
        return _pick(rng, VERB_SYNONYMS[method]) + "。"
    return _pick(rng, _PARAPHRASE_ENDINGS).format(D=method, TE=m.te)


def _paraphrase_name(rng: np.random.Generator, name: str) -> str:
    return (
        _pick(rng, INGREDIENT_SYNONYMS[name]) if name in INGREDIENT_SYNONYMS and rng.random() < 0.35 else name
    )


def paraphrase_step(text: str, rng: np.random.Generator) -> str:
    """Say the generated step ``text`` another way: another template, other endings, some other names.

    Only what the original says (and so what its photo shows) is said again; a detail a template has
    no slot for is left out, never invented.
    """
    labels = step_labels(text)
    method, ingredients = labels["method"], labels["ingredients"]
    if method is None or not ingredients:
        return text
    a = ingredients[0]
    b = ingredients[1] if len(ingredients) > 1 else None
    have = {
        "A": True,
        "B": b is not None,
        "CUT": labels["cut"] is not None,
        "HEAT": labels["heat"] is not None,
        "MIN": labels["minutes"] is not None,
        "DONE": labels["doneness"] is not None,
        "SEAS": bool(labels["seasonings"]),
        "V": True,
    }
    usable = [t for t in PARAPHRASE_TEMPLATES[method] if all(have[s] for s in re.findall(r"\{(\w+)\}", t))]
    if not usable:
        return text
    template = _pick(rng, usable)
    slots = {
        "A": _paraphrase_name(rng, a),
        "B": _paraphrase_name(rng, b) if b else "",
        "CUT": _cut_phrase(rng, CUTS[labels["cut"]]) if labels["cut"] else "",
        "HEAT": labels["heat"] or "",
        "MIN": str(labels["minutes"]) if labels["minutes"] is not None else "",
        "DONE": labels["doneness"] or "",
        "SEAS": "と".join(labels["seasonings"][:2]),
        "V": _paraphrase_verb(rng, method) if method != "切る" else "",
    }
    return template.format(**slots)
