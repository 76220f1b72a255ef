"""The seeding helpers: every global generator from one seed, or torch's for one block."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from toolkit.errors import ConfigError

#: the largest seed every generator takes (NumPy's and gensim's are 32-bit)
MAX_SEED = 2**32 - 1


def check_seed(name: str, value: object, allow_none: bool = False) -> None:
    """:class:`ConfigError` unless ``value`` is an integer seed from 0 to :data:`MAX_SEED` (or None, allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer from 0 to {MAX_SEED}, got {value!r}")


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
