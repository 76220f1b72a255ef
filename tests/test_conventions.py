"""One set of conventions across the library (issue 12): module loggers instead of ``log=`` callables,
``progress: bool`` everywhere, option classes that raise :class:`ConfigError`, one torch seeding helper."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch

from toolkit.errors import ConfigError
from toolkit.es import node
from toolkit.evaluation.image_retrieval import evaluate_image_encoders
from toolkit.evaluation.through_index import evaluate_through_index
from toolkit.image.augment import SimCLRAugment
from toolkit.image.simclr import train_simclr
from toolkit.index.bulk import bulk_load
from toolkit.index.indexer import index_dataset
from toolkit.index.template import VectorIndexOptions
from toolkit.index.update import update_index
from toolkit.mapping.train import MappingConfig, train_mapping
from toolkit.pipeline import build
from toolkit.search.queries import Grouping, KnnParams
from toolkit.seeding import torch_seeded
from toolkit.stages.evaluate import EvaluateOptions
from toolkit.stages.images import ImageOptions
from toolkit.stages.read import ReadOptions
from toolkit.text.word2vec import Word2VecConfig
from toolkit.viz.embedding_map import write_embedding_map

STAGES: list[Callable] = [
    build,
    train_mapping,
    train_simclr,
    index_dataset,
    update_index,
    bulk_load,
    evaluate_through_index,
    evaluate_image_encoders,
    write_embedding_map,
    node.up,
]


@pytest.mark.parametrize("fn", STAGES, ids=lambda f: f.__qualname__)
def test_no_logging_callables_and_progress_is_a_flag(fn: Callable) -> None:
    params = inspect.signature(fn).parameters
    assert not {"log", "log_fn"} & set(params), f"{fn.__qualname__} takes a logging callable"
    if "progress" in params:
        assert params["progress"].annotation in (bool, "bool"), f"{fn.__qualname__}: progress is not a bool"


@pytest.mark.parametrize(
    "make",
    [
        lambda: VectorIndexOptions(type="ivf"),
        lambda: VectorIndexOptions(m=0),
        lambda: VectorIndexOptions(ef_construction=-3),
        # beyond Lucene's limits the node creates the index and then refuses every document
        lambda: VectorIndexOptions(m=513),
        lambda: VectorIndexOptions(ef_construction=3201),
        lambda: VectorIndexOptions(similarity="l2_norm"),
        lambda: KnnParams(k=0),
        lambda: Grouping(per_group=0),
        lambda: SimCLRAugment(size=4),
        # seeds every generator takes (NumPy and gensim: 32 bits), checked before any work
        lambda: MappingConfig(seed=-1),
        lambda: MappingConfig(seed=2**64),
        lambda: Word2VecConfig(seed=2**32),
        lambda: ImageOptions(seed=-1),
        lambda: ImageOptions(encoder="pixels", image_size=100_000),
        lambda: EvaluateOptions(baseline_seed=2**70),
        lambda: ReadOptions(split_seed=2**32),
        # a step size that can only diverge
        lambda: MappingConfig(lr=float("inf")),
        lambda: MappingConfig(lr=float("nan")),
        lambda: MappingConfig(weight_decay=float("inf")),
    ],
)
def test_option_classes_raise_config_errors(make: Callable) -> None:
    with pytest.raises(ConfigError):
        make()


def test_torch_seeded_repeats_and_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with torch_seeded(7):
        first = torch.rand(4)
    with torch_seeded(7):
        second = torch.rand(4)
    assert torch.equal(first, second)
    assert torch.equal(torch.rand(3), expected_next)  # as if the blocks never ran
