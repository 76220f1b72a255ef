"""Dataset-root containment: photo paths never escape the dataset root."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from toolkit.data.schema import unencodable
from toolkit.errors import ToolkitError


class UnsafePathError(ToolkitError):
    """A path that is absolute, climbs out of the dataset root, or links outside it."""


def resolve_under_root(root: str | Path, rel: str) -> Path:
    """Return the real path of ``rel`` inside ``root``; raise :class:`UnsafePathError` otherwise.

    Refuses absolute paths, drive letters, ``..`` components, NUL bytes and symlinks
    whose target lies outside the root. The file need not exist.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise UnsafePathError("empty image path")
    if "\x00" in rel:
        raise UnsafePathError(f"image path contains a NUL byte: {rel!r}")
    why = unencodable(rel)
    if why:
        raise UnsafePathError(f"image path {why}: {rel!r}")
    norm = rel.replace("\\", "/")
    pure = PurePosixPath(norm)
    if pure.is_absolute() or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafePathError(f"image path must be relative to the dataset root: {rel!r}")
    if ".." in pure.parts:
        raise UnsafePathError(f"image path escapes the dataset root: {rel!r}")
    real_root = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(real_root.joinpath(*pure.parts)))
    if candidate != real_root and real_root not in candidate.parents:
        raise UnsafePathError(
            f"image path resolves outside the dataset root (a symlink leads out of it): {rel!r}; photos must lie "
            "under the root (move or copy them there, or bind-mount their folder)"
        )
    return candidate
