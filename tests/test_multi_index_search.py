"""Searches over an alias that points at several indices, and a warm searcher's photo hubness bank, on the real
node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from elasticsearch import Elasticsearch, helpers

from toolkit.index import hubness
from toolkit.index.lifecycle import IndexNotFound, alias_targets, swap_alias
from toolkit.model import SearchModel
from toolkit.search.dispatch import search, search_photo, search_text
from toolkit.search.engine import Searcher

QUERY = "玉ねぎを薄切りにします。"
COPY = "copy-"


def _copy(es: Elasticsearch, source: str, dest: str, meta: dict[str, Any], recipes: int = 0) -> None:
    """A second index made like ``source`` (its mapping, ``_meta`` entries replaced by ``meta``) holding the
    documents of ``source`` (of its first ``recipes`` recipes when given) under ids prefixed with COPY."""
    mapping = es.indices.get_mapping(index=source)[source]["mappings"]
    mapping["_meta"] = {**mapping["_meta"], **meta}
    es.indices.create(index=dest, mappings=mapping)
    docs = list(helpers.scan(es, index=source, query={"query": {"match_all": {}}}))
    kept = sorted({h["_source"]["recipe_id"] for h in docs})[:recipes] if recipes else None
    actions = [
        {"_index": dest, "_id": COPY + h["_id"], "_source": {**h["_source"], "step_id": COPY + h["_id"]}}
        for h in docs
        if kept is None or h["_source"]["recipe_id"] in kept
    ]
    helpers.bulk(es, actions, refresh=True)


def _over_two(es: Elasticsearch, alias: str, meta: dict[str, Any]) -> tuple[str, str]:
    """``alias`` over its loaded index and a copy of part of it made with ``meta``: the two names."""
    (first,) = alias_targets(es, alias)
    second = f"{alias}-copy"
    _copy(es, first, second, meta, recipes=40)
    es.indices.update_aliases(actions=[{"add": {"index": second, "alias": alias}}])
    return first, second


@pytest.fixture
def alias(es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str) -> str:
    from toolkit.index.indexer import IndexOptions, index_dataset

    index_dataset(es, sample_root, built_model, IndexOptions(alias=index_name))
    return index_name


def _photo(sample_root: Path) -> Path:
    return next(sample_root.rglob("*.jpg"))


def test_an_alias_over_indices_of_one_model_is_searched_as_one(
    es: Elasticsearch, alias: str, built_model: Path, sample_root: Path
) -> None:
    """Two indices of the same model behind one alias raised IndexNotFound ("made differently") as soon as
    anything in their _meta differed (the toolkit version that made them, their photo centres), and a
    like-these query said its step was "not in" the alias (``_mget`` refuses an alias of several indices)."""
    first, second = _over_two(es, alias, {"toolkit_version": "0.0.1"})
    searcher = Searcher(es, SearchModel.load(built_model), alias)
    ids = [h.step_id for h in search_text(searcher, QUERY, k=50).hits]
    assert any(i.startswith(COPY) for i in ids) and any(not i.startswith(COPY) for i in ids)
    assert search_photo(searcher, _photo(sample_root), k=5).hits  # one photo centre: photos searched too
    like = search(searcher, like=[ids[0]]).hits
    assert like and ids[0] not in [h.step_id for h in like]

    meta = es.indices.get_mapping(index=second)[second]["mappings"]["_meta"]
    es.indices.put_mapping(
        index=second, meta={**meta, "photo_centre": [x * 0.9 for x in meta["photo_centre"]]}
    )
    centred_apart = Searcher(es, SearchModel.load(built_model), alias)
    assert search_text(centred_apart, QUERY, mode="hybrid", k=5).hits
    assert search(centred_apart, like=[ids[0]]).hits
    with pytest.raises(IndexNotFound) as refused:
        search_photo(centred_apart, _photo(sample_root), k=5)
    message = str(refused.value)
    assert f"a photo query over {alias!r}" in message and f"({first}, {second})" in message
    assert "different photo centres" in message

    # one centre again, but the photo features read with other statistics: photo queries refused the same way
    stats = meta["photo_feature_stats"]
    shifted = {"mean": [x + 0.1 for x in stats["mean"]], "std": stats["std"]}
    es.indices.put_mapping(index=second, meta={**meta, "photo_feature_stats": shifted})
    read_apart = Searcher(es, SearchModel.load(built_model), alias)
    assert search_text(read_apart, QUERY, k=5).hits
    with pytest.raises(IndexNotFound, match="different statistics"):
        search_photo(read_apart, _photo(sample_root), k=5)
    with pytest.raises(IndexNotFound, match="different statistics"):  # jrs evaluate --index's baselines ask
        _ = read_apart.photo_feature_stats


def test_an_alias_over_indices_of_two_models_is_refused_naming_them(
    es: Elasticsearch, alias: str, built_model: Path
) -> None:
    first, second = _over_two(es, alias, {"model_fingerprint": "0123abcd"})
    with pytest.raises(IndexNotFound) as refused:
        Searcher(es, SearchModel.load(built_model), alias)
    message = str(refused.value)
    assert f"{alias!r} covers indices made differently ({first} against {second}: another model)" in message
    assert f"it points at {first}, {second}; search one of them" in message


def test_a_warm_searcher_builds_its_index_hubness_bank_when_it_opens(
    es: Elasticsearch, alias: str, built_model: Path, sample_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SearchModel.load(warm=True)`` built the tokenizer and the encoder, not the index's hubness bank: the
    first photo query still built it (~0.19 s against 0.017 s)."""
    banks: list[int] = []
    real = hubness.text_bank

    def counting(*args: Any, **kwargs: Any):
        banks.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hubness, "text_bank", counting)
    searcher = Searcher(es, SearchModel.load(built_model, warm=True), alias, recheck_s=0)
    assert len(banks) == 1
    search_photo(searcher, _photo(sample_root), k=3)
    assert len(banks) == 1  # the first photo query built nothing
    (first,) = alias_targets(es, alias)
    _copy(es, first, f"{alias}-v2", {})  # a new version made with the same settings
    swap_alias(es, alias, f"{alias}-v2")
    assert search_photo(searcher, _photo(sample_root), k=3).hits[0].step_id.startswith(COPY)
    assert len(banks) == 1  # the bank is the model's: not built again for the new version

    cold = Searcher(es, SearchModel.load(built_model), alias)
    assert len(banks) == 1 and not cold.model.warmed
    Searcher(es, SearchModel.load(built_model), alias, warm=True)
    assert len(banks) == 2
    with pytest.raises(Exception, match="warm must be True, False or None"):
        Searcher(es, cold.model, alias, warm="yes")  # type: ignore[arg-type]


