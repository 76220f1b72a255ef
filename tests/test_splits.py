"""Recipe-level splits: deterministic, order-independent, close to the requested fractions."""

from __future__ import annotations

import random

import pytest

from toolkit.data.splits import split_ids, split_of
from toolkit.errors import ConfigError

IDS = [f"recipe{i:05d}" for i in range(20_000)]


def test_fractions_are_roughly_respected():
    groups = split_ids(IDS)
    shares = {name: len(ids) / len(IDS) for name, ids in groups.items()}
    assert shares["train"] == pytest.approx(0.8, abs=0.015)
    assert shares["val"] == pytest.approx(0.1, abs=0.01)
    assert shares["test"] == pytest.approx(0.1, abs=0.01)
    uneven = split_ids(IDS, fractions=(0.5, 0.0, 0.5))
    assert uneven["val"] == [] and len(uneven["train"]) / len(IDS) == pytest.approx(0.5, abs=0.015)


def test_deterministic_and_order_independent():
    shuffled = IDS[:2000]
    random.Random(7).shuffle(shuffled)
    a = {rid: split_of(rid) for rid in IDS[:2000]}
    groups = split_ids(shuffled)
    b = {rid: name for name, ids in groups.items() for rid in ids}
    assert a == b
    assert groups["train"] == [rid for rid in shuffled if a[rid] == "train"]  # input order kept


def test_seed_changes_the_assignment_but_not_the_sizes():
    a = [split_of(rid, seed=0) for rid in IDS[:5000]]
    b = [split_of(rid, seed=1) for rid in IDS[:5000]]
    assert a != b
    assert sum(x == "train" for x in b) / 5000 == pytest.approx(0.8, abs=0.02)


def test_all_or_nothing_fractions():
    assert {split_of(rid, fractions=(1.0, 0.0, 0.0)) for rid in IDS[:500]} == {"train"}
    assert {split_of(rid, fractions=(0.0, 0.0, 1.0)) for rid in IDS[:500]} == {"test"}


@pytest.mark.parametrize(
    "fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1), (float("nan"), 0.5, 0.5)]
)
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ConfigError, match="split fractions"):
        split_of("r1", fractions=fractions)
    with pytest.raises(ConfigError):
        split_ids(["r1"], fractions=fractions)
