"""Evaluation stage: retrieval metrics of a trained mapping on held-out pairs, next to its baselines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit.errors import ConfigError, given, plain_int
from toolkit.seeding import check_seed
from toolkit.stages.pairs import Pairs


@dataclass(frozen=True)
class EvaluateOptions:
    """The Recipe1M protocol: ``draws`` seeded pools of ``pool`` pairs (``full``: the whole set instead)."""

    pool: int = 1000
    draws: int = 10
    seed: int = 0
    baseline_seed: int = 0
    full: bool = False

    def __post_init__(self) -> None:
        for name in ("pool", "draws"):
            value = getattr(self, name)
            number = plain_int(value)
            if number is None:
                raise ConfigError(f"evaluation {name} must be an integer, got {given(value)}")
            object.__setattr__(self, name, number)  # frozen; a NumPy integer made plain
        if self.pool < 2:
            raise ConfigError(f"evaluation pool must be at least 2 pairs, got {self.pool}")
        if self.draws < 1:
            raise ConfigError(f"evaluation draws must be at least 1, got {self.draws}")
        object.__setattr__(self, "seed", check_seed("evaluation seed", self.seed))  # frozen
        object.__setattr__(self, "baseline_seed", check_seed("baseline seed", self.baseline_seed))


def evaluate_mapping(model: Any, pairs: Pairs, options: EvaluateOptions | None = None) -> dict[str, Any]:
    """``{"mapping", "random_towers", "chance"}`` metrics (both directions) of ``model`` (a TwoTower) on
    ``pairs``; the random towers have the model's architecture and input statistics, untrained."""
    from toolkit.errors import ToolkitError
    from toolkit.evaluation.baselines import chance_result, random_tower_metrics, untrained_arch
    from toolkit.evaluation.metrics import full_metrics, pooled_metrics_of

    opts = options or EvaluateOptions()
    if pairs.text.shape[1] != model.text_dim or pairs.image.shape[1] != model.image_dim:
        raise ToolkitError(
            f"the mapping expects {model.text_dim}-d text and {model.image_dim}-d image vectors, got "
            f"{pairs.text.shape[1]}-d and {pairs.image.shape[1]}-d"
        )
    text_in = pairs.text_for(model.text_input)
    pool = None if opts.full else opts.pool
    if pool is None:
        mapped = full_metrics(model.embed_text(text_in), model.embed_image(pairs.image))
    else:  # only the pooled rows are embedded
        embed = (model.embed_text, model.embed_image)
        mapped = pooled_metrics_of(*embed, text_in, pairs.image, pool=pool, draws=opts.draws, seed=opts.seed)
    pairs.release()
    result = {
        "mapping": mapped,
        "random_towers": random_tower_metrics(
            pairs.text,
            pairs.image,
            untrained_arch(model.arch()),
            seed=opts.baseline_seed,
            stats=model.get_input_stats(),
            pool=pool,
            draws=opts.draws,
            eval_seed=opts.seed,
        ),
        "chance": chance_result(len(pairs), pool),
    }
    pairs.release()
    return result
