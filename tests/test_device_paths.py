"""--device on the commands that embed photos against an index: ``index``, ``search --image`` and ``web``.

A bad spec (or CUDA where torch sees none) is exit 2 with one line before anything is contacted or
created; ``cpu`` and the default (``auto``: the CPU on a machine without a GPU) run end to end on a real node.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toolkit.cli.main import cli
from toolkit.device import cuda_device_count, resolve_device

#: Nothing listens here: a command that got as far as Elasticsearch would fail with another message.
NO_ES = {"ES_URL": "http://127.0.0.1:9"}
BAD_SPECS = [("gpu0", "expected auto"), ("cuda:x", "expected auto")]
if cuda_device_count() == 0:
    BAD_SPECS.append(("cuda", "torch sees no CUDA device"))


def _args(command: str, root: Path, model: Path) -> list[str]:
    photo = root / "q.jpg"
    photo.write_bytes(b"not used")
    return {
        "index": ["index", str(root), str(model), "--alias", "jrs-test-never"],
        "search": ["search", "--image", str(photo), "--model", str(model)],
        "web": ["web", "--model", str(model), "--dataset", str(root), "--port", "0"],
    }[command]


@pytest.mark.parametrize("command", ["index", "search", "web"])
@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_device_is_refused_before_any_work(command: str, spec: str, message: str, tmp_path: Path) -> None:
    root, model = tmp_path / "data", tmp_path / "model"
    root.mkdir()
    model.mkdir()
    (root / "recipes.jsonl").write_text("", encoding="utf-8")
    result = CliRunner().invoke(cli, [*_args(command, root, model), "--device", spec], env=NO_ES)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in model.iterdir()) == []  # no checkpoint, no rejects file


def test_device_option_defaults_to_the_library_default() -> None:
    from toolkit.index.indexer import IndexOptions
    from toolkit.index.update import UpdateOptions
    from toolkit.model import SearchModel

    assert IndexOptions().device == UpdateOptions().device == SearchModel.device
    for command in ("index", "search", "web"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and f"[default: {SearchModel.device}]" in " ".join(result.output.split())


def _photo_step(root: Path) -> tuple[str, str]:
    """(step id, photo path) of the first step with a photo."""
    from toolkit.data.step_ids import format_step_id

    for line in (root / "recipes.jsonl").read_text(encoding="utf-8").splitlines():
        recipe = json.loads(line)
        for step in recipe["steps"]:
            if step.get("image"):
                return format_step_id(recipe["recipe_id"], step["position"]), step["image"]
    raise AssertionError("no photo in the sample")


def test_index_encodes_new_photos_on_cpu(
    tmp_path: Path, built_model: Path, index_name: str, es_settings, es
) -> None:
    from toolkit.data.sample import generate_sample

    other = tmp_path / "other"  # not the build's dataset: every photo is encoded now
    generate_sample(other, 6, seed=5, image_size=64)
    args = ["index", str(other), str(built_model), "--alias", index_name, "--json", "--device", "cpu"]
    result = CliRunner().invoke(cli, args, env={"ES_URL": es_settings.url})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["device"] == "cpu"
    assert data["photos_encoded_now"] > 0 and data["indexed"] == data["read"] == data["count"]


@pytest.mark.parametrize("device_args", [["--device", "cpu"], []], ids=["cpu", "default"])
def test_search_by_photo_on_the_chosen_device(
    device_args: list[str], sample_root: Path, built_model: Path, search_alias: str, es_settings
) -> None:
    step_id, rel = _photo_step(sample_root)
    args = ["search", "--image", str(sample_root / rel), "--model", str(built_model), "--index", search_alias]
    result = CliRunner().invoke(
        cli, [*args, "-k", "3", "--json", *device_args], env={"ES_URL": es_settings.url}
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["device"] == ("cpu" if device_args else resolve_device("auto"))
    assert resolve_device("auto") == ("cuda:0" if cuda_device_count() else "cpu")
    assert data["mode"] == "image" and data["hits"][0]["step_id"] == step_id
    assert data["hits"][0]["score"] > 0.99


@pytest.mark.parametrize("spec", ["cpu", "auto"])
def test_web_encodes_uploads_on_the_chosen_device(
    spec: str, sample_root: Path, built_model: Path, search_alias: str, es_settings, monkeypatch
) -> None:
    from toolkit.web.server import SearchServer

    step_id, rel = _photo_step(sample_root)
    seen: dict = {}

    def serve_once(self: SearchServer, *a, **kw) -> None:  # one upload through the app, then stop
        seen["result"] = self.app.search_by_photo((sample_root / rel).read_bytes(), {"k": ["3"]})
        seen["encoder"] = self.app.searcher.model.encoder()

    monkeypatch.setattr(SearchServer, "serve_forever", serve_once)
    args = ["web", "--model", str(built_model), "--index", search_alias, "--dataset", str(sample_root)]
    args += ["--server", "stdlib", "--port", "0", "--device", spec]
    result = CliRunner().invoke(cli, args, env={"ES_URL": es_settings.url})
    assert result.exit_code == 0, result.output
    expected = resolve_device(spec)
    assert f"uploads encoded on {expected}" in result.output
    assert str(seen["encoder"].device) == expected
    assert seen["result"]["hits"][0]["step_id"] == step_id


def _small_encoder(device: str):
    from toolkit.image.encoders import create_encoder

    return create_encoder("resnet18", weights="random", device=device, backend="torch", image_size=32)


def test_cpu_forward_stays_plain_fp32() -> None:
    enc = _small_encoder("cpu")
    batch = torch.rand(4, 3, 32, 32)
    with torch.inference_mode():
        ref = enc.model(batch.contiguous(memory_format=torch.channels_last)).reshape(4, -1).numpy()
    got = enc.encode_batch(batch)
    assert got.dtype == np.float32 and np.array_equal(got, ref)  # bit for bit: no autocast on the CPU
    assert enc.precision == "fp32" and enc.backend == "torch"


@pytest.mark.skipif(cuda_device_count() == 0, reason="needs a CUDA device")
def test_cuda_forward_keeps_the_vectors() -> None:
    from toolkit.image.backbones import CUDA_PRECISION

    batch = torch.rand(16, 3, 32, 32)
    ref = _small_encoder("cpu").encode_batch(batch)
    enc = _small_encoder("cuda")
    got = enc.encode_batch(batch.pin_memory())
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert enc.precision == CUDA_PRECISION and float(cos.min()) >= 0.999


def test_model_device_is_a_spec_or_a_torch_device(built_model: Path) -> None:
    from toolkit.errors import ConfigError
    from toolkit.model import SearchModel

    assert SearchModel.load(built_model, device=torch.device("cpu")).device == "cpu"
    with pytest.raises(ConfigError, match=r"^device must be a str \(auto, cpu, cuda or cuda:N\), got int 0$"):
        SearchModel.load(built_model, device=0)  # type: ignore[arg-type]
