"""``bench/bench_train.py`` on a stand-in for training: what it times, and what its docstring says is judged."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from bench import bench_train
from bench.run_all import KEYS

#: the stand-in's epoch seconds per 1k pairs: the first epoch is mostly set-up, the others vary about 1
FIRST, TIMED = 50.0, (1.2, 0.9, 1.0, 1.1, 0.8)
DENSE = 20.0  # dense AdamW on the word table: 20x the lazy updates' epoch


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The configs bench_train trains with; training itself is a stand-in with known epoch seconds."""
    configs: list[Any] = []

    def train_mapping(bags: Any, image: Any, *args: Any, **kwargs: Any) -> SimpleNamespace:
        config = args[2]
        configs.append(config)
        base = len(image) / 1000 * (1.0 if config.sparse_words else DENSE)
        seconds = [FIRST * base, *(f * base for f in TIMED)][: config.epochs]
        return SimpleNamespace(history=[SimpleNamespace(seconds=s) for s in seconds])

    monkeypatch.setattr(bench_train, "train_mapping", train_mapping)
    return configs


def test_figures_are_medians_of_the_epochs_after_a_warm_up(trained: list[Any]) -> None:
    # was the first epoch alone: the optimizers' state, allocator and threads set up, timed as training
    result = bench_train.run(quick=True)
    assert result["small_epoch_s"] == 1.0 and result["train_epoch_s"] == 10.0  # 1k, 10k pairs: median 1.0
    assert result["scaling_ratio"] == 10.0 and result["vocab_ratio"] == 1.0
    assert result["vocab_large_dense_epoch_s"] == DENSE * 1.2  # one timed epoch after the warm-up
    assert result["sparse_speedup"] == DENSE * 1.2
    assert {c.linear_weight for c in trained} == {0.0}  # fitted after training, never timed: not run
    assert [c.epochs for c in trained] == [4, 4, 4, 2]


def test_the_docstring_names_the_keys_run_all_judges() -> None:
    # it named vocab_ratio alone, while run_all.py also reports train_epoch_s and sparse_speedup
    doc = bench_train.__doc__ or ""
    paragraph = next(p for p in doc.split("\n\n") if "run_all.py" in p)
    judged = {key: goal for key, source, _, goal in KEYS if source == "train"}
    assert set(re.findall(r"``(\w+)``", paragraph)) == set(judged)
    for key, goal in judged.items():
        assert (f"``{key}`` (goal {goal})" in paragraph) == (goal is not None), paragraph
