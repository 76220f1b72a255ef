"""An index whose mapping keeps the photo vectors out of ``_source`` (a common way to save disk): the searches
that read stored vectors say so, naming a step, and the grounded rerank falls back to Elasticsearch's order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import Elasticsearch, helpers

from toolkit.errors import ToolkitError
from toolkit.mapping import grounding as g
from toolkit.search.stored import VectorsNotReturned, source_vectors


def test_source_vectors_reads_each_document_and_names_one_without() -> None:
    docs = [{"_id": "r1:1", "_source": {"image_vector": [1.0, 0.0]}}, {"_id": "r1:2", "_source": {"x": 1}}]
    np.testing.assert_array_equal(source_vectors(docs[:1], "image_vector", "idx", "a test"), [[1.0, 0.0]])
    assert source_vectors([], "image_vector", "idx", "a test").shape[0] == 0
    with pytest.raises(VectorsNotReturned) as e:
        source_vectors(docs, "image_vector", "idx", "a test")
    message = str(e.value)
    assert "'r1:2'" in message and "'idx'" in message and "_source" in message and "a test" in message


@pytest.fixture(scope="module")
def vectors_kept_out(es: Elasticsearch, search_alias: str) -> Iterator[str]:
    """A copy of the test index (same mapping and ``_meta``) whose ``_source`` excludes ``image_vector``."""
    source = next(iter(es.indices.get_alias(name=search_alias)))
    mappings = dict(es.indices.get_mapping(index=source)[source]["mappings"])
    mappings["_source"] = {"excludes": ["image_vector"]}
    name = f"jrs-test-novec-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=name, mappings=mappings, settings={"number_of_replicas": 0})
    docs = helpers.scan(es, index=source, query={"query": {"match_all": {}}})
    helpers.bulk(es, ({"_index": name, "_id": d["_id"], "_source": d["_source"]} for d in docs), refresh=True)
    yield name
    es.indices.delete(index=name, ignore_unavailable=True)


def test_the_copy_keeps_its_vectors_out_of_source(es: Elasticsearch, vectors_kept_out: str) -> None:
    hit = es.search(index=vectors_kept_out, size=1, query={"exists": {"field": "image_vector"}})["hits"][
        "hits"
    ]
    assert hit and "image_vector" not in hit[0]["_source"]


def test_the_grounded_rerank_keeps_elasticsearchs_order_with_a_note(
    es: Elasticsearch, built_model: Path, vectors_kept_out: str
) -> None:
    from toolkit.model import SearchModel
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, KnnParams

    model = SearchModel.load(built_model)
    mapping = model.mapping.model
    bags, _ = model.text_tokens(["玉ねぎを炒める"])
    ids = np.unique(bags.ids)
    grounding = g.WordGrounding(len(ids), mapping.dim)
    grounding.set(ids, np.random.default_rng(0).normal(0, 3, (len(ids), mapping.dim)), np.zeros(len(ids)))
    mapping.set_grounding(grounding, 0.5)
    searcher = Searcher(es, model, vectors_kept_out)
    text = "玉ねぎをフランベで炒める"  # a word the model lacks: reranked where the vectors come back
    assert searcher.grounded_words(text) is not None
    result = searcher.text_knn(text, KnnParams(5, 100), Filters())
    plain = searcher.knn(searcher.text_vector(text), KnnParams(5, 100), Filters())
    assert [h.step_id for h in result.hits] == [h.step_id for h in plain.hits] and len(plain.hits) == 5
    assert "not reranked" in result.notes[-1]


def test_explain_like_and_the_evaluation_name_a_step_without_its_vector(
    es: Elasticsearch, built_model: Path, vectors_kept_out: str
) -> None:
    from toolkit.evaluation.through_index import indexed_photo_vectors
    from toolkit.model import SearchModel
    from toolkit.search.dispatch import SearchOptions, search
    from toolkit.search.engine import Searcher
    from toolkit.search.like import like_vector

    searcher = Searcher(es, SearchModel.load(built_model), vectors_kept_out)
    with pytest.raises(VectorsNotReturned, match="--explain"):
        search(searcher, "玉ねぎを炒める", options=SearchOptions(k=3, explain=True))
    step = es.search(index=vectors_kept_out, size=1, query={"exists": {"field": "image_vector"}})["hits"][
        "hits"
    ]
    with pytest.raises(VectorsNotReturned, match=f"'{step[0]['_id']}'.*more-like-these"):
        like_vector(searcher, [step[0]["_id"]])
    with pytest.raises(VectorsNotReturned, match="exact ranking"):
        indexed_photo_vectors(es, vectors_kept_out)
    no_photo = es.search(index=vectors_kept_out, size=1, query={"term": {"has_image": False}})["hits"]["hits"]
    if no_photo:  # a step without a photo is still named as one
        with pytest.raises(ToolkitError, match="without a photo vector") as e:
            like_vector(searcher, [no_photo[0]["_id"]])
        assert not isinstance(e.value, VectorsNotReturned)
