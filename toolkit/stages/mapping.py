"""Mapping stage: train the two towers on training pairs (early stopping on validation pairs) and save them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
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
) -> MappingStage:
    """Train a ``MappingConfig`` mapping on ``train`` (validated on ``val``) and save it in ``out_dir``.

    Pairs of the same recipe never serve as each other's negatives. An existing mapping in ``out_dir``
    is refused unless ``overwrite``. ``sources`` (e.g. the vector set paths) is recorded in the summary.
    """
    from toolkit.evaluation.metrics import pooled_metrics
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
    log.info("%d training pairs, %d validation pairs", len(train), len(val))
    result = train_mapping(
        train.text, train.image, val.text, val.image, config, train.groups, progress=progress, log=log.info
    )
    model = result.model
    val_metrics = pooled_metrics(model.embed_text(val.text), model.embed_image(val.image))
    summary: dict[str, Any] = {
        "train_pairs": len(train),
        "val_pairs": len(val),
        **(sources or {}),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "history": result.history_dicts(),
        "val_metrics": val_metrics,
    }
    save_mapping(out_dir, model, config, train.fingerprints, summary)
    own = mapping_fingerprint(model, config)
    log.info("mapping %s saved to %s (best epoch %d)", own, out_dir, result.best_epoch)
    return MappingStage(result, config, own, summary)
