"""Benchmark: retrieval quality under distribution shift, the model next to chance, untrained towers and
linear baselines (CCA, ridge) on the same features, all in one run.

Each dataset is a pair of generated collections (``jrs sample-data`` variants, see
:class:`toolkit.data.sample_variant.SampleVariant`): a *training* collection that ``jrs build`` learns from
(all of it: its own train/val split), and a *gallery* collection drawn or written another way (other
drawing style, palette, background; held-out ingredient x method combinations; paraphrased step texts;
photos with an unnamed extra ingredient). The gallery is indexed photo-only with the project's own
``index_dataset`` and every gallery step with a photo queries it through Elasticsearch (``Searcher.knn``,
k=10); its own photo is the one exact positive. Graded precision@10 counts the hits that show the query's
main ingredient, its method, or both (labels from the generator). The baselines are fitted on the very
training pairs the mapping trained on (the model's own Word2Vec step means and backbone features; the
regularisation picked on its validation pairs) and rank the same gallery exactly.

One set is real artwork no one on the project made (``emoji``, :mod:`bench.emoji_set`: three emoji vendors'
drawings of ~1.3k concepts with CLDR Japanese names; labels are the CLDR subcategory and category). Its data
comes from npm once (``bash bench/fetch_emoji.sh DIR``, then ``export JRS_EMOJI_DIR=DIR``); without it the
set is skipped with a message.

    python bench/bench_quality.py [--quick] [--seeds 0,1] [--only style,combos] [--json]

Importable for comparing build configurations in one run::

    from bench.bench_quality import DATASETS, run_quality
    table = run_quality(DATASETS, {"default": {}, "wide": {"mapping": {"hidden": 1024}}})
    print(table.render())

``build_options`` maps a label to :class:`toolkit.pipeline.BuildOptions` overrides (``mapping`` is a dict
of :class:`toolkit.mapping.train.MappingConfig` overrides). Benchmarks never assert: the goals are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine  # noqa: E402
from toolkit.data.sample_variant import PHOTO_RATIO, SampleVariant  # noqa: E402
from toolkit.index.feature_stats import FeatureStats  # noqa: E402

#: What every benchmark build uses unless a configuration overrides it: what a default build does offline.
BENCH_BUILD: dict[str, Any] = {
    "encoder": "efficientnet-lite0-ms4-sgem",  # what a default build uses offline (resnet50 auto falls back to it)
    "weights": "imagenet",
    "image_size": None,  # the encoder's native crop (224 px), as in a default build
    "batch_size": 64,
}
#: Side of the generated photos. 224 px, the size the default build feeds the encoder: at 64 px (used until
#: 2026-12-04) the CNN sees a different picture, and what ranked configurations there did not hold at 224
#: (README "Retrieval quality"). ``--photo-size 64`` gives the old, cheaper regime (photos fed at that size).
PHOTO_SIZE = 224
#: Concepts of the emoji set (all that three vendors draw and CLDR names in Japanese: 1,334)
EMOJI_CONCEPTS = 1334
K = 10
METRIC_KEYS = ("R@1", "R@5", "R@10", "MedR", "P@10 main", "P@10 method", "P@10 both")


@dataclass(frozen=True)
class QualitySet:
    """One benchmark dataset: a training collection and a shifted gallery collection.

    ``gallery_seed_offset`` 0 makes the gallery share the training collection's world (the concepts
    set: the same objects look the same in both); ``heldout_from`` marks gallery records from that index
    on, and every one whose training twin was not in the training split, as never trained on: they get
    rows of their own.
    """

    name: str
    what: str
    train: SampleVariant = field(default_factory=SampleVariant)
    gallery: SampleVariant = field(default_factory=lambda: SampleVariant(id_prefix="g"))
    seed: int = 0
    train_recipes: int = 320
    gallery_recipes: int = 120
    shifted: bool = True
    gallery_seed_offset: int = 1
    heldout_from: int | None = None
    #: ``sample`` (``jrs sample-data``'s generator), ``emoji`` (real artwork, :mod:`bench.emoji_set`:
    #: ``gallery_recipes`` concepts, ``train_recipes`` unused) or ``kitchen`` (a second recipe generator
    #: drawing with the emoji artwork, :mod:`bench.kitchen_set`: ``gallery_recipes`` one-step recipes)
    source: str = "sample"
    #: share of the training collection's steps with a photo
    train_photo_ratio: float = PHOTO_RATIO

    @property
    def gallery_seed(self) -> int:
        return self.seed + self.gallery_seed_offset

    def with_seed(self, offset: int) -> QualitySet:
        return replace(self, seed=self.seed + 1000 * offset)

    def with_more_training(self, factor: int) -> QualitySet:
        """``factor`` times the training recipes (``--train-factor``; the gallery unchanged), named
        ``NAME-xFACTOR``: how the margins hold on collections larger than the sets. Only for the recipe
        generators (the emoji set's training side is its artwork, the concept set's its 110 objects)."""
        if factor < 1:
            raise ValueError(f"the training factor must be at least 1, got {factor}")
        if factor == 1:  # the default: every set as it is (the fixed ones too)
            return self
        if self.source == "emoji" or self.train.content == "concepts":
            raise ValueError(
                f"{self.name}: its training side is fixed, it cannot be drawn {factor} times larger"
            )
        return replace(self, train_recipes=self.train_recipes * factor, name=f"{self.name}-x{factor}")

    def scaled(self, factor: float) -> QualitySet:
        """Smaller (``--quick``): every count times ``factor``."""

        def f(n: int) -> int:
            return max(20, round(n * factor))

        held = None if self.heldout_from is None else f(self.heldout_from)
        return replace(
            self,
            train_recipes=f(self.train_recipes),
            gallery_recipes=f(self.gallery_recipes),
            heldout_from=held,
        )

    def key(self) -> str:
        """A directory name that changes with anything that changes the generated data."""
        import hashlib

        from toolkit.data.sample_grammar import GRAMMAR_VERSION

        recipes = self.source == "sample" and "recipes" in (self.train.content, self.gallery.content)
        spec = json.dumps(
            [self.train.to_dict(), self.gallery.to_dict(), self.gallery_seed_offset, PHOTO_SIZE]
            + ([self.source] if self.source != "sample" else [])
            + ([GRAMMAR_VERSION] if recipes else [])
            + ([self.train_photo_ratio] if self.train_photo_ratio != PHOTO_RATIO else []),
            sort_keys=True,
        )
        digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
        return f"{self.name}-s{self.seed}-{self.train_recipes}x{self.gallery_recipes}-{digest}"


def _g(**kw: Any) -> SampleVariant:
    return SampleVariant(id_prefix="g", **kw)


DATASETS: tuple[QualitySet, ...] = (
    QualitySet("plain", "same generator, other recipes (no shift: the reference)", seed=101, shifted=False),
    QualitySet("style", "trained on flat + mosaic drawings; gallery inked on cloth, warm palette",
               train=SampleVariant(style="flat+mosaic"),
               gallery=_g(style="ink", palette="warm", background="cloth"), seed=102),
    QualitySet("combos", "gallery only ingredient x method pairs never trained on",
               train=SampleVariant(combos="seen"), gallery=_g(combos="unseen"), seed=103),
    QualitySet("paraphrase", "gallery steps phrased otherwise (templates, endings, synonyms)",
               gallery=_g(phrasing="paraphrase"), seed=104),
    QualitySet("extra", "half the gallery photos show an unnamed extra ingredient", gallery=_g(extra=0.5),
               seed=105),
    QualitySet("mixed", "soft cool drawings + paraphrases + unseen pairs + extras",
               train=SampleVariant(combos="seen"),
               gallery=_g(style="soft", palette="cool", phrasing="paraphrase", combos="unseen", extra=0.3),
               seed=106),
    QualitySet("unpictured", "half the training steps have no photo, and those are phrased otherwise (their "
               "words reach Word2Vec, no training pair); gallery steps phrased otherwise",
               train=SampleVariant(phrasing="unpictured"), gallery=_g(phrasing="paraphrase"), seed=109,
               train_photo_ratio=0.5),
    QualitySet("concepts", "150 objects, one-line descriptions; styles flat + ink trained, soft gallery; "
               "P@10 main = same colour, method = same shape",
               train=SampleVariant(content="concepts", style="flat+ink"),
               gallery=_g(content="concepts", style="soft"), seed=107, train_recipes=110,
               gallery_recipes=150, gallery_seed_offset=0, heldout_from=110),
    QualitySet("emoji", "real artwork (emoji-datasource): ~1.3k concepts, CLDR Japanese names and keywords; "
               "two vendors' drawings trained, the third is the gallery; a fifth never trained",
               seed=108, gallery_recipes=EMOJI_CONCEPTS, source="emoji"),
    QualitySet("kitchen", "a second recipe generator, not tuned on: cooking scenes composed of emoji artwork, "
               "its own grammar; two vendors trained, the third is the gallery, phrased otherwise; a quarter "
               "of the ingredient x method pairs never trained", seed=110, gallery_recipes=480, source="kitchen"),
)  # fmt: skip
QUICK_NAMES = ("plain", "style", "mixed", "concepts")
#: the sets the headline means (``quality_r10_shifted_mean``, ``quality_p10_main_shifted_mean``) are over
HEADLINE_SHIFTED = ("style", "combos", "paraphrase", "extra", "mixed", "concepts")
QUICK_FACTOR = 0.45


#: sets whose pictures come from the emoji packages (``$JRS_EMOJI_DIR``)
EMOJI_SOURCES = ("emoji", "kitchen")


def available(sets: Iterable[QualitySet], log: Any = None) -> tuple[QualitySet, ...]:
    """``sets`` without those whose data is not on this machine (the emoji and kitchen sets need
    ``$JRS_EMOJI_DIR``)."""
    from bench.emoji_set import FETCH_HINT, emoji_dir

    sets = tuple(sets)
    needs = [d.name for d in sets if d.source in EMOJI_SOURCES]
    if emoji_dir() is None and needs:
        (log or print)(f"{' and '.join(needs)} skipped: no emoji data ({FETCH_HINT})")
        sets = tuple(d for d in sets if d.source not in EMOJI_SOURCES)
    return sets


def quick_datasets(sets: Iterable[QualitySet] = DATASETS) -> tuple[QualitySet, ...]:
    return tuple(d.scaled(QUICK_FACTOR) for d in sets)


QUICK_DATASETS: tuple[QualitySet, ...] = quick_datasets(d for d in DATASETS if d.name in QUICK_NAMES)


# --- data -----------------------------------------------------------------------------------------


def _generate(
    root: Path, n: int, seed: int, variant: SampleVariant, photo_ratio: float = PHOTO_RATIO
) -> Path:
    from toolkit.data.sample import generate_sample

    if not (root / "recipes.jsonl").is_file():
        generate_sample(
            root,
            n,
            seed=seed,
            image_size=PHOTO_SIZE,
            photo_ratio=photo_ratio,
            variant=variant,
            overwrite=True,
        )
    return root


def prepare(dataset: QualitySet, work: Path) -> tuple[Path, Path]:
    """Generate (or reuse) the training and gallery collections of ``dataset`` under ``work``."""
    key = dataset.key()
    if dataset.source in EMOJI_SOURCES:
        from bench.emoji_set import FETCH_HINT, emoji_dir, write_emoji_set
        from bench.kitchen_set import write_kitchen_set

        root = emoji_dir()
        if root is None:
            raise SystemExit(f"the {dataset.name} set needs the emoji data: {FETCH_HINT}")
        if dataset.source == "kitchen":
            return write_kitchen_set(
                root, work / key, dataset.seed, dataset.train_recipes, dataset.gallery_recipes
            )
        return write_emoji_set(root, work / key, dataset.seed, concepts=dataset.gallery_recipes)
    train = _generate(
        work / key / "train", dataset.train_recipes, dataset.seed, dataset.train, dataset.train_photo_ratio
    )
    gallery = _generate(
        work / key / "gallery", dataset.gallery_recipes, dataset.gallery_seed, dataset.gallery
    )
    return train, gallery


@dataclass
class Gallery:
    """The gallery's photo steps: ids, their text (the query), labels, photo paths, never-trained flags."""

    ids: list[str]
    texts: list[str]
    labels: list[dict[str, Any]]
    photos: list[Path]
    heldout: list[bool]


