"""``jrs build``: every learning stage from a dataset root into a model directory.

The stages are the functions of :mod:`toolkit.stages`, the same ones each stage's own command calls:
read + split by recipe -> tokenise -> Word2Vec on the training split -> step vectors -> image features
-> two-tower mapping on train/val pairs -> evaluation on the test split -> manifest with fingerprints.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.atomic import write_json_atomic
from toolkit.data.jsonl import RECIPES_FILE
from toolkit.errors import ConfigError, ToolkitError, check_argument, os_error_path
from toolkit.locks import exclusive
from toolkit.model import MANIFEST, model_fingerprint
from toolkit.rejects import RejectsWriter, stage_counts
from toolkit.stages.evaluate import EvaluateOptions
from toolkit.stages.images import ImageOptions
from toolkit.stages.read import (
    ReadOptions,
    StepRecord,
    check_dataset_root,
    read_steps,
    split_counts,
    step_columns,
)
from toolkit.stages.text import TokenizeOptions
from toolkit.text.word2vec import Word2VecConfig

__all__ = ["BuildOptions", "StepRecord", "build", "read_steps"]

log = logging.getLogger(__name__)
#: Where a build writes the records and photos it could not use (in the model directory).
REJECTS_FILE = "rejects.jsonl"


@dataclass
class BuildOptions:
    """The options of every stage of :func:`build`; each default is the stage's own (one declaration).

    ``mapping`` holds :class:`~toolkit.mapping.train.MappingConfig` fields (e.g. ``{"dim": 128}``).
    ``progress`` shows progress bars on stderr (off by default; ``jrs build`` shows them on a terminal).
    Everything is validated on construction (:class:`ConfigError`), before any work starts.
    """

    encoder: str = ImageOptions.encoder
    weights: str = ImageOptions.weights
    image_size: int | None = ImageOptions.image_size
    image_seed: int | None = ImageOptions.seed
    device: str = ImageOptions.device
    backend: str | None = ImageOptions.backend
    batch_size: int = ImageOptions.batch_size
    workers: int | None = ImageOptions.workers
    form: str = TokenizeOptions.form
    stopwords_file: Path | None = TokenizeOptions.stopwords_file
    w2v_vector_size: int = Word2VecConfig.vector_size
    w2v_window: int = Word2VecConfig.window
    w2v_min_count: int = Word2VecConfig.min_count
    w2v_max_vocab: int = Word2VecConfig.max_vocab
    w2v_epochs: int = Word2VecConfig.epochs
    w2v_seed: int = Word2VecConfig.seed
    split_seed: int = ReadOptions.split_seed
    mapping: dict[str, Any] = field(default_factory=dict)
    eval_pool: int = EvaluateOptions.pool
    eval_draws: int = EvaluateOptions.draws
    progress: bool = False

    def __post_init__(self) -> None:
        # each stage checks its own options; the integers come back plain ints (a NumPy one included) for
        # the stages and the manifest (build_options)
        self.split_seed = self.read_options().split_seed
        self.tokenize_options()
        w2v = self.word2vec_config()
        self.w2v_vector_size, self.w2v_window, self.w2v_min_count = w2v.vector_size, w2v.window, w2v.min_count
        self.w2v_max_vocab, self.w2v_epochs, self.w2v_seed = w2v.max_vocab, w2v.epochs, w2v.seed
        image = self.image_options()
        self.image_seed, self.weights = image.seed, image.weights
        self.image_size, self.batch_size, self.workers = image.image_size, image.batch_size, image.workers
        mapping = self.mapping_config()
        self.mapping = {name: getattr(mapping, name) for name in self.mapping}  # NumPy numbers made plain
        evaluate = self.evaluate_options()
        self.eval_pool, self.eval_draws = evaluate.pool, evaluate.draws
        check_argument("progress", self.progress, bool, "True or False")

    def read_options(self) -> ReadOptions:
        return ReadOptions(split_seed=self.split_seed)

    def tokenize_options(self) -> TokenizeOptions:
        return TokenizeOptions(form=self.form, stopwords_file=self.stopwords_file)

    def word2vec_config(self) -> Word2VecConfig:
        return Word2VecConfig(
            vector_size=self.w2v_vector_size,
            window=self.w2v_window,
            min_count=self.w2v_min_count,
            max_vocab=self.w2v_max_vocab,
            epochs=self.w2v_epochs,
            seed=self.w2v_seed,
        )

    def image_options(self) -> ImageOptions:
        return ImageOptions(
            encoder=self.encoder,
            weights=self.weights,
            image_size=self.image_size,
            seed=self.image_seed,
            device=self.device,
            backend=self.backend,
            batch_size=self.batch_size,
            workers=self.workers,
        )

    def mapping_config(self) -> Any:
        from toolkit.mapping.config import MappingConfig

        check_argument("mapping", self.mapping, Mapping, "a dict of MappingConfig fields, e.g. {'dim': 128}")
        try:
            return MappingConfig.from_options({"device": self.device, **self.mapping})
        except ValueError as e:
            raise ConfigError(f"mapping: {e}") from e

    def evaluate_options(self) -> EvaluateOptions:
        return EvaluateOptions(pool=self.eval_pool, draws=self.eval_draws)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def _keyword_baseline(
    steps: Sequence[StepRecord], test_ids: Sequence[str], tokenizer: Any, opts: EvaluateOptions
) -> dict[str, Any]:
    """BM25 overlap between a held-out step's text and the text beside each photo (an oracle-ish
    text-only reference: a photo search has no such text); skipped when a step has no token."""
    from toolkit.evaluation.baselines import keyword_metrics

    wanted = set(test_ids)
    ids, texts = step_columns(steps)
    text_of = {i: t for i, t in zip(ids, texts, strict=True) if i in wanted}
    tokens = [tokenizer.tokenize_all(text_of[i]) for i in test_ids]
    if len(tokens) < 2 or not all(tokens):
        return {"note": "skipped: a held-out step has no token"}
    return keyword_metrics(tokens, tokens, pool=opts.pool, draws=opts.draws)


def check_model_dir(dataset_root: Path, model_dir: Path) -> None:
    """Refuse a model directory whose files would mix with a dataset's: the dataset root itself, or a
    directory holding a dataset (``recipes.jsonl``)."""
    same = model_dir.exists() and model_dir.resolve() == dataset_root.resolve()
    if same or (model_dir / RECIPES_FILE).exists():
        what = "is the dataset root" if same else f"holds a dataset ({RECIPES_FILE})"
        raise ToolkitError(
            f"model directory {str(model_dir)!r} {what}: the model's files would mix with the dataset's; "
            "choose another directory (e.g. a sibling of the dataset root)"
        )


def _file_error(error: OSError, model_dir: Path) -> ToolkitError:
    """An operating-system error on a named file as ``cannot write|read PATH: reason`` (write: a path in
    the model directory)."""
    path = Path(os_error_path(error) or "")
    try:
        written = path.resolve().is_relative_to(model_dir.resolve())
    except OSError:
        written = False
    verb = "write" if written else "read"
    return ToolkitError(f"cannot {verb} {path}: {error.strerror or type(error).__name__}")


def build(
    dataset_root: str | Path, model_dir: str | Path, options: BuildOptions | None = None
) -> dict[str, Any]:
    """Run every stage; return the manifest (also written to ``model_dir/manifest.json``) and the evaluation.

    A model directory that is (or holds) a dataset is refused, and a file the system refuses (a model
    directory that cannot be created, a full disk) raises :class:`ToolkitError` naming it, before or
    instead of the :class:`OSError`."""
    if options is not None:
        check_argument("options", options, BuildOptions, "None or a toolkit.BuildOptions")
    out = Path(model_dir)
    try:
        with ExitStack() as held:  # the model directory's lock, taken once it exists
            return _build(check_dataset_root(dataset_root), out, options or BuildOptions(), held)
    except OSError as e:
        if os_error_path(e) is None:  # a write to a full disk names no file: the one being written
            raise
        raise _file_error(e, out) from e


def _build(root: Path, out: Path, opts: BuildOptions, held: ExitStack) -> dict[str, Any]:
    from toolkit.evaluation.metrics import full_metrics_of
    from toolkit.stages.evaluate import evaluate_mapping
    from toolkit.stages.images import write_image_features
    from toolkit.stages.mapping import train_mapping_model
    from toolkit.stages.pairs import load_pairs, split_pairs
    from toolkit.stages.read import photo_items
    from toolkit.stages.text import train_word2vec_model, write_step_vectors

    read_opts, tokenize_opts, w2v_config = (
        opts.read_options(),
        opts.tokenize_options(),
        opts.word2vec_config(),
    )
    image_opts, mapping_config, eval_opts = (
        opts.image_options(),
        opts.mapping_config(),
        opts.evaluate_options(),
    )
    check_model_dir(root, out)
    # the encoder (its weights read) before any work: a bad --weights stops here, the model directory untouched
    encoder = image_opts.create_encoder()
    out.mkdir(parents=True, exist_ok=True)
    # a second build into the same directory would interleave its stages' files with this one's
    held.enter_context(exclusive(out, f"a build of {out}"))
    timings: dict[str, float] = {}

    # a rebuild rewrites the stages one by one: until its new manifest is written the directory is no model
    # (loading it says it is incomplete) rather than an old manifest over new stages
    (out / MANIFEST).unlink(missing_ok=True)
    t = time.perf_counter()
    # this run's rejects, all of them: a photo stage that resumes or finds its features done reports its own again
    (out / REJECTS_FILE).unlink(missing_ok=True)
    with RejectsWriter(out / REJECTS_FILE) as rejects:
        steps = read_steps(root, rejects, read_opts)
        if not steps:
            raise ToolkitError(f"no valid steps in {root}; see {out / REJECTS_FILE}")
        log.info("read %d steps (%s); %d rejects so far", len(steps), split_counts(steps), rejects.count)
        timings["read"] = time.perf_counter() - t

        t = time.perf_counter()
        w2v = train_word2vec_model(
            steps,
            out / "word2vec",
            w2v_config,
            tokenize_opts,
            split_seed=opts.split_seed,
            progress=opts.progress,
        )
        wv = w2v.wv
        timings["word2vec"] = time.perf_counter() - t

        t = time.perf_counter()
        sv = write_step_vectors(
            steps, wv, out / "step_vectors", split_seed=opts.split_seed, progress=opts.progress
        )
        rejects.extend(sv.rejects)
        del sv  # its vectors are on disk (memory-mapped); the next stages read them from there
        timings["step_vectors"] = time.perf_counter() - t

        t = time.perf_counter()
        # a rebuild (other photos, another encoder) replaces the features; the same ones resume or are reused
        write_image_features(
            photo_items(steps),
            out / "image_features",
            image_opts,
            rejects=rejects,
            progress=opts.progress,
            encoder=encoder,
            replace_other=True,
        )
        timings["image_features"] = time.perf_counter() - t
    # relative to the model directory; none is written when nothing was rejected
    rejected = {**rejects.summary(), "file": REJECTS_FILE if rejects.count else None}
    if rejects.count:
        stages = stage_counts(rejects.by_stage)
        log.warning("%d rejected (%s), each with its reason in %s", rejects.count, stages, rejects.path)

    t = time.perf_counter()
    pairs = load_pairs(out / "step_vectors", out / "image_features")
    parts = split_pairs(pairs, opts.split_seed)
    mapping = train_mapping_model(
        parts["train"],
        parts["val"],
        out / "mapping",
        mapping_config,
        overwrite=True,
        progress=opts.progress,
        word_vectors=wv,
    )
    timings["mapping"] = time.perf_counter() - t

    t = time.perf_counter()
    test = parts["test"] if len(parts["test"]) >= 2 else parts["val"]
    ev = evaluate_mapping(mapping.model, test, eval_opts)
    model = mapping.model
    evaluation: dict[str, Any] = {
        "pairs": {s: len(p) for s, p in parts.items()},
        "split": "test" if test is parts["test"] else "val (test split too small)",
        "model_pooled": ev["mapping"],
        "model_full": full_metrics_of(
            model.embed_text, model.embed_image, test.text_for(model.text_input), test.image
        ),
        "random_towers": ev["random_towers"],
        "keyword_overlap": _keyword_baseline(steps, test.ids, tokenize_opts.tokenizer(), eval_opts),
        "chance": ev["chance"],
    }
    timings["evaluate"] = time.perf_counter() - t

    manifest = {
        "format": "jrs-model",
        "toolkit_version": __version__,
        "fingerprint": model_fingerprint(wv.fingerprint, encoder.fingerprint, mapping.fingerprint),
        "word2vec_fingerprint": wv.fingerprint,
        "mapping_fingerprint": mapping.fingerprint,
        "dims": int(model.dim),
        "text_dim": int(wv.dim),
        "encoder": {
            "name": encoder.name,
            "weights": getattr(encoder, "weights_spec", opts.weights),
            "options": image_opts.encoder_kwargs(),
            "dim": int(encoder.dim),
            "fingerprint": encoder.fingerprint,
            "encoder_weights": getattr(encoder, "weights_source", ""),  # as encoder_metadata says it
        },
        "dataset": str(root.resolve()),
        "split_seed": opts.split_seed,
        "build_options": opts.to_json(),
        "history": mapping.result.history_dicts(),
        "best_epoch": mapping.result.best_epoch,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "rejects": rejected,
    }
    write_json_atomic(out / "evaluation.json", evaluation)
    write_json_atomic(out / MANIFEST, manifest)
    return {**manifest, "evaluation": evaluation}
