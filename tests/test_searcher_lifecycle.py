"""A long-lived Searcher follows its alias while ``index_dataset`` re-indexes behind it (a new version, another
photo layout, an index of another model), on the real node."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from tests.logcapture import captured_log
from toolkit.data.jsonl import iter_recipes
from toolkit.fingerprint import FingerprintMismatch
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.lifecycle import alias_targets, swap_alias
from toolkit.model import SearchModel
from toolkit.rejects import RejectsWriter
from toolkit.search.dispatch import search_photo, search_text
from toolkit.search.engine import Searcher, SearchResult

QUERY = "玉ねぎを薄切りにします。"
ENGINE_LOG = "toolkit.search.engine"


@pytest.fixture(scope="module")
def model(built_model: Path) -> SearchModel:
    return SearchModel.load(built_model)


@pytest.fixture(scope="module")
def photo_step(sample_root: Path) -> tuple[str, Path]:
    """A step with a photo: its id and its photo file."""
    with RejectsWriter(None) as rejects:
        for r in iter_recipes(sample_root, rejects):
            for s in r.steps:
                if s.image:
                    return r.step_id(s), sample_root / s.image
    raise AssertionError("the sample has no photo")


def load(es: Elasticsearch, root: Path, model_dir: Path, alias: str, centre: bool, hubness: bool) -> str:
    """A new version of ``alias`` with this photo layout, the alias swapped to it; its name."""
    opts = IndexOptions(alias=alias, center_photos=centre, hubness_correction=hubness)
    index = index_dataset(es, root, model_dir, opts)["index"]
    assert alias_targets(es, alias) == [index]
    return index


def ranked(result: SearchResult) -> list[tuple[str, float]]:
    return [(h.step_id, round(h.score, 4)) for h in result.hits]


def test_a_searcher_follows_its_alias_to_a_version_without_the_hubness_correction(
    es, sample_root, built_model, model, index_name, photo_step, caplog
) -> None:
    """The reviewer's case: a searcher opened on a hubness-corrected index (322-dim photo field) kept sending
    322-dim queries after a re-index swapped the alias to a plain one (320): HTTP 400 on every search."""
    step_id, photo = photo_step
    first = load(es, sample_root, built_model, index_name, centre=True, hubness=True)
    default = Searcher(es, model, index_name)
    lazy = Searcher(es, model, index_name, recheck_s=3600)  # looks again only when a query is refused
    for s in (default, lazy):
        assert s.photo_hubness_beta is not None and s.photo_centre is not None
        assert search_text(s, QUERY).hits
        assert search_photo(s, photo, k=3).hits[0].step_id == step_id
    second = load(es, sample_root, built_model, index_name, centre=False, hubness=False)
    assert second != first
    fresh = Searcher(es, model, index_name)
    expected_text, expected_photo = search_text(fresh, QUERY), search_photo(fresh, photo, k=5)
    with captured_log(caplog, ENGINE_LOG):
        for s in (default, lazy):  # the default one may look first (a second has passed), the lazy one not
            assert ranked(search_text(s, QUERY)) == ranked(expected_text)
            assert s.photo_hubness_beta is None and s.photo_centre is None
            by_photo = search_photo(s, photo, k=5)
            assert ranked(by_photo) == ranked(expected_photo)
            assert by_photo.hits[0].step_id == step_id and by_photo.hits[0].score == pytest.approx(
                1, abs=1e-4
            )
            for mode in ("keyword", "hybrid", "rrf", "linear"):
                assert ranked(search_text(s, QUERY, mode=mode)) == ranked(
                    search_text(fresh, QUERY, mode=mode)
                )
    # one record per searcher (caplog may hold a record twice: from the logger and through the root)
    moved = {
        id(r): r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name == ENGINE_LOG
    }
    assert len(moved) == 2 and all(f"now points at {second} (was {first})" in m for m in moved.values())


def test_a_photo_query_refused_in_the_window_after_a_swap_is_sent_again_in_the_new_layout(
    es, sample_root, built_model, model, index_name, photo_step
) -> None:
    """Within ``recheck_s`` a photo made in the old index's stored form (322 dims) is refused; the searcher
    looks at once and sends it again, in the new index's form."""
    step_id, photo = photo_step
    load(es, sample_root, built_model, index_name, centre=False, hubness=True)
    lazy = Searcher(es, model, index_name, recheck_s=3600)
    assert search_photo(lazy, photo, k=3).hits[0].step_id == step_id
    load(es, sample_root, built_model, index_name, centre=False, hubness=False)
    result = search_photo(lazy, photo, k=3)  # its vector made for the old layout, before the searcher looked
    assert lazy.photo_hubness_beta is None
    assert result.hits[0].step_id == step_id and result.hits[0].score == pytest.approx(1, abs=1e-4)
    assert len(result.requests[0]["knn"]["query_vector"]) == model.dims


def test_a_searcher_takes_the_photo_centre_of_the_new_version(
    es, sample_root, built_model, model, index_name, photo_step
) -> None:
    """Same dimensions, another centring: nothing is refused, the searcher must notice by itself."""
    step_id, photo = photo_step
    load(es, sample_root, built_model, index_name, centre=True, hubness=False)
    eager = Searcher(es, model, index_name, recheck_s=0)  # looks before every request
    lazy = Searcher(es, model, index_name, recheck_s=3600)
    centre = eager.photo_centre
    assert centre is not None and lazy.photo_centre is not None
    assert search_photo(eager, photo, k=3).hits[0].score == pytest.approx(1, abs=1e-4)
    load(es, sample_root, built_model, index_name, centre=False, hubness=False)
    result = search_photo(eager, photo, k=5)
    assert eager.photo_centre is None
    assert result.hits[0].step_id == step_id and result.hits[0].score == pytest.approx(1, abs=1e-4)
    assert ranked(result) == ranked(search_photo(Searcher(es, model, index_name), photo, k=5))
    # the lazy one keeps the centre it read until recheck_s has passed (the documented trade-off)
    assert lazy.photo_centre is not None
    stale = search_photo(lazy, photo, k=5)
    assert stale.hits[0].score < result.hits[0].score - 1e-3


def test_a_searcher_refuses_an_alias_swapped_to_an_index_of_another_model(
    es, sample_root, built_model, model, index_name
) -> None:
    ours = load(es, sample_root, built_model, index_name, centre=False, hubness=False)
    searcher = Searcher(es, model, index_name, recheck_s=0)
    assert search_text(searcher, QUERY).hits
    other = f"{index_name}-other"  # same photo dimensions, another model's fingerprint
    es.indices.create(
        index=other,
        mappings={
            "_meta": {"model_fingerprint": "0" * 16},
            "properties": {
                "image_vector": {"type": "dense_vector", "dims": model.dims, "similarity": "cosine"}
            },
        },
    )
    swap_alias(es, index_name, other)
    for mode in ("knn", "keyword", "knn"):  # refused on every search while the alias points there
        with pytest.raises(FingerprintMismatch, match=f"index {other} fingerprint mismatch"):
            search_text(searcher, QUERY, mode=mode)
    swap_alias(es, index_name, ours)
    assert search_text(searcher, QUERY).hits
