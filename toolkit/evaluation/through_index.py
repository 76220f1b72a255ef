"""Evaluation through Elasticsearch: the held-out queries run through the index, next to the exact result.

Protocol: every test-split step with a photo is a query (its text); its one relevant hit is its own photo.
The gallery is every photo in the index, so these figures are harder than the 1k-pool ones. A query whose
photo is not in the index (not indexed, or dropped as unusable) has no relevant hit to find: it is left out
of every mode (``skipped_photo_not_in_index``), as one with no known word is (``skipped_no_known_word``). For kNN the
exact top-k (brute force over the indexed ``image_vector`` values, same cosine) is computed too, so
``hnsw_recall@k`` (overlap of the approximate and exact top-k) shows what HNSW costs in recall.

With the model directory, the linear baselines (CCA, ridge; :mod:`toolkit.evaluation.linear`) fitted on
the model's own training pairs rank the same gallery for the same queries (exactly, from the model's
backbone features). With recipe labels (``main:`` / ``method:`` tags), every mode also reports graded
precision@k: the share of its top k whose recipe has the query's main ingredient, method, or both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, helpers

from toolkit.data.jsonl import RECIPES_FILE
from toolkit.data.step_ids import recipe_of
from toolkit.errors import ConfigError, ToolkitError
from toolkit.es.client import check_client, make_client, raising_toolkit_errors
from toolkit.evaluation.graded import Labels, graded_precision
from toolkit.progress import track
from toolkit.search.dispatch import knn_params
from toolkit.search.engine import Searcher
from toolkit.search.modes import DEFAULT_K, TEXT_MODES
from toolkit.search.queries import Filters, HybridParams
from toolkit.search.stored import source_vectors
from toolkit.stages.read import ReadOptions, read_steps, steps_of_split

INDEX_MODES = TEXT_MODES


@dataclass(frozen=True)
class Query:
    step_id: str
    text: str


def held_out_queries(dataset_root: str | Path, split_seed: int, split: str = "test") -> list[Query]:
    """Steps with a photo in ``split`` (the split the model never saw), in file order."""
    steps = read_steps(dataset_root, None, ReadOptions(split_seed=split_seed))
    return [Query(s.step_id, s.text) for s in steps_of_split(steps, split) if s.image is not None]


def indexed_photo_vectors(es: Elasticsearch, index: str) -> tuple[list[str], np.ndarray]:
    """Every ``image_vector`` in the index (scan), for the exact brute-force ranking."""
    ids: list[str] = []
    rows: list[np.ndarray] = []
    for hit in helpers.scan(
        es, index=index, query={"query": {"exists": {"field": "image_vector"}}}, _source=["image_vector"]
    ):
        ids.append(hit["_id"])
        rows.append(source_vectors([hit], "image_vector", index, "the evaluation's exact ranking")[0])
    if not rows:
        raise ToolkitError(f"index {index} has no photo vectors to evaluate against")
    x = np.asarray(rows, dtype=np.float32)
    return ids, x / np.linalg.norm(x, axis=1, keepdims=True)


def _rank_metrics(ranks: Sequence[int | None], k: int) -> dict[str, float]:
    """R@1/5/10 and MRR@k from 1-based ranks within the top ``k`` (None: not in the top ``k``)."""
    n = len(ranks)
    out = {f"R@{c}": sum(1 for r in ranks if r is not None and r <= c) / n for c in (1, 5, 10) if c <= k}
    out[f"MRR@{k}"] = sum(1.0 / r for r in ranks if r is not None) / n
    out["n"] = n
    return out


def _rank_of(step_id: str, hit_ids: Sequence[str]) -> int | None:
    return hit_ids.index(step_id) + 1 if step_id in hit_ids else None


def _graded(
    labels: Mapping[str, Labels],
    queries: Sequence[str],
    tops: Sequence[Sequence[str]],
    gallery: Sequence[str],
    k: int,
) -> dict[str, Any]:
    """Graded precision@k of ranked step ids by recipe labels (``recipe_id -> labels``)."""
    q = [labels.get(recipe_of(i), {}) for i in queries]
    hits = [[labels.get(recipe_of(h), {}) for h in top] for top in tops]
    out = graded_precision(q, hits, [labels.get(recipe_of(g), {}) for g in gallery], k)
    return (
        {"k": out["k"]}
        | {c: out[c] for c in ("main", "method", "both")}
        | {f"{c}_chance": out[f"{c}_chance"] for c in ("main", "method", "both")}
    )


def evaluate_through_index(
    searcher: Searcher,
    queries: Sequence[Query],
    k: int = DEFAULT_K,
    num_candidates: int | None = None,
    modes: Sequence[str] = INDEX_MODES,
    progress: bool = False,
    labels: Mapping[str, Labels] | None = None,
    model_dir: str | Path | None = None,
    split_seed: int = 0,
) -> dict[str, Any]:
    """Per-mode R@K/MRR through the index, the exact kNN result and the HNSW recall of the kNN mode.

    ``labels`` (``recipe_id -> {"main", "method"}``) adds graded precision@k per mode; ``model_dir``
    adds the linear baselines over the same gallery and queries (see the module docstring).
    """
    unknown = [m for m in modes if m not in INDEX_MODES]
    if unknown:
        raise ToolkitError(f"unknown evaluation mode(s) {unknown}; choose from {INDEX_MODES}")
    if not queries:
        raise ToolkitError("no held-out queries: the test split has no step with a photo")
    params, filters, hybrid = knn_params(k, num_candidates), Filters(), HybridParams()
    gallery_ids, gallery = indexed_photo_vectors(searcher.es, searcher.index)
    indexed = set(gallery_ids)
    no_photo = [q.step_id for q in queries if q.step_id not in indexed]
    if len(no_photo) == len(queries):
        raise ToolkitError(
            f"none of the {len(queries)} held-out queries has its photo in index {searcher.index} "
            f"(e.g. {no_photo[0]}): is it the index of this dataset?"
        )
    queries = [q for q in queries if q.step_id in indexed]
    ranks: dict[str, list[int | None]] = {m: [] for m in [*modes, "exact_knn"]}
    tops: dict[str, list[list[str]]] = {m: [] for m in [*modes, "exact_knn"]}
    asked: list[str] = []
    overlap: list[float] = []
    fusion = None
    skipped: list[str] = []
    for q in track(queries, progress, "queries", "query"):
        try:
            vec = searcher.text_vector(q.text)
        except ToolkitError:
            skipped.append(q.step_id)  # no known word: neither kNN nor hybrid can run
            continue
        scores = gallery @ searcher.photo_query(vec)  # the field's own similarity, correction included
        exact = [gallery_ids[j] for j in np.argsort(-scores, kind="stable")[:k]]
        ranks["exact_knn"].append(_rank_of(q.step_id, exact))
        tops["exact_knn"].append(exact)
        asked.append(q.step_id)
        for mode in modes:
            if mode == "knn":
                result = searcher.knn(vec, params, filters)
                hit_ids = [h.step_id for h in result.hits]
                overlap.append(len(set(hit_ids) & set(exact)) / len(exact))  # HNSW recall: before any rerank
                words = searcher.reranked_words(q.text, params)
                if words is not None:  # what `jrs search` answers: reranked
                    result = searcher.grounded_knn(vec, words, params, filters)
            elif mode == "keyword":
                result = searcher.keyword(q.text, k, filters)
            elif mode == "hybrid":
                result = searcher.hybrid(q.text, params, filters, hybrid)
            elif mode == "linear":
                result = searcher.linear(q.text, params, filters, hybrid)
            else:
                result = searcher.rrf(q.text, params, filters, hybrid)
                fusion = result.fusion
            ranks[mode].append(_rank_of(q.step_id, [h.step_id for h in result.hits]))
            tops[mode].append([h.step_id for h in result.hits])
    if not ranks["exact_knn"]:
        raise ToolkitError("no held-out query has a word in the model's vocabulary")
    out: dict[str, Any] = {
        "protocol": "held-out step texts -> their own photo, gallery = every photo in the index",
        "index": searcher.index,
        "gallery": len(gallery_ids),
        "queries": len(ranks["exact_knn"]),
        "skipped_no_known_word": skipped,
        "skipped_photo_not_in_index": no_photo,
        "k": k,
        "num_candidates": params.num_candidates,
        "modes": {m: _rank_metrics(ranks[m], k) for m in [*modes, "exact_knn"]},
    }
    if model_dir is not None:
        answered = set(asked)
        base = _baselines(
            searcher, model_dir, split_seed, gallery_ids, [q for q in queries if q.step_id in answered], k
        )
        for name, res in base.items():
            if isinstance(res, dict) and "ranks" in res:
                within = [r if r is not None and r <= k else None for r in res["ranks"]]
                ranks[f"{name}_exact"], tops[f"{name}_exact"] = within, res["top"]
                out["modes"][f"{name}_exact"] = _rank_metrics(within, k)
        out["linear_baselines"] = {n: r["fit"] if isinstance(r, dict) else r for n, r in base.items()}
    if labels:
        out["graded"] = {m: _graded(labels, asked, tops[m], gallery_ids, k) for m in tops if tops[m]}
    if overlap:
        out[f"hnsw_recall@{k}"] = float(np.mean(overlap))
    if fusion:
        out["rrf_fusion"] = fusion
    return out


def _baselines(
    searcher: Searcher,
    model_dir: str | Path,
    split_seed: int,
    gallery_ids: list[str],
    queries: Sequence[Query],
    k: int,
) -> dict[str, Any]:
    """CCA / ridge over the same gallery for the queries kNN answered (raw Word2Vec means of their text)."""
    from toolkit.evaluation.held_out import gallery_baselines

    text, ok = searcher.model.text_features([q.text for q in queries])
    kept = [(q.step_id, text[n]) for n, q in enumerate(queries) if ok[n]]
    stats = searcher.photo_feature_stats
    return gallery_baselines(model_dir, split_seed, gallery_ids, kept, k, stats, searcher.model)


def index_evaluation(
    searcher: Searcher,
    model_dir: str | Path,
    dataset_root: str | Path | None = None,
    k: int = DEFAULT_K,
    num_candidates: int | None = None,
    modes: Sequence[str] = (),
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The ``through_index`` part of ``jrs evaluate --index --json``: the model's held-out queries (at most
    ``limit``) through ``searcher`` in ``modes`` (default: all), with the linear baselines and graded relevance
    (:func:`evaluate_through_index`). ``dataset_root`` defaults to the one the model was built from."""
    from toolkit.evaluation.held_out import recipe_labels
    from toolkit.model import read_manifest

    manifest = read_manifest(model_dir)
    root = Path(dataset_root if dataset_root is not None else manifest["dataset"])
    if not (root / RECIPES_FILE).is_file():
        raise ToolkitError(f"dataset {root} has no {RECIPES_FILE}; pass --dataset")
    split_seed = int(manifest.get("split_seed", 0))
    return evaluate_through_index(
        searcher,
        held_out_queries(root, split_seed)[:limit],
        k,
        num_candidates,
        modes or INDEX_MODES,
        progress=progress,
        labels=recipe_labels(root),
        model_dir=model_dir,
        split_seed=split_seed,
    )