def _twin_untrained(tags: Sequence[str], split_seed: int) -> bool:
    """A real-data gallery record (tags ``twin:<training recipe id>``: the training recipes of its concept
    or ingredient x method pair) none of whose twins is in the train split."""
    from toolkit.data.splits import split_of

    twins = [t.partition(":")[2] for t in tags if t.startswith("twin:")]
    return all(split_of(t, seed=split_seed) != "train" for t in twins)


def _never_trained(dataset: QualitySet, index: int, split_seed: int) -> bool:
    from toolkit.data.sample import recipe_id_for
    from toolkit.data.splits import split_of

    if dataset.heldout_from is None:
        return False
    if index >= min(dataset.heldout_from, dataset.train_recipes):
        return True
    twin = recipe_id_for(index, dataset.train_recipes, dataset.train.id_prefix)
    return split_of(twin, seed=split_seed) != "train"


def gallery_steps(root: Path, dataset: QualitySet, split_seed: int = 0) -> Gallery:
    """Every step with a photo. Recipe labels (main ingredient, method) come from the sentence its photo was
    drawn from; concept labels from the record's tags (colour, shape)."""
    from toolkit.data.jsonl import iter_recipes
    from toolkit.data.sample import make_recipe, step_labels
    from toolkit.evaluation.graded import tag_labels
    from toolkit.rejects import RejectsWriter

    n = dataset.gallery_recipes
    out = Gallery([], [], [], [], [])
    with RejectsWriter(None) as rejects:
        for index, recipe in enumerate(iter_recipes(root, rejects)):
            tags = tag_labels(recipe.tags)
            if dataset.gallery.content == "concepts" or dataset.source != "sample":
                labels = [{"main": tags.get("main"), "method": tags.get("method")}] * len(recipe.steps)
            else:
                _, plans = make_recipe(dataset.gallery_seed, index, n, variant=dataset.gallery)
                labels = [
                    {"main": lab["main"], "method": lab["method"]}
                    for lab in (step_labels(p.text) for p in plans)
                ]
            held = (
                _twin_untrained(recipe.tags, split_seed)
                if dataset.source != "sample"
                else _never_trained(dataset, index, split_seed)
            )
            for step, lab in zip(recipe.steps, labels, strict=True):
                if not step.image:
                    continue
                out.ids.append(recipe.step_id(step))
                out.texts.append(step.text)
                out.labels.append(lab)
                out.photos.append(root / step.image)
                out.heldout.append(held)
    return out


