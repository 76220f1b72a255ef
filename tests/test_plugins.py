"""A third-party encoder registered through a real entry point (a dist-info on sys.path), used end to end:
listed by `jrs encoders`, image features, mapping, index, search by photo with the encoder rebuilt from the
model's manifest, and image->image evaluation."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from toolkit.cli.main import cli
from toolkit.image.encoders import ENTRY_POINT_GROUP, create_encoder, describe_encoders

PLUGIN = '''
"""A tiny third-party encoder: a colour thumbnail plus colour statistics (no network)."""
import numpy as np
import torch
from toolkit.fingerprint import fingerprint


class Thumbnail:
    """The interface: name, dim, preprocess (picklable), encode_batch, fingerprint."""

    def __init__(self, side: int = 4) -> None:
        self.name = "thumbnail"  # the entry-point name, so a model manifest can rebuild it
        self.side = side
        self.dim = side * side * 3 + 6
        self.load_size = side
        self.weights_source = "none"
        self.config = {"side": side}
        self.fingerprint = fingerprint("thumbnail-encoder/1", self.config)
        self.preprocess = Preprocess(side)

    def encode_batch(self, batch: torch.Tensor) -> np.ndarray:
        flat = batch.reshape(batch.shape[0], -1)
        stats = torch.cat([batch.mean(dim=(2, 3)), batch.std(dim=(2, 3))], dim=1)
        return torch.cat([flat, stats], dim=1).numpy().astype(np.float32)


class Preprocess:
    def __init__(self, side: int) -> None:
        self.side = side

    def __call__(self, img):
        small = img.convert("RGB").resize((self.side, self.side))
        return torch.from_numpy(np.asarray(small, np.float32) / 255.0).permute(2, 0, 1).contiguous()


def make(weights=None, device="cpu", image_size=None, **kw):
    return Thumbnail(int(image_size or 4))
'''


@pytest.fixture
def thumbnail_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Installs `jrs-thumbnail` the way pip would: a module and its dist-info with entry_points.txt."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "jrs_thumbnail.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    dist = site / "jrs_thumbnail-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jrs-thumbnail\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nthumbnail = jrs_thumbnail:make\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("jrs_thumbnail", None)


def test_plugin_is_listed_and_built(thumbnail_plugin: Path) -> None:
    info = {i.name: i for i in describe_encoders()}["thumbnail"]
    assert info.origin == "plugin jrs_thumbnail:make"
    res = CliRunner().invoke(cli, ["encoders", "--json"])
    assert {"name": "thumbnail", "origin": "plugin jrs_thumbnail:make", "description": ""} in json.loads(
        res.output
    )["encoders"]
    enc = create_encoder("thumbnail")
    assert enc.dim == 54 and type(enc).__module__ == "jrs_thumbnail"


def test_plugin_encoder_indexes_and_searches_end_to_end(
    thumbnail_plugin: Path, es: Elasticsearch, index_name: str, sample_root: Path, tmp_path: Path
) -> None:
    from toolkit.index.indexer import IndexOptions, index_dataset
    from toolkit.model import SearchModel
    from toolkit.pipeline import BuildOptions, build
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, KnnParams
    from toolkit.vectorset import load_vector_set

    model_dir = tmp_path / "model"
    opts = BuildOptions(encoder="thumbnail", weights="none", workers=0, mapping={"epochs": 3}, eval_draws=1)
    opts.progress = False
    manifest = build(sample_root, model_dir, opts)
    enc = create_encoder("thumbnail")
    assert (
        manifest["encoder"]["name"] == "thumbnail" and manifest["encoder"]["fingerprint"] == enc.fingerprint
    )
    feats = load_vector_set(model_dir / "image_features")
    assert feats.dim == 54 and feats.meta["encoder_fingerprint"] == enc.fingerprint

    result = index_dataset(es, sample_root, model_dir, IndexOptions(alias=index_name))
    assert result["photos_dropped"] == 0
    es.indices.refresh(index=index_name)
    model = SearchModel.load(model_dir)
    searcher = Searcher(es, model, index_name)
    sid, rel = feats.ids[5], None
    from toolkit.data.jsonl import iter_recipes
    from toolkit.rejects import RejectsWriter

    with RejectsWriter(None) as rejects:
        for recipe in iter_recipes(sample_root, rejects):
            for step in recipe.steps:
                if recipe.step_id(step) == sid:
                    rel = step.image
    hits = searcher.knn(
        searcher.as_stored_photo(searcher.image_vector(sample_root / rel)),
        KnnParams(5, 50),
        Filters(),
        mode="image",
    ).hits
    assert hits[0].step_id == sid and hits[0].score > 0.99
    assert model.encoder().fingerprint == enc.fingerprint  # rebuilt from the manifest, through the plug-in
    assert np.isfinite(model.embed_image_files([sample_root / rel])).all()


def test_plugin_in_the_image_evaluation(thumbnail_plugin: Path, sample_root: Path) -> None:
    res = CliRunner().invoke(
        cli, ["evaluate-images", str(sample_root), "-e", "thumbnail", "-e", "pixels", "--json", "-q"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert [r["label"] for r in report["results"]] == ["thumbnail", "pixels"]
    assert all(0 <= r["criteria"]["dish"]["precision"] <= 1 for r in report["results"])
