"""The search API's query parameters, read and checked in one place for both servers.

Both servers hand the raw query string to :func:`query_params` and the search to :func:`parse_search` (through
:class:`toolkit.web.app.SearchApp`), so an odd spelling gets the same status and message from either: a
single-valued parameter given twice is an error, a blank value means the default, a whole number is ASCII
digits, a flag is 1/0, true/false, yes/no or on/off, unknown parameters are ignored. A repeatable filter takes
up to :data:`MAX_FILTER_VALUES` values, each no longer than any value it can match (an ingredient name of
:data:`~toolkit.data.schema.MAX_NAME_CHARS` characters, a recipe id of
:data:`~toolkit.data.schema.MAX_RECIPE_ID_BYTES` bytes, a step id of :data:`MAX_STEP_ID_BYTES` bytes): a 60,000
character ingredient once held the search lock for seconds while it was tokenised. An uploaded photo's ``name``
takes up to :data:`MAX_PHOTO_NAME_CHARS` characters (a file name's length), not a URL's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from toolkit.data.schema import MAX_NAME_CHARS, MAX_RECIPE_ID_BYTES
from toolkit.errors import ToolkitError
from toolkit.model import MAX_QUERY_CHARS  # the one limit of the CLI, the library and this API
from toolkit.search.dispatch import SearchOptions
from toolkit.search.like import MAX_LIKE
from toolkit.search.modes import TEXT_MODES, modes_help
from toolkit.search.queries import Filters

DEFAULT_K = 12
MAX_K = 100
DEFAULT_PER_GROUP = 3
MAX_PER_GROUP = 10
DEFAULT_PHOTO_NAME = "uploaded photo"
#: longest uploaded photo ``name`` (characters): a file name's length; it is quoted back in messages
MAX_PHOTO_NAME_CHARS = 255
GROUPS = ("recipe",)
FLAGS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}
#: longest slice of a bad value quoted back in an error
SHOWN_CHARS = 40
#: most values of ``ingredient`` or ``recipe`` (``like``: :data:`~toolkit.search.like.MAX_LIKE` distinct ids)
MAX_FILTER_VALUES = MAX_LIKE
#: longest ``like`` value in UTF-8 bytes: a step id is an Elasticsearch document id
MAX_STEP_ID_BYTES = 512
_WHOLE = re.compile(r"[+-]?[0-9]+")

_STRINGS = {"type": "array", "items": {"type": "string"}}
_FILTER = {"type": "array", "maxItems": MAX_FILTER_VALUES, "items": {"type": "string"}}
#: name -> (JSON schema, description): the parameters :func:`parse_search` reads (``array``: repeatable)
SEARCH_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "q": ({"type": "string", "maxLength": MAX_QUERY_CHARS}, "the query text (optional with `like`)"),
    "mode": ({"type": "string", "enum": list(TEXT_MODES), "default": "knn"}, modes_help()),
    "k": ({"type": "integer", "minimum": 1, "maximum": MAX_K, "default": DEFAULT_K}, "how many hits"),
    "ingredient": (
        {**_FILTER, "items": {"type": "string", "maxLength": MAX_NAME_CHARS}},
        "only recipes with this ingredient (repeated: every one)",
    ),
    "recipe": (_FILTER, f"only these recipe ids (each up to {MAX_RECIPE_ID_BYTES} bytes in UTF-8)"),
    "group": (
        {"type": "string", "enum": list(GROUPS)},
        "`recipe`: one hit per recipe, its best steps inside",
    ),
    "per_group": (
        {"type": "integer", "minimum": 1, "maximum": MAX_PER_GROUP, "default": DEFAULT_PER_GROUP},
        "steps shown per recipe (with `group`)",
    ),
    "explain": ({"type": "boolean", "default": False}, "add the tokens and each word's effect"),
    "like": (
        _STRINGS,
        f"step ids: more like these photos (up to {MAX_LIKE}, each up to {MAX_STEP_ID_BYTES} bytes)",
    ),
    "name": (
        {"type": "string", "maxLength": MAX_PHOTO_NAME_CHARS, "default": DEFAULT_PHOTO_NAME},
        "the uploaded photo's name (in messages)",
    ),
}
TEXT_PARAMS = ("q", "mode", "k", "ingredient", "recipe", "group", "per_group", "explain", "like")
PHOTO_PARAMS = ("k", "name", "group", "ingredient", "recipe")


class BadRequest(ToolkitError):
    """A request parameter is missing or invalid."""


@dataclass(frozen=True)
class SearchRequest:
    """One search as the parameters ask for it: ``text`` (trimmed, may be empty), ``like`` step ids, the
    uploaded photo's ``name`` and the search options."""

    text: str
    like: tuple[str, ...]
    name: str
    options: SearchOptions


def query_params(query: str) -> dict[str, list[str]]:
    """The parameters of a raw query string, read the same way on both servers (blank values kept)."""
    return parse_qs(query, keep_blank_values=True)


