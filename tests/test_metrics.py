"""Retrieval metrics on hand-checkable cases, against a naive loop, pooled protocol, and baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.errors import VectorError
from toolkit.evaluation.baselines import (
    chance_metrics,
    chance_result,
    keyword_metrics,
    keyword_scores,
    random_tower_metrics,
    random_towers,
)
from toolkit.evaluation.metrics import (
    draw_pools,
    full_metrics,
    metrics_table,
    pooled_metrics,
    positive_ranks,
    retrieval_metrics,
)
from toolkit.mapping.towers import TwoTower
from toolkit.mapping.train import MappingConfig


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_identity_is_perfect() -> None:
    eye = np.eye(6, dtype=np.float32)
    m = retrieval_metrics(eye, eye)
    assert m == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "MedR": 1.0, "MRR": 1.0, "n": 6}


def test_known_ranks_without_ties() -> None:
    # Every query points the same way, so gallery item j scores cos(theta_j) for all queries and the
    # ranking is the same for everyone: theta 0.1 (item 1) first, 0.2 (item 3), 0.3 (item 0), 0.5 (item 2).
    theta = np.array([0.3, 0.1, 0.5, 0.2])
    gallery = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    query = np.tile([1.0, 0.0], (4, 1))
    assert positive_ranks(query.astype(np.float32), gallery.astype(np.float32)).tolist() == [3, 1, 4, 2]
    m = retrieval_metrics(query, gallery, ks=(1, 2, 5))
    assert m["R@1"] == 0.25 and m["R@2"] == 0.5 and m["R@5"] == 1.0
    assert m["MedR"] == 2.5
    assert m["MRR"] == pytest.approx((1 / 3 + 1 + 1 / 4 + 1 / 2) / 4)


def test_permuted_gallery_counts_ties_pessimistically() -> None:
    eye = np.eye(4, dtype=np.float32)
    gallery = eye[[1, 0, 2, 3]]  # queries 0 and 1 see their positive at score 0, tied with two others
    m = retrieval_metrics(eye, gallery)
    # ranks [4, 4, 1, 1]: the zero-score positive ties with every other zero, counted as last
    assert m["R@1"] == 0.5 and m["MedR"] == 2.5 and m["MRR"] == pytest.approx(0.625)
    constant = np.ones((5, 3), dtype=np.float32)
    assert retrieval_metrics(constant, constant)["MedR"] == 5.0  # all tied: worst rank, not best


def _naive_ranks(q: np.ndarray, g: np.ndarray) -> list[int]:
    ranks = []
    for i in range(len(q)):
        scores = [float(np.dot(q[i], g[j])) for j in range(len(g))]
        # sort by score, and among equal scores put the positive last (pessimistic ties)
        order = sorted(range(len(g)), key=lambda j: (-scores[j], j == i))
        ranks.append(order.index(i) + 1)
    return ranks


def test_score_blocks_are_bounded_by_the_gallery_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import toolkit.evaluation.metrics as metrics

    assert metrics.query_block(1_000) == metrics.BLOCK  # small gallery: the full block of queries
    assert metrics.query_block(1_000_000) * 1_000_000 <= metrics.BLOCK_SCORES  # large: fewer rows
    assert metrics.query_block(10 * metrics.BLOCK_SCORES) == 1  # never zero rows
    # one query row per product for this 60-photo gallery: the same ranks as the naive loop
    monkeypatch.setattr(metrics, "BLOCK_SCORES", 59)  # under one 60-photo row
    rng = np.random.default_rng(1)
    q = _unit(rng.normal(size=(60, 8)))
    g = _unit(q + rng.normal(scale=0.8, size=(60, 8)))
    assert metrics.query_block(60) == 1
    assert metrics.positive_ranks(q, g).tolist() == _naive_ranks(q, g)


def test_matches_naive_loop_on_random_data() -> None:
    rng = np.random.default_rng(0)
    q = _unit(rng.normal(size=(60, 8)))
    g = _unit(q + rng.normal(scale=0.8, size=(60, 8)))
    naive = np.array(_naive_ranks(q, g))
    assert positive_ranks(q, g, block=7).tolist() == naive.tolist()  # blocks of 7 queries, same answer
    m = retrieval_metrics(q, g)
    assert m["R@5"] == pytest.approx(np.mean(naive <= 5))
    assert m["MedR"] == pytest.approx(np.median(naive))
    assert m["MRR"] == pytest.approx(np.mean(1 / naive))
    assert 0 < m["R@1"] < 1  # a non-trivial case


def test_gallery_may_hold_extra_distractors() -> None:
    eye = np.eye(5, dtype=np.float32)
    distractor = _unit(np.array([[1.0, 1.0, 0, 0, 0]]))
    m = retrieval_metrics(eye[:2], np.vstack([eye[:2], distractor]))
    assert m["R@1"] == 1.0
    with pytest.raises(ValueError, match="fewer"):
        retrieval_metrics(eye, eye[:2])


def test_full_metrics_both_directions() -> None:
    rng = np.random.default_rng(1)
    text = _unit(rng.normal(size=(40, 6)))
    image = _unit(text + rng.normal(scale=1.0, size=(40, 6)))
    image[3] = image[7]  # image 3 duplicates image 7: breaks the symmetry of the two directions
    full = full_metrics(text, image)
    assert full["text_to_image"]["MRR"] == pytest.approx(np.mean(1 / np.array(_naive_ranks(text, image))))
    assert full["image_to_text"]["MRR"] == pytest.approx(np.mean(1 / np.array(_naive_ranks(image, text))))
    assert full["n"] == 40 and full["pool"] == 40


def test_pooled_with_fewer_pairs_than_pool_uses_all_and_says_so() -> None:
    rng = np.random.default_rng(2)
    text = _unit(rng.normal(size=(30, 5)))
    image = _unit(text + rng.normal(scale=0.7, size=(30, 5)))
    pooled = pooled_metrics(text, image, pool=1000, draws=10)
    assert pooled["pool"] == 30 and pooled["draws"] == 1 and "30 pairs" in pooled["note"]
    full = full_metrics(text, image)
    for d in ("text_to_image", "image_to_text"):
        assert pooled[d] == full[d]


def test_pooled_draws_are_seeded_subsets_and_easier_than_full() -> None:
    rng = np.random.default_rng(3)
    text = _unit(rng.normal(size=(500, 8)))
    image = _unit(text + rng.normal(scale=1.2, size=(500, 8)))
    a = pooled_metrics(text, image, pool=100, draws=4, seed=5)
    assert a == pooled_metrics(text, image, pool=100, draws=4, seed=5)
    assert a != pooled_metrics(text, image, pool=100, draws=4, seed=6)
    assert a["pool"] == 100 and a["draws"] == 4 and "note" not in a
    pools = draw_pools(500, 100, 4, seed=5)
    assert all(len(set(p.tolist())) == 100 for p in pools)
    per_pool = [retrieval_metrics(text[p], image[p])["R@1"] for p in pools]
    assert a["text_to_image"]["R@1"] == pytest.approx(np.mean(per_pool))
    assert a["std"]["text_to_image"]["R@1"] == pytest.approx(np.std(per_pool))
    full = full_metrics(text, image)
    assert a["text_to_image"]["R@10"] > full["text_to_image"]["R@10"]  # 100 candidates beat 500


def test_bad_inputs_are_named() -> None:
    x = np.eye(4, dtype=np.float32)
    bad = x.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="row 2"):
        retrieval_metrics(bad, x)
    zero = x.copy()
    zero[1] = 0
    with pytest.raises(VectorError, match="row 1 is all zeros"):  # a ToolkitError: one line in the CLI
        pooled_metrics(x, zero)
    with pytest.raises(ValueError, match="paired"):
        full_metrics(x, x[:3])
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(x, x, ks=(0,))


def test_metrics_table_lists_methods_and_directions() -> None:
    eye = np.eye(4, dtype=np.float32)
    table = metrics_table(
        {
            "mapping": pooled_metrics(eye, eye),
            "chance": chance_result(4, pool=1000),
            "flat": retrieval_metrics(eye, eye[[1, 0, 2, 3]]),
        }
    )
    lines = table.splitlines()
    assert lines[0].split() == ["method", "direction", "R@1", "%", "R@5", "%", "R@10", "%", "MedR", "MRR"]
    assert lines[2].split() == ["mapping", "text->image", "100.0", "100.0", "100.0", "1.0", "1.000"]
    assert lines[4].split()[:3] == ["chance", "text->image", "25.0"]
    assert lines[6].split() == ["flat", "-", "50.0", "100.0", "100.0", "2.5", "0.625"]


def test_chance_matches_random_rankings() -> None:
    n = 50
    c = chance_metrics(n)
    assert c["R@10"] == pytest.approx(10 / n) and c["MedR"] == 25.5
    rng = np.random.default_rng(4)
    draws = [retrieval_metrics(rng.normal(size=(n, 16)), rng.normal(size=(n, 16))) for _ in range(200)]
    assert np.mean([d["R@10"] for d in draws]) == pytest.approx(c["R@10"], abs=0.01)
    assert np.mean([d["MRR"] for d in draws]) == pytest.approx(c["MRR"], abs=0.005)


def test_random_towers_are_seeded_and_leave_global_rng_alone() -> None:
    arch = TwoTower(10, 14, dim=6, hidden=8).arch()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = random_towers(arch, seed=1), random_towers(arch, seed=1), random_towers(arch, seed=2)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["text.net.0.weight"], sc["text.net.0.weight"])


def test_random_tower_metrics_are_near_chance_on_unrelated_spaces() -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(400, 4))
    text = np.tanh(z @ rng.normal(size=(4, 10))) + 0.1 * rng.normal(size=(400, 10))
    image = np.maximum(z @ rng.normal(size=(4, 14)), 0) + 0.1 * rng.normal(size=(400, 14))
    arch = TwoTower(10, 14, dim=6, hidden=8).arch()
    m = random_tower_metrics(text, image, arch, seed=0, pool=200, draws=3)
    assert m["pool"] == 200 and m["draws"] == 3
    assert m["text_to_image"]["R@10"] < 0.2  # chance is 0.05; an untrained map has no reason to align
    config = MappingConfig(dim=6, hidden=8)  # the config a model was trained with works the same way
    assert random_tower_metrics(text, image, config, seed=0, pool=200, draws=3) == m
    with pytest.raises(ValueError, match="10-d text and 14-d image inputs, got 10-d and 13-d"):
        random_tower_metrics(text, image[:, :13], arch)


def test_keyword_scores_by_hand() -> None:
    queries = [["玉ねぎ", "切る"], ["卵", "割る", "混ぜる"], ["焼く"]]
    gallery = [["玉ねぎ", "を", "切る"], ["卵", "を", "混ぜる"], ["魚", "を", "煮る"]]
    jac = keyword_scores(queries, gallery, method="jaccard")
    np.testing.assert_allclose(jac[0], [2 / 3, 0, 0])
    np.testing.assert_allclose(jac[1], [0, 2 / 4, 0])
    np.testing.assert_allclose(jac[2], [0, 0, 0])  # no shared token
    bm25 = keyword_scores(queries, gallery, method="bm25")
    assert bm25[0].argmax() == 0 and bm25[1].argmax() == 1 and not bm25[2].any()
    # a rare term outweighs a common one: "を" is in every document
    rare_vs_common = keyword_scores([["玉ねぎ"], ["を"]], gallery, method="bm25")
    assert rare_vs_common[0, 0] > rare_vs_common[1, 0] > 0


def test_keyword_metrics_oracle_and_pools() -> None:
    rng = np.random.default_rng(6)
    vocab = [f"w{i}" for i in range(300)]
    gallery = [list(rng.choice(vocab, size=6, replace=False)) for _ in range(120)]
    queries = [doc[:3] for doc in gallery]  # part of the step text: an oracle-ish query
    for method in ("bm25", "jaccard"):
        m = keyword_metrics(queries, gallery, method=method, pool=50, draws=3, seed=1)
        assert m["pool"] == 50 and m["draws"] == 3
        assert m["text_to_image"]["R@1"] > 0.9
    full = keyword_metrics([[] for _ in gallery], gallery, pool=None)
    assert full["text_to_image"]["MedR"] == 120.0  # empty queries tie with everything: ranked last
    with pytest.raises(ValueError, match="query 1 must be a list of tokens"):
        keyword_metrics([["a"], "b c"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="paired"):
        keyword_metrics([["a"]], [["a"], ["b"]])


def test_pooled_metrics_of_embeds_only_the_pooled_rows_and_agrees() -> None:
    from toolkit.evaluation.metrics import full_metrics_of, pooled_metrics_of

    rng = np.random.default_rng(5)
    n, d = 5000, 16
    text_in = rng.standard_normal((n, d)).astype(np.float32)
    image_in = text_in + 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((d, 8)).astype(np.float32)
    seen: list[int] = []

    def embed(x: np.ndarray) -> np.ndarray:
        seen.append(len(x))
        return x @ w

    whole = pooled_metrics(embed(text_in), embed(image_in), pool=300, draws=4, seed=2)
    seen.clear()
    lazy = pooled_metrics_of(embed, embed, text_in, image_in, pool=300, draws=4, seed=2)
    assert max(seen) <= 300 * 4 and lazy["n"] == whole["n"] == n
    for direction in ("text_to_image", "image_to_text"):
        for key, value in whole[direction].items():
            assert lazy[direction][key] == pytest.approx(value, abs=1e-9), (direction, key)
    seen.clear()
    full = full_metrics_of(embed, embed, text_in, image_in, max_pairs=1000, seed=0)
    assert full["n"] == 1000 and full["sampled_from"] == n and max(seen) == 1000
    small = full_metrics_of(embed, embed, text_in[:500], image_in[:500], max_pairs=1000)
    assert "sampled_from" not in small and small == full_metrics(embed(text_in[:500]), embed(image_in[:500]))
