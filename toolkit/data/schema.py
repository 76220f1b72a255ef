"""The recipe record: dataclasses, strict parsing of one JSON object, and its inverse.

One JSON object per recipe (see ``docs/data-format.md``). Whole-record problems raise
:class:`RecordError`; a bad step, ingredient or tag is dropped alone and reported as a
:class:`~toolkit.rejects.Reject`, so nothing valid in the record is lost.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from toolkit.chars import is_blank
from toolkit.data.step_ids import format_step_id
from toolkit.errors import ToolkitError
from toolkit.rejects import Reject

#: Longest accepted text (title, description, step text), in characters.
DEFAULT_MAX_TEXT_LEN = 20_000
#: The largest step position: the index maps ``position`` as an Elasticsearch ``integer``.
MAX_POSITION = 2**31 - 1


@dataclass(frozen=True)
class Ingredient:
    name: str
    quantity: str = ""


@dataclass(frozen=True)
class Step:
    """One step; ``image`` is a path relative to the dataset root, or ``None`` for a text-only step."""

    position: int
    text: str
    image: str | None = None


@dataclass(frozen=True)
class Recipe:
    recipe_id: str
    title: str
    description: str = ""
    ingredients: tuple[Ingredient, ...] = ()
    steps: tuple[Step, ...] = ()
    tags: tuple[str, ...] = ()

    def step_id(self, step: Step) -> str:
        """The corpus-wide id of ``step``: ``"<recipe_id>:<position>"``."""
        return format_step_id(self.recipe_id, step.position)


class RecordError(ToolkitError):
    """A record that cannot be used at all; ``record`` names it, ``field`` the offending field."""

    def __init__(self, record: str, field: str | None, reason: str, recipe_id: str | None = None) -> None:
        self.record = record
        self.field = field
        self.reason = reason
        self.recipe_id = recipe_id
        super().__init__(f"{record}: {self.detail}")

    @property
    def detail(self) -> str:
        """The message without the record name (used as a reject reason)."""
        parts = [f"recipe {self.recipe_id}"] if self.recipe_id else []
        if self.field:
            parts.append(f"field {self.field}")
        parts.append(self.reason)
        return ": ".join(parts)


def _show(value: Any, limit: int = 40) -> str:
    """A short, unambiguous rendering of a bad value for messages."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})" if not isinstance(value, str) else text


