"""An empty or white-space-only query says so, in every mode, from the library and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli.main import cli
from toolkit.errors import ToolkitError
from toolkit.model import SearchModel
from toolkit.search.engine import Searcher
from toolkit.search.queries import Filters, HybridParams, KnnParams


@pytest.mark.parametrize("mode", ["knn", "keyword", "hybrid", "rrf", "linear"])
@pytest.mark.parametrize("text", ["", "   ", "\u3000\n\t"])
def test_library_says_the_query_is_empty(
    es, built_model: Path, search_alias: str, text: str, mode: str
) -> None:
    searcher = Searcher(es, SearchModel.load(built_model), search_alias)
    calls = {
        "knn": lambda: searcher.knn(searcher.text_vector(text), KnnParams(), Filters()),
        "keyword": lambda: searcher.keyword(text, 5, Filters()),
        "hybrid": lambda: searcher.hybrid(text, KnnParams(), Filters(), HybridParams()),
        "rrf": lambda: searcher.rrf(text, KnnParams(), Filters(), HybridParams()),
        "linear": lambda: searcher.linear(text, KnnParams(), Filters(), HybridParams()),
    }
    with pytest.raises(ToolkitError, match="^the query is empty$"):
        calls[mode]()


def test_cli_says_the_query_is_empty(es_settings, built_model: Path, search_alias: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["search", "  ", "--model", str(built_model), "--index", search_alias],
        env={"ES_URL": es_settings.url},
    )
    assert result.exit_code != 0
    assert "the query is empty" in result.output
    assert "vocabulary" not in result.output


@pytest.mark.parametrize("mode", ["knn", "keyword", "hybrid", "rrf", "linear"])
def test_text_that_is_not_valid_unicode_is_refused_in_every_mode(
    es, built_model: Path, search_alias: str, mode: str
) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates (argv); MeCab cannot take them."""
    import toolkit
    from toolkit.search.dispatch import SearchOptions

    searcher = Searcher(es, SearchModel.load(built_model), search_alias)
    bad = "\udcff\udcfe玉ねぎ"
    with pytest.raises(
        ToolkitError, match=r"^the query is not valid Unicode: an unpaired surrogate '\\udcff' at"
    ):
        toolkit.query(searcher, bad, options=SearchOptions(mode=mode))
    with pytest.raises(ToolkitError, match="not valid Unicode"):
        toolkit.query(searcher, "玉ねぎ", plus=[bad])
    assert toolkit.query(
        searcher, "玉ねぎ", options=SearchOptions(mode=mode, k=3)
    ).hits  # the same query, clean


def test_filters_and_like_ids_that_are_not_valid_unicode_are_refused(
    es, built_model: Path, search_alias: str
) -> None:
    import toolkit

    searcher = Searcher(es, SearchModel.load(built_model), search_alias)
    for field in ("recipe_ids", "ingredients", "tags"):
        with pytest.raises(ToolkitError, match=rf"^filter {field}: '\\udcff' is not valid Unicode"):
            Filters(**{field: ("\udcff",)})
    with pytest.raises(ToolkitError, match=r"like these steps: \['r\\udcff:1'\] is not valid Unicode"):
        toolkit.query(searcher, like=["r\udcff:1"])
