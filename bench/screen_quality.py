"""Screening harness for retrieval-quality ideas: many draws, cached builds, exact scoring.

``bench_quality.py`` is the judged benchmark (one build per set and configuration, queried through
Elasticsearch). Screening an idea there costs a full build per draw; this harness caches what every idea
shares instead. For each draw (a ``bench_quality`` set at a seed offset) it generates the collections, builds
the default model once (``BENCH_BUILD``, mapping seed 0) and caches, under ``--work``: the gallery's photo
features, query tokens and step means, labels, never-trained flags, and the training split's step texts
(the *query bank*). Scoring variants are then applied to the cached vectors and ranked exactly
(text -> photo over the whole gallery; the query's own photo is its one positive), next to the CCA and
ridge baselines refitted on that draw's training pairs, each with and without the same variant.

    python bench/screen_quality.py --sets style,concepts,mixed --seeds 0,1,2,3 --work /tmp/screen

It prints one line per draw (and ``/never trained`` subset) and variant: model R@10, the best linear
baseline's R@10 *under the same variant*, and the points between them; then the mean and worst margin of
every variant. Nothing here is judged; what it finds goes into ``bench_quality.py`` runs.

``--retrain`` retrains the mapping per configuration on the cached pairs; ``--options '{"encoder": ...}'``
caches (builds) every draw with other build options first; ``--probe`` prints the probe ceiling: how well
logistic probes trained with the generator's labels tell each label of the gallery photos, and the R@10 of
ranking the gallery by them (what the features allow when the text is understood perfectly).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_quality import (  # noqa: E402
    BENCH_BUILD,
    DATASETS,
    Gallery,
    K,
    QualitySet,
    gallery_steps,
    photo_features,
    prepare,
    set_photo_size,
    training_pairs,
)


@dataclass
class Draw:
    """One cached draw: the built model and the arrays every variant is scored on."""

    name: str
    model_dir: Path
    gallery_x: np.ndarray  # backbone features, gallery order: query q's photo is row q
    query_text: np.ndarray  # Word2Vec step means of the queries
    query_tokens: Any  # TokenBags of the queries (bag text tower)
    bank_texts: list[str]  # the training split's step texts
    heldout: np.ndarray  # per query: never trained on
    unknown: np.ndarray  # per query: a word the model's Word2Vec lacks (dropped from its vector)
    gallery: Gallery  # the gallery's steps as bench_quality reads them
    order: np.ndarray  # gallery rows in gallery_x order (the queries' photos first)


def _cache_draw(dataset: QualitySet, work: Path, options: dict[str, Any]) -> Draw:
    from toolkit.data.jsonl import iter_recipes
    from toolkit.data.splits import split_of
    from toolkit.model import SearchModel
    from toolkit.pipeline import BuildOptions, build
    from toolkit.rejects import RejectsWriter

    train_root, gallery_root = prepare(dataset, work)
    from toolkit.image.encoders import create_encoder

    opts = BuildOptions(**{**BENCH_BUILD, "progress": False, **options})
    # what the build is made with: every build option and mapping setting, defaults included (a changed
    # default is a new cache entry), and the encoder's own fingerprint (its code may have changed)
    enc = create_encoder(opts.encoder, weights=opts.weights, image_size=opts.image_size, backend="torch")
    made_with = {
        **asdict(opts),
        "mapping": asdict(opts.mapping_config()),
        "encoder_fingerprint": enc.fingerprint,
    }
    tag = json.dumps(made_with, sort_keys=True, default=str)
    model_dir = work / dataset.key() / f"model-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"
    if not (model_dir / "manifest.json").is_file():
        build(train_root, model_dir, opts)
    model = SearchModel.load(model_dir)
    cache = model_dir / "screen.npz"
    gallery = gallery_steps(gallery_root, dataset, opts.split_seed)
    text_x, ok = model.text_features(gallery.texts)
    # queries: gallery steps with a known word, in order; the gallery: their photos first, then the rest
    order = np.concatenate([np.flatnonzero(ok), np.flatnonzero(~ok)])
    if cache.is_file():
        gallery_x = np.load(cache)["gallery_x"]
    else:
        gallery_x = photo_features(model, [gallery.photos[i] for i in order])
        np.savez(cache, gallery_x=gallery_x)
    from toolkit.search.explain import vocabulary_split

    query_texts = [t for t, keep in zip(gallery.texts, ok, strict=True) if keep]
    tokens, _ = model.text_tokens(query_texts)
    unknown = np.array([bool(vocabulary_split(model, t)[2]) for t in query_texts], dtype=bool)
    bank: list[str] = []
    with RejectsWriter(None) as rejects:
        for recipe in iter_recipes(train_root, rejects):
            if split_of(recipe.recipe_id, seed=opts.split_seed) == "train":
                bank += [s.text for s in recipe.steps]
    return Draw(
        name=dataset.name if dataset.seed < 1000 else f"{dataset.name}-s{dataset.seed}",
        model_dir=model_dir,
        gallery_x=gallery_x,
        query_text=text_x[ok],
        query_tokens=tokens,
        bank_texts=bank,
        heldout=np.asarray(gallery.heldout, dtype=bool)[ok],
        unknown=unknown,
        gallery=gallery,
        order=order,
    )


# --- scoring variants ------------------------------------------------------------------------------

#: A variant rescores ``queries @ gallery.T`` given the gallery's similarity to the query bank.
Variant = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def plain(q: np.ndarray, g: np.ndarray, bank: np.ndarray) -> np.ndarray:
    return q @ g.T


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def _centred(g: np.ndarray) -> np.ndarray:
    """Photos re-centred on the gallery's own mean in the shared space, then re-normalised."""
    return _unit_rows(g - g.mean(axis=0, keepdims=True))