@raising_toolkit_errors
def evaluate_model(
    model_dir: str | Path,
    es: Elasticsearch | None = None,
    index: str | None = None,
    *,
    dataset_root: str | Path | None = None,
    k: int | None = None,
    num_candidates: int | None = None,
    modes: Sequence[str] = (),
    limit: int | None = None,
    report: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """What ``jrs evaluate --json`` prints: ``model_dir``, ``fingerprint``, ``in_memory``
    (:func:`~toolkit.evaluation.held_out.model_evaluation`) and, with ``index`` (an alias or index, queried
    through ``es``, default :func:`~toolkit.es.client.make_client`), ``through_index``
    (:func:`index_evaluation`, where ``k`` (default :data:`DEFAULT_K`), ``num_candidates``, ``modes`` and
    ``limit`` apply; given without ``index`` they raise :class:`~toolkit.errors.ConfigError`, as ``jrs
    evaluate`` refuses them without ``--index``). ``report`` also writes the HTML report there (``report`` in
    the result). Elasticsearch failures raise :class:`~toolkit.errors.ToolkitError`, as in
    :func:`toolkit.index.indexer.index_dataset`. ``modes`` takes one str as one mode; a bad argument is a
    :class:`~toolkit.errors.ConfigError` before any work."""
    from toolkit.evaluation.held_out import model_evaluation
    from toolkit.model import SearchModel, read_manifest

    if es is not None:
        check_client(es)
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    unknown = [m for m in modes if m not in INDEX_MODES]
    if unknown:
        raise ConfigError(f"unknown evaluation mode(s) {unknown}; choose from {INDEX_MODES}")
    if not index:
        given = [
            name
            for name, value in (
                ("k", k),
                ("num_candidates", num_candidates),
                ("modes", modes),
                ("limit", limit),
            )
            if value is not None and not (isinstance(value, (tuple, list)) and not value)
        ]
        if given:
            raise ConfigError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to the queries run through an "
                "index: pass index=ALIAS"
            )
    k = DEFAULT_K if k is None else k
    knn_params(
        k, num_candidates
    )  # a bad k or num_candidates: a ConfigError now, not after the in-memory part

    data: dict[str, Any] = {
        "model_dir": str(model_dir),
        "fingerprint": read_manifest(model_dir)["fingerprint"],
        "in_memory": model_evaluation(model_dir, dataset_root),
    }
    searcher = None
    if index:
        searcher = Searcher(es if es is not None else make_client(), SearchModel.load(model_dir), index)
    try:
        if searcher is not None:
            data["through_index"] = index_evaluation(
                searcher, model_dir, dataset_root, k, num_candidates, modes, limit, progress
            )
        if report is not None:
            from toolkit.viz.report import write_report

            write_report(
                model_dir,
                report,
                searcher,
                evaluation=data["in_memory"],
                through_index=data.get("through_index"),
                dataset_root=dataset_root,
                k=k,
                progress=progress,
            )
            data["report"] = str(report)
    finally:
        if searcher is not None and es is None:
            searcher.close()  # the client made here; one given by the caller stays open
    return data
