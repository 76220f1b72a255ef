"""Request bodies for each search mode, as plain dicts: what the CLI sends is what ``--show-query`` prints.

Query text only ever reaches Elasticsearch as the string of a ``match`` query on the ``tokens`` field
(whitespace analyzer), never as Lucene syntax (``query_string``) or as query DSL.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.errors import ConfigError, plain_int
from toolkit.search.modes import DEFAULT_K

SOURCE_FIELDS = [
    "step_id",
    "recipe_id",
    "title",
    "position",
    "text",
    "image_path",
    "image_url",
    "ingredients",
]


def whole_number(name: str, value: object, minimum: int | None = 1) -> int:
    """``value`` as an ``int`` (a Python or NumPy integer, not a bool), or a :class:`ConfigError` naming it
    (and ``minimum`` when it is smaller; None: the caller checks the range)."""
    number = plain_int(value)
    if number is None:
        at_least = "" if minimum is None else f" >= {minimum}"
        raise ConfigError(f"{name} must be a whole number{at_least}, got {type(value).__name__} {value!r}")
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value}")
    return number


@dataclass(frozen=True)
class Filters:
    """Restrict hits to recipes, ingredients or tags; photos only unless ``include_text_only``."""

    recipe_ids: tuple[str, ...] = ()
    ingredients: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    include_text_only: bool = False
    #: steps never returned (the examples of a more-like-these query)
    exclude_step_ids: tuple[str, ...] = ()
    #: the :func:`~toolkit.text.ingredients.ingredient_key` of each of ``ingredients`` (the searcher fills them
    #: in with its model's tokenizer): a recipe matches an ingredient by its name as written or by its key,
    #: so たまねぎ finds recipes that wrote 玉ねぎ
    ingredient_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from toolkit.data.schema import unencodable

        for name in ("recipe_ids", "ingredients", "tags", "exclude_step_ids", "ingredient_keys"):
            values = getattr(self, name)
            if isinstance(values, str):  # one value, not its characters
                values = (values,)
            elif isinstance(values, (bytes, bytearray)) or not isinstance(values, Iterable):
                raise ConfigError(
                    f"filter {name} must be a str or a sequence of str, got {type(values).__name__} {values!r}"
                )
            values = tuple(values)
            for value in values:
                if not isinstance(value, str):
                    raise ConfigError(
                        f"filter {name}: every value must be a str, got {type(value).__name__} {value!r}"
                    )
                why = unencodable(value)
                if why:
                    raise ConfigError(f"filter {name}: {value!r} {why}")
            object.__setattr__(self, name, values)
        if self.ingredient_keys and len(self.ingredient_keys) != len(self.ingredients):
            raise ConfigError(
                f"filter ingredient_keys must have one key per ingredient: {len(self.ingredient_keys)} keys "
                f"for {len(self.ingredients)} ingredients"
            )
        if not isinstance(self.include_text_only, bool):
            raise ConfigError(
                f"filter include_text_only must be True or False, got {self.include_text_only!r}"
            )

    def clauses(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.exclude_step_ids:
            out.append({"bool": {"must_not": [{"ids": {"values": list(self.exclude_step_ids)}}]}})
        if self.recipe_ids:
            out.append({"terms": {"recipe_id": list(self.recipe_ids)}})
        for ing, key in zip(
            self.ingredients, self.ingredient_keys or [None] * len(self.ingredients), strict=True
        ):
            exact = {"term": {"ingredients": ing}}
            # an index made before ingredient keys has no such field: the term matches nothing there
            by_key = [{"term": {"ingredient_keys": key}}] if key else []
            out.append({"bool": {"should": [exact, *by_key], "minimum_should_match": 1}} if by_key else exact)
        for tag in self.tags:
            out.append({"term": {"tags": tag}})
        if not self.include_text_only:
            out.append({"term": {"has_image": True}})
        return out


#: candidates per shard of a kNN query when none is asked for: 200 lifted the photo field's recall@10 at 100k
#: learned vectors from 0.64 to 0.73 for 1.1-1.2x the latency (README, Scale section)
DEFAULT_NUM_CANDIDATES = 200
#: Elasticsearch's ceiling on a kNN search's ``num_candidates``
MAX_NUM_CANDIDATES = 10_000


def num_candidates_for(k: int, num_candidates: int | None = None) -> int:
    """``num_candidates`` when given; else :data:`DEFAULT_NUM_CANDIDATES`, or 10 per hit when ``k`` is larger,
    at most :data:`MAX_NUM_CANDIDATES` (the one rule of the CLI, the library and the evaluation)."""
    if num_candidates is not None:
        return num_candidates
    return min(MAX_NUM_CANDIDATES, max(DEFAULT_NUM_CANDIDATES, 10 * k))


@dataclass(frozen=True)
class KnnParams:
    k: int = DEFAULT_K
    num_candidates: int = DEFAULT_NUM_CANDIDATES
    field: str = "image_vector"
    boost: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", whole_number("k", self.k, None))
        object.__setattr__(self, "num_candidates", whole_number("num_candidates", self.num_candidates, None))
        if not 1 <= self.k <= self.num_candidates <= MAX_NUM_CANDIDATES:
            raise ConfigError(
                f"need 1 <= k <= num_candidates <= {MAX_NUM_CANDIDATES}, "
                f"got k={self.k}, num_candidates={self.num_candidates}"
            )


@dataclass(frozen=True)
class Grouping:
    """One hit per ``field`` value (a recipe), ranked by its best step, with its ``per_group`` best steps
    inside (Elasticsearch ``collapse`` + ``inner_hits``)."""

    field: str = "recipe_id"
    per_group: int = 3
    #: kNN collapses its nearest steps, so it looks at ``k * knn_factor`` steps to fill ``k`` recipes
    knn_factor: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "per_group", whole_number("steps per recipe (per_group)", self.per_group, None)
        )
        if not 1 <= self.per_group <= 100:
            raise ConfigError(f"steps per recipe must be between 1 and 100, got {self.per_group}")

    def window(self, k: int) -> int:
        return min(10_000, k * self.knn_factor)

    def apply(self, body: dict[str, Any], k: int) -> dict[str, Any]:
        """``body`` returning ``k`` groups: collapse + inner hits. A top-level ``knn`` section becomes a
        ``knn`` query over ``k * knn_factor`` candidates: inner hits of a top-level ``knn`` section are
        neither scored nor limited to the nearest steps, those of a ``knn`` query are."""
        out = dict(body, size=k)
        out["collapse"] = {
            "field": self.field,
            "inner_hits": {"name": "steps", "size": self.per_group, "_source": SOURCE_FIELDS},
        }
        knn = out.pop("knn", None)
        if knn is not None:
            knn = dict(knn)
            knn["k"] = max(knn["k"], self.window(k))
            knn["num_candidates"] = max(knn["num_candidates"], knn["k"])
            query = out.get("query")
            out["query"] = {"knn": knn} if query is None else {"bool": {"should": [query, {"knn": knn}]}}
        return out


@dataclass(frozen=True)
class HybridParams:
    """How the keyword and the kNN side are combined: ``hybrid`` multiplies their scores by the boosts,
    ``linear`` weighs their min-max normalised scores by them, ``rrf`` uses ``rank_constant``; ``rrf`` and
    ``linear`` fuse each side's best ``window`` steps (at least k)."""

    keyword_boost: float = 1.0
    knn_boost: float = 1.0
    rank_constant: int = 60
    window: int = 50
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("keyword_boost", "knn_boost"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(
                    f"{name} must be a finite number >= 0, got {type(value).__name__} {value!r}"
                )
            if not (math.isfinite(value) and float(value) >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("rank_constant", "window"):
            object.__setattr__(self, name, whole_number(name, getattr(self, name), None))
        if self.rank_constant < 1 or self.window < 1:
            raise ConfigError(
                f"need rank_constant >= 1 and window >= 1, got {self.rank_constant} and {self.window}"
            )


def _vector(v: np.ndarray | Sequence[float]) -> list[float]:
    arr = np.asarray(v, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError("query vector has non-finite values")
    return np.round(arr, 6).tolist()  # vectorised: a Python round() per element cost ~0.2 ms a query


def knn_clause(vector: np.ndarray, params: KnnParams, filters: Filters) -> dict[str, Any]:
    clause: dict[str, Any] = {
        "field": params.field,
        "query_vector": _vector(vector),
        "k": params.k,
        "num_candidates": params.num_candidates,
    }
    fl = filters.clauses()
    if fl:
        clause["filter"] = fl
    if params.boost != 1.0:
        clause["boost"] = params.boost
    return clause


def match_clause(tokens: Sequence[str], boost: float = 1.0) -> dict[str, Any]:
    """A ``match`` on the whitespace-analysed ``tokens`` field: the text is data, never syntax."""
    body: dict[str, Any] = {"query": " ".join(tokens), "operator": "or"}
    if boost != 1.0:
        body["boost"] = boost
    return {"match": {"tokens": body}}


def knn_request(vector: np.ndarray, params: KnnParams, filters: Filters) -> dict[str, Any]:
    return {"knn": knn_clause(vector, params, filters), "size": params.k, "_source": SOURCE_FIELDS}


def keyword_request(tokens: Sequence[str], size: int, filters: Filters) -> dict[str, Any]:
    return {
        "query": {"bool": {"must": [match_clause(tokens)], "filter": filters.clauses()}},
        "size": size,
        "_source": SOURCE_FIELDS,
    }


def hybrid_request(
    tokens: Sequence[str], vector: np.ndarray, params: KnnParams, filters: Filters, hybrid: HybridParams
) -> dict[str, Any]:
    """One request with ``query`` + ``knn``: Elasticsearch adds the boosted scores."""
    knn = knn_clause(
        vector, KnnParams(params.k, params.num_candidates, params.field, hybrid.knn_boost), filters
    )
    # minimum_should_match 1: a bool with a filter would otherwise match every filtered step (score 0)
    return {
        "query": {
            "bool": {
                "should": [match_clause(tokens, hybrid.keyword_boost)],
                "filter": filters.clauses(),
                "minimum_should_match": 1,
            }
        },
        "knn": knn,
        "size": params.k,
        "_source": SOURCE_FIELDS,
    }


def rrf_retriever_request(
    tokens: Sequence[str], vector: np.ndarray, params: KnnParams, filters: Filters, hybrid: HybridParams
) -> dict[str, Any]:
    """Server-side reciprocal rank fusion (``retriever.rrf``), for clusters that offer it."""
    return {
        "retriever": {
            "rrf": {
                "retrievers": [
                    {
                        "standard": {
                            "query": {"bool": {"must": [match_clause(tokens)], "filter": filters.clauses()}}
                        }
                    },
                    {"knn": knn_clause(vector, params, filters)},
                ],
                "rank_constant": hybrid.rank_constant,
                "rank_window_size": max(hybrid.window, params.k),
            }
        },
        "size": params.k,
        "_source": SOURCE_FIELDS,
    }


def fusion_msearch_bodies(
    tokens: Sequence[str], vector: np.ndarray, params: KnnParams, filters: Filters, hybrid: HybridParams
) -> list[dict[str, Any]]:
    """The two ranked lists that client-side fusion (RRF, linear) fuses, sent together in one ``_msearch``."""
    window = max(hybrid.window, params.k)
    knn = KnnParams(window, max(params.num_candidates, window), params.field)
    return [keyword_request(tokens, window, filters), knn_request(vector, knn, filters)]


def normalize(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n == 0 or not np.isfinite(n):
        raise ValueError("cannot normalise a zero vector")
    return (v / n).astype(np.float32)


def compose(
    base: np.ndarray, plus: Sequence[np.ndarray] = (), minus: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """Vector arithmetic in the shared space: normalise(base + sum(plus) - sum(minus)), inputs normalised."""
    out = normalize(np.asarray(base, dtype=np.float32)).astype(np.float64)
    for p in plus:
        out += normalize(np.asarray(p, dtype=np.float32))
    for m in minus:
        out -= normalize(np.asarray(m, dtype=np.float32))
    return normalize(out)
