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


def test_vectors_filled_in_place_are_saved_without_a_copy(tmp_path: Path) -> None:
    import toolkit.vectorset as vectorset
    from toolkit.data.columns import StringColumn

    data = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    vectorset.save_vector_set(tmp_path / "old", [f"o{i}:1" for i in range(5)], data[:5], {"kind": "text"})
    out = vectorset.create_vectors(tmp_path / "old", 300, 8)  # replaces the old set
    assert not (tmp_path / "old" / vectorset.IDS).exists()  # stale ids cannot pass for the new rows
    out[:] = data
    ids = StringColumn.from_strings(f"r{i}:1" for i in range(300))
    vectorset.save_vector_set(tmp_path / "old", ids, out, {"kind": "text"})
    vectorset.save_vector_set(tmp_path / "plain", list(ids), data, {"kind": "text"})
    for name in (vectorset.VECTORS, vectorset.IDS):
        assert (tmp_path / "old" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    with pytest.raises(ValueError, match="newlines"):
        vectorset.save_vector_set(tmp_path / "bad", StringColumn.from_strings(["a", "b\nc"]), data[:2], {})


def test_a_failed_allocation_leaves_no_file_holding_the_disk(tmp_path, monkeypatch) -> None:
    """``posix_fallocate`` on a disk that fills keeps the blocks it got before failing: the half-allocated
    file must not stay behind (the disk left full by the very check meant to handle a full disk, and a
    sparse ``vectors.npy`` without ids in the directory)."""
    import errno
    import os

    from toolkit.vectorset import create_vectors

    real = os.posix_fallocate

    def fills_up(fd: int, offset: int, size: int) -> None:
        real(fd, offset, size // 2)  # what the disk had room for
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", fills_up)
    with pytest.raises(OSError, match="No space left on device") as caught:
        create_vectors(tmp_path / "set", 1000, 64)
    assert caught.value.filename == str(tmp_path / "set" / "vectors.npy")
    assert not (tmp_path / "set" / "vectors.npy").exists()
