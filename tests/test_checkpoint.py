"""Saving and loading mappings: identical embeddings, fingerprints checked, damaged directories refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.errors import ModelDirError
from toolkit.fingerprint import FingerprintMismatch
from toolkit.mapping.checkpoint import load_mapping, mapping_fingerprint, save_mapping
from toolkit.mapping.train import MappingConfig, train_mapping

FPS = {"word2vec": "1a2b3c4d5e6f7a8b", "encoder": "9f8e7d6c5b4a3f2e"}


@pytest.fixture(scope="module")
def trained() -> tuple[object, MappingConfig, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 4))
    text = (np.tanh(z @ rng.normal(size=(4, 24))) + 0.3 * rng.normal(size=(300, 24))).astype(np.float32)
    image = (np.maximum(z @ rng.normal(size=(4, 40)), 0) * 50 + rng.normal(size=(300, 40))).astype(np.float32)
    config = MappingConfig(dim=8, hidden=16, epochs=2, batch_size=32, norm="batch", text_tower="mean")
    model = train_mapping(text, image, None, None, config, progress=False).model
    return model, config, text, image


def test_round_trip_gives_identical_embeddings(tmp_path: Path, trained) -> None:
    model, config, text, image = trained
    save_mapping(tmp_path, model, config, FPS, {"note": "テスト", "r10": np.float32(0.5)})
    loaded = load_mapping(tmp_path, expected=FPS)
    assert np.array_equal(loaded.model.embed_text(text), model.embed_text(text))
    assert np.array_equal(loaded.model.embed_image(image), model.embed_image(image))
    assert loaded.config == config and loaded.fingerprints == FPS
    assert loaded.fingerprint == mapping_fingerprint(model, config)
    assert loaded.meta["extra"] == {"note": "テスト", "r10": 0.5} and not loaded.model.training
    meta = json.loads((tmp_path / "mapping.json").read_text(encoding="utf-8"))
    # the output: 8 tower dimensions and the linear branch's 24 CCA ones (the text side's rank)
    assert (meta["text_dim"], meta["image_dim"], meta["dim"]) == (24, 40, 8 + 24) and model.dim == 32
    assert loaded.model.embed_text(text).shape == (300, 32)
    np.testing.assert_allclose(meta["input_stats"]["image_mean"], image.mean(axis=0), rtol=1e-4)
    # the weights file is a plain state_dict: loadable with weights_only=True
    state = torch.load(tmp_path / "mapping.pt", weights_only=True)
    assert set(state) == set(model.state_dict())


def test_own_fingerprint_follows_weights_and_config(trained) -> None:
    model, config, _, _ = trained
    base = mapping_fingerprint(model, config)
    assert mapping_fingerprint(model, MappingConfig(**(config.to_dict() | {"lr": 0.5}))) != base
    twin = type(model)(**model.arch())
    twin.load_state_dict(model.state_dict())
    assert mapping_fingerprint(twin, config) == base
    with torch.no_grad():
        twin.text_towers()[-1].net[0].bias[0] += 1e-3  # the last member of the default ensemble
    assert mapping_fingerprint(twin, config) != base


def test_the_device_trained_on_does_not_change_the_fingerprint(tmp_path: Path, trained) -> None:
    """Same seed, same weights on ``auto`` or ``cpu``: one model, one fingerprint (an index built with one is
    searchable with the other). A mapping saved when the device was hashed as given still loads."""
    model, config, text, _ = trained
    on_cpu = MappingConfig(**(config.to_dict() | {"device": "cpu"}))
    assert mapping_fingerprint(model, on_cpu) == mapping_fingerprint(model, config)
    save_mapping(tmp_path, model, on_cpu, FPS)
    meta = json.loads((tmp_path / "mapping.json").read_text(encoding="utf-8"))
    old = mapping_fingerprint(model, on_cpu, device_as_given=True)
    assert old != meta["fingerprint"]
    (tmp_path / "mapping.json").write_text(json.dumps(meta | {"fingerprint": old}), encoding="utf-8")
    assert load_mapping(tmp_path, expected=FPS).fingerprint == old  # its indices keep matching


@pytest.mark.parametrize(
    "key,wrong,words",
    [("word2vec", "3c4d000000000000", "word vectors"), ("encoder", "ffff", "image encoder")],
)
def test_mismatched_input_fingerprint_is_refused(
    tmp_path: Path, trained, key: str, wrong: str, words: str
) -> None:
    model, config, _, _ = trained
    save_mapping(tmp_path, model, config, FPS)
    with pytest.raises(FingerprintMismatch) as info:
        load_mapping(tmp_path, expected=FPS | {key: wrong})
    message = str(info.value)
    # the mapping expects what it was trained with and finds the current vectors' fingerprint
    assert message.startswith(f"{key} fingerprint mismatch: expected {FPS[key]}, found {wrong}")
    assert f"was trained with {words} {FPS[key]}" in message and wrong in message
    assert (
        load_mapping(tmp_path, expected={key: FPS[key]}).fingerprints == FPS
    )  # partial expectations are fine


def test_unknown_input_fingerprint_is_refused(tmp_path: Path, trained) -> None:
    model, config, _, _ = trained
    save_mapping(tmp_path, model, config, {"encoder": FPS["encoder"]})
    with pytest.raises(FingerprintMismatch, match="records no word2vec fingerprint"):
        load_mapping(tmp_path, expected=FPS)


def test_damaged_directories_are_refused(tmp_path: Path, trained) -> None:
    model, config, _, _ = trained
    with pytest.raises(ModelDirError, match="missing mapping.pt, mapping.json"):
        load_mapping(tmp_path / "nothing")
    save_mapping(tmp_path / "a", model, config, FPS)
    meta_path = tmp_path / "a" / "mapping.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["config"]["lr"] = 0.123  # config edited after training
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelDirError, match="inconsistent"):
        load_mapping(tmp_path / "a")
    other = type(model)(**(model.arch() | {"dim": 4}))
    save_mapping(tmp_path / "b", other, MappingConfig(dim=4, hidden=16, text_tower="mean"), FPS)
    save_mapping(tmp_path / "c", model, config, FPS)
    (tmp_path / "c" / "mapping.pt").write_bytes((tmp_path / "b" / "mapping.pt").read_bytes())
    with pytest.raises(ModelDirError, match="cannot be loaded"):
        load_mapping(tmp_path / "c")
    meta_path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        load_mapping(tmp_path / "a")


def test_bad_fingerprints_are_not_saved(tmp_path: Path, trained) -> None:
    model, config, _, _ = trained
    with pytest.raises(ValueError, match="non-empty"):
        save_mapping(tmp_path, model, config, {"word2vec": ""})
    with pytest.raises(TypeError, match="set"):
        save_mapping(tmp_path, model, config, FPS, {"ids": {"a", "b"}})
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_the_same_mapping_saved_twice_gives_the_same_bytes(tmp_path: Path, trained) -> None:
    """Same seed, same model, same files: the weights file does not record the temporary name it was written
    under (torch.save names its archive after the file it is given)."""
    model, config, _, _ = trained
    save_mapping(tmp_path / "a", model, config, FPS)
    save_mapping(tmp_path / "b", model, config, FPS)
    assert (tmp_path / "a" / "mapping.pt").read_bytes() == (tmp_path / "b" / "mapping.pt").read_bytes()
