"""Run searches against an index built by a model: kNN, keyword, hybrid, by photo and composed queries."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import ApiError, BadRequestError, Elasticsearch

from toolkit.errors import ToolkitError
from toolkit.index.lifecycle import check_index_model
from toolkit.model import SearchModel, check_query_text
from toolkit.search.fusion import rrf_fuse
from toolkit.search.queries import (
    Filters,
    HybridParams,
    KnnParams,
    compose,
    hybrid_request,
    keyword_request,
    knn_request,
    rrf_msearch_bodies,
    rrf_retriever_request,
)

MODES = ("knn", "keyword", "hybrid", "rrf", "image")


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
class SearchResult:
    mode: str
    hits: list[Hit]
    requests: list[dict[str, Any]]
    took_ms: float
    total_ms: float
    fusion: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hits": [asdict(h) for h in self.hits]}


class Searcher:
    """Queries one index (or alias) with the model that built it (fingerprint checked on open)."""

    def __init__(self, es: Elasticsearch, model: SearchModel, index: str, check: bool = True) -> None:
        self.es = es
        self.model = model
        self.index = index
        self._server_rrf: bool | None = None
        if check:
            check_index_model(es, index, model.fingerprint)

    # --- query vectors ---------------------------------------------------------------------------
    def text_vector(self, text: str) -> np.ndarray:
        return self.model.embed_query(text)

    def image_vector(self, path: str | Path) -> np.ndarray:
        from toolkit.image.loading import ImageRejected

        try:
            return self.model.embed_image_files([Path(path)])[0]
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
    def _run(self, mode: str, body: dict[str, Any], fusion: str | None = None) -> SearchResult:
        t = time.perf_counter()
        resp = self.es.search(index=self.index, **body)
        total = (time.perf_counter() - t) * 1000
        hits = [Hit.from_es(h) for h in resp["hits"]["hits"]]
        return SearchResult(mode, hits, [body], float(resp["took"]), total, fusion)

    def knn(self, vector: np.ndarray, params: KnnParams, filters: Filters, mode: str = "knn") -> SearchResult:
        return self._run(mode, knn_request(vector, params, filters))

    def keyword(self, text: str, k: int, filters: Filters) -> SearchResult:
        return self._run("keyword", keyword_request(self.tokens(text), k, filters))

    def hybrid(self, text: str, params: KnnParams, filters: Filters, hybrid: HybridParams) -> SearchResult:
        """One request with ``query`` + ``knn``: boosted scores are added by Elasticsearch."""
        body = hybrid_request(self.tokens(text), self.text_vector(text), params, filters, hybrid)
        return self._run("hybrid", body, fusion="score-sum")

    def rrf(self, text: str, params: KnnParams, filters: Filters, hybrid: HybridParams) -> SearchResult:
        """Reciprocal rank fusion: ``retriever.rrf`` when the cluster offers it, else fused here from
        the two ranked lists fetched in one ``_msearch``."""
        tokens, vector = self.tokens(text), self.text_vector(text)
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
        bodies = rrf_msearch_bodies(tokens, vector, params, filters, hybrid)
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
        fused = rrf_fuse(lists, params.k, hybrid.rank_constant)
        took = float(max(r["took"] for r in resp["responses"]))
        note = "server-side RRF is not available on this cluster: fused client-side"
        return SearchResult("rrf", [Hit.from_es(h) for h in fused], bodies, took, total, "client", [note])


def _rrf_unavailable(e: Exception) -> bool:
    text = str(e).lower()
    return any(s in text for s in ("unknown retriever [rrf]", "non-compliant", "license", "rrf"))
