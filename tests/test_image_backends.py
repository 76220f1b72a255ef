"""Inference backends: vectors match torch fp32 on real photos, graphs are cached, metadata says how."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.data.sample_draw import step_photo_jpeg
from toolkit.errors import ConfigError
from toolkit.image.backends import (
    GRAPH_FILE,
    MIN_COSINE,
    VERDICTS_FILE,
    candidates,
    cpu_has_bf16,
    graph_dir,
    min_cosine,
    runtime_version,
)
from toolkit.image.encoders import create_encoder
from toolkit.image.features import extract_features
from toolkit.image.loading import load_image
from toolkit.vectorset import load_vector_set

INSTALLED = [b for b in ("onnxruntime", "openvino") if runtime_version(b) is not None]
needs_runtime = pytest.mark.skipif(not INSTALLED, reason="no accelerated backend installed (extra 'onnx')")
TEXTS = (
    "玉ねぎを飴色になるまで炒める",
    "人参を乱切りにする",
    "鍋で湯を沸かす",
    "卵を割りほぐす",
    "肉に塩をふる",
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JRS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """JPEG files drawn by the sample generator (not the calibration set: other texts, seed, sizes)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(10):
        path = root / f"step_{i}.jpg"
        path.write_bytes(step_photo_jpeg(TEXTS[i % len(TEXTS)], rng, size=(96, 160, 288)[i % 3]))
        paths.append(path)
    return paths


def _encode(encoder, paths: list[Path]) -> np.ndarray:
    batch = torch.stack([encoder.preprocess(load_image(p, draft_size=encoder.load_size)) for p in paths])
    return encoder.encode_batch(batch)


@needs_runtime
@pytest.mark.parametrize("backend", INSTALLED)
def test_real_weights_on_real_photos_match_torch(backend: str, cache: Path, photo_files: list[Path]) -> None:
    torch_enc = create_encoder("efficientnet-lite0", weights="imagenet", backend="torch")
    enc = create_encoder("efficientnet-lite0", weights="imagenet", backend=backend)
    ref, got = _encode(torch_enc, photo_files), _encode(enc, photo_files)
    assert enc.backend == backend and torch_enc.backend == "torch"
    assert enc.fingerprint == torch_enc.fingerprint  # same weights and preprocessing
    assert got.shape == ref.shape == (len(photo_files), 1280)
    assert min_cosine(got, ref) >= MIN_COSINE
    assert enc.backend_metadata()["min_cosine_to_torch"] >= MIN_COSINE


@needs_runtime
def test_auto_takes_a_verified_backend_and_refuses_what_drifts(cache: Path) -> None:
    enc = create_encoder("efficientnet-lite0", weights="imagenet", backend="auto")
    enc.encode_batch(torch.zeros(1, 3, 224, 224))
    assert (enc.backend, enc.precision) in candidates("auto")
    verdicts = json.loads((graph_dir(enc.fingerprint) / VERDICTS_FILE).read_text(encoding="utf-8"))
    chosen = [v for v in verdicts.values() if (v["backend"], v["precision"]) == (enc.backend, enc.precision)]
    assert chosen and chosen[0]["min_cosine"] >= MIN_COSINE
    if cpu_has_bf16() and "openvino" in INSTALLED:
        # Lite0's ImageNet weights lose too much in bf16: verified, recorded and not used.
        bf16 = [v for v in verdicts.values() if v["precision"] == "bf16"]
        assert bf16 and bf16[0]["min_cosine"] < MIN_COSINE
        assert enc.precision != "bf16"


@pytest.mark.parametrize("name", ["efficientnet-lite0-ms4-sgem", "efficientnet-lite0-ms"])
def test_split_stem_computes_the_same_and_export_keeps_eval_mode(name: str, tmp_path: Path) -> None:
    from toolkit.image.backends import export_split

    enc = create_encoder(name, weights="random", backend="torch")
    x = torch.randn(2, 3, 64, 64)
    stem, rest = enc.model.split_stem()
    with torch.inference_mode():
        whole, parts = enc.model(x), rest(stem(x))
    torch.testing.assert_close(parts, whole, rtol=0, atol=0)
    export_split(enc.model, 64, tmp_path)
    assert (tmp_path / "stem.onnx").is_file() and (tmp_path / "rest.onnx").is_file()
    assert not enc.model.training  # the exporter restores the mode it found: eval, not training
    with torch.inference_mode():
        torch.testing.assert_close(enc.model(x), whole, rtol=0, atol=0)


@pytest.mark.skipif(
    not (cpu_has_bf16() and "openvino" in INSTALLED), reason="needs OpenVINO and a CPU with native bf16"
)
@pytest.mark.parametrize("name", ["efficientnet-lite0-ms4-sgem"])
def test_lite_runs_bf16_with_an_f32_stem_within_the_tolerance(
    name: str, cache: Path, photo_files: list[Path]
) -> None:
    torch_enc = create_encoder(name, weights="imagenet", backend="torch")
    enc = create_encoder(name, weights="imagenet", backend="auto")
    got, ref = _encode(enc, photo_files), _encode(torch_enc, photo_files)
    assert (enc.backend, enc.precision) == ("openvino", "bf16-f32stem")
    assert min_cosine(got, ref) >= MIN_COSINE
    again = _encode(enc, photo_files[:3])  # a smaller batch after a larger one: the same vectors
    assert min_cosine(again, got[:3]) >= 0.99999
    assert not enc.model.training


