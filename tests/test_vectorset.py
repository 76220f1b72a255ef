"""Vector sets on disk: a memory-mapped array is saved without becoming resident."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_a_memory_mapped_array_is_saved_chunk_by_chunk_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import toolkit.vectorset as vectorset

    data = np.random.default_rng(0).standard_normal((1001, 24)).astype(np.float32)
    mapped = np.lib.format.open_memmap(tmp_path / "src.npy", mode="w+", dtype=np.float32, shape=data.shape)
    mapped[:] = data
    monkeypatch.setattr(vectorset, "SAVE_CHUNK_ROWS", 100)  # 11 chunks, the last one short
    ids = [f"r{i}:1" for i in range(len(data))]
    vectorset.save_vector_set(tmp_path / "mapped", ids, mapped, {"kind": "image"})
    vectorset.save_vector_set(tmp_path / "plain", ids, data, {"kind": "image"})
    written = (tmp_path / "mapped" / vectorset.VECTORS).read_bytes()
    assert written == (tmp_path / "plain" / vectorset.VECTORS).read_bytes()  # what np.save writes
    loaded = vectorset.load_vector_set(tmp_path / "mapped")
    assert np.array_equal(loaded.vectors, data) and loaded.ids == ids and loaded.meta["count"] == 1001
