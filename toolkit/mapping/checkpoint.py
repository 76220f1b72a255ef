"""Saving and loading a trained mapping: ``mapping.pt`` (state_dict) + ``mapping.json`` (everything else).

The JSON records the config, architecture, input standardisation statistics, the fingerprints of what
produced the inputs (the Word2Vec model, the image encoder) and the mapping's own fingerprint (a hash
of its weights and config). Loading verifies the weights against that fingerprint and, when told what
is in hand, refuses a mapping trained on other word vectors or another image encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.atomic import atomic_path, write_text_atomic
from toolkit.errors import ModelDirError
from toolkit.fingerprint import FingerprintMismatch, fingerprint
from toolkit.mapping.config import MappingConfig
from toolkit.mapping.towers import TwoTower

WEIGHTS = "mapping.pt"
META = "mapping.json"
FORMAT = "jrs-mapping"
FORMAT_VERSION = 1
#: How each known input fingerprint is described in error messages.
DESCRIPTIONS = {"word2vec": "word vectors", "encoder": "image encoder"}


@dataclass
class LoadedMapping:
    """A mapping read back from disk, in eval mode on the CPU."""

    model: TwoTower
    config: MappingConfig
    fingerprint: str
    fingerprints: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)


def mapping_fingerprint(model: TwoTower, config: MappingConfig, *, device_as_given: bool = False) -> str:
    """Hash of the weights (every state_dict tensor, by name) together with config and architecture.

    Where training ran does not decide the weights (same seed, same weights on ``auto`` or ``cpu``), so the
    device is hashed as its default; ``device_as_given`` gives the hash of mappings saved before that."""
    state = model.state_dict()
    settings = config.fingerprint_dict()
    if not device_as_given:
        settings["device"] = "auto"
    parts: list[Any] = [
        settings,
        {k: v for k, v in model.arch().items() if k != "arch" or v != "mlp"},
    ]
    for name in sorted(state):
        parts.append(name)
        parts.append(state[name].detach().cpu().numpy())
    return fingerprint(*parts)


def save_mapping(
    directory: str | Path,
    model: TwoTower,
    config: MappingConfig,
    fingerprints: dict[str, str],
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``mapping.pt`` and ``mapping.json`` into ``directory``; returns the directory.

    ``fingerprints`` names what produced the inputs, e.g. ``{"word2vec": ..., "encoder": ...}``.
    """
    bad = {k: v for k, v in fingerprints.items() if not (isinstance(k, str) and isinstance(v, str) and v)}
    if bad:
        raise ValueError(f"fingerprints must map names to non-empty strings, got {bad}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    stats = {k: [float(x) for x in v] for k, v in model.get_input_stats().items()}
    arch = model.arch()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": mapping_fingerprint(model, config),
        "fingerprints": dict(fingerprints),
        "text_dim": arch["text_dim"],
        "image_dim": arch["image_dim"],
        "dim": model.dim,
        "arch": arch,
        "config": config.to_dict(),
        "input_stats": stats,
        "extra": extra_meta or {},
    }
    text = json.dumps(meta, ensure_ascii=False, indent=2, default=_json_default)  # fail before writing
    # through a file object: given a path, torch names the archive inside after it (the random temporary
    # name), and the same weights would give other bytes each time
    with atomic_path(d / WEIGHTS) as tmp, tmp.open("wb") as fh:
        torch.save(state, fh)
    write_text_atomic(d / META, text)
    return d


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays in ``extra_meta`` become plain JSON numbers and lists."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"extra_meta value of type {type(obj).__name__} is not JSON serialisable")


def read_mapping_meta(directory: str | Path) -> dict[str, Any]:
    """The ``mapping.json`` of a mapping directory (a clear error when it is not one)."""
    d = Path(directory)
    missing = [n for n in (WEIGHTS, META) if not (d / n).is_file()]
    if missing:
        raise ModelDirError(f"{d} is not a mapping directory: missing {', '.join(missing)}")
    try:
        meta = json.loads((d / META).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{d / META} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelDirError(f"{d / META} is not a {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(
            f"{d / META} has format version {meta.get('format_version')}, this toolkit reads {FORMAT_VERSION}"
        )
    return meta


def check_input_fingerprints(directory: str | Path, stored: dict[str, str], expected: dict[str, str]) -> None:
    """Raise :class:`FingerprintMismatch` unless every expected input fingerprint matches the stored one."""
    for key, have in expected.items():
        trained = stored.get(key)
        if trained == have:
            continue
        what = DESCRIPTIONS.get(key, key)
        if trained is None:
            hint = f"the mapping in {directory} records no {key} fingerprint, so it cannot vouch for {what} {have}"
        else:
            hint = (
                f"the mapping in {directory} was trained with {what} {trained}, but the current {what} fingerprint "
                f"is {have}; "
                "retrain the mapping on vectors from this model, or use the model it was trained with"
            )
        raise FingerprintMismatch(
            key, trained or "none", have, hint
        )  # the mapping expects what it trained on


def load_mapping(directory: str | Path, expected: dict[str, str] | None = None) -> LoadedMapping:
    """Load a saved mapping; verify its weights, and its input fingerprints against ``expected``."""
    d = Path(directory)
    meta = read_mapping_meta(d)
    stored = meta.get("fingerprints") or {}
    if expected:
        check_input_fingerprints(d, stored, expected)
    try:
        config = MappingConfig.from_dict(meta["config"])
        model = TwoTower(**meta["arch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelDirError(f"{d / META} has an invalid config or architecture: {exc}") from exc
    try:
        state = torch.load(d / WEIGHTS, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # unpickling / shape errors: the file does not match its metadata
        raise ModelDirError(f"{d / WEIGHTS} cannot be loaded into the recorded architecture: {exc}") from exc
    actual = mapping_fingerprint(model, config)
    if actual != meta.get("fingerprint") and config.device != "auto":  # saved with its device in the hash
        actual = mapping_fingerprint(model, config, device_as_given=True)
    if actual != meta.get("fingerprint"):
        raise ModelDirError(
            f"{d} is inconsistent: mapping.json names fingerprint {meta.get('fingerprint')}, "
            f"but the weights and config hash to {actual} (files modified or mixed up)"
        )
    _check_stats(d, model, meta)
    model.eval()
    return LoadedMapping(model=model, config=config, fingerprint=actual, fingerprints=dict(stored), meta=meta)


def _check_stats(d: Path, model: TwoTower, meta: dict[str, Any]) -> None:
    recorded = meta.get("input_stats", {})
    for key, value in model.get_input_stats().items():
        if key not in recorded or not np.allclose(np.asarray(recorded[key], dtype=np.float32), value):
            raise ModelDirError(f"{d / META}: input statistics {key!r} do not match the weights")
