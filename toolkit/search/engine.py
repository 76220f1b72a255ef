"""Run searches against an index built by a model: kNN, keyword, hybrid, by photo and composed queries."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import ApiError, BadRequestError, Elasticsearch

from toolkit.errors import ToolkitError
from toolkit.index.centring import centre_from_meta, centred
from toolkit.index.hubness import (
    HubCorrection,
    correction_from_meta,
    layout_from_meta,
    lift_query,
    unlift_photo,
)
from toolkit.index.lifecycle import check_index_model, index_info
from toolkit.model import SearchModel, check_query_text
from toolkit.search.fusion import linear_fuse, rrf_fuse
from toolkit.search.queries import (
    Filters,
    Grouping,
    HybridParams,
    KnnParams,
    compose,
    fusion_msearch_bodies,
    hybrid_request,
    keyword_request,
    knn_request,
    rrf_retriever_request,
)


@dataclass
class Hit:
    score: float
    step_id: str
    recipe_id: str
    title: str
    position: int
    text: str
    image_path: str | None = None
    image_url: str | None = None

    @classmethod
    def from_es(cls, hit: dict[str, Any]) -> Hit:
        s = hit.get("_source", {})
        return cls(
            score=float(hit.get("_score") or 0.0),
            step_id=s.get("step_id", hit["_id"]),
            recipe_id=s.get("recipe_id", ""),
            title=s.get("title", ""),
            position=int(s.get("position", 0)),
            text=s.get("text", ""),
            image_path=s.get("image_path"),
            image_url=s.get("image_url"),
        )


@dataclass
class Group:
    """One recipe of a grouped result: its best step's score and its best-matching steps, best first."""

    recipe_id: str
    title: str
    score: float
    steps: list[Hit]

    @classmethod
    def from_es(cls, hit: dict[str, Any]) -> Group:
        inner = hit.get("inner_hits", {}).get("steps", {}).get("hits", {}).get("hits", [])
        top = Hit.from_es(hit)
        return cls(top.recipe_id, top.title, top.score, [Hit.from_es(h) for h in inner] or [top])


def group_hits(hits: list[Hit], k: int, per_group: int) -> list[Group]:
    """Group a ranked step list by recipe client-side (after fusion): ``k`` recipes in best-step order."""
    groups: dict[str, Group] = {}
    for h in hits:
        g = groups.get(h.recipe_id)
        if g is None:
            if len(groups) == k:
                continue
            g = groups[h.recipe_id] = Group(h.recipe_id, h.title, h.score, [])
        if len(g.steps) < per_group:
            g.steps.append(h)
    return list(groups.values())


