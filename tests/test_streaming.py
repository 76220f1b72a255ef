"""Streaming stages: training from memory-mapped rows equals training from arrays; rows read lazily."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toolkit.mapping.train import MappingConfig, train_mapping
from toolkit.memory import release_pages
from toolkit.vectorset import Rows, align, align_rows, load_vector_set, save_vector_set


def _sets(tmp_path: Path) -> tuple:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 8)).astype(np.float32)
    text = np.tanh(z @ rng.normal(size=(8, 40))).astype(np.float32)
    image = np.maximum(z @ rng.normal(size=(8, 60)), 0).astype(np.float32)
    ids = [f"r{i // 4}:{i % 4 + 1}" for i in range(600)]
    # the image set lacks some steps and is stored in another order, as after photo rejects
    keep = np.flatnonzero(rng.random(600) > 0.1)[::-1]
    save_vector_set(tmp_path / "t", ids, text, {"kind": "text"})
    save_vector_set(tmp_path / "i", [ids[k] for k in keep], image[keep], {"kind": "image"})
    return load_vector_set(tmp_path / "t"), load_vector_set(tmp_path / "i")


def test_align_rows_matches_align(tmp_path: Path) -> None:
    t, i = _sets(tmp_path)
    ids, rows_t, rows_i = align_rows(t, i)
    ids2, xt, xi = align(t, i)
    assert ids == ids2 and len(ids) < 600
    assert np.array_equal(Rows(t.vectors, rows_t)[:], xt)
    assert np.array_equal(np.asarray(Rows(i.vectors, rows_i)), xi)
    view = Rows(i.vectors, rows_i)
    picks = np.array([5, 0, 17, 5])
    assert np.array_equal(view[picks], xi[picks])
    assert np.array_equal(view.subset(np.arange(len(view)) % 2 == 0)[:], xi[::2])


def test_training_from_memory_mapped_rows_gives_the_same_weights(tmp_path: Path) -> None:
    t, i = _sets(tmp_path)
    ids, rows_t, rows_i = align_rows(t, i)
    train, val = np.arange(len(ids)) < 400, np.arange(len(ids)) >= 400
    groups = [s.split(":")[0] for s in np.asarray(ids)[train]]
    config = MappingConfig(
        dim=16, hidden=32, epochs=3, batch_size=32, val_pool=100, val_draws=1, text_tower="mean"
    )
    xt, xi = Rows(t.vectors, rows_t), Rows(i.vectors, rows_i)
    Rows.RELEASE_BYTES = 1 << 16  # give pages back often, as on a big collection
    lazy = train_mapping(
        xt.subset(train), xi.subset(train), xt.subset(val), xi.subset(val), config, groups, False
    )
    eager = train_mapping(xt[train], xi[train], xt[val], xi[val], config, groups, False)
    a, b = lazy.model.state_dict(), eager.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def drop_time(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert drop_time(lazy.history_dicts()) == drop_time(eager.history_dicts())
    assert release_pages(t.vectors) and np.array_equal(
        t.vectors[3], load_vector_set(tmp_path / "t", False).vectors[3]
    )


def test_pairs_release_gives_back_mapped_pages_and_keeps_the_rows(tmp_path: Path) -> None:
    from toolkit.stages.pairs import Pairs

    t, i = _sets(tmp_path)
    ids, rows_t, rows_i = align_rows(t, i)
    mapped = Pairs(ids, Rows(t.vectors, rows_t), Rows(i.vectors, rows_i), "w2v", "enc")
    text, image = mapped.text[:], mapped.image[:]
    assert mapped.release()
    assert np.array_equal(mapped.image[:], image) and np.array_equal(mapped.text[:], text)
    in_memory = Pairs(ids, np.asarray(mapped.text), np.asarray(mapped.image), "w2v", "enc")
    assert not in_memory.release()


def test_rows_of_a_memory_mapped_file_are_read_from_the_file(tmp_path: Path) -> None:
    t, _ = _sets(tmp_path)
    whole = load_vector_set(tmp_path / "t", False).vectors
    view = Rows(t.vectors, np.arange(599, -1, -1))
    assert view._file is not None  # read with pread: random rows leave no mapped pages behind
    picks = np.array([7, 7, 0, 599, 3, 4, 5, 300])
    assert np.array_equal(view[picks], whole[::-1][picks])
    sliced = Rows(t.vectors[10:], np.array([5, 0, 5]))  # a view of the map: read through it
    assert sliced._file is None and np.array_equal(sliced[:], whole[[15, 10, 15]])
    assert Rows(whole)._file is None and np.array_equal(Rows(whole)[picks], whole[picks])