# --- features and baselines -----------------------------------------------------------------------


def training_pairs(model_dir: Path, split_seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The model's own training and validation pairs (step vectors, backbone features) by split."""
    from toolkit.evaluation.held_out import model_pairs

    pairs = model_pairs(model_dir, split_seed)
    return {s: (pairs[s].text, pairs[s].image) for s in ("train", "val")}


def photo_features(model: Any, photos: Sequence[Path], batch: int = 64) -> np.ndarray:
    """Backbone features of the gallery photos, with the model's own encoder."""
    import torch

    from toolkit.image.loading import load_image

    enc = model.encoder()
    rows = []
    for start in range(0, len(photos), batch):
        x = torch.stack([enc.preprocess(load_image(p)) for p in photos[start : start + batch]])
        rows.append(enc.encode_batch(x))
    return np.concatenate(rows).astype(np.float32)


@dataclass
class Ranking:
    """Per query (in query order): the 1-based rank of its own photo (top-k only: ``K + 1`` beyond), its
    exact full rank, and the labels of its top ``K`` hits. Exact ranks are positions in the ranking the top
    hits are read from (score descending, equal scores in gallery order:
    :func:`toolkit.evaluation.graded.order_ranks`), so a photo counts for R@K exactly when it is in the top K."""

    top_ranks: np.ndarray
    full_ranks: np.ndarray
    hit_labels: list[list[dict[str, Any]]]

    def row(
        self, select: np.ndarray, q_labels: list[dict[str, Any]], g_labels: list[dict[str, Any]]
    ) -> dict[str, float]:
        from toolkit.evaluation.graded import graded_precision

        idx = np.flatnonzero(select)
        graded = graded_precision([q_labels[i] for i in idx], [self.hit_labels[i] for i in idx], g_labels, K)
        out = {f"R@{k}": float(np.mean(self.top_ranks[idx] <= k)) for k in (1, 5, 10)}
        out["MedR"] = float(np.median(self.full_ranks[idx]))
        return out | {f"P@10 {c}": graded[c] for c in ("main", "method", "both")}


def exact_ranking(text_emb: np.ndarray, image_emb: np.ndarray, g_labels: list[dict[str, Any]]) -> Ranking:
    """Exact cosine ranking; query ``q``'s own photo is gallery row ``q`` (embeddings L2-normalised)."""
    from toolkit.evaluation.graded import order_ranks, top_k_indices

    scores = text_emb @ image_emb.T
    full = order_ranks(scores, np.arange(scores.shape[0]))
    top = top_k_indices(scores, K)
    return Ranking(full, full, [[g_labels[j] for j in row] for row in top])


def chance_row(n: int, q_labels: list[dict[str, Any]], g_labels: list[dict[str, Any]]) -> dict[str, float]:
    from toolkit.evaluation.graded import graded_precision

    graded = graded_precision(q_labels, [[] for _ in q_labels], g_labels, K)
    out = {f"R@{k}": min(1.0, k / n) for k in (1, 5, 10)}
    out["MedR"] = (n + 1) / 2
    return out | {f"P@10 {c}": graded[f"{c}_chance"] for c in ("main", "method", "both")}


# --- through Elasticsearch ------------------------------------------------------------------------


def through_index(
    es: Any,
    model_dir: Path,
    gallery_root: Path,
    gallery: Gallery,
    keep: np.ndarray,
    index_options: Mapping[str, Any] | None = None,
) -> tuple[Ranking, list[str], dict[str, Any], FeatureStats | None]:
    """Index the gallery with ``index_dataset`` (``index_options``: more ``IndexOptions`` fields) and query
    each kept step's text by kNN (``Searcher.knn``: photos only). Full ranks (for MedR) come from the exact
    ranking over the indexed vectors. Also the statistics the index read its photo features with
    (:mod:`toolkit.index.feature_stats`; None when it read them as they are)."""
    from toolkit.evaluation.graded import order_ranks
    from toolkit.evaluation.through_index import indexed_photo_vectors
    from toolkit.index.indexer import IndexOptions, index_dataset
    from toolkit.index.lifecycle import index_info
    from toolkit.model import SearchModel
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, KnnParams

    name = f"bench-quality-{uuid.uuid4().hex[:10]}"
    label_of = dict(zip(gallery.ids, gallery.labels, strict=True))
    with tempfile.TemporaryDirectory() as ckpt:
        opts = IndexOptions(index=name, checkpoint_dir=Path(ckpt), **dict(index_options or {}))
        try:
            t0 = time.perf_counter()
            loaded = index_dataset(es, gallery_root, model_dir, opts)
            index_s = time.perf_counter() - t0
            model = SearchModel.load(model_dir)
            searcher = Searcher(es, model, name)
            stats = FeatureStats.from_meta(index_info(es, name).meta, model.feature_dims)
            ids, vectors = indexed_photo_vectors(es, name)
            row_of = {i: r for r, i in enumerate(ids)}
            params, filters = KnnParams(K, 100), Filters()
            top_ranks, full_ranks, hit_labels = [], [], []
            t0 = time.perf_counter()
            for q in np.flatnonzero(keep):
                vec = searcher.text_vector(gallery.texts[q])
                hits = [h.step_id for h in searcher.text_knn(gallery.texts[q], params, filters).hits]
                own = gallery.ids[q]
                top_ranks.append(hits.index(own) + 1 if own in hits else K + 1)
                s = vectors @ searcher.photo_query(vec)
                full_ranks.append(int(order_ranks(s[None, :], [row_of[own]])[0]))
                hit_labels.append([label_of[h] for h in hits])
            query_s = time.perf_counter() - t0
        finally:
            es.options(ignore_status=404).indices.delete(index=name)
    facts = {
        "indexed_photos": len(ids),
        "index_s": round(index_s, 1),
        "query_ms": round(1000 * query_s / max(1, len(top_ranks)), 1),
        "docs": loaded.get("count"),
        "features_adapted": stats is not None,
    }
    return Ranking(np.asarray(top_ranks), np.asarray(full_ranks), hit_labels), ids, facts, stats


# --- one dataset, one configuration ---------------------------------------------------------------


def evaluate_config(
    es: Any, dataset: QualitySet, train_root: Path, gallery_root: Path, options: Mapping[str, Any], work: Path
) -> dict[str, Any]:
    """Build on the training collection with ``options`` and measure every row on the gallery."""
    from toolkit.evaluation.baselines import random_towers, untrained_arch
    from toolkit.evaluation.linear import linear_baselines
    from toolkit.index.feature_stats import adapted
    from toolkit.model import SearchModel
    from toolkit.pipeline import BuildOptions, build

    index_options = options.get("index", {})  # IndexOptions fields of the gallery's index; the rest: build
    opts = BuildOptions(
        **{**BENCH_BUILD, "progress": False, **{k: v for k, v in options.items() if k != "index"}}
    )
    model_dir = work / f"model-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    manifest = build(train_root, model_dir, opts)
    build_s = time.perf_counter() - t0
    model = SearchModel.load(model_dir)
    gallery = gallery_steps(gallery_root, dataset, opts.split_seed)
    text_x, ok = model.text_features(gallery.texts)
    image_x = photo_features(model, gallery.photos)
    rankings: dict[str, Ranking] = {}
    rankings["model"], indexed_ids, facts, stats = through_index(
        es, model_dir, gallery_root, gallery, ok, index_options
    )

    # every in-memory ranking: the same gallery (every photo) for the same queries (those with a known word);
    # the gallery is reordered so that query q's own photo is row q. The photo features are those the index
    # read: with the gallery's own statistics when it adapts them, for the baselines too (the same features)
    order = np.concatenate([np.flatnonzero(ok), np.flatnonzero(~ok)])
    gal_x = adapted(image_x[order], stats, model)
    g_labels = [gallery.labels[i] for i in order]
    q_text = text_x[ok]
    mapping = model.mapping.model
    # what the model's text tower reads: token ids (a bag tower) or the same step means as the baselines
    q_model = q_text
    if mapping.text_input == "tokens":
        q_model, _ = model.text_tokens([t for t, keep in zip(gallery.texts, ok, strict=True) if keep])
    rankings["model (exact)"] = exact_ranking(
        mapping.embed_text(q_model), mapping.embed_image(gal_x), g_labels
    )
    pairs = training_pairs(model_dir, opts.split_seed)
    fitted = linear_baselines(*pairs["train"], *pairs["val"])
    for name, lin in fitted.items():
        rankings[name] = exact_ranking(lin.embed_text(q_text), lin.embed_image(gal_x), g_labels)
    untrained = random_towers(untrained_arch(mapping.arch()), seed=0, stats=mapping.get_input_stats())
    rankings["untrained towers"] = exact_ranking(
        untrained.embed_text(q_text), untrained.embed_image(gal_x), g_labels
    )

    q_labels = [gallery.labels[i] for i in np.flatnonzero(ok)]
    held = np.asarray(gallery.heldout, dtype=bool)[ok]
    subsets = {"all": np.ones(len(q_labels), dtype=bool)}
    if held.any():
        subsets["never trained"] = held
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for subset, select in subsets.items():
        chosen = [q_labels[i] for i in np.flatnonzero(select)]
        tables[subset] = {name: r.row(select, q_labels, g_labels) for name, r in rankings.items()}
        tables[subset]["chance"] = chance_row(len(g_labels), chosen, g_labels)
    return {
        "rows": tables["all"],
        "subsets": {k: v for k, v in tables.items() if k != "all"},
        "subset_queries": {k: int(v.sum()) for k, v in subsets.items()},
        "queries": int(ok.sum()),
        "queries_no_known_word": int((~ok).sum()),
        "gallery_photos": len(g_labels),
        "train_pairs": int(len(pairs["train"][0])),
        "val_pairs": int(len(pairs["val"][0])),
        "linear": {name: lin.describe() for name, lin in fitted.items()},
        "build_s": round(build_s, 1),
        "best_epoch": manifest.get("best_epoch"),
        "exact_R@10": float(np.mean(rankings["model"].full_ranks <= K)),
        **facts,
    }


# --- the table ------------------------------------------------------------------------------------


@dataclass
class QualityTable:
    """Results per configuration and dataset: ``results[config][dataset] = evaluate_config(...)``."""

    results: dict[str, dict[str, dict[str, Any]]]
    datasets: list[dict[str, Any]]
    seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per configuration and dataset (and subset, e.g. ``concepts/never trained``): model R@10, best
        linear R@10, their difference and P@10."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for config, per_set in self.results.items():
            out[config] = {}
            for name, rows in table_rows(per_set):
                linear = max(("cca", "ridge"), key=lambda m: rows[m]["R@10"])
                out[config][name] = {
                    "model_R@10": rows["model"]["R@10"],
                    "best_linear": linear,
                    "linear_R@10": rows[linear]["R@10"],
                    "points_over_linear": 100 * (rows["model"]["R@10"] - rows[linear]["R@10"]),
                    "model_P@10_main": rows["model"]["P@10 main"],
                    "model_P@10_method": rows["model"]["P@10 method"],
                    "chance_R@10": rows["chance"]["R@10"],
                }
        return out

    def render(self) -> str:
        lines = []
        for config, per_set in self.results.items():
            lines.append(f"== configuration {config!r}")
            for name, res in per_set.items():
                lines.append(
                    f"-- {name}: {res['queries']} queries ({res['queries_no_known_word']} without a known "
                    f"word left out), gallery {res['gallery_photos']} photos, {res['train_pairs']} train pairs"
                )
                lines.append(_text_table(res["rows"]))
                for subset, rows in res.get("subsets", {}).items():
                    lines.append(f"-- {name}, {res['subset_queries'][subset]} queries of {subset} records")
                    lines.append(_text_table(rows))
        return "\n".join(lines)

    def markdown(self) -> str:
        return render_markdown(self.to_dict())

    def headline(self, config: str | None = None) -> dict[str, float | None]:
        """The judged figures of one configuration (default: the first)."""
        summary = self.summary()
        if not summary:
            return {}
        per_set = summary[config or next(iter(summary))]
        # the generated shifted sets of every earlier run, so runs stay comparable (real sets and sets
        # added later have their own rows)
        shifted = {d["name"] for d in self.datasets if d["name"] in HEADLINE_SHIFTED}
        r10 = [s["model_R@10"] for n, s in per_set.items() if n in shifted]
        main = [s["model_P@10_main"] for n, s in per_set.items() if n in shifted and "concepts" not in n]
        points = [s["points_over_linear"] for s in per_set.values()]
        return {
            "quality_points_over_linear_min": round(min(points), 2) if points else None,
            "quality_r10_shifted_mean": round(float(np.mean(r10)), 4) if r10 else None,
            "quality_p10_main_shifted_mean": round(float(np.mean(main)), 4) if main else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.headline(),
            "datasets": self.datasets,
            "results": self.results,
            "summary": self.summary(),
            "seconds": round(self.seconds, 1),
        }


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key == "MedR":
        return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    return f"{100 * value:.1f}"


def _text_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    header = ["method", *METRIC_KEYS]
    body = [[name, *[_cell(k, r.get(k)) for k in METRIC_KEYS]] for name, r in rows.items()]
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    fmt = [line[0].ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))
           for line in [header, *body]]  # fmt: skip
    return "\n".join(fmt)


