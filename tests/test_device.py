"""--device choices: auto follows what torch sees, cuda without a GPU and bad specs fail clearly."""

from __future__ import annotations

import pytest

from toolkit.device import cuda_device_count, inference_autocast, loader_options, resolve_device
from toolkit.errors import ConfigError


def test_auto_picks_cuda_only_when_torch_sees_one() -> None:
    expected = "cuda:0" if cuda_device_count() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected
    assert resolve_device(" CPU ") == "cpu"


@pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    for spec in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(ConfigError, match="torch sees no CUDA device"):
            resolve_device(spec)


@pytest.mark.skipif(cuda_device_count() == 0, reason="needs a CUDA device")
def test_cuda_index_out_of_range_is_a_clear_error() -> None:
    n = cuda_device_count()
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device(f"cuda:{n - 1}") == f"cuda:{n - 1}"
    with pytest.raises(ConfigError, match=f"no CUDA device {n}"):
        resolve_device(f"cuda:{n}")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cpu:1", "auto:0", "cuda:-1", "mps"])
def test_malformed_specs_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="expected auto"):
        resolve_device(spec)


def test_cpu_keeps_fp32_and_unpinned_memory() -> None:
    import torch

    assert loader_options("cpu") == {"pin_memory": False}
    assert loader_options("cuda:0") == {"pin_memory": True}
    with inference_autocast("cpu"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


@pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a CUDA device")
@pytest.mark.parametrize("command", ["build", "embed-images", "train-mapping"])
def test_cli_refuses_cuda_without_a_gpu_before_any_work(command: str, tmp_path) -> None:
    from click.testing import CliRunner

    from toolkit.cli.main import cli

    for d in ("data", "sv", "img"):
        (tmp_path / d).mkdir()
    (tmp_path / "data" / "recipes.jsonl").write_text("", encoding="utf-8")
    args = {
        "build": ["build", str(tmp_path / "data"), str(tmp_path / "model")],
        "embed-images": ["embed-images", str(tmp_path / "data"), str(tmp_path / "feats")],
        "train-mapping": ["train-mapping", str(tmp_path / "sv"), str(tmp_path / "img"), str(tmp_path / "m")],
    }[command]
    for spec, message in (("cuda", "torch sees no CUDA device"), ("gpu0", "expected auto")):
        result = CliRunner().invoke(cli, [*args, "--device", spec])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "model" / "manifest.json").exists()


def _commands(group, path=()):  # every command of the CLI with its words (``es up``, ``evaluate-images``)
    import click

    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield " ".join((*path, name)), cmd


def test_every_device_option_defaults_to_the_shared_default() -> None:
    """``jrs evaluate-images`` (and its library function) defaulted to ``cpu`` where every other command that
    runs torch defaults to ``auto``; no documented reason for it was found."""
    import inspect

    import click

    from toolkit.cli.main import cli
    from toolkit.device import DEFAULT_DEVICE
    from toolkit.evaluation.image_retrieval import evaluate_image_encoders

    defaults = {}
    for words, cmd in _commands(cli):
        for param in cmd.params:
            if param.name == "device":
                defaults[words] = param.get_default(click.Context(cmd), call=True)
    assert "evaluate-images" in defaults and "simclr" in defaults and "build" in defaults, defaults
    assert {w: d for w, d in defaults.items() if d != DEFAULT_DEVICE} == {}
    assert inspect.signature(evaluate_image_encoders).parameters["device"].default == DEFAULT_DEVICE