def parse_search(params: Mapping[str, Sequence[str]], *, photo: bool = False) -> SearchRequest:
    """Check every search parameter (see :data:`SEARCH_PARAMS`); ``photo``: a query by photo, no text needed.
    Raises :class:`BadRequest` with the parameter and the reason."""
    text = _single(params, "q")
    mode = _choice(params, "mode", TEXT_MODES) or "knn"
    like = _values(params, "like", MAX_STEP_ID_BYTES, "bytes in UTF-8", count=None)
    if not photo and not text and not like:
        raise BadRequest("type a query")
    if len(text) > MAX_QUERY_CHARS:
        raise BadRequest(f"the query is {len(text)} characters, over the limit of {MAX_QUERY_CHARS}")
    options = SearchOptions(
        mode="knn" if photo else mode,
        k=_whole(params, "k", DEFAULT_K, MAX_K),
        filters=_filters(params),
        group=_choice(params, "group", GROUPS) or None,
        per_group=_whole(params, "per_group", DEFAULT_PER_GROUP, MAX_PER_GROUP),
        explain=_flag(params, "explain"),
    )
    name = _single(params, "name")
    if photo and len(name) > MAX_PHOTO_NAME_CHARS:
        raise _too_long("name", name, len(name), "characters", MAX_PHOTO_NAME_CHARS)
    return SearchRequest(text, like, name or DEFAULT_PHOTO_NAME, options)


def openapi_parameters(names: Sequence[str]) -> list[dict[str, Any]]:
    """The OpenAPI description of the query parameters ``names`` (from :data:`SEARCH_PARAMS`)."""
    return [
        {
            "name": n,
            "in": "query",
            "required": False,
            "schema": SEARCH_PARAMS[n][0],
            "description": SEARCH_PARAMS[n][1],
        }
        for n in names
    ]


def _single(params: Mapping[str, Sequence[str]], name: str) -> str:
    """The one value of ``name``, trimmed ("" when absent or blank); given twice is an error."""
    values = params.get(name, ())
    if len(values) > 1:
        raise BadRequest(f"{name} is given {len(values)} times; give it once")
    return values[0].strip() if values else ""


def _choice(params: Mapping[str, Sequence[str]], name: str, choices: Sequence[str]) -> str:
    value = _single(params, name)
    if value and value not in choices:
        raise BadRequest(f"unknown {name} {_show(value)}; choose one of {', '.join(choices)}")
    return value


def _whole(params: Mapping[str, Sequence[str]], name: str, default: int, high: int) -> int:
    raw = _single(params, name)
    if not raw:
        return default
    if not _WHOLE.fullmatch(raw):
        raise BadRequest(f"{name} must be a whole number, got {_show(raw)}")
    if len(raw.lstrip("+-0")) > len(str(high)) or not 1 <= int(raw) <= high:
        raise BadRequest(f"{name} must be between 1 and {high}, got {_show(raw)}")
    return int(raw)


def _flag(params: Mapping[str, Sequence[str]], name: str) -> bool:
    raw = _single(params, name)
    if raw and raw.lower() not in FLAGS:
        raise BadRequest(f"{name} must be 1 or 0 (or true/false, yes/no, on/off), got {_show(raw)}")
    return FLAGS.get(raw.lower(), False)


def _filters(params: Mapping[str, Sequence[str]]) -> Filters:
    ingredients = _values(params, "ingredient", MAX_NAME_CHARS, "characters", strip=False)
    recipes = _values(params, "recipe", MAX_RECIPE_ID_BYTES, "bytes in UTF-8")
    return Filters(recipe_ids=recipes, ingredients=ingredients)


def _values(
    params: Mapping[str, Sequence[str]],
    name: str,
    longest: int,
    unit: str,
    *,
    strip: bool = True,
    count: int | None = MAX_FILTER_VALUES,
) -> tuple[str, ...]:
    """The non-blank values of the repeatable ``name`` (trimmed with ``strip``): at most ``count`` (None: any
    number), each at most ``longest`` characters, or UTF-8 bytes when ``unit`` says bytes."""
    values = tuple(v.strip() if strip else v for v in params.get(name, ()) if v.strip())
    if count is not None and len(values) > count:
        raise BadRequest(f"{name} is given {len(values)} times, over the limit of {count}")
    for value in values:
        size = len(value.encode("utf-8", "surrogatepass")) if "bytes" in unit else len(value)
        if size > longest:
            raise _too_long(name, value, size, unit, longest)
    return values


def _too_long(name: str, value: str, size: int, unit: str, longest: int) -> BadRequest:
    """The error for a ``value`` of parameter ``name`` that is ``size`` ``unit`` long, over ``longest``."""
    shown = f"{value[:SHOWN_CHARS]!r}{'...' if len(value) > SHOWN_CHARS else ''}"
    return BadRequest(f"{name} {shown} is {size} {unit}, over the limit of {longest}")


def _show(value: str) -> str:
    """``value`` quoted for an error message, cut to :data:`SHOWN_CHARS` characters."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"