def table_rows(per_set: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(name, rows)`` of every dataset and then its subsets (``concepts/never trained``)."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    for name, res in per_set.items():
        out.append((name, res["rows"]))
        out += [(f"{name}/{subset}", rows) for subset, rows in res.get("subsets", {}).items()]
    return out


def render_markdown(data: Mapping[str, Any]) -> str:
    """The quality table (``bench/results.md`` and the README): one row per dataset, configuration, method."""
    m = data.get("machine", {})
    where = (
        f"Measured {m.get('measured', '?')} on {m.get('cpus')} cores ({m.get('cpu_model')}), load average "
        f"{'/'.join(map(str, m.get('load_avg', [])))} at the end, in {data.get('seconds', 0) / 60:.1f} min. "
        if m
        else ""
    )
    lines = [
        where
        + "R@K and graded P@10 (share of the top 10 showing the query's main ingredient / method / both) in %, "
        "text -> photo over a photo-only gallery; `model` through Elasticsearch kNN (k=10, num_candidates 100), "
        "the other rows exact over the same gallery and queries.",
        "",
        "| dataset | config | method | R@1 | R@5 | R@10 | MedR | P@10 main | P@10 method | P@10 both |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, per_set in data.get("results", {}).items():
        for name, rows in table_rows(per_set):
            for method in ("model", "cca", "ridge", "untrained towers", "chance"):
                r = rows.get(method)
                if r is None:
                    continue
                cells = " | ".join(_cell(k, r.get(k)) for k in METRIC_KEYS)
                label = f"**{method}**" if method == "model" else method
                lines.append(f"| {name} | {config} | {label} | {cells} |")
    summary = data.get("summary", {})
    if summary:
        # a query with no known word has no vector and is left out of the rows above; over every query
        # (such a query a miss, as a user sees it) R@10 is model R@10 x queries / all queries
        counts = {
            (config, name): (res["queries"], res["queries"] + res["queries_no_known_word"])
            for config, per_set in data.get("results", {}).items()
            for name, res in per_set.items()
        }
        lines += [
            "",
            "| dataset | config | model R@10 | best linear R@10 | points over linear | queries with a known word "
            "| model R@10 over all queries |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for config, per_set in summary.items():
            for name, s in per_set.items():
                known, every = counts.get((config, name), (None, None))
                over_all = "–" if not every else f"{100 * s['model_R@10'] * known / every:.1f}"
                queries = "–" if not every else f"{known:,} of {every:,}"
                lines.append(
                    f"| {name} | {config} | {100 * s['model_R@10']:.1f} | {100 * s['linear_R@10']:.1f} "
                    f"({s['best_linear']}) | {s['points_over_linear']:+.1f} | {queries} | {over_all} |"
                )
    return "\n".join(lines) + "\n"


def run_quality(
    datasets: Iterable[QualitySet],
    build_options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    work: Path | None = None,
    es: Any = None,
    log: Any = None,
) -> QualityTable:
    """Every dataset x configuration in one run; ``build_options`` maps a label to BuildOptions overrides.

    ``work`` keeps the generated collections between runs (default: a temporary directory); ``es`` is an
    Elasticsearch client (default: ``ES_URL`` or the running local node).
    """
    configs = dict(build_options or {"default": {}})
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    client = es if es is not None else _client()
    started = time.perf_counter()
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-quality-")
        work = Path(tmp.name)
    results: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in configs}
    sets = list(datasets)
    try:
        for d in sets:
            t0 = time.perf_counter()
            train_root, gallery_root = prepare(d, work)
            say(f"{d.name}: data ready in {time.perf_counter() - t0:.0f} s")
            for config, overrides in configs.items():
                t0 = time.perf_counter()
                with tempfile.TemporaryDirectory(dir=work) as models:
                    res = evaluate_config(client, d, train_root, gallery_root, overrides, Path(models))
                results[config][d.name] = res
                say(f"{d.name} [{config}] in {time.perf_counter() - t0:.0f} s\n{_text_table(res['rows'])}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    described = [{**asdict(d), "train": d.train.to_dict(), "gallery": d.gallery.to_dict()} for d in sets]
    return QualityTable(results, described, time.perf_counter() - started)


def set_photo_size(size: int) -> None:
    """Draw photos ``size`` px wide; any size but the default is also fed to the encoder at that size."""
    global PHOTO_SIZE
    if size != PHOTO_SIZE:
        PHOTO_SIZE = size
        BENCH_BUILD["image_size"] = size


def _client() -> Any:
    from toolkit.es.client import make_client
    from toolkit.es.config import EsSettings

    url = os.environ.get("ES_URL")
    return make_client(EsSettings(url=url, request_timeout=120)) if url else make_client()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 small datasets (~2 min): for iterating")
    parser.add_argument(
        "--seeds", default="0", help="comma-separated seed offsets (each a new draw of every set)"
    )
    parser.add_argument("--only", default="", help="comma-separated dataset names")
    parser.add_argument("--work", type=Path, default=None, help="keep generated collections here")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)"
    )
    parser.add_argument(
        "--configs",
        default="",
        help="JSON {label: BuildOptions overrides} compared in the same run, e.g. "
        '\'{"default": {}, "head": {"encoder": "efficientnet-lite0"}}\'',
    )
    parser.add_argument(
        "--photo-size",
        type=int,
        default=PHOTO_SIZE,
        help=f"side of the generated photos, also fed to the encoder at that size when not {PHOTO_SIZE}",
    )
    parser.add_argument(
        "--train-factor",
        type=int,
        default=1,
        help="draw each set with this many times its training recipes (the gallery unchanged; the recipe "
        "generators only: plain, style, combos, paraphrase, extra, mixed, unpictured, kitchen)",
    )
    parser.add_argument("--json", action="store_true", help="(the result is always the last line, as JSON)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    set_photo_size(args.photo_size)
    base = QUICK_DATASETS if args.quick else DATASETS
    if args.only:
        wanted = set(args.only.split(","))
        base = tuple(d for d in (*DATASETS,) if d.name in wanted)
        if args.quick:
            base = quick_datasets(base)
    base = available(base)
    try:
        base = tuple(d.with_more_training(args.train_factor) for d in base)
    except ValueError as e:
        parser.error(f"{e} (--only picks the sets)")
    sets = [d.with_seed(int(s)) if int(s) else d for s in args.seeds.split(",") for d in base]
    if len({(d.name, d.seed) for d in sets}) != len(sets):
        parser.error("duplicate seeds")
    if len(args.seeds.split(",")) > 1:
        sets = [replace(d, name=f"{d.name}-s{d.seed}") for d in sets]
    configs = json.loads(args.configs) if args.configs else None
    table = run_quality(sets, configs, work=args.work)
    print(table.render(), file=sys.stderr)
    print(table.markdown(), file=sys.stderr)
    result = table.to_dict()
    result["quick"] = args.quick
    result["machine"] = {**machine(), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