def unencodable(value: str) -> str:
    """The reason ``value`` cannot be written as UTF-8 (an unpaired surrogate, e.g. from a JSON ``"\\ud800"``
    escape), or ``""`` when it can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"is not valid Unicode: an unpaired surrogate {value[e.start]!r} at character {e.start + 1}"
    return ""


def check_text(value: Any, max_len: int, *, allow_empty: bool) -> tuple[str | None, str]:
    """Return ``(stripped text, "")``, or ``(None, reason)`` when ``value`` is not acceptable text."""
    if not isinstance(value, str):
        return None, f"must be a string, got {_show(value)}"
    why = unencodable(value)
    if why:
        return None, why
    text = value.strip()
    if not allow_empty and is_blank(text):
        return (
            None,
            "must not be empty"
            if not value
            else "must not be blank (only whitespace or invisible characters)",
        )
    if len(text) > max_len:
        return None, f"text is {len(text)} characters, over the limit of {max_len}"
    return text, ""


#: longest ingredient name, quantity or tag, in characters
MAX_NAME_CHARS = 1000

#: longest recipe id, in UTF-8 bytes: a step id (``<recipe_id>:<position>``) is an Elasticsearch document id,
#: at most 512 bytes
MAX_RECIPE_ID_BYTES = 480


def check_recipe_id(value: Any) -> str:
    """Return the reason ``value`` is not a usable recipe id, or ``""`` when it is."""
    if not isinstance(value, str):
        return f"must be a string, got {_show(value)}"
    if not value:
        return "must not be empty"
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_RECIPE_ID_BYTES:
        return (
            f"is {size} bytes in UTF-8, over the limit of {MAX_RECIPE_ID_BYTES} "
            "(its step ids are Elasticsearch document ids, at most 512 bytes)"
        )
    if value != value.strip():
        return f"must not have surrounding whitespace, got {value!r}"
    if ":" in value:
        return f"must not contain ':' (step ids are '<recipe_id>:<position>'), got {value!r}"
    why = unencodable(value)
    return why or _control_character(value)


#: What ends a line for ``str.splitlines`` (and for Unicode): LF, CR, VT, FF, FS, GS, RS, NEL, U+2028, U+2029.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _control_character(value: str) -> str:
    """Why ``value`` cannot be an identifier for its first control character (C0, DEL, C1) or line or paragraph
    separator, or ``""`` when it has none."""
    for i, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            what = "line break" if char in LINE_BREAKS else "control character"
            return f"must not contain a {what}, got {char!r} at character {i + 1}"
    return ""


class RepeatedKeys(dict[str, Any]):
    """A JSON object that gives some key more than once with different values (:func:`json_object`):
    ``repeated`` maps each such key to how many times it is given; the value kept is the last, as with plain
    ``json``."""

    repeated: dict[str, int]


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for reading records with :mod:`json`: a plain ``dict``, or a :class:`RepeatedKeys`
    when a key is given more than once with different values (plain ``json`` keeps the last one silently; the
    same value repeated is harmless)."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    times = Counter(k for k, _ in pairs)
    repeated = {k: n for k, n in times.items() if n > 1 and any(v != obj[k] for key, v in pairs if key == k)}
    if not repeated:
        return obj
    marked = RepeatedKeys(obj)
    marked.repeated = repeated
    return marked


def _repeated(obj: dict[str, Any], known: tuple[str, ...], prefix: str = "") -> tuple[list[str], str]:
    """``(keys, reason)``: the keys of ``known`` that ``obj`` gives more than once (:func:`json_object`) and the
    reject reason naming them as fields (``prefix`` + key), or ``([], "")``. Other keys are ignored on reading,
    so they may repeat."""
    repeated: dict[str, int] = getattr(obj, "repeated", {})
    keys = [k for k in known if k in repeated]
    if not keys:
        return [], ""
    times = " / ".join(sorted({f"{repeated[k]} times" for k in keys}))
    fields = ", ".join(prefix + k for k in keys)
    return keys, (
        f"field {fields}: key given {times} in one JSON object, so which value is meant is ambiguous "
        "(a JSON reader keeps the last one silently): give it once"
    )


#: the keys a record, a step and an ingredient are read from (others are ignored)
RECIPE_KEYS = ("recipe_id", "title", "description", "ingredients", "steps", "tags")
STEP_KEYS = ("position", "text", "image")
INGREDIENT_KEYS = ("name", "quantity")


def _check_position(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = " (a string; write it as a JSON number)" if isinstance(value, str) else ""
        return f"must be a positive integer, got {_show(value)}{hint}"
    if value < 1:
        return f"must be a positive integer, got {value}"
    if value > MAX_POSITION:
        return f"must be at most {MAX_POSITION} (the index stores it as an integer), got {_show(value)}"
    return ""


def _parse_steps(raw: list[Any], recipe_id: str, max_len: int, rejects: list[Reject]) -> tuple[Step, ...]:
    parsed: list[tuple[int, Step]] = []
    for i, item in enumerate(raw):
        field = f"steps[{i}]"
        if not isinstance(item, dict):
            rejects.append(
                Reject(
                    f"{recipe_id}:{field}", "validate", f"field {field}: must be an object, got {_show(item)}"
                )
            )
            continue
        keys, twice = _repeated(item, STEP_KEYS, f"{field}.")
        position = item.get("position")
        why = "missing" if "position" not in item else _check_position(position)
        if twice and (why or "position" in keys):  # no position to name the step by
            rejects.append(Reject(f"{recipe_id}:{field}", "validate", twice))
            continue
        if why:
            rejects.append(Reject(f"{recipe_id}:{field}", "validate", f"field {field}.position: {why}"))
            continue
        assert isinstance(position, int)  # what _check_position passed
        name = format_step_id(recipe_id, position)
        if twice:
            rejects.append(Reject(name, "validate", twice))
            continue
        if "text" not in item:
            rejects.append(Reject(name, "validate", f"field {field}.text: missing"))
            continue
        text, why = check_text(item["text"], max_len, allow_empty=False)
        if text is None:
            rejects.append(Reject(name, "validate", f"field {field}.text: {why}"))
            continue
        image = item.get("image")
        if image is not None and not isinstance(image, str):
            rejects.append(
                Reject(name, "validate", f"field {field}.image: must be a string or null, got {_show(image)}")
            )
            continue
        if image is not None and unencodable(image):
            rejects.append(
                Reject(name, "image", f"field {field}.image: {unencodable(image)}; kept as text-only")
            )
            image = None
        if image is not None and not image.strip():
            rejects.append(
                Reject(
                    name,
                    "image",
                    f"field {field}.image: empty path (use null for a text-only step); kept as text-only",
                )
            )
            image = None
        parsed.append((i, Step(position=position, text=text, image=image)))

    where: dict[int, list[int]] = defaultdict(list)
    for i, step in parsed:
        where[step.position].append(i)
    kept: list[Step] = []
    for i, step in parsed:
        indices = where[step.position]
        if len(indices) > 1:
            listed = ", ".join(f"steps[{j}]" for j in indices)
            rejects.append(
                Reject(
                    format_step_id(recipe_id, step.position),
                    "validate",
                    f"field steps[{i}].position: duplicate position {step.position} ({listed}); "
                    "every step sharing it is dropped",
                )
            )
            continue
        kept.append(step)
    kept.sort(key=lambda s: s.position)
    return tuple(kept)


def _quantity_text(value: Any) -> Any:
    """An ingredient's quantity as text: absent or null is ``""``, a JSON number its digits (``2``, ``0.5``:
    exports often write counts as numbers); anything else is left for :func:`check_text` to refuse."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    return value


