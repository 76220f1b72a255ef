"""``jrs build``: every learning stage from a dataset root into a model directory.

Stages (each also runs alone through its own command): read + split by recipe -> tokenise ->
Word2Vec on the training split -> step vectors -> image features -> two-tower mapping on
train/val pairs -> evaluation on the test split -> manifest with fingerprints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import __version__
from toolkit.data.jsonl import iter_recipes
from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.data.splits import split_of
from toolkit.errors import ToolkitError
from toolkit.model import MANIFEST, model_fingerprint
from toolkit.rejects import RejectsWriter
from toolkit.vectorset import align, load_vector_set, save_vector_set


@dataclass
class StepRecord:
    step_id: str
    recipe_id: str
    split: str
    text: str
    image: Path | None


@dataclass
class BuildOptions:
    encoder: str = "resnet50"
    weights: str = "auto"
    image_size: int | None = None
    batch_size: int = 32
    workers: int = 1
    backend: str | None = None  # image backend (None: $JRS_IMAGE_BACKEND or auto)
    w2v_min_count: int = 2
    w2v_epochs: int = 20
    w2v_seed: int = 0
    split_seed: int = 0
    mapping: dict[str, Any] = field(default_factory=dict)
    eval_pool: int = 1000
    eval_draws: int = 10
    progress: bool = True


def read_steps(root: Path, rejects: RejectsWriter, split_seed: int) -> list[StepRecord]:
    """All valid steps with their split and the real path of their photo (None when absent or unsafe)."""
    out: list[StepRecord] = []
    for recipe in iter_recipes(root, rejects, check_images=True):
        split = split_of(recipe.recipe_id, seed=split_seed)
        for step in recipe.steps:
            image = None
            if step.image:
                try:
                    image = resolve_under_root(root, step.image)
                except UnsafePathError:
                    image = None  # already reported by check_images
            out.append(StepRecord(recipe.step_id(step), recipe.recipe_id, split, step.text, image))
    return out


def _keyword_baseline(
    steps: list[StepRecord], test_ids: np.ndarray, tokenizer: Any, opts: BuildOptions
) -> dict[str, Any]:
    """BM25 overlap between a held-out step's text and the text beside each photo (an oracle-ish
    text-only reference: a photo search has no such text); skipped when a step has no token."""
    from toolkit.evaluation.baselines import keyword_metrics

    text_of = {r.step_id: r.text for r in steps}
    tokens = [tokenizer.tokenize_all(text_of[i]) for i in test_ids]
    if len(tokens) < 2 or not all(tokens):
        return {"note": "skipped: a held-out step has no token"}
    return keyword_metrics(tokens, tokens, pool=opts.eval_pool, draws=opts.eval_draws)


def _encoder_options(opts: BuildOptions) -> dict[str, Any]:
    return {"image_size": opts.image_size} if opts.image_size else {}


def build(
    dataset_root: str | Path,
    model_dir: str | Path,
    options: BuildOptions | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every stage; return the manifest (also written to ``model_dir/manifest.json``)."""
    from toolkit.evaluation.baselines import chance_result, random_tower_metrics
    from toolkit.evaluation.metrics import full_metrics, pooled_metrics
    from toolkit.image.encoders import create_encoder, encoder_metadata
    from toolkit.image.features import extract_features
    from toolkit.mapping.checkpoint import save_mapping
    from toolkit.mapping.train import MappingConfig, train_mapping
    from toolkit.text.step_vectors import step_vectors
    from toolkit.text.tokenizer import Tokenizer
    from toolkit.text.word2vec import Word2VecConfig, train_word2vec

    opts = options or BuildOptions()
    root, out = Path(dataset_root), Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    with RejectsWriter(out / "rejects.jsonl") as rejects:
        steps = read_steps(root, rejects, opts.split_seed)
        if not steps:
            raise ToolkitError(f"no valid steps in {root}; see {out / 'rejects.jsonl'}")
        counts = {s: sum(1 for r in steps if r.split == s) for s in ("train", "val", "test")}
        log(f"read {len(steps)} steps ({counts}); {rejects.count} rejects so far")
        timings["read"] = time.perf_counter() - t

        t = time.perf_counter()
        tokenizer = Tokenizer()
        train_tokens = [tokenizer.tokenize(r.text) for r in steps if r.split == "train"]
        w2v_config = Word2VecConfig(min_count=opts.w2v_min_count, epochs=opts.w2v_epochs, seed=opts.w2v_seed)
        wv = train_word2vec(train_tokens, w2v_config, tokenizer_config=tokenizer.config)
        wv.save(out / "word2vec")
        log(f"word2vec: {len(wv)} words from {len(train_tokens)} training steps ({wv.fingerprint})")
        timings["word2vec"] = time.perf_counter() - t

        t = time.perf_counter()
        sv = step_vectors([r.step_id for r in steps], [r.text for r in steps], tokenizer, wv)
        rejects.extend(sv.rejects)
        save_vector_set(
            out / "step_vectors",
            list(sv.ids),
            sv.vectors,
            {"kind": "text", "word2vec_fingerprint": wv.fingerprint},
        )
        timings["step_vectors"] = time.perf_counter() - t

        t = time.perf_counter()
        encoder = create_encoder(
            opts.encoder, weights=opts.weights, backend=opts.backend, **_encoder_options(opts)
        )
        message = getattr(encoder, "message", "")
        log(f"image encoder: {encoder.name} ({encoder.dim}-d) {message}".rstrip())
        items = [(r.step_id, r.image) for r in steps if r.image is not None]
        feats = extract_features(
            items,
            encoder,
            out / "image_features",
            batch_size=opts.batch_size,
            num_workers=opts.workers,
            rejects=rejects,
            progress=opts.progress,
        )
        log(f"image features: {feats.encoded} photos encoded, {feats.rejected} rejected")
        timings["image_features"] = time.perf_counter() - t

    t = time.perf_counter()
    text_set = load_vector_set(out / "step_vectors")
    image_set = load_vector_set(out / "image_features")
    ids, text_x, image_x = align(text_set, image_set)
    split_of_id = {r.step_id: r.split for r in steps}
    recipe_of = np.array([i.split(":", 1)[0] for i in ids])
    masks = {s: np.array([split_of_id[i] == s for i in ids], dtype=bool) for s in ("train", "val", "test")}
    if masks["train"].sum() < 8 or masks["val"].sum() < 2:
        raise ToolkitError(
            f"too few text/photo pairs to train: {int(masks['train'].sum())} train, {int(masks['val'].sum())} val"
        )
    config = MappingConfig(**opts.mapping)
    result = train_mapping(
        text_x[masks["train"]],
        image_x[masks["train"]],
        text_x[masks["val"]],
        image_x[masks["val"]],
        config,
        train_groups=recipe_of[masks["train"]],
        progress=opts.progress,
        log=log,
    )
    fps = {"word2vec": wv.fingerprint, "encoder": encoder.fingerprint}
    save_mapping(out / "mapping", result.model, config, fps)
    from toolkit.mapping.checkpoint import load_mapping

    mapping_fp = load_mapping(out / "mapping", expected=fps).fingerprint
    timings["mapping"] = time.perf_counter() - t

    t = time.perf_counter()
    evaluation: dict[str, Any] = {"pairs": {s: int(m.sum()) for s, m in masks.items()}}
    test = masks["test"] if masks["test"].sum() >= 2 else masks["val"]
    evaluation["split"] = "test" if test is masks["test"] else "val (test split too small)"
    tt = result.model.embed_text(text_x[test])
    ti = result.model.embed_image(image_x[test])
    evaluation["model_pooled"] = pooled_metrics(tt, ti, pool=opts.eval_pool, draws=opts.eval_draws, seed=0)
    evaluation["model_full"] = full_metrics(tt, ti)
    evaluation["random_towers"] = random_tower_metrics(
        text_x[test], image_x[test], config, pool=opts.eval_pool, draws=opts.eval_draws
    )
    evaluation["keyword_overlap"] = _keyword_baseline(steps, np.asarray(ids)[test], tokenizer, opts)
    evaluation["chance"] = chance_result(int(test.sum()), opts.eval_pool)
    timings["evaluate"] = time.perf_counter() - t

    manifest = {
        "format": "jrs-model",
        "toolkit_version": __version__,
        "fingerprint": model_fingerprint(wv.fingerprint, encoder.fingerprint, mapping_fp),
        "word2vec_fingerprint": wv.fingerprint,
        "mapping_fingerprint": mapping_fp,
        "dims": int(config.dim),
        "text_dim": int(wv.dim),
        "encoder": {
            "name": encoder.name,
            "weights": getattr(encoder, "weights_spec", opts.weights),
            "options": _encoder_options(opts),
            "dim": int(encoder.dim),
            "fingerprint": encoder.fingerprint,
            **{k: v for k, v in encoder_metadata(encoder).items() if k == "encoder_weights"},
        },
        "dataset": str(root.resolve()),
        "split_seed": opts.split_seed,
        "build_options": asdict(opts),
        "history": result.history_dicts(),
        "best_epoch": result.best_epoch,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    (out / "evaluation.json").write_text(
        json.dumps(evaluation, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return {**manifest, "evaluation": evaluation}
