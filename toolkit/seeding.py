"""The seeding helpers: every global generator from one seed, or torch's for one block."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from toolkit.errors import ConfigError, plain_int

#: the largest seed every generator takes (NumPy's and gensim's are 32-bit)
MAX_SEED = 2**32 - 1


def check_seed(name: str, value: object, maximum: int | None = MAX_SEED) -> int:
    """``value`` as a plain int: any integer (``numbers.Integral``, NumPy's included; not a bool) from 0 to
    ``maximum`` (None: no upper bound), else :class:`ConfigError` naming ``name``."""
    wanted = f"an integer from 0 to {maximum}" if maximum is not None else "a non-negative integer"
    seed = plain_int(value)
    if seed is None:
        raise ConfigError(f"{name} must be {wanted}, got {type(value).__name__} {value!r}")
    if seed < 0 or (maximum is not None and seed > maximum):
        raise ConfigError(f"{name} must be {wanted}, got {seed}")
    return seed


def check_optional_seed(name: str, value: object) -> int | None:
    """:func:`check_seed`, with None (the default seed of whatever takes it) passed through."""
    return None if value is None else check_seed(name, value)


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy's global generator and torch (CPU and CUDA) with ``seed``."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded with ``seed``; its previous state comes back after."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