def _hubness(g: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """``r_k(p)``: the mean cosine of each photo to its ``k`` nearest bank texts."""
    sims = g @ bank.T
    k_ = min(k, sims.shape[1])
    return np.mean(np.partition(sims, -k_, axis=1)[:, -k_:], axis=1)


def csls(k: int, beta: float) -> Variant:
    """Cross-domain similarity local scaling against a fixed query bank: ``cos(q, p) - beta * r_k(p)``
    (hubs are pushed down)."""

    def score(q: np.ndarray, g: np.ndarray, bank: np.ndarray) -> np.ndarray:
        return q @ g.T - beta * _hubness(g, bank, k)[None, :]

    return score


def centered(q: np.ndarray, g: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Photos centred (:func:`_centred`), queries unchanged."""
    return q @ _centred(g).T


def centered_csls(k: int, beta: float) -> Variant:
    """What the index does by default: photos centred (:func:`centered`), then CSLS (:func:`csls`) on them."""
    inner = csls(k, beta)

    def score(q: np.ndarray, g: np.ndarray, bank: np.ndarray) -> np.ndarray:
        return inner(q, _centred(g), bank)

    return score


def unknown_beta(k: int, beta: float, beta_unknown: float) -> Variant:
    """Centred CSLS whose weight is ``beta_unknown`` for queries with a word the model lacks (calibrated
    stacking, as in generalised zero-shot retrieval: such a query is likely about something never trained on,
    and a photo close to many training texts is likely of something trained on). Needs ``unknown``."""

    def score(q: np.ndarray, g: np.ndarray, bank: np.ndarray, unknown: np.ndarray) -> np.ndarray:
        gc = _centred(g)
        r = _hubness(gc, bank, k)
        b = np.where(unknown, beta_unknown, beta)
        return q @ gc.T - b[:, None] * r[None, :]

    score.needs_unknown = True  # type: ignore[attr-defined]
    return score


def _sqrtm(c: np.ndarray, inverse: bool = False) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, 1e-9)
    return (v * (w ** (-0.5 if inverse else 0.5))) @ v.T


def coral_csls(shrink: float, add_train_mean: bool, beta: float = 0.5) -> Variant:
    """Second-moment alignment (CORAL, Sun et al. 2016) of the gallery's photo vectors to the training
    photos' in the shared space (covariances shrunk by ``shrink`` towards their mean variance), then CSLS."""

    def _shrunk(x: np.ndarray) -> np.ndarray:
        c = np.cov(x, rowvar=False)
        return (1 - shrink) * c + shrink * np.trace(c) / len(c) * np.eye(len(c))

    def score(q: np.ndarray, g: np.ndarray, bank: np.ndarray, train: np.ndarray) -> np.ndarray:
        a = _sqrtm(_shrunk(g), inverse=True) @ _sqrtm(_shrunk(train))
        gc = (g - g.mean(axis=0, keepdims=True)) @ a
        if add_train_mean:
            gc += train.mean(axis=0, keepdims=True)
        gc = _unit_rows(gc)
        return csls(10, beta)(q, gc, bank) if beta else q @ gc.T

    score.needs_train = True  # type: ignore[attr-defined]
    return score


VARIANTS: dict[str, Variant] = {
    "plain": plain,
    "csls k10 b0.5": csls(10, 0.5),
    "csls k10 b1": csls(10, 1.0),
    "csls k50 b0.5": csls(50, 0.5),
    "csls k50 b1": csls(50, 1.0),
    "centered": centered,
    **{
        f"centered+csls k{k} b{b:g}": centered_csls(k, b) for k in (5, 10, 20) for b in (0.25, 0.5, 0.75, 1.0)
    },
    **{f"unknown b{b:g}": unknown_beta(10, 0.5, b) for b in (0.75, 1.0, 1.5, 2.0, 3.0)},
    **{
        f"coral s{sh:g}{' +mean' if m else ''}{'' if b else ' nocsls'}": coral_csls(sh, m, b)
        for sh in (0.1, 0.3, 0.6)
        for m in (False, True)
        for b in (0.5, 0.0)
    },
}


def ranks_of_own(scores: np.ndarray) -> np.ndarray:
    n = scores.shape[0]
    own = scores[np.arange(n), np.arange(n)]
    return (scores > own[:, None]).sum(axis=1) + 1


def embedded(draw: Draw) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per method: (query vectors, gallery vectors, bank vectors)."""
    from toolkit.evaluation.linear import linear_baselines
    from toolkit.model import SearchModel

    model = SearchModel.load(draw.model_dir)
    mapping = model.mapping.model
    q = draw.query_tokens if mapping.text_input == "tokens" else draw.query_text
    bank_vec, ok = model.embed_texts(draw.bank_texts)
    out = {"model": (mapping.embed_text(q), mapping.embed_image(draw.gallery_x), bank_vec[ok])}
    split_seed = int(model.manifest.get("split_seed", 0))
    pairs = training_pairs(draw.model_dir, split_seed)
    train_img = np.asarray(pairs["train"][1])
    TRAIN_PHOTOS["model"] = mapping.embed_image(train_img)
    bank_means, ok = model.text_features(draw.bank_texts)
    for name, lin in linear_baselines(*pairs["train"], *pairs["val"]).items():
        out[name] = (
            lin.embed_text(draw.query_text),
            lin.embed_image(draw.gallery_x),
            lin.embed_text(bank_means[ok]),
        )
        TRAIN_PHOTOS[name] = lin.embed_image(train_img)
    return out


#: per method, the embedded training photos of the draw being screened (variants that align to them)
TRAIN_PHOTOS: dict[str, np.ndarray] = {}


# --- retraining variants: a feature transform and/or mapping overrides -------------------------------

#: The widths of the tapped blocks of the multi-scale Lite encoders (80 + 112 + 320 channels).
MS_BLOCKS = (80, 112, 320)


def _blocks(x: np.ndarray) -> list[np.ndarray]:
    cuts = np.cumsum(MS_BLOCKS)[:-1] if x.shape[1] == sum(MS_BLOCKS) else []
    return np.split(x, cuts, axis=1)


def _block_l2(x: np.ndarray) -> np.ndarray:
    return np.concatenate([b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-8) for b in _blocks(x)], axis=1)


def _sqrt(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.sqrt(np.abs(x))


class ResidualWhiten:
    """Whiten the photo features by the covariance of what the step text does not predict (ridge
    residuals of the training pairs), shrunk towards the identity: directions of style and noise shrink."""

    def __init__(self, shrink: float = 0.5) -> None:
        self.shrink = shrink

    def fit(self, text: np.ndarray, image: np.ndarray) -> ResidualWhiten:
        from sklearn.linear_model import Ridge

        self.mu, self.sd = image.mean(0), image.std(0) + 1e-6
        z = (image - self.mu) / self.sd
        t = (text - text.mean(0)) / (text.std(0) + 1e-6)
        resid = z - Ridge(alpha=100.0).fit(t, z).predict(t)
        c = np.cov(resid, rowvar=False)
        c = (1 - self.shrink) * c + self.shrink * np.eye(len(c)) * np.trace(c) / len(c)
        w, v = np.linalg.eigh(c)
        self.w = (v / np.sqrt(np.maximum(w, 1e-8))) @ v.T
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (((x - self.mu) / self.sd) @ self.w).astype(np.float32)


def _draw_pairs(draw: Draw) -> tuple[Any, Any, Any, tuple[np.ndarray, ...]]:
    """The draw's model, its train and val :class:`~toolkit.stages.pairs.Pairs`, and their step means and
    photo features as arrays ``(train text, train image, val text, val image)``."""
    from toolkit.model import SearchModel
    from toolkit.stages.pairs import load_pairs, split_pairs

    model = SearchModel.load(draw.model_dir)
    split_seed = int(model.manifest.get("split_seed", 0))
    parts = split_pairs(
        load_pairs(draw.model_dir / "step_vectors", draw.model_dir / "image_features"), split_seed
    )
    tr, va = parts["train"], parts["val"]
    arrays = tuple(np.asarray(x, np.float32) for x in (tr.text, tr.image, va.text, va.image))
    return model, tr, va, arrays


def _val_with_distractors(train_img: np.ndarray) -> Callable[..., dict[str, float]]:
    """A validation metric for early stopping that ranks each validation text's photo among the validation
    photos *and* training photos up to ``val_pool`` in all (a fixed draw): on a small validation set a
    pool of only its own pairs saturates R@10 at once."""
    from toolkit.evaluation.metrics import metrics_from_ranks, positive_ranks

    def recalls(model: Any, text: Any, image: Any, config: Any) -> dict[str, float]:
        image = np.asarray(image, dtype=np.float32)
        extra = min(max(0, config.val_pool - len(image)), len(train_img))
        rows = np.sort(np.random.default_rng(0).choice(len(train_img), extra, replace=False))
        gallery = np.concatenate([image, train_img[rows]]) if extra else image
        return metrics_from_ranks(positive_ranks(model.embed_text(text), model.embed_image(gallery)))

    return recalls


def retrained(
    draw: Draw,
    transform: str = "none",
    mapping: dict[str, Any] | None = None,
    seed: int = 0,
    distractors: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Embeddings of a mapping retrained on the draw's cached pairs after ``transform`` of the photo
    features (the linear baselines refitted on the same transformed features). Bank vectors are empty."""
    from toolkit.evaluation.linear import linear_baselines
    from toolkit.mapping.train import MappingConfig, train_mapping

    model, tr, va, (tr_text, tr_img, va_text, va_img) = _draw_pairs(draw)
    gal = draw.gallery_x
    if transform != "none":
        fn: Callable[[np.ndarray], np.ndarray]
        if transform == "blockl2":
            fn = _block_l2
        elif transform == "sqrt":
            fn = _sqrt
        elif transform == "sqrt+blockl2":
            fn = lambda x: _block_l2(_sqrt(x))  # noqa: E731
        elif transform.startswith("rwhiten"):
            fn = ResidualWhiten(float(transform[7:] or 0.5)).fit(tr_text, tr_img)
        else:
            raise SystemExit(f"unknown transform {transform}")
        tr_img, va_img, gal = fn(tr_img), fn(va_img), fn(gal)
    config = MappingConfig(**{**(mapping or {}), "seed": seed})
    bag = config.text_tower == "bag"
    import toolkit.mapping.train as mapping_train

    original = mapping_train._val_recalls
    if distractors:
        mapping_train._val_recalls = _val_with_distractors(tr_img)
    try:
        result = train_mapping(
            tr.tokens if bag else tr_text,
            tr_img,
            va.tokens if bag else va_text,
            va_img,
            config,
            tr.groups,
            progress=False,
            word_vectors=model.word_vectors.matrix if bag else None,
        )
    finally:
        mapping_train._val_recalls = original
    m = result.model
    q = draw.query_tokens if bag else draw.query_text
    empty = np.zeros((0, 1), np.float32)
    out = {"model": (m.embed_text(q), m.embed_image(gal), empty)}
    for name, lin in linear_baselines(tr_text, tr_img, va_text, va_img).items():
        out[name] = (lin.embed_text(draw.query_text), lin.embed_image(gal), empty)
    return out


FUSION_WEIGHTS = (0.0, 0.15, 0.3, 0.5, 0.7, 1.0)


def fusion_sweep(draws: list[Draw], seeds: list[int], mapping: dict[str, Any] | None = None) -> None:
    """Towers-only mapping fused post hoc with the CCA at each of :data:`FUSION_WEIGHTS` (what the linear
    branch does at one weight), and at the weight that ranks the validation pairs best (``val``)."""
    from toolkit.evaluation.linear import linear_baselines
    from toolkit.mapping.train import MappingConfig, train_mapping

    names = [f"w{w}" for w in FUSION_WEIGHTS] + ["val"]
    summary: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for draw in draws:
        model, tr, va, (tr_text, tr_img, va_text, va_img) = _draw_pairs(draw)
        lins = linear_baselines(tr_text, tr_img, va_text, va_img)
        cca = lins["cca"]
        lin_r10 = {}
        subsets = {draw.name: np.ones(len(draw.heldout), dtype=bool)}
        if draw.heldout.any():
            subsets[f"{draw.name}/never trained"] = draw.heldout
        for name, lin in lins.items():
            hit = ranks_of_own(lin.embed_text(draw.query_text) @ lin.embed_image(draw.gallery_x).T) <= K
            lin_r10[name] = {s: 100 * float(hit[sel].mean()) for s, sel in subsets.items()}
        cca_g = draw.query_text, draw.gallery_x
        c_gal = cca.embed_text(cca_g[0]) @ cca.embed_image(cca_g[1]).T
        c_val = cca.embed_text(va_text) @ cca.embed_image(va_img).T
        acc: dict[str, dict[str, list[float]]] = {n: {s: [] for s in subsets} for n in names}
        picked = []
        for seed in seeds:
            config = MappingConfig(**{**(mapping or {}), "linear_weight": 0.0, "seed": seed})
            m = train_mapping(
                tr.tokens, tr_img, va.tokens, va_img, config, tr.groups, progress=False,
                word_vectors=model.word_vectors.matrix,
            ).model  # fmt: skip
            t_gal = m.embed_text(draw.query_tokens) @ m.embed_image(draw.gallery_x).T
            t_val = m.embed_text(va.tokens) @ m.embed_image(va_img).T
            val_r10 = []
            for w, n in zip(FUSION_WEIGHTS, names, strict=False):
                hit = ranks_of_own((1 - w) * t_gal + w * c_gal) <= K
                for s, sel in subsets.items():
                    acc[n][s].append(100 * float(hit[sel].mean()))
                val_r10.append(float(np.mean(ranks_of_own((1 - w) * t_val + w * c_val) <= K)))
            best = int(np.argmax(val_r10))  # ties: the smaller weight
            picked.append(FUSION_WEIGHTS[best])
            for s in subsets:
                acc["val"][s].append(acc[names[best]][s][-1])
        for s in subsets:
            lin = max(lin_r10["cca"][s], lin_r10["ridge"][s])
            line = f"{s:28s} linear {lin:5.1f} |"
            for n in names:
                mod = float(np.mean(acc[n][s]))
                summary[n].append((mod, mod - lin))
                line += f" {n} {mod - lin:+5.1f}"
            print(line + f"  (val picked {picked})", flush=True)
    print("\nweight   rows  model R@10  margin mean  worst")
    for n, rs in summary.items():
        print(
            f"{n:6s} {len(rs):5d}  {np.mean([r[0] for r in rs]):10.2f}  "
            f"{np.mean([r[1] for r in rs]):+11.2f}  {min(r[1] for r in rs):+6.2f}"
        )


def screen_retrained(draws: list[Draw], configs: dict[str, dict[str, Any]], seeds: list[int]) -> None:
    """Per config (``{"transform": ..., "mapping": {...}}``): R@10 margins per draw, mean over ``seeds``."""
    summary: dict[str, list[tuple[float, float]]] = {c: [] for c in configs}
    for draw in draws:
        subsets = {draw.name: np.ones(len(draw.heldout), dtype=bool)}
        if draw.heldout.any():
            subsets[f"{draw.name}/never trained"] = draw.heldout
        for cname, cfg in configs.items():
            acc: dict[str, list[tuple[float, float]]] = {s: [] for s in subsets}
            for seed in seeds:
                emb = retrained(
                    draw,
                    cfg.get("transform", "none"),
                    cfg.get("mapping"),
                    seed,
                    cfg.get("val_distractors", False),
                )
                r10 = {m: ranks_of_own(plain(*v)) <= K for m, v in emb.items()}
                for sname, sel in subsets.items():
                    lin = max(100 * float(r10[b][sel].mean()) for b in ("cca", "ridge"))
                    acc[sname].append((100 * float(r10["model"][sel].mean()), lin))
            for sname, vals in acc.items():
                mod, lin = np.mean([v[0] for v in vals]), np.mean([v[1] for v in vals])
                summary[cname].append((mod, mod - lin))
                print(
                    f"{sname:28s} {cname:20s} model {mod:5.1f}  linear {lin:5.1f}  margin {mod - lin:+5.1f}",
                    flush=True,
                )
    print("\nconfig                rows  model R@10  margin mean  worst")
    for cname, rs in summary.items():
        print(
            f"{cname:20s} {len(rs):5d}  {np.mean([r[0] for r in rs]):10.2f}  "
            f"{np.mean([r[1] for r in rs]):+11.2f}  {min(r[1] for r in rs):+6.2f}"
        )


# --- probe ceiling: what supervised probes read off the same photo features ---------------------------


def _train_labels(dataset: QualitySet, train_root: Path, ids: Any) -> dict[str, list[str]]:
    """Per training pair id (``recipe:position``): the labels its photo was drawn with (``main``,
    ``method``; the concepts set: each look of the object)."""
    from toolkit.data.jsonl import iter_recipes
    from toolkit.data.sample import make_recipe, step_labels
    from toolkit.evaluation.graded import tag_labels
    from toolkit.rejects import RejectsWriter

    by_recipe: dict[str, dict[str, str]] = {}
    if dataset.source != "sample" or dataset.train.content == "concepts":
        with RejectsWriter(None) as rejects:
            for index, recipe in enumerate(iter_recipes(train_root, rejects)):
                labels = tag_labels(recipe.tags)
                if dataset.train.content == "concepts":
                    labels = _looks(dataset.seed, index)
                by_recipe[recipe.recipe_id] = labels
    out: dict[str, list[str]] = {}
    for sid in ids:
        rid, _, pos = str(sid).partition(":")
        if rid in by_recipe:
            labels = by_recipe[rid]
        else:
            _, plans = make_recipe(dataset.seed, int(rid[1:]), dataset.train_recipes, variant=dataset.train)
            labels = {k: step_labels(plans[int(pos) - 1].text)[k] for k in ("main", "method")}
        for k, v in labels.items():
            out.setdefault(k, []).append(str(v))
    return out


def _looks(seed: int, index: int) -> dict[str, str]:
    from toolkit.data.sample_concepts import concept

    c = concept(seed, index)
    two = c.pattern != "none"
    return {
        "main": c.colour, "method": c.shape, "pattern": c.pattern, "colour2": c.colour2 if two else "-",
        "count": str(c.count), "size": c.size,
    }  # fmt: skip


def _named_looks(text: str) -> dict[str, str]:
    """The looks a concepts step text names (the second colour is the one before a pattern)."""
    from toolkit.data.sample_concepts import COLOURS, COUNTS, PATTERNS, SHAPES, SIZES

    out = {}
    for key, word in ((k, v[0]) for k, v in COLOURS.items()):
        if word in text:
            out["colour2" if "がある" in text else "main"] = key
    for name, table in (("method", SHAPES), ("pattern", PATTERNS), ("count", COUNTS), ("size", SIZES)):
        for key, word in table.items():
            if word and word in text:
                out[name] = str(key)
    return out


def probe_ceiling(datasets: list[QualitySet], draws: list[Draw], work: Path) -> None:
    """Per draw: logistic probes trained on the training photos' features (with the labels the generator
    drew them with, which the mapping never gets) tell each label of the gallery photos this often; ranking
    the gallery by the summed log-probabilities of the labels a query's photo has (the concepts set: the
    looks its text names) is the *probe ranking*, a ceiling of what these features tell apart."""
    from sklearn.linear_model import LogisticRegression

    for dataset, draw in zip(datasets, draws, strict=True):
        _, tr, _, (_, tr_img, _, _) = _draw_pairs(draw)
        train_root, gallery_root = prepare(dataset, work)
        labels = _train_labels(dataset, train_root, tr.ids)
        gallery, order, queries = draw.gallery, draw.order, len(draw.heldout)
        concepts = dataset.train.content == "concepts"
        if concepts:
            from toolkit.data.jsonl import iter_recipes
            from toolkit.rejects import RejectsWriter

            looks = []
            with RejectsWriter(None) as rejects:
                for index, recipe in enumerate(iter_recipes(gallery_root, rejects)):
                    looks += [_looks(dataset.gallery_seed, index)] * sum(1 for st in recipe.steps if st.image)
            g_labels = [looks[i] for i in order]
            wanted = [_named_looks(gallery.texts[i]) for i in order[:queries]]
        else:
            g_labels = [{k: str(gallery.labels[i][k]) for k in ("main", "method")} for i in order]
            wanted = g_labels[:queries]
        mean, std = tr_img.mean(axis=0), tr_img.std(axis=0) + 1e-6
        z_train, z_gallery = (tr_img - mean) / std, (draw.gallery_x - mean) / std
        scores = np.zeros((len(wanted), len(g_labels)))
        accuracy = {}
        for key, y in labels.items():
            probe = LogisticRegression(C=0.01, max_iter=2000).fit(z_train, y)
            classes = {c: j for j, c in enumerate(probe.classes_)}
            logp = np.log(np.maximum(probe.predict_proba(z_gallery), 1e-12))
            truth = np.array([g[key] for g in g_labels])
            accuracy[key] = (
                100 * float(np.mean(probe.classes_[logp.argmax(axis=1)] == truth)),
                100 * max(float(np.mean(truth == c)) for c in set(truth)),
            )
            for q, want in enumerate(wanted):
                if want.get(key) in classes:
                    scores[q] += logp[:, classes[want[key]]]
        scores += 1e-9 * np.random.default_rng(0).random(scores.shape)  # random order among ties
        hit = ranks_of_own(scores) <= K
        # perfect perception: the gallery ranked by how many of the named looks each photo truly has
        exact = np.array([[sum(g.get(k) == v for k, v in want.items()) for g in g_labels] for want in wanted])
        exact = exact + 1e-9 * np.random.default_rng(0).random(exact.shape)
        perfect = ranks_of_own(exact) <= K
        emb = retrained(draw)
        r10 = {m: ranks_of_own(plain(*v)) <= K for m, v in emb.items()}
        subsets = {draw.name: np.ones(len(draw.heldout), dtype=bool)}
        if draw.heldout.any():
            subsets[f"{draw.name}/never trained"] = draw.heldout
        acc = "  ".join(f"{k} {a:.0f}% (majority {m:.0f}%)" for k, (a, m) in accuracy.items())
        print(f"{draw.name}: probe accuracy on the gallery: {acc}", flush=True)
        for sname, sel in subsets.items():
            lin = max(100 * float(r10[b][sel].mean()) for b in ("cca", "ridge"))
            print(
                f"  {sname:28s} R@10 true looks {100 * float(perfect[sel].mean()):5.1f}  "
                f"probe ranking {100 * float(hit[sel].mean()):5.1f}  "
                f"model {100 * float(r10['model'][sel].mean()):5.1f}  linear {lin:5.1f}",
                flush=True,
            )


def photo_queries(draws: list[Draw]) -> None:
    """Photo -> photo search on each draw's gallery (centred like an index; the photo itself left out): the
    share of the top 10 with the photo's main / method label for plain cosine, the stored hubness layout
    (what a photo query sends) and the CSLS query form."""
    from toolkit.index.hubness import correction_for, lift_query
    from toolkit.model import SearchModel

    for draw in draws:
        model = SearchModel.load(draw.model_dir)
        g = model.mapping.model.embed_image(draw.gallery_x)
        g = _centred(g)
        hub = correction_for(model)
        if hub is None:
            continue
        stored = hub.photo_layout(g)
        labels = [draw.gallery.labels[i] for i in draw.order]
        cells = []
        for form, sims in (
            ("plain", g @ g.T),
            ("stored", stored @ stored.T),
            ("query", lift_query(g) @ stored.T),
        ):
            np.fill_diagonal(sims, -np.inf)
            top = np.argsort(-sims, axis=1)[:, :K]
            shares = []
            for key in ("main", "method"):
                lab = np.array([str(label.get(key)) for label in labels])
                shares.append(100 * float((lab[top] == lab[:, None]).mean()))
            cells.append(f"{form} {shares[0]:5.1f} / {shares[1]:5.1f}")
        print(f"{draw.name:16s} {len(g):5d} photos   " + "   ".join(cells), flush=True)


def screen(draws: list[Draw], variants: dict[str, Variant]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for draw in draws:
        emb = embedded(draw)
        subsets = {draw.name: np.ones(len(draw.heldout), dtype=bool)}
        if draw.heldout.any():
            subsets[f"{draw.name}/never trained"] = draw.heldout
        for vname, fn in variants.items():

            def extra(m: str, fn: Variant = fn, draw: Draw = draw) -> dict[str, np.ndarray]:
                got = {"unknown": draw.unknown} if getattr(fn, "needs_unknown", False) else {}
                return {**got, "train": TRAIN_PHOTOS[m]} if getattr(fn, "needs_train", False) else got

            r10 = {m: ranks_of_own(fn(*vecs, **extra(m))) <= K for m, vecs in emb.items()}
            for sname, sel in subsets.items():
                got = {m: 100 * float(v[sel].mean()) for m, v in r10.items()}
                best = max(("cca", "ridge"), key=got.__getitem__)
                row = {"row": sname, "model": got["model"], "linear": got[best], "best": best}
                row["margin"] = row["model"] - row["linear"]
                rows[vname].append(row)
                print(
                    f"{sname:28s} {vname:16s} model {row['model']:5.1f}  {best} {row['linear']:5.1f}  "
                    f"margin {row['margin']:+5.1f}",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="style,concepts,mixed", help="bench_quality set names")
    parser.add_argument("--seeds", default="0,1,2", help="seed offsets (each a new draw of every set)")
    parser.add_argument("--work", type=Path, required=True, help="cache of collections and builds")
    parser.add_argument("--options", default="{}", help="JSON BuildOptions overrides of the cached build")
    parser.add_argument("--variants", default="", help="comma-separated variant names (default: all)")
    parser.add_argument(
        "--retrain",
        default="",
        help='JSON {label: {"transform": none|blockl2|sqrt|sqrt+blockl2|rwhitenS, "mapping": {...}}}: '
        "retrain the mapping per config instead of scoring variants",
    )
    parser.add_argument("--fusion", action="store_true", help="sweep the towers/CCA fusion weight")
    parser.add_argument(
        "--probe", action="store_true", help="the probe ceiling: what supervised probes read off the features"
    )
    parser.add_argument(
        "--photo-queries", action="store_true", help="photo -> photo P@10 main / method per photo vector form"
    )
    parser.add_argument("--mapping-seeds", default="0", help="mapping seeds of --retrain (averaged)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--photo-size", type=int, default=0, help="draw photos this big (default: bench_quality's)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.photo_size:
        set_photo_size(args.photo_size)
    wanted = args.sets.split(",")
    base = [d for d in DATASETS if d.name in wanted]
    options = json.loads(args.options)
    t0 = time.perf_counter()
    draws, datasets = [], []
    for s in args.seeds.split(","):
        for d in base:
            draw = d.with_seed(int(s)) if int(s) else d
            datasets.append(draw)
            draws.append(_cache_draw(draw, args.work, options))
            print(f"cached {draws[-1].name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    if args.probe:
        probe_ceiling(datasets, draws, args.work)
        return
    if args.photo_queries:
        photo_queries(draws)
        return
    if args.fusion:
        fusion_sweep(draws, [int(x) for x in args.mapping_seeds.split(",")])
        return
    if args.retrain:
        seeds = [int(x) for x in args.mapping_seeds.split(",")]
        screen_retrained(draws, json.loads(args.retrain), seeds)
        return
    variants = {k: VARIANTS[k] for k in args.variants.split(",")} if args.variants else VARIANTS
    rows = screen(draws, variants)
    print("\nvariant           rows  model R@10  margin mean  worst")
    for vname, rs in rows.items():
        m = [r["margin"] for r in rs]
        print(
            f"{vname:16s} {len(rs):5d}  {np.mean([r['model'] for r in rs]):10.2f}  {np.mean(m):+11.2f}  {min(m):+6.2f}"
        )


if __name__ == "__main__":
    main()
