"""Mapping stage: train the two towers on training pairs (early stopping on validation pairs) and save them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.fingerprint import check_fingerprint
from toolkit.stages.pairs import Pairs

log = logging.getLogger(__name__)

#: Fewest pairs the mapping is trained on / validated with.
MIN_TRAIN_PAIRS, MIN_VAL_PAIRS = 8, 2


@dataclass
class MappingStage:
    """What :func:`train_mapping_model` produced."""

    result: Any  # toolkit.mapping.train.TrainResult
    config: Any  # toolkit.mapping.train.MappingConfig
    fingerprint: str
    summary: dict[str, Any]

    @property
    def model(self) -> Any:
        return self.result.model


def train_mapping_model(
    train: Pairs,
    val: Pairs,
    out_dir: str | Path,
    config: Any = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    sources: dict[str, Any] | None = None,
    word_vectors: Any = None,
) -> MappingStage:
    """Train a ``MappingConfig`` mapping on ``train`` (validated on ``val``) and save it in ``out_dir``.

    Pairs of the same recipe never serve as each other's negatives. An existing mapping in ``out_dir``
    is refused unless ``overwrite``. ``sources`` (e.g. the vector set paths) is recorded in the summary.
    A bag text tower (``config.text_tower == "bag"``) needs ``word_vectors``: the
    :class:`~toolkit.text.word2vec.WordVectors` the step vectors were made with (its vectors are where the
    tower's word vectors start), and the pairs' token ids.
    """
    from toolkit.evaluation.metrics import pooled_metrics_of
    from toolkit.mapping.checkpoint import META, mapping_fingerprint, save_mapping
    from toolkit.mapping.train import MappingConfig, train_mapping

    config = config or MappingConfig()
    if (Path(out_dir) / META).exists() and not overwrite:
        raise ToolkitError(f"{out_dir} already holds a mapping; pass --overwrite to replace it")
    if len(train) < MIN_TRAIN_PAIRS or len(val) < MIN_VAL_PAIRS:
        raise ToolkitError(
            f"too few text/photo pairs to train: {len(train)} train, {len(val)} val "
            f"(need {MIN_TRAIN_PAIRS} and {MIN_VAL_PAIRS})"
        )
    matrix = None
    if config.text_tower == "bag":
        if word_vectors is None:
            raise ToolkitError(
                "the bag text tower fine-tunes the Word2Vec vectors: give the Word2Vec model the step vectors "
                "were made with (`--word2vec DIR`), or train a mean tower (`--text-tower mean`)"
            )
        check_fingerprint(
            "word2vec",
            train.word2vec,
            word_vectors.fingerprint,
            "the step vectors come from another Word2Vec",
        )
        matrix = word_vectors.matrix
    log.info("%d training pairs, %d validation pairs", len(train), len(val))
    text_input = "tokens" if matrix is not None else "mean"
    result = train_mapping(
        train.text_for(text_input),
        train.image,
        val.text_for(text_input),
        val.image,
        config,
        train.recipe_codes()[0],  # 8 bytes per pair while training, not a list of recipe ids
        progress=progress,
        word_vectors=matrix,
        val_unknown=val.unknown,
    )
    model = result.model
    val_metrics = pooled_metrics_of(
        model.embed_text, model.embed_image, val.text_for(model.text_input), val.image
    )
    summary: dict[str, Any] = {
        "train_pairs": len(train),
        "val_pairs": len(val),
        **(sources or {}),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "averaged_epochs": result.averaged_epochs,
        **({"text_members": result.members} if result.members else {}),
        **({"word_grounding": result.grounding} if result.grounding else {}),
        "history": result.history_dicts(),
        "val_metrics": val_metrics,
    }
    train.release()  # pages training read from the vector sets: not the next stage's memory
    val.release()
    save_mapping(out_dir, model, config, train.fingerprints, summary)
    own = mapping_fingerprint(model, config)
    log.info("mapping %s saved to %s (best epoch %d)", own, out_dir, result.best_epoch)
    return MappingStage(result, config, own, summary)