def part_record(recipe_id: str, field: str, i: int) -> str:
    """How a reject names a recipe's ingredient or tag (``field`` ``ingredients`` or ``tags``):
    ``<recipe_id>:<field>[i]``."""
    return f"{recipe_id}:{field}[{i}]"


_PART_RECORD = re.compile(r":(?:ingredients|tags)\[\d+\]\Z")


def is_part_record(record: str) -> bool:
    """Whether a reject names a recipe's ingredient or tag (:func:`part_record`), not a step or a record: the
    recipe's steps are kept. A step is named ``<recipe_id>:<position>`` or ``<recipe_id>:steps[i]``, so the
    suffix tells them apart whatever the recipe id holds."""
    return _PART_RECORD.search(record) is not None


def _parse_ingredients(raw: list[Any], recipe_id: str, rejects: list[Reject]) -> tuple[Ingredient, ...]:
    out: list[Ingredient] = []
    for i, item in enumerate(raw):
        field = f"ingredients[{i}]"
        record = part_record(recipe_id, "ingredients", i)
        if not isinstance(item, dict):
            rejects.append(Reject(record, "validate", f"field {field}: must be an object, got {_show(item)}"))
            continue
        _, twice = _repeated(item, INGREDIENT_KEYS, f"{field}.")
        if twice:
            rejects.append(Reject(record, "validate", twice))
            continue
        if "name" not in item:
            rejects.append(Reject(record, "validate", f"field {field}.name: missing"))
            continue
        name, why = check_text(item["name"], MAX_NAME_CHARS, allow_empty=False)
        if name is None:
            rejects.append(Reject(record, "validate", f"field {field}.name: {why}"))
            continue
        quantity, why = check_text(_quantity_text(item.get("quantity")), MAX_NAME_CHARS, allow_empty=True)
        if quantity is None:
            rejects.append(Reject(record, "validate", f"field {field}.quantity: {why}"))
            continue
        out.append(Ingredient(name=name, quantity=quantity))
    return tuple(out)


