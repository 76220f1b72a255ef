"""The one search function behind the CLI, the search page and the API: a text, a photo or example steps
in any mode, optionally grouped by recipe, composed with ``plus``/``minus`` texts, and explained."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.data.schema import unencodable
from toolkit.errors import ToolkitError
from toolkit.model import check_query_text
from toolkit.search.engine import Searcher, SearchResult
from toolkit.search.modes import TEXT_MODES
from toolkit.search.queries import (
    Filters,
    Grouping,
    HybridParams,
    KnnParams,
    compose,
    num_candidates_for,
)

GROUPS = ("recipe",)


@dataclass(frozen=True)
class SearchOptions:
    """How to search: mode, size, filters, fusion weights, grouping and explanation."""

    mode: str = "knn"
    k: int = 10
    num_candidates: int | None = None
    filters: Filters = field(default_factory=Filters)
    hybrid: HybridParams = field(default_factory=HybridParams)
    #: ``"recipe"``: one hit per recipe (its best step), with its best ``per_group`` steps inside
    group: str | None = None
    per_group: int = 3
    #: tokens, known/unknown words with suggestions, leave-one-word-out contributions
    explain: bool = False

    def grouping(self) -> Grouping | None:
        if self.group is None:
            return None
        if self.group not in GROUPS:
            raise ToolkitError(f"unknown grouping {self.group!r}; choose one of {', '.join(GROUPS)}")
        try:
            return Grouping(per_group=self.per_group)
        except ValueError as e:
            raise ToolkitError(str(e)) from e


def search(
    searcher: Searcher,
    text: str | None = None,
    *,
    photo: str | Path | None = None,
    like: Sequence[str] = (),
    plus: Sequence[str] = (),
    minus: Sequence[str] = (),
    options: SearchOptions | None = None,
) -> SearchResult:
    """Run one query. Exactly one base: ``text`` (in ``options.mode``), ``photo``, or ``like`` (step ids:
    the mean of their photo vectors, plus ``text`` when given); ``plus``/``minus`` texts compose a vector
    query (kNN). Clear errors for a bad mode, k, grouping or a missing query."""
    opts = options or SearchOptions()
    if opts.mode not in TEXT_MODES:
        raise ToolkitError(f"unknown search mode {opts.mode!r}; choose one of {', '.join(TEXT_MODES)}")
    if text is not None and not text.strip():
        text = None
    if text is None and photo is None and not like:
        raise ToolkitError("the query is empty: give a text, a photo or steps to search like")
    for part in (text, *plus, *minus):
        if part is not None:
            check_query_text(part)  # clear errors before any tokenising: blank, or not valid Unicode
    bad_ids = [step_id for step_id in like if unencodable(step_id)]
    if bad_ids:
        raise ToolkitError(f"cannot search like these steps: {bad_ids!r} {unencodable(bad_ids[0])}")
    if photo is not None and (text is not None or like):
        raise ToolkitError("give a text or a photo, not both (or --plus/--minus to compose with the photo)")
    params = knn_params(opts.k, opts.num_candidates)
    group = opts.grouping()
    ignored = (
        f"--mode {opts.mode} applies to a text alone: a photo, like-these or composed query is a kNN search"
        if opts.mode != "knn" and (photo is not None or like or plus or minus)
        else None
    )
    if like:
        from toolkit.search.like import like_vector

        vector, note = like_vector(searcher, like, text)
        if plus or minus:
            vector = _composed(searcher, vector, plus, minus)
            note += f", composed with {len(plus)} plus and {len(minus)} minus text(s)"
        # the examples are left out by the ids like_vector looked up (padding stripped)
        filters = _excluding(opts.filters, [s.strip() for s in like if s.strip()])
        result = searcher.knn(vector, params, filters, mode="like", group=group)
        result.notes.append(note)
    elif photo is not None or plus or minus:
        base = searcher.image_vector(photo) if photo is not None else searcher.text_vector(text)  # type: ignore[arg-type]
        vector = _composed(searcher, base, plus, minus)
        label = "image" if photo is not None and not (plus or minus) else "composed"
        if label == "image":  # a photo alone is sent as the index stores photos: its own scores 1
            vector = searcher.as_stored_photo(vector)
        result = searcher.knn(vector, params, opts.filters, mode=label, group=group)
    else:
        assert text is not None
        text, notes, explanation = _prepare_text(searcher, text, opts)
        result = _run_text(searcher, text, opts, params, group)
        result.notes[:0] = notes
        if explanation is not None:
            from toolkit.search.explain import contributions

            explanation["contributions"] = contributions(searcher, text, opts, params, result)
            result.explanation = explanation
    if ignored:
        result.notes.append(ignored)
    return result


def _run_text(
    searcher: Searcher, text: str, opts: SearchOptions, params: KnnParams, group: Grouping | None
) -> SearchResult:
    if opts.mode == "knn":
        return searcher.knn(searcher.text_vector(text), params, opts.filters, group=group)
    if opts.mode == "keyword":
        return searcher.keyword(text, opts.k, opts.filters, group=group)
    if opts.mode == "hybrid":
        return searcher.hybrid(text, params, opts.filters, opts.hybrid, group=group)
    if opts.mode == "linear":
        return searcher.linear(text, params, opts.filters, opts.hybrid, group=group)
    return searcher.rrf(text, params, opts.filters, opts.hybrid, group=group)


def _prepare_text(searcher: Searcher, text: str, opts: SearchOptions) -> tuple[str, list[str], dict | None]:
    """Notes on words the model does not know (searching with the known ones; an error with suggestions
    when none is known) and, with ``explain``, the explanation so far."""
    from toolkit.search.explain import explain_tokens, suggestions, vocabulary_split

    explanation = explain_tokens(searcher.model, text) if opts.explain else None
    if opts.mode == "keyword":  # BM25 needs no vocabulary
        return text, [], explanation
    _, known, unknown = vocabulary_split(searcher.model, text)
    if not unknown:
        return text, [], explanation
    unknown = list(dict.fromkeys(unknown))
    if not known:
        hints = "; ".join(f"{w} -> {', '.join(suggestions(searcher.model, w)) or 'none'}" for w in unknown)
        raise ToolkitError(
            f"no word of the query is in the model's vocabulary (unknown: {', '.join(unknown)}; "
            f"nearest known words: {hints})"
        )
    note = (
        f"searched with the known words {' '.join(known)}; not in the model's vocabulary: {' '.join(unknown)}"
    )
    return text, [note], explanation


def _composed(searcher: Searcher, base: np.ndarray, plus: Sequence[str], minus: Sequence[str]) -> np.ndarray:
    """normalise(base + Σ plus − Σ minus); a clear error when the texts cancel the base out."""
    try:
        return compose(
            base, [searcher.text_vector(p) for p in plus], [searcher.text_vector(m) for m in minus]
        )
    except ValueError as e:
        raise ToolkitError(
            f"the composed query is empty: the --plus/--minus texts cancel its base out ({e})"
        ) from e


def _excluding(filters: Filters, step_ids: Sequence[str]) -> Filters:
    from dataclasses import replace

    return replace(filters, exclude_step_ids=tuple(filters.exclude_step_ids) + tuple(step_ids))


def search_text(
    searcher: Searcher,
    text: str,
    mode: str = "knn",
    k: int = 10,
    filters: Filters | None = None,
    num_candidates: int | None = None,
    hybrid: HybridParams | None = None,
) -> SearchResult:
    """Run ``text`` in ``mode`` (one of ``TEXT_MODES``); a clear error for a bad mode or k."""
    if not text or not text.strip():
        raise ToolkitError("the query text is empty")
    opts = SearchOptions(mode, k, num_candidates, filters or Filters(), hybrid or HybridParams())
    return search(searcher, text, options=opts)


def search_photo(
    searcher: Searcher, photo: str | Path, k: int = 10, filters: Filters | None = None
) -> SearchResult:
    """Query by photo: its shared-space vector against the indexed photos."""
    return search(searcher, photo=photo, options=SearchOptions(k=k, filters=filters or Filters()))


def knn_params(k: int, num_candidates: int | None = None) -> KnnParams:
    try:
        return KnnParams(k=k, num_candidates=num_candidates_for(k, num_candidates))
    except ValueError as e:
        raise ToolkitError(str(e)) from e