@needs_runtime
def test_graph_is_exported_once_and_reused(cache: Path, photo_files: list[Path]) -> None:
    backend = INSTALLED[0]
    first = create_encoder("resnet18", weights="random", image_size=32, backend=backend)
    a = _encode(first, photo_files[:3])
    graph = graph_dir(first.fingerprint) / GRAPH_FILE
    stamp = graph.stat().st_mtime_ns
    second = create_encoder("resnet18", weights="random", image_size=32, backend=backend)
    b = _encode(second, photo_files[:3])
    assert graph.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(a, b, rtol=0, atol=0)
    other = create_encoder("resnet18", weights="random", image_size=32, seed=1, backend=backend)
    other.encode_batch(torch.zeros(1, 3, 32, 32))
    assert other.fingerprint != first.fingerprint and (graph_dir(other.fingerprint) / GRAPH_FILE).is_file()
    # a cached graph cut short (a full disk, a killed export) is exported again, and checked again
    with graph.open("r+b") as fh:
        fh.truncate(1000)
    again = create_encoder("resnet18", weights="random", image_size=32, backend=backend)
    assert (again.backend, again.precision) == (first.backend, first.precision)
    np.testing.assert_allclose(_encode(again, photo_files[:3]), a, rtol=0, atol=1e-6)
    assert graph.stat().st_size > 1000


@needs_runtime
def test_vector_set_records_backend_and_precision(
    cache: Path, photo_files: list[Path], tmp_path: Path
) -> None:
    backend = INSTALLED[0]
    items = [(f"r{i}:1", p) for i, p in enumerate(photo_files[:4])]
    enc = create_encoder("resnet18", weights="random", image_size=32, backend=backend)
    res = extract_features(items, enc, tmp_path / "feats", batch_size=2, progress=False)
    meta = load_vector_set(tmp_path / "feats").meta
    assert res.complete and meta["encoder_backend"] == backend
    assert meta["encoder_precision"] == enc.precision
    assert meta["encoder_min_cosine_to_torch"] >= MIN_COSINE
    torch_enc = create_encoder("resnet18", weights="random", image_size=32, backend="torch")
    assert meta["encoder_fingerprint"] == torch_enc.fingerprint


def test_torch_backend_and_plugins_run_as_they_are(cache: Path, photo_files: list[Path]) -> None:
    enc = create_encoder("resnet18", weights="random", image_size=32, backend="torch")
    _encode(enc, photo_files[:2])
    assert enc.backend == "torch" and not (cache / "graphs").exists()  # nothing exported
    pixels = create_encoder("pixels", backend="auto")
    assert _encode(pixels, photo_files[:2]).shape == (2, 768)
    with pytest.raises(ConfigError, match="does not apply"):
        create_encoder("pixels", backend="onnxruntime")


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown image backend 'tensorrt'"):
        create_encoder("resnet18", weights="random", image_size=32, backend="tensorrt")


def test_environment_chooses_the_default_backend(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setenv("JRS_IMAGE_BACKEND", "torch")
    enc = create_encoder("resnet18", weights="random", image_size=32)
    enc.encode_batch(torch.zeros(1, 3, 32, 32))
    assert enc.backend == "torch"
    monkeypatch.setenv("JRS_IMAGE_BACKEND", "bogus")
    with pytest.raises(ConfigError, match="unknown image backend"):
        create_encoder("resnet18", weights="random", image_size=32)


def test_a_bad_backend_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the user never typed on the command line: the error says where it came from."""
    monkeypatch.setenv("JRS_IMAGE_BACKEND", "bogus")
    with pytest.raises(
        ConfigError, match=r"JRS_IMAGE_BACKEND=bogus: unknown image backend 'bogus'; choose one"
    ):
        create_encoder("resnet18", weights="random", image_size=32)
    with pytest.raises(
        ConfigError, match=r"^unknown image backend 'tensorrt'"
    ):  # a given one: no variable named
        create_encoder("resnet18", weights="random", image_size=32, backend="tensorrt")


@needs_runtime
def test_a_finished_set_found_again_reports_its_own_backend(
    cache: Path, sample_root: Path, tmp_path: Path
) -> None:
    """embed-images into a set made with torch, run again with another backend: the set is reused and the
    report says torch (it said the new run's backend, which encoded nothing)."""
    import json as _json

    from click.testing import CliRunner

    from toolkit.cli.main import cli

    args = [
        "embed-images",
        str(sample_root),
        str(tmp_path / "f"),
        "--encoder",
        "resnet18",
        "--weights",
        "random",
    ]
    args += ["--image-size", "32", "--json", "-q"]
    first = CliRunner().invoke(cli, [*args, "--backend", "torch"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, [*args, "--backend", INSTALLED[0]])
    assert again.exit_code == 0, again.output
    out = _json.loads(again.stdout)
    assert out["already_done"] and out["encoder_backend"] == "torch"
    # the finished set was found again without resolving the new backend: no graph exported or verified
    assert not (cache / "graphs").exists() or not any((cache / "graphs").rglob(GRAPH_FILE))