def _parse_tags(raw: list[Any], recipe_id: str, rejects: list[Reject]) -> tuple[str, ...]:
    out: list[str] = []
    for i, item in enumerate(raw):
        tag, why = check_text(item, MAX_NAME_CHARS, allow_empty=False)
        if tag is None:
            rejects.append(Reject(part_record(recipe_id, "tags", i), "validate", f"field tags[{i}]: {why}"))
            continue
        out.append(tag)
    return tuple(out)


def parse_recipe(
    obj: Any, where: str, max_text_len: int = DEFAULT_MAX_TEXT_LEN
) -> tuple[Recipe, list[Reject]]:
    """Validate one decoded JSON value into a :class:`Recipe`.

    ``where`` names the record in errors (e.g. ``"recipes.jsonl:line 12"``). Raises
    :class:`RecordError` when the record is unusable; otherwise returns the recipe (steps sorted
    by position) and the rejects for the steps, ingredients or tags that were dropped.
    Unknown keys are ignored; a key that is read, given twice with different values (an object decoded with
    :func:`json_object`), drops the record, step or ingredient holding it.
    """
    if not isinstance(obj, dict):
        raise RecordError(where, None, f"must be a JSON object, got {_show(obj)}")
    keys, twice = _repeated(obj, RECIPE_KEYS)
    if twice:  # the recipe is named unless its id is what is given twice (or is not a valid one)
        rid = obj.get("recipe_id")
        named = rid if "recipe_id" not in keys and not check_recipe_id(rid) else None
        raise RecordError(where, None, twice, named)
    if "recipe_id" not in obj:
        raise RecordError(where, "recipe_id", "missing")
    why = check_recipe_id(obj["recipe_id"])
    if why:
        raise RecordError(where, "recipe_id", why)
    recipe_id: str = obj["recipe_id"]
    if "title" not in obj:
        raise RecordError(where, "title", "missing", recipe_id)
    title, why = check_text(obj["title"], max_text_len, allow_empty=False)
    if title is None:
        raise RecordError(where, "title", why, recipe_id)
    raw_description = obj.get("description")
    description, why = check_text(
        "" if raw_description is None else raw_description, max_text_len, allow_empty=True
    )  # null is no description, as null lists are empty lists
    if description is None:
        raise RecordError(where, "description", why, recipe_id)
    lists: dict[str, list[Any]] = {}
    for key in ("steps", "ingredients", "tags"):
        value = obj.get(key, [])
        if value is None:
            value = []
        if not isinstance(value, list):
            raise RecordError(where, key, f"must be a list, got {_show(value)}", recipe_id)
        lists[key] = value

    rejects: list[Reject] = []
    recipe = Recipe(
        recipe_id=recipe_id,
        title=title,
        description=description,
        ingredients=_parse_ingredients(lists["ingredients"], recipe_id, rejects),
        steps=_parse_steps(lists["steps"], recipe_id, max_text_len, rejects),
        tags=_parse_tags(lists["tags"], recipe_id, rejects),
    )
    return recipe, rejects


def recipe_to_json(recipe: Recipe) -> dict[str, Any]:
    """The JSON object for ``recipe``; ``parse_recipe`` reads it back to an equal recipe."""
    steps: list[dict[str, Any]] = []
    for step in recipe.steps:
        item: dict[str, Any] = {"position": step.position, "text": step.text}
        if step.image is not None:
            item["image"] = step.image
        steps.append(item)
    return {
        "recipe_id": recipe.recipe_id,
        "title": recipe.title,
        "description": recipe.description,
        "ingredients": [{"name": i.name, "quantity": i.quantity} for i in recipe.ingredients],
        "steps": steps,
        "tags": list(recipe.tags),
    }
