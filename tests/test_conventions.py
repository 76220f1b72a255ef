"""One set of conventions across the library (issue 12): module loggers instead of ``log=`` callables,
``progress: bool`` everywhere, option classes that raise :class:`ConfigError`, one torch seeding helper."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from toolkit.errors import ConfigError
from toolkit.es import node
from toolkit.evaluation.image_retrieval import evaluate_image_encoders
from toolkit.evaluation.through_index import evaluate_through_index
from toolkit.image.augment import SimCLRAugment
from toolkit.image.simclr import train_simclr
from toolkit.image.simclr_config import SimCLRConfig
from toolkit.index.bulk import bulk_load
from toolkit.index.indexer import index_dataset
from toolkit.index.template import VectorIndexOptions
from toolkit.index.update import update_index
from toolkit.mapping.train import MappingConfig, train_mapping
from toolkit.pipeline import BuildOptions, build
from toolkit.search.queries import Grouping, KnnParams
from toolkit.seeding import torch_seeded
from toolkit.stages.evaluate import EvaluateOptions
from toolkit.stages.images import ImageOptions
from toolkit.stages.read import ReadOptions
from toolkit.text.word2vec import Word2VecConfig
from toolkit.viz.embedding_map import MapOptions, write_embedding_map

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


def _simclr(seed: Any) -> SimCLRConfig:
    config = SimCLRConfig(arch="resnet18", seed=seed)
    config.check()  # SimCLR checks its configuration when training starts
    return config


# every public seed: how to make an object with it, the attribute it lands in, the name an error gives
SEEDS = [
    pytest.param(lambda s: MappingConfig(seed=s), "seed", "mapping seed", id="mapping"),
    pytest.param(lambda s: Word2VecConfig(seed=s), "seed", "word2vec seed", id="word2vec"),
    pytest.param(lambda s: ImageOptions(seed=s), "seed", "image seed", id="image"),
    pytest.param(lambda s: EvaluateOptions(seed=s), "seed", "evaluation seed", id="evaluation"),
    pytest.param(lambda s: EvaluateOptions(baseline_seed=s), "baseline_seed", "baseline seed", id="baseline"),
    pytest.param(lambda s: ReadOptions(split_seed=s), "split_seed", "split seed", id="split"),
    pytest.param(lambda s: MapOptions(seed=s), "seed", "embedding map seed", id="embedding-map"),
    pytest.param(_simclr, "seed", "simclr seed", id="simclr"),
    pytest.param(lambda s: BuildOptions(split_seed=s), "split_seed", "split seed", id="build-split"),
    pytest.param(lambda s: BuildOptions(w2v_seed=s), "w2v_seed", "word2vec seed", id="build-word2vec"),
    pytest.param(lambda s: BuildOptions(image_seed=s), "image_seed", "image seed", id="build-image"),
]


@pytest.mark.parametrize(("make", "attr", "name"), SEEDS)
@pytest.mark.parametrize("seed", [np.int64(3), np.uint32(3), np.int8(3)], ids=repr)
def test_a_numpy_integer_seed_is_taken_and_kept_as_an_int(
    make: Callable, attr: str, name: str, seed: Any
) -> None:
    # a seed computed with NumPy was refused ("must be an integer"); kept as NumPy's, it would not be JSON
    value = getattr(make(seed), attr)
    assert type(value) is int and value == 3


@pytest.mark.parametrize(("make", "attr", "name"), SEEDS)
@pytest.mark.parametrize("seed", [True, 3.0, np.float64(3), "3", np.int64(-1)], ids=repr)
def test_a_seed_that_is_no_integer_is_refused_by_name(
    make: Callable, attr: str, name: str, seed: Any
) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be an integer from 0 to"):
        make(seed)


def test_a_numpy_seed_leaves_fingerprints_and_manifests_as_an_int_seed_does() -> None:
    assert MappingConfig(seed=np.int64(3)).fingerprint_dict() == MappingConfig(seed=3).fingerprint_dict()
    assert _simclr(np.int64(3)).identity() == _simclr(3).identity()
    options = BuildOptions(split_seed=np.int64(2), w2v_seed=np.int64(4), mapping={"seed": np.int64(5)})
    recorded = options.to_json()  # the manifest's build_options: NumPy integers became strings ("2")
    assert (recorded["split_seed"], recorded["w2v_seed"], recorded["mapping"]["seed"]) == (2, 4, 5)
    assert json.loads(json.dumps(recorded)) == recorded


# a wrong value for each BuildOptions field, and what its error says (the field's name, and what it takes)
BAD_BUILD_OPTIONS: dict[str, tuple[Any, str]] = {
    "encoder": ("resnet5", r"unknown image encoder 'resnet5'; available: .*resnet18"),
    "weights": ("nope", r"image weights must be one of auto, imagenet, random or the path of a weights file"),
    "image_size": ("64", r"image image_size must be an integer >= 1"),
    "image_seed": (-1, r"image seed must be an integer from 0"),
    "device": (0, r"device must be one of auto .* cpu \| cuda \| cuda:N; got int 0"),
    "backend": ("gpu", r"unknown image backend 'gpu'; choose one of auto"),
    "batch_size": (0, r"image batch_size must be an integer >= 1"),
    "workers": ("2", r"image workers must be an integer >= 0"),
    "form": ("kana", r"tokenizer form must be one of lemma, surface"),
    "stopwords_file": (5, r"stopwords_file must be None or a path, got int 5"),
    "w2v_vector_size": ("300", r"word2vec vector_size must be a positive integer"),
    "w2v_window": (0, r"word2vec window must be a positive integer"),
    "w2v_min_count": (0, r"word2vec min_count must be a positive integer"),
    "w2v_max_vocab": (1.5, r"word2vec max_vocab must be a positive integer"),
    "w2v_epochs": (None, r"word2vec epochs must be a positive integer"),
    "w2v_seed": (-1, r"word2vec seed must be an integer from 0"),
    "split_seed": (-1, r"split seed must be an integer from 0"),
    "mapping": ([("dim", 8)], r"mapping must be a dict of MappingConfig fields"),
    "eval_pool": ("1000", r"evaluation pool must be an integer, got str '1000'"),
    "eval_draws": (2.5, r"evaluation draws must be an integer, got float 2.5"),
    "progress": ("yes", r"progress must be True or False, got str 'yes'"),
}


def test_every_build_option_is_checked_when_the_options_are_made() -> None:
    """``BuildOptions(weights="nope")`` and ``BuildOptions(progress="yes")`` were taken, to fail in the middle
    of a build; a wrong type elsewhere gave an AttributeError or a TypeError. Every field is checked at once."""
    assert set(BAD_BUILD_OPTIONS) == {f.name for f in dataclasses.fields(BuildOptions)}, (
        "a field is not tried"
    )
    for name, (value, message) in BAD_BUILD_OPTIONS.items():
        with pytest.raises(ConfigError, match=message):
            BuildOptions(**{"encoder": "resnet18", name: value})


def test_weights_are_a_choice_or_a_path_and_a_plug_in_reads_its_own(tmp_path: Path) -> None:
    weights = tmp_path / "backbone.pt"
    weights.write_bytes(b"")  # not read before the encoder is built
    assert BuildOptions(encoder="resnet18", weights=weights).weights == str(weights)  # a Path, kept as text
    assert BuildOptions(encoder="resnet18", weights="random").image_options().weights == "random"
    with pytest.raises(ConfigError, match="no such weights file"):
        ImageOptions(encoder="resnet18", weights=str(tmp_path / "missing.pt"))


def _typed_fields(kind: str, cls: type = MappingConfig) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(cls)
        if str(f.type).removesuffix(" | None") == kind and f.name != "seed"  # the seed: its own tests
    ]


@pytest.mark.parametrize("name", _typed_fields("int"))
@pytest.mark.parametrize("value", ["1", True, 2.0, None], ids=repr)
def test_an_integer_mapping_option_of_another_type_is_named(name: str, value: Any) -> None:
    """``mapping={"epochs": "1"}`` said "'>=' not supported between instances of 'str' and 'int'"."""
    if value is None and name == "text_members":
        pytest.skip("None: the default member count")
    with pytest.raises(ConfigError, match=rf"^{name} must be an integer, got "):
        MappingConfig(**{name: value})


@pytest.mark.parametrize("name", _typed_fields("float"))
@pytest.mark.parametrize("value", ["0.1", False, float("nan"), float("inf")], ids=repr)
def test_a_real_mapping_option_of_another_type_is_named(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^{name} must be a finite number, got "):
        MappingConfig(**{name: value})


def test_the_bool_mapping_options_are_tried() -> None:
    assert _typed_fields("bool") == [
        "weight_average",
        "sparse_words",
        "word_grounding",
        "learnable_temperature",
    ]


@pytest.mark.parametrize("name", _typed_fields("bool"))
@pytest.mark.parametrize("value", ["false", "", 0, 1, None], ids=repr)
def test_a_bool_mapping_option_of_another_type_is_named(name: str, value: Any) -> None:
    """``mapping={"weight_average": "false"}`` was taken, and counted as true."""
    with pytest.raises(ConfigError, match=rf"^{name} must be True or False, got {type(value).__name__} "):
        MappingConfig(**{name: value})


@pytest.mark.parametrize("name", _typed_fields("bool"))
def test_a_numpy_bool_mapping_option_is_taken_and_kept_as_a_bool(name: str) -> None:
    for value in (np.False_, np.True_):
        kept = getattr(MappingConfig(**{name: value}), name)
        assert type(kept) is bool and kept is bool(value)
    options = BuildOptions(encoder="resnet18", mapping={name: np.False_})
    assert json.loads(json.dumps(options.to_json()))["mapping"] == {name: False}
    assert MappingConfig.from_dict(MappingConfig(**{name: False}).to_dict()) == MappingConfig(**{name: False})


def test_a_build_names_the_bool_mapping_option_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError, match=r"^mapping: weight_average must be True or False, got str 'no'$"):
        BuildOptions(encoder="resnet18", mapping={"weight_average": "no"})


def test_a_build_names_the_mapping_option_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError, match=r"^mapping: epochs must be an integer, got str '1'$"):
        BuildOptions(encoder="resnet18", mapping={"epochs": "1"})


def test_numpy_numbers_are_mapping_options_and_come_back_plain() -> None:
    options = BuildOptions(encoder="resnet18", mapping={"epochs": np.int64(3), "lr": np.float32(0.5)})
    assert options.mapping == {"epochs": 3, "lr": 0.5}
    assert type(options.mapping["epochs"]) is int and type(options.mapping["lr"]) is float
    config = options.mapping_config()
    assert (type(config.epochs), type(config.lr)) == (int, float)
    assert json.loads(json.dumps(options.to_json()))["mapping"] == {"epochs": 3, "lr": 0.5}


#: each integer option of Word2VecConfig and ImageOptions besides the seed: a maker and its bad-value message
INTEGER_OPTIONS = {
    **{
        ("word2vec", name): (Word2VecConfig, f"word2vec {name} must be a positive integer, got ")
        for name in _typed_fields("int", Word2VecConfig)
    },
    **{
        ("image", name): (ImageOptions, rf"image {name} must be an integer >= [01], got ")
        for name in _typed_fields("int", ImageOptions)
    },
}


INTEGER_IDS = [f"{kind}-{name}" for kind, name in INTEGER_OPTIONS]


def test_the_integer_options_tried_are_every_one() -> None:
    assert sorted(INTEGER_OPTIONS) == sorted(
        [("word2vec", n) for n in ("vector_size", "window", "min_count", "max_vocab", "epochs", "workers")]
        + [("image", n) for n in ("image_size", "batch_size", "workers", "max_pixels")]
    )


@pytest.mark.parametrize(("kind", "name"), list(INTEGER_OPTIONS), ids=INTEGER_IDS)
@pytest.mark.parametrize("value", [np.int64(5), np.int32(5), np.uint16(5)], ids=repr)
def test_a_numpy_integer_option_is_taken_and_kept_as_an_int(kind: str, name: str, value: Any) -> None:
    """``Word2VecConfig(epochs=np.int64(5))`` was refused ("must be a positive integer") as seeds no longer were."""
    make, _ = INTEGER_OPTIONS[kind, name]
    kept = getattr(make(**{name: value}), name)
    assert type(kept) is int and kept == 5


@pytest.mark.parametrize(("kind", "name"), list(INTEGER_OPTIONS), ids=INTEGER_IDS)
@pytest.mark.parametrize("value", [True, 5.0, np.float64(5), "5", np.int64(-1)], ids=repr)
def test_an_integer_option_that_is_no_integer_is_refused_by_name(kind: str, name: str, value: Any) -> None:
    make, message = INTEGER_OPTIONS[kind, name]
    with pytest.raises(ConfigError, match=f"^{message}{re.escape(repr(value))}$"):
        make(**{name: value})


def test_numpy_integer_build_options_reach_the_manifest_as_ints() -> None:
    """``BuildOptions.to_json`` writes what JSON cannot hold as a string: a NumPy integer kept would be "5"."""
    names = ["w2v_vector_size", "w2v_window", "w2v_min_count", "w2v_max_vocab", "w2v_epochs"]
    names += ["image_size", "batch_size", "workers"]
    options = BuildOptions(**dict.fromkeys(names, np.int64(5)))
    recorded = options.to_json()
    assert {name: recorded[name] for name in names} == dict.fromkeys(names, 5)
    assert all(type(getattr(options, name)) is int for name in names)
    assert options.word2vec_config() == Word2VecConfig(5, 5, 5, 5, 5)


def test_an_unknown_mapping_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown MappingConfig field 'epoch'; known: .*\bepochs\b"):
        BuildOptions(encoder="resnet18", mapping={"epoch": 3})


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
