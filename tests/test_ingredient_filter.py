"""An ingredient filter matches the spelling variants of the name (たまねぎ / 玉ねぎ / 玉葱 / タマネギ), through
every mode, and indices made before the ingredient keys existed still load, update and filter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from toolkit.index import lifecycle
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.template import IndexModelInfo, render_template
from toolkit.model import SearchModel
from toolkit.search.dispatch import SearchOptions, search
from toolkit.search.engine import Searcher
from toolkit.search.queries import Filters

RECIPES = {
    "onion1": ["玉ねぎ", "塩"],
    "onion2": ["たまねぎ"],
    "onion3": ["新玉ねぎ"],
    "cabbage": ["キャベツ"],
}


def _write(root: Path, photo: Path) -> None:
    """The recipes of :data:`RECIPES`, two steps each with a copy of ``photo`` (a kNN search finds photos)."""
    (root / "images").mkdir(parents=True)
    shutil.copy(photo, root / "images" / "p.jpg")
    lines = []
    for rid, names in RECIPES.items():
        steps = [{"position": p, "text": "野菜を切って炒めます。", "image": "images/p.jpg"} for p in (1, 2)]
        ingredients = [{"name": n} for n in names]
        lines.append(json.dumps({"recipe_id": rid, "title": rid, "ingredients": ingredients, "steps": steps}))
    (root / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _recipes(searcher: Searcher, ingredient: str, mode: str) -> set[str]:
    opts = SearchOptions(mode=mode, k=20, filters=Filters(ingredients=ingredient))
    return {h.recipe_id for h in search(searcher, "野菜を炒める", options=opts).hits}


@pytest.mark.parametrize("mode", ["knn", "keyword", "hybrid", "rrf"])
def test_an_ingredient_filter_matches_its_spelling_variants(
    es: Elasticsearch, built_model: Path, sample_root: Path, index_name: str, tmp_path: Path, mode: str
) -> None:
    """Before, ``--ingredient タマネギ`` found nothing where the recipes wrote 玉ねぎ or たまねぎ."""
    root = tmp_path / "data"
    _write(root, next(sample_root.rglob("*.jpg")))
    index_dataset(es, root, built_model, IndexOptions(alias=index_name))
    searcher = Searcher(es, SearchModel.load(built_model), index_name)
    for spelling in ("タマネギ", "玉葱", "ﾀﾏﾈｷﾞ", "玉ねぎ"):
        assert _recipes(searcher, spelling, mode) == {"onion1", "onion2"}, spelling
    assert _recipes(searcher, "新たまねぎ", mode) == {"onion3"}  # another word, not a spelling
    assert _recipes(searcher, "キャベツ", mode) == {"cabbage"}


def test_a_repeated_ingredient_filter_needs_every_one_and_the_help_says_so(
    es_settings, built_model: Path, sample_root: Path, es: Elasticsearch, index_name: str, tmp_path: Path
) -> None:
    """Each ``--ingredient`` is one more filter clause: a recipe must have them all (not any), which the help
    did not say."""
    from click.testing import CliRunner

    from toolkit.cli.main import cli

    root = tmp_path / "data"
    _write(root, next(sample_root.rglob("*.jpg")))
    index_dataset(es, root, built_model, IndexOptions(alias=index_name))
    base = ["search", "野菜を炒める", "--model", str(built_model), "--index", index_name, "--json"]
    found = {}
    for names in (["玉ねぎ"], ["塩"], ["玉ねぎ", "塩"], ["たまねぎ", "キャベツ"]):
        args = [a for n in names for a in ("--ingredient", n)]
        res = CliRunner().invoke(cli, [*base, *args], env={"ES_URL": es_settings.url})
        assert res.exit_code == 0, res.output
        found[" ".join(names)] = {h["recipe_id"] for h in json.loads(res.output)["hits"]}
    assert found == {
        "玉ねぎ": {"onion1", "onion2"},
        "塩": {"onion1"},
        "玉ねぎ 塩": {"onion1"},
        "たまねぎ キャベツ": set(),
    }
    for command in (["search"], ["grid"]):
        helped = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
        assert "--ingredient TEXT" in helped.output
        assert "Only recipes with this ingredient. Repeatable: a recipe must have every one." in helped.output


def test_an_index_made_before_ingredient_keys_is_given_the_field_and_still_filters(
    es: Elasticsearch, built_model: Path, sample_root: Path, index_name: str, tmp_path: Path
) -> None:
    """The mapping is strict: a load into an index without ``ingredient_keys`` would be refused document by
    document; the field is added first, as ``content_hash`` was."""
    model = SearchModel.load(built_model)
    body = render_template(index_name, IndexModelInfo(model.fingerprint, model.dims, model.encoder_name))
    del body["template"]["mappings"]["properties"]["ingredient_keys"]
    target = f"{index_name}-old"
    es.indices.create(index=target, **body["template"])
    root = tmp_path / "data"
    _write(root, next(sample_root.rglob("*.jpg")))
    old = Searcher(es, model, target, check=False, recheck_s=0)
    opts = SearchOptions(mode="keyword", filters=Filters(ingredients="玉ねぎ", include_text_only=True))
    assert any("made before ingredient keys" in n for n in search(old, "野菜", options=opts).notes)
    result = index_dataset(es, root, built_model, IndexOptions(alias=index_name, index=target))
    assert result["rejected"] == 0 and result["indexed"] == 2 * len(RECIPES)
    props = es.indices.get_mapping(index=target).body[target]["mappings"]["properties"]
    assert props["ingredient_keys"] == lifecycle.ADDED_FIELDS["ingredient_keys"]
    searcher = Searcher(es, model, target, check=False)
    assert _recipes(searcher, "玉ねぎ", "keyword") == {"onion1", "onion2"}
    assert not any("ingredient keys" in n for n in search(searcher, "野菜", options=opts).notes)
    assert not any(
        "ingredient keys" in n for n in search(old, "野菜", options=opts).notes
    )  # looked for again


class _CountingTokenizer:
    """The real tokenizer, counting the texts it is asked to tokenise."""

    def __init__(self) -> None:
        from toolkit.text.tokenizer import Tokenizer, TokenizerConfig

        self.inner = Tokenizer(TokenizerConfig())
        self.calls: list[str] = []

    def tokenize_all(self, text: str) -> list[str]:
        self.calls.append(text)
        return self.inner.tokenize_all(text)


def test_ingredient_keys_are_tokenised_once_per_name_not_once_per_step(tmp_path: Path) -> None:
    """``step_hash`` holds the recipe's ingredient keys and is asked for every step (``jrs index --update``
    hashes every step of the collection, changed or not): before, every step tokenised every ingredient name
    again, an --update of an unchanged collection about 7x slower than before the keys."""
    from types import SimpleNamespace

    from toolkit.data.schema import Ingredient, Recipe, Step
    from toolkit.index.documents import DocumentBuilder

    tok = _CountingTokenizer()
    model = SimpleNamespace(tokenizer=tok, fingerprint="m")
    builder = DocumentBuilder(model, tmp_path)  # type: ignore[arg-type]
    names = ("玉ねぎ", "塩", "醤油")
    recipes = [
        Recipe(
            f"r{r}",
            "t",
            ingredients=tuple(Ingredient(n) for n in names),
            steps=tuple(Step(p, "切る") for p in range(1, 6)),
        )
        for r in range(3)
    ]
    hashes = [builder.step_hash(r, s) for r in recipes for s in r.steps]
    assert len(set(hashes)) == len(hashes)
    assert builder.ingredient_keys(recipes[0]) == sorted({"玉葱", "塩", "醤油"})
    assert sorted(tok.calls) == sorted(names)  # each name once, for 15 steps of 3 recipes
