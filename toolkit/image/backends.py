"""Inference backends for the built-in CNN encoders: torch eager, ONNX Runtime, OpenVINO.

The torch network of an encoder is exported once to ONNX (opset 17, dynamic batch) into a cache
directory named by the encoder's fingerprint (``$JRS_CACHE_DIR/graphs/FINGERPRINT/``, default
``~/.cache/jrecipe-search/graphs/``); every later process (``jrs build``, ``embed-images``,
``index``, photo queries, the search page) loads it from there. OpenVINO also caches its compiled
model there.

A backend is used for an encoder only after it is *verified*: its vectors of drawn calibration
photos (JPEGs from the sample generator, decoded and preprocessed like any photo) must have cosine
``>= MIN_COSINE`` to torch fp32 on every photo. The verdict (the minimum cosine) is stored next to
the graph, keyed by backend, precision, runtime version and CPU, and recorded in the vector set's
metadata. So the encoder fingerprint keeps its meaning ("the same weights and preprocessing"):
vectors of one fingerprint from any verified backend agree with torch fp32 within the tolerance,
and an index built with one backend accepts queries embedded with another.

``auto`` tries, in the order measured fastest on this project's CPUs (``bench/bench_image.py``):
OpenVINO bf16 (only where the CPU has native bf16: AVX512_BF16 or AMX), OpenVINO f32, ONNX Runtime
fp32, and takes the first installed one that verifies; otherwise torch. Between OpenVINO bf16 and f32
comes ``bf16-f32stem`` for networks that can be cut after their first block (``split_stem()``, the
EfficientNet-Lite multi-scale encoders): the stem and first block run in f32, the rest in bf16.
(EfficientNet-Lite0's ImageNet weights do not verify in bf16 -- cosine 0.98 on drawn photos, the drift
is the first block's depthwise convolution -- but do with the f32 stem: 0.9998.) An explicit
backend that does not verify is refused. CUDA devices and plug-in encoders keep using torch.
The default backend is ``$JRS_IMAGE_BACKEND`` or ``auto``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import platform
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit.atomic import atomic_path, write_json_atomic
from toolkit.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
BACKEND_ENV = "JRS_IMAGE_BACKEND"
CACHE_ENV = "JRS_CACHE_DIR"
#: Minimum cosine to torch fp32, on every calibration photo, for a backend to be used.
MIN_COSINE = 0.999
GRAPH_FILE = "model.onnx"
#: the two graphs of ``bf16-f32stem``: the stem (and first block), and the rest of the network
STEM_FILE, REST_FILE = "stem.onnx", "rest.onnx"
STEM_PRECISION = "bf16-f32stem"
VERDICTS_FILE = "verdicts.json"
OPSET = 17
CALIBRATION_PHOTOS = 12
_CALIBRATION_TEXTS = (
    "玉ねぎを飴色になるまで炒める",
    "鶏肉を一口大に切る",
    "鍋に湯を沸かしてパスタを茹でる",
    "卵を溶いてフライパンで焼く",
    "じゃがいもを蒸して潰す",
    "ボウルで生地を混ぜる",
)

Runtime = Callable[[np.ndarray], np.ndarray]


def default_backend() -> str:
    """``$JRS_IMAGE_BACKEND`` or ``auto``; a value that names no backend is a :class:`ConfigError` naming the
    variable (the user never typed it on the command line)."""
    value = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ConfigError(f"{BACKEND_ENV}={value}: {_unknown_backend(value)}")
    return value


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(_unknown_backend(backend))
    return backend


def _unknown_backend(backend: str) -> str:
    return f"unknown image backend {backend!r}; choose one of {', '.join(BACKENDS)}"


def cache_root() -> Path:
    """``$JRS_CACHE_DIR`` or ``$XDG_CACHE_HOME/jrecipe-search`` (default ``~/.cache/jrecipe-search``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "jrecipe-search"


def graph_dir(encoder_fingerprint: str) -> Path:
    return cache_root() / "graphs" / encoder_fingerprint


@functools.cache
def cpu_flags() -> frozenset[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512_BF16 or AMX): where OpenVINO's bf16 inference is fast."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def runtime_version(backend: str) -> str | None:
    """The installed runtime's version, or None when it is not installed."""
    try:
        if backend == "onnxruntime":
            import onnxruntime

            return str(onnxruntime.__version__)
        if backend == "openvino":
            import openvino

            return str(openvino.get_version()).split("-")[0]
    except ImportError:
        return None
    return None


def candidates(backend: str, splits: bool = False) -> list[tuple[str, str]]:
    """``(backend, precision)`` pairs to try for ``backend``, fastest first (``splits``: the network
    offers ``split_stem()``, so bf16 with an f32 stem is one of them)."""
    ov = [("openvino", "bf16"), *([("openvino", STEM_PRECISION)] if splits else [])] if cpu_has_bf16() else []
    ov.append(("openvino", "f32"))
    if backend == "openvino":
        return ov
    if backend == "onnxruntime":
        return [("onnxruntime", "fp32")]
    if backend == "auto":
        order = [*ov, ("onnxruntime", "fp32")]
        return [c for c in order if runtime_version(c[0]) is not None]
    return []


# --------------------------------------------------------------------------- export and runtimes


def export_onnx(model: nn.Module, crop: int, path: Path) -> Path:
    """Export ``model`` (input ``[B, 3, crop, crop]``) to ``path`` once; concurrent writers are safe."""
    return export_onnx_for(model, torch.zeros(1, 3, crop, crop), path)


def export_split(model: nn.Module, crop: int, directory: Path) -> tuple[Path, Path]:
    """Export ``model.split_stem()``: the stem graph (input ``[B, 3, crop, crop]``) and the graph of the
    rest (input: the stem's output), once each."""
    stem_path, rest_path = directory / STEM_FILE, directory / REST_FILE
    if stem_path.is_file() and rest_path.is_file():
        return stem_path, rest_path
    stem, rest = model.split_stem()  # type: ignore[operator]
    with torch.inference_mode():
        h = stem(torch.zeros(1, 3, crop, crop).contiguous(memory_format=torch.channels_last))
    return (
        export_onnx_for(stem, torch.zeros(1, 3, crop, crop), stem_path),
        export_onnx_for(rest, torch.zeros(h.shape), rest_path),
    )


def export_onnx_for(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export ``model`` (input shaped like ``example``, batch dimension dynamic) to ``path`` once."""
    if path.is_file():
        return path
    dummy = example.contiguous(memory_format=torch.channels_last) if example.ndim == 4 else example
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=["x"],
            output_names=["y"],
            opset_version=OPSET,
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            dynamo=False,
        )
    return path


def _onnxruntime(path: Path, threads: int) -> Runtime:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"x": x})[0]

    return run


def _openvino_request(path: Path, precision: str, threads: int) -> Any:
    import openvino as ov

    core = ov.Core()
    core.set_property({"CACHE_DIR": str(path.parent / "openvino")})
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    return core.compile_model(str(path), "CPU", config).create_infer_request()


def _openvino(paths: list[Path], precisions: list[str], threads: int) -> Runtime:
    """One compiled graph, or several run one after another (each its own precision)."""
    requests = [_openvino_request(p, q, threads) for p, q in zip(paths, precisions, strict=True)]
    lock = threading.Lock()  # one infer request each: calls from several threads take turns

    def run(x: np.ndarray) -> np.ndarray:
        with lock:
            for request in requests:
                x = np.array(request.infer({0: x})[0], dtype=np.float32, copy=True)
            return x

    return run


def make_runtime(backend: str, precision: str, path: Path, threads: int) -> Runtime:
    """The runtime of ``path`` (for ``bf16-f32stem``: the directory's stem and rest graphs)."""
    if backend == "onnxruntime":
        return _onnxruntime(path, threads)
    if backend == "openvino" and precision == STEM_PRECISION:
        return _openvino([path / STEM_FILE, path / REST_FILE], ["f32", "bf16"], threads)
    if backend == "openvino":
        return _openvino([path], [precision], threads)
    raise ValueError(backend)


# --------------------------------------------------------------------------- verification


def calibration_batch(preprocess: Callable[[Any], torch.Tensor], n: int = CALIBRATION_PHOTOS) -> torch.Tensor:
    """``n`` drawn step photos (JPEG-encoded and decoded like files), preprocessed by the encoder."""
    from PIL import Image

    from toolkit.data.sample_draw import step_photo_jpeg

    rng = np.random.default_rng(20260)
    tensors = []
    for i in range(n):
        data = step_photo_jpeg(_CALIBRATION_TEXTS[i % len(_CALIBRATION_TEXTS)], rng, size=192 + 32 * (i % 3))
        with Image.open(io.BytesIO(data)) as img:
            tensors.append(preprocess(img.convert("RGB")))
    return torch.stack(tensors)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine between ``a`` and ``b`` (rows of zeros count as 1 when both are)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-30)
    return float(np.where(both_zero, 1.0, cos).min())


@dataclass
class Verdict:
    backend: str
    precision: str
    runtime_version: str
    min_cosine: float
    photos: int
    cpu: str

    @property
    def ok(self) -> bool:
        return self.min_cosine >= MIN_COSINE


def _verdict_key(backend: str, precision: str, version: str, graphs: Sequence[Path] = ()) -> str:
    """Which check a verdict is of: backend, precision, runtime version, CPU, and the graph files as they are
    (size and mtime: a re-exported or replaced graph is checked again)."""
    stamps = []
    for g in graphs:
        try:
            st = g.stat()
            stamps.append(f"{g.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            stamps.append(f"{g.name}:missing")
    return "/".join([backend, precision, version, cpu_model(), *stamps])


def _attempts(
    tried: Sequence[tuple[str, str]], directory: Path
) -> Iterator[tuple[str, str, bool, set[tuple[str, str]]]]:
    """Each candidate ``(backend, precision, fresh, retry)``: ``fresh`` when its graph is not cached yet; a
    candidate the caller adds to ``retry`` (its cached graph failed and was removed) comes again, fresh."""
    retry: set[tuple[str, str]] = set()
    for backend, precision in tried:
        fresh = not all(g.is_file() for g in _graph_files(directory, precision))
        yield backend, precision, fresh, retry
        if (backend, precision) in retry:
            yield backend, precision, True, retry


def _graph_files(directory: Path, precision: str) -> list[Path]:
    return (
        [directory / STEM_FILE, directory / REST_FILE]
        if precision == STEM_PRECISION
        else [directory / GRAPH_FILE]
    )


def _read_verdicts(directory: Path) -> dict[str, Any]:
    try:
        obj = json.loads((directory / VERDICTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _save_verdict(directory: Path, key: str, verdict: Verdict) -> None:
    verdicts = _read_verdicts(directory)
    verdicts[key] = asdict(verdict)
    write_json_atomic(directory / VERDICTS_FILE, verdicts, indent=1)


# --------------------------------------------------------------------------- selection


@dataclass
class Selected:
    """The backend an encoder runs on: ``run`` is None for torch."""

    backend: str
    precision: str
    min_cosine: float | None
    run: Runtime | None
    note: str = ""


TORCH_FP32 = ("torch", "fp32")


def select_backend(
    requested: str,
    model: nn.Module,
    torch_forward: Callable[[torch.Tensor], np.ndarray],
    preprocess: Callable[[Any], torch.Tensor],
    crop: int,
    encoder_fingerprint: str,
    what: str,
) -> Selected:
    """Resolve ``requested`` for one encoder: export, verify (once per machine) and load its runtime."""
    if requested == "torch":
        return Selected(*TORCH_FP32, None, None)
    splits = callable(getattr(model, "split_stem", None))
    tried = candidates(requested, splits)
    if requested != "auto":
        version = runtime_version(requested)
        if version is None:
            extra = "pip install 'jrecipe-search[onnx]'"
            raise ConfigError(f"image backend {requested!r} is not installed ({extra})")
    directory = graph_dir(encoder_fingerprint)
    threads = torch.get_num_threads()
    reasons: list[str] = []
    calib: tuple[torch.Tensor, np.ndarray] | None = None
    for backend, precision, fresh, fresh_retry in _attempts(tried, directory):
        version = runtime_version(backend) or "?"
        try:
            if precision == STEM_PRECISION:
                export_split(model, crop, directory)
                path = directory
            else:
                path = export_onnx(model, crop, directory / GRAPH_FILE)
            key = _verdict_key(backend, precision, version, _graph_files(directory, precision))
            known = _read_verdicts(directory).get(key)
            if known is not None and known.get("min_cosine", -1.0) < MIN_COSINE:
                reasons.append(f"{backend} {precision}: cosine {known['min_cosine']:.5f} < {MIN_COSINE}")
                continue
            run = make_runtime(backend, precision, path, threads)
            if known is None:
                if calib is None:
                    x = calibration_batch(preprocess)
                    calib = (x, torch_forward(x))
                x, ref = calib
                got = run(np.ascontiguousarray(x.numpy(), dtype=np.float32))
                verdict = Verdict(backend, precision, version, min_cosine(got, ref), len(x), cpu_model())
                _save_verdict(directory, key, verdict)
                log.info(
                    "%s: %s %s min cosine to torch fp32 %.6f", what, backend, precision, verdict.min_cosine
                )
                if not verdict.ok:
                    reasons.append(f"{backend} {precision}: cosine {verdict.min_cosine:.5f} < {MIN_COSINE}")
                    continue
                cos = verdict.min_cosine
            else:
                cos = float(known["min_cosine"])
            return Selected(backend, precision, cos, run, f"{what}: image backend {backend} {precision}")
        except ConfigError:
            raise
        except Exception as e:  # an exporter or runtime failure: try the next backend
            if not fresh:  # a cached graph that does not load (cut short, damaged): export it again, once
                log.warning(
                    "%s: the cached graph in %s does not load (%s): exporting it again", what, directory, e
                )
                for g in _graph_files(directory, precision):
                    g.unlink(missing_ok=True)
                fresh_retry.add((backend, precision))
                continue
            log.warning(
                "%s: backend %s %s unavailable: %s: %s", what, backend, precision, type(e).__name__, e
            )
            reasons.append(f"{backend} {precision}: {type(e).__name__}: {e}")
    if requested == "auto":
        if reasons:
            log.info("%s: using torch (%s)", what, "; ".join(reasons))
        return Selected(*TORCH_FP32, None, None, "; ".join(reasons))
    raise ConfigError(
        f"image backend {requested!r} cannot run {what} within cosine {MIN_COSINE} of torch: {'; '.join(reasons)}"
    )