@dataclass
class SearchResult:
    mode: str
    hits: list[Hit]
    requests: list[dict[str, Any]]
    took_ms: float
    total_ms: float
    fusion: str | None = None
    notes: list[str] = field(default_factory=list)
    #: recipe-level results (``group="recipe"``): ``hits`` then holds each recipe's best step
    groups: list[Group] | None = None
    #: what the query became and what each word did (``explain=True``)
    explanation: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Searcher:
    """Queries one index (or alias) with the model that built it (fingerprint checked on open)."""

    def __init__(self, es: Elasticsearch, model: SearchModel, index: str, check: bool = True) -> None:
        self.es = es
        self.model = model
        self.index = index
        self._server_rrf: bool | None = None
        # how the index's photo vectors were made (centre, hubness beta), read once from its _meta
        self._photo_meta: tuple[np.ndarray | None, float | None] | None = None
        self._index_meta: dict[str, Any] = {}
        self._hub: HubCorrection | None = None  # the index's hubness correction, for photo queries
        if check:
            self._read_photo_meta(check_index_model(es, index, model.fingerprint).meta)

    def _read_photo_meta(self, meta: dict[str, Any]) -> tuple[np.ndarray | None, float | None]:
        self._index_meta = meta
        self._photo_meta = (centre_from_meta(meta, self.model.dims), layout_from_meta(meta))
        return self._photo_meta

    def _photo_layout(self) -> tuple[np.ndarray | None, float | None]:
        return self._photo_meta or self._read_photo_meta(index_info(self.es, self.index).meta)

    @property
    def photo_centre(self) -> np.ndarray | None:
        """The centre the index's photo vectors were centred on (``_meta.photo_centre``), or None."""
        return self._photo_layout()[0]

    @property
    def photo_hubness_beta(self) -> float | None:
        """The hubness correction's ``beta`` when the index's photo vectors carry it, else None."""
        return self._photo_layout()[1]

    def photo_query(self, vector: np.ndarray) -> np.ndarray:
        """A shared-space query vector in the form the ``image_vector`` field is searched with (with the
        hubness correction: two more dimensions, :func:`toolkit.index.hubness.lift_query`)."""
        return vector if self.photo_hubness_beta is None else lift_query(vector)

    def stored_photo_vector(self, stored: np.ndarray) -> np.ndarray:
        """An indexed ``image_vector`` back in the shared space (drops the hubness correction's dimensions)."""
        beta = self.photo_hubness_beta
        return np.asarray(stored, np.float32) if beta is None else unlift_photo(stored, self.model.dims, beta)

    def as_stored_photo(self, vector: np.ndarray) -> np.ndarray:
        """A shared-space photo vector in the form the index stores it (with the hubness correction: its
        offset computed from the model's bank, built once). Searched with, a photo finds its own stored
        photo with cosine 1, as a stored ``image_vector`` pasted into a kNN query does."""
        if self.photo_hubness_beta is None:
            return vector
        if self._hub is None:
            hub = correction_from_meta(self._index_meta, self.model)  # the _meta read with the beta
            assert hub is not None  # the index records a correction
            self._hub = hub
        return self._hub.photo_layout(np.asarray(vector, np.float32)[None])[0]

    def field_vector(self, vector: np.ndarray, field: str) -> np.ndarray:
        """``vector`` in the form ``field`` is searched with: for ``image_vector`` a shared-space vector goes
        through :meth:`photo_query`, one already in the stored form (:meth:`as_stored_photo`) as it is."""
        if field != "image_vector" or len(vector) != self.model.dims:
            return vector
        return self.photo_query(vector)

    # --- query vectors ---------------------------------------------------------------------------
    def text_vector(self, text: str) -> np.ndarray:
        return self.model.embed_query(text)

    def image_vector(self, path: str | Path) -> np.ndarray:
        from toolkit.image.loading import ImageRejected

        try:  # a query photo is centred like the indexed ones, so photo-to-photo cosines compare alike
            return centred(self.model.embed_image_files([Path(path)]), self.photo_centre)[0]
        except ImageRejected as e:
            raise ToolkitError(f"query photo {path}: {e}") from e

    def composed_vector(
        self,
        text: str | None = None,
        image: str | Path | None = None,
        plus: Sequence[str] = (),
        minus: Sequence[str] = (),
    ) -> np.ndarray:
        if (text is None) == (image is None):
            raise ToolkitError("a composed query needs exactly one base: a text or a photo")
        base = self.text_vector(text) if text is not None else self.image_vector(image)  # type: ignore[arg-type]
        return compose(base, [self.text_vector(p) for p in plus], [self.text_vector(m) for m in minus])

    def tokens(self, text: str) -> list[str]:
        tokens = self.model.tokenizer.tokenize_all(check_query_text(text))
        if not tokens:
            raise ToolkitError(f"the query {text!r} has no searchable token")
        return tokens

    # --- requests --------------------------------------------------------------------------------
    def _run(
        self,
        mode: str,
        body: dict[str, Any],
        fusion: str | None = None,
        group: Grouping | None = None,
        k: int | None = None,
    ) -> SearchResult:
        if group is not None:
            body = group.apply(body, k or int(body["size"]))
        t = time.perf_counter()
        resp = self.es.search(index=self.index, **body)
        total = (time.perf_counter() - t) * 1000
        raw = resp["hits"]["hits"]
        result = SearchResult(mode, [Hit.from_es(h) for h in raw], [body], float(resp["took"]), total, fusion)
        if group is not None:
            result.groups = [Group.from_es(h) for h in raw]
        return result

    def knn(
        self,
        vector: np.ndarray,
        params: KnnParams,
        filters: Filters,
        mode: str = "knn",
        group: Grouping | None = None,
    ) -> SearchResult:
        vector = self.field_vector(vector, params.field)
        return self._run(mode, knn_request(vector, params, filters), group=group, k=params.k)

    def keyword(self, text: str, k: int, filters: Filters, group: Grouping | None = None) -> SearchResult:
        return self._run("keyword", keyword_request(self.tokens(text), k, filters), group=group, k=k)

    def hybrid(
        self,
        text: str,
        params: KnnParams,
        filters: Filters,
        hybrid: HybridParams,
        group: Grouping | None = None,
    ) -> SearchResult:
        """One request with ``query`` + ``knn``: boosted scores are added by Elasticsearch."""
        vector = self.field_vector(self.text_vector(text), params.field)
        body = hybrid_request(self.tokens(text), vector, params, filters, hybrid)
        return self._run("hybrid", body, fusion="score-sum", group=group, k=params.k)

    def rrf(
        self,
        text: str,
        params: KnnParams,
        filters: Filters,
        hybrid: HybridParams,
        group: Grouping | None = None,
    ) -> SearchResult:
        """Reciprocal rank fusion: ``retriever.rrf`` when the cluster offers it, else fused here from
        the two ranked lists fetched in one ``_msearch``. Grouped: the fused list of ``k * knn_factor``
        steps is grouped by recipe here (a rank fusion has no single query to collapse)."""
        return self._fused(self._rrf, text, params, filters, hybrid, group)

    def linear(
        self,
        text: str,
        params: KnnParams,
        filters: Filters,
        hybrid: HybridParams,
        group: Grouping | None = None,
    ) -> SearchResult:
        """Score fusion on one scale: each list's scores min-max normalised over its best ``hybrid.window``
        hits, then summed with the weights ``hybrid.keyword_boost`` and ``hybrid.knn_boost`` (what
        Elasticsearch's ``linear`` retriever computes with ``normalizer: minmax``), fused here from the
        two lists fetched in one ``_msearch``. Grouped like :meth:`rrf`."""
        return self._fused(self._linear, text, params, filters, hybrid, group)

    def _fused(
        self,
        run: Callable[[str, KnnParams, Filters, HybridParams], SearchResult],
        text: str,
        params: KnnParams,
        filters: Filters,
        hybrid: HybridParams,
        group: Grouping | None,
    ) -> SearchResult:
        if group is None:
            return run(text, params, filters, hybrid)
        wide = group.window(params.k)
        result = run(text, KnnParams(wide, max(params.num_candidates, wide), params.field), filters, hybrid)
        result.groups = group_hits(result.hits, params.k, group.per_group)
        result.hits = [g.steps[0] for g in result.groups]
        result.notes.append(f"grouped by recipe after fusing the best {wide} steps")
        return result

    def _query_forms(self, text: str, field: str) -> tuple[list[str], np.ndarray]:
        return self.tokens(text), self.field_vector(self.text_vector(text), field)

    def _both_lists(
        self, tokens: list[str], vector: np.ndarray, params: KnnParams, filters: Filters, hybrid: HybridParams
    ) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], float, float]:
        """The keyword and the kNN list of the best ``max(hybrid.window, k)`` steps, in one ``_msearch``:
        the request bodies, the two hit lists, the slower ``took`` and the round trip (ms)."""
        bodies = fusion_msearch_bodies(tokens, vector, params, filters, hybrid)
        searches: list[dict[str, Any]] = []
        for b in bodies:
            searches.extend([{"index": self.index}, b])
        t = time.perf_counter()
        resp = self.es.msearch(searches=searches)
        total = (time.perf_counter() - t) * 1000
        lists = []
        for r in resp["responses"]:
            if "error" in r:
                raise ToolkitError(f"search failed: {r['error'].get('reason', r['error'])}")
            lists.append(r["hits"]["hits"])
        return bodies, lists, float(max(r["took"] for r in resp["responses"])), total

    def _rrf(self, text: str, params: KnnParams, filters: Filters, hybrid: HybridParams) -> SearchResult:
        tokens, vector = self._query_forms(text, params.field)
        if self._server_rrf is not False:
            body = rrf_retriever_request(tokens, vector, params, filters, hybrid)
            try:
                result = self._run("rrf", body, fusion="server")
                self._server_rrf = True
                return result
            except (BadRequestError, ApiError) as e:
                if not _rrf_unavailable(e):
                    raise
                self._server_rrf = False
        bodies, lists, took, total = self._both_lists(tokens, vector, params, filters, hybrid)
        fused = rrf_fuse(lists, params.k, hybrid.rank_constant)
        note = "server-side RRF is not available on this cluster: fused client-side"
        return SearchResult("rrf", [Hit.from_es(h) for h in fused], bodies, took, total, "client", [note])

    def _linear(self, text: str, params: KnnParams, filters: Filters, hybrid: HybridParams) -> SearchResult:
        tokens, vector = self._query_forms(text, params.field)
        bodies, lists, took, total = self._both_lists(tokens, vector, params, filters, hybrid)
        fused = linear_fuse(lists, (hybrid.keyword_boost, hybrid.knn_boost), params.k)
        return SearchResult("linear", [Hit.from_es(h) for h in fused], bodies, took, total, "minmax")


def _rrf_unavailable(e: Exception) -> bool:
    text = str(e).lower()
    return any(s in text for s in ("unknown retriever [rrf]", "non-compliant", "license", "rrf"))