def test_an_alias_over_indices_with_and_without_raw_features_refuses_queries_on_them(
    es: Elasticsearch, built_model: Path, sample_root: Path, index_name: str
) -> None:
    """An index loaded with ``--raw-features`` (``image_feature``, ``_meta.raw_feature_dims``) and one without
    behind one alias were searched together: a kNN query on ``image_feature`` silently searched the first one
    only. Such queries are refused, naming the indices and their sizes; the other queries search both."""
    from toolkit.index.indexer import IndexOptions, index_dataset
    from toolkit.search.like import like_vector
    from toolkit.search.queries import Filters, KnnParams

    loaded = index_dataset(es, sample_root, built_model, IndexOptions(alias=index_name, raw_features=True))
    first = loaded["index"]
    second = f"{index_name}plain"  # outside the template's pattern (<alias>-*), which maps image_feature
    mapping = es.indices.get_mapping(index=first)[first]["mappings"]
    dims = mapping["_meta"].pop("raw_feature_dims")
    mapping["properties"].pop("image_feature")
    es.indices.create(index=second, mappings=mapping)
    docs = list(helpers.scan(es, index=first, query={"query": {"match_all": {}}}))
    plain = [{k: v for k, v in h["_source"].items() if k != "image_feature"} for h in docs]
    actions = [
        {"_index": second, "_id": COPY + h["_id"], "_source": {**src, "step_id": COPY + h["_id"]}}
        for h, src in zip(docs, plain, strict=True)
    ]
    helpers.bulk(es, actions, refresh=True)
    es.indices.update_aliases(actions=[{"add": {"index": second, "alias": index_name}}])

    searcher = Searcher(es, SearchModel.load(built_model), index_name)
    ids = [h.step_id for h in search_text(searcher, QUERY, k=50).hits]
    assert any(i.startswith(COPY) for i in ids) and any(not i.startswith(COPY) for i in ids)
    photo_hits = [h.step_id for h in search_photo(searcher, _photo(sample_root), k=50).hits]
    assert any(i.startswith(COPY) for i in photo_hits) and any(not i.startswith(COPY) for i in photo_hits)

    raw = next(h["_source"]["image_feature"] for h in docs if "image_feature" in h["_source"])
    params = KnnParams(k=5, num_candidates=50, field="image_feature")
    with pytest.raises(IndexNotFound) as refused:
        searcher.knn(np.asarray(raw, np.float32), params, Filters())
    message = str(refused.value)
    assert f"a kNN query on image_feature over {index_name!r} cannot search its indices alike" in message
    assert f"{first}: {dims} dims, _meta.raw_feature_dims {dims}" in message
    assert f"{second}: not mapped, _meta.raw_feature_dims none" in message, message
    with pytest.raises(IndexNotFound, match="a kNN query on image_feature"):
        like_vector(searcher, [ids[0]], field="image_feature")
    alone = Searcher(es, SearchModel.load(built_model), first)  # one of them: searched as before
    assert len(alone.knn(np.asarray(raw, np.float32), params, Filters()).hits) == 5


def test_vector_fields_mapped_with_other_sizes_are_named_per_index() -> None:
    from toolkit.index.lifecycle import vector_fields_apart

    def mapping(image_dims: int, raw: int | None) -> dict[str, Any]:
        props: dict[str, Any] = {"image_vector": {"type": "dense_vector", "dims": image_dims}, "text": {}}
        props["text_vector"] = {"type": "dense_vector", "dims": 320}
        if raw:
            props["image_feature"] = {"type": "dense_vector", "dims": raw}
        return {"mappings": {"_meta": {"raw_feature_dims": raw} if raw else {}, "properties": props}}

    assert vector_fields_apart({"a": mapping(322, 512), "b": mapping(322, 512)}) == {}
    apart = vector_fields_apart({"a": mapping(322, 512), "b": mapping(320, 1280)})
    assert apart == {
        "image_feature": "a: 512 dims, _meta.raw_feature_dims 512; b: 1280 dims, _meta.raw_feature_dims 1280",
        "image_vector": "a: 322 dims; b: 320 dims",
    }
