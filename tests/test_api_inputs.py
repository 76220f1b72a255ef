"""What the public search API takes: photos as a path, bytes, a PIL image or an array (through the safe loader),
clear ConfigErrors for arguments of the wrong type, and one model shared by threads from its first query."""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import Elasticsearch
from PIL import Image

import toolkit
from toolkit.errors import ConfigError, ToolkitError
from toolkit.image.loading import DEFAULT_MAX_PIXELS, ImageRejected, load_image, load_photo
from toolkit.model import SearchModel
from toolkit.search.dispatch import SearchOptions, search_photo, search_text
from toolkit.search.engine import Searcher
from toolkit.search.queries import Filters

QUERY = "玉ねぎを薄切りにします。"


@pytest.fixture(scope="module")
def searcher(es: Elasticsearch, built_model: Path, search_alias: str) -> Searcher:
    return Searcher(es, SearchModel.load(built_model), search_alias)


def _photo_step(root: Path) -> tuple[str, Path]:
    """(step id, photo path) of the first step with a photo."""
    from toolkit.data.step_ids import format_step_id

    for line in (root / "recipes.jsonl").read_text(encoding="utf-8").splitlines():
        recipe = json.loads(line)
        for step in recipe["steps"]:
            if step.get("image"):
                return format_step_id(recipe["recipe_id"], step["position"]), root / step["image"]
    raise AssertionError("no photo in the sample")


def _ranked(result: toolkit.SearchResult) -> list[tuple[str, float]]:
    return [(h.step_id, round(h.score, 5)) for h in result.hits]


# --- one model, many threads -------------------------------------------------------------------------------
def test_concurrent_first_queries_build_each_part_once(
    es: Elasticsearch,
    built_model: Path,
    search_alias: str,
    sample_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Photo and text queries race on a fresh model: the encoder (random weights, drawn from torch's global
    generator) and the tokenizer are built once, and every query gets the right answer."""
    import toolkit.image.encoders as encoders
    import toolkit.text.tokenizer as tokenizer

    builds = {"encoder": 0, "tokenizer": 0}
    create_encoder, tokenizer_class = encoders.create_encoder, tokenizer.Tokenizer

    def counting_encoder(*args, **kwargs):
        builds["encoder"] += 1
        return create_encoder(*args, **kwargs)

    class CountingTokenizer(tokenizer_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            builds["tokenizer"] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(encoders, "create_encoder", counting_encoder)
    monkeypatch.setattr(tokenizer, "Tokenizer", CountingTokenizer)
    step_id, photo = _photo_step(sample_root)
    model = SearchModel.load(built_model)
    shared = Searcher(es, model, search_alias)
    start = threading.Barrier(8)

    def one(i: int) -> toolkit.SearchResult:
        start.wait()
        return search_photo(shared, photo, k=3) if i % 2 else search_text(shared, QUERY, k=3)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert builds == {"encoder": 1, "tokenizer": 1}
    photo_results, text_results = results[1::2], results[0::2]
    assert all(r.hits[0].step_id == step_id and r.hits[0].score > 0.99 for r in photo_results)
    assert len({tuple(_ranked(r)) for r in photo_results}) == 1
    assert len({tuple(_ranked(r)) for r in text_results}) == 1


def test_a_model_can_be_warmed_up_when_loaded(
    built_model: Path, es: Elasticsearch, search_alias: str, sample_root: Path
) -> None:
    model = SearchModel.load(built_model, warm=True)
    encoder = model._encoder
    assert encoder is not None and "tokenizer" in vars(model)  # built now, not by the first query
    step_id, photo = _photo_step(sample_root)
    assert search_photo(Searcher(es, model, search_alias), photo, k=1).hits[0].step_id == step_id
    assert model.encoder() is encoder and model.warm_up() is model


# --- photos as data ----------------------------------------------------------------------------------------
def test_a_48_megapixel_phone_photo_is_a_query_like_any_other(
    searcher: Searcher, sample_root: Path, tmp_path: Path
) -> None:
    """Refused as a decompression bomb before (the 40 MP limit on the full size); it now decodes at reduced
    size as the collection's photos do, and finds the photo it shows."""
    step_id, path = _photo_step(sample_root)
    big = tmp_path / "phone.jpg"
    load_image(path).resize((8000, 6000)).save(big, quality=85)
    for photo in (big, big.read_bytes()):
        assert search_photo(searcher, photo, k=3).hits[0].step_id == step_id


def test_a_photo_may_be_a_path_bytes_a_pil_image_or_an_array(searcher: Searcher, sample_root: Path) -> None:
    step_id, path = _photo_step(sample_root)
    expected = _ranked(search_photo(searcher, path, k=5))
    assert expected[0][0] == step_id
    data = path.read_bytes()
    image = Image.open(path)
    forms = {
        "str": str(path),
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "PIL image": image,
        "array": np.asarray(load_image(path)),
    }
    for name, photo in forms.items():
        assert _ranked(search_photo(searcher, photo, k=5)) == expected, name
        assert _ranked(toolkit.query(searcher, photo=photo, options=SearchOptions(k=5))) == expected, name
    assert image.mode == "RGB" and image.size == load_image(path).size  # the caller's image is unchanged
    grey = np.asarray(load_image(path).convert("L"))
    assert search_photo(searcher, grey, k=3).hits  # H x W: grey
    composed = toolkit.query(searcher, photo=data, plus=["炒める"], options=SearchOptions(k=5))
    assert _ranked(composed) == _ranked(
        toolkit.query(searcher, photo=path, plus=["炒める"], options=SearchOptions(k=5))
    )
    assert composed.mode == "composed"


@pytest.mark.parametrize(
    ("photo", "error", "message"),
    [
        (b"not a photo", ToolkitError, r"^query photo \(11 bytes\): not an image or unsupported format"),
        (b"", ToolkitError, r"^query photo \(0 bytes\): empty image data"),
        (
            np.zeros((1, DEFAULT_MAX_PIXELS + 1), np.uint8),
            ToolkitError,
            r"^query photo \(a 1x40000001 uint8 array\): decompression bomb",
        ),
        (
            np.zeros((8, 8, 3)),
            ConfigError,
            r"a photo array must be HxWx3 \(RGB\) or HxW \(grey\) uint8; got a float64 array of shape \(8, 8, 3\)",
        ),
        (np.zeros((8, 8, 4), np.uint8), ConfigError, r"got a uint8 array of shape \(8, 8, 4\)"),
        (
            123,
            ConfigError,
            r"^a photo must be a path, the bytes of an image file, a PIL.Image or an HxWx3 \(RGB\) or HxW \(grey\) "
            r"uint8 array; got int 123$",
        ),
        ([[0, 0, 0]], ConfigError, r"^a photo must be .*; got list \[\[0, 0, 0\]\]$"),
        (None, ConfigError, "search_photo needs a photo"),
    ],
    ids=["garbage", "empty", "bomb", "float", "rgba-array", "int", "list", "none"],
)
def test_bad_photos_are_named_errors_before_the_encoder_is_built(
    es: Elasticsearch, built_model: Path, search_alias: str, photo: object, error: type, message: str
) -> None:
    model = SearchModel.load(built_model)
    with pytest.raises(error, match=message):
        search_photo(Searcher(es, model, search_alias), photo)  # type: ignore[arg-type]
    assert model._encoder is None


def test_photo_data_goes_through_the_file_policy(tmp_path: Path) -> None:
    """EXIF orientation, transparency and the pixel limit apply to bytes, PIL images and arrays as to files."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(rotated, exif=exif.tobytes())
    from_file = load_image(rotated)
    assert from_file.size == (20, 30)
    for photo in (rotated.read_bytes(), Image.open(rotated), str(rotated)):
        out = load_photo(photo)
        assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(from_file))

    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    for photo in (rgba, buffer.getvalue()):
        assert np.asarray(load_photo(photo)).min() == 255
    assert rgba.mode == "RGBA"  # the caller's image is not converted in place

    array = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    before = array.copy()
    out = load_photo(array[:, ::-1])  # a strided view is fine
    assert np.array_equal(np.asarray(out), before[:, ::-1]) and np.array_equal(array, before)
    for photo in (array, Image.fromarray(array), buffer.getvalue()):
        with pytest.raises(ImageRejected, match="decompression bomb"):
            load_photo(photo, max_pixels=15)


def test_a_pil_image_of_any_mode_becomes_rgb_or_a_named_rejection() -> None:
    """Every mode PIL converts an RGB image to (premultiplied "La" raised a bare ValueError from search_photo)."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8))
    for mode in ("1", "L", "P", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "PA", "La", "RGBa"):
        out = load_photo(rgb.convert(mode))
        assert (out.mode, out.size) == ("RGB", (8, 6)), mode
    assert load_photo(Image.new("La", (2, 2))).getpixel((0, 0)) == (255, 255, 255)  # transparent: white


# --- arguments of the wrong type ---------------------------------------------------------------------------
def test_wrong_argument_types_are_config_errors(
    es: Elasticsearch, searcher: Searcher, built_model: Path
) -> None:
    cases = [
        (lambda: search_text(searcher, 123), r"^text must be a str, got int 123$"),  # type: ignore[arg-type]
        (lambda: search_text(searcher, QUERY.encode()), r"got bytes: decode it first"),  # type: ignore[arg-type]
        (lambda: search_text(searcher, QUERY, k="5"), r"^k must be a whole number >= 1, got str '5'$"),  # type: ignore[arg-type]
        (lambda: search_text(searcher, QUERY, k=2.5), r"^k must be a whole number >= 1, got float 2.5$"),  # type: ignore[arg-type]
        (lambda: search_text(searcher, QUERY, mode="bm25"), r"^unknown search mode 'bm25'"),
        (
            lambda: search_text(searcher, QUERY, filters={"tags": ["main:玉ねぎ"]}),  # type: ignore[arg-type]
            r"^filters must be a toolkit.Filters \(e.g. Filters\(\*\*filters\) for a dict\), got dict",
        ),
        (lambda: search_photo(searcher, b"x", k=0), r"^k must be a whole number >= 1, got 0$"),
        (lambda: toolkit.query(searcher, 5), r"^text must be a str, got int 5$"),  # type: ignore[arg-type]
        (
            lambda: toolkit.query(searcher, QUERY, plus=5),
            r"^plus must be a str or a sequence of str, got int 5$",
        ),  # type: ignore[arg-type]
        (
            lambda: toolkit.query(searcher, QUERY, minus=[b"x"]),
            r"^every item of minus must be a str, got bytes",
        ),
        (lambda: toolkit.query(searcher, QUERY, options="knn"), r"^options must be a toolkit.SearchOptions"),  # type: ignore[arg-type]
        (lambda: search_text(None, QUERY), r"^searcher must be a toolkit.Searcher\(es, "),  # type: ignore[arg-type]
        (
            lambda: search_text(Searcher(es, "model", "recipes", check=False), QUERY),  # type: ignore[arg-type]
            r"^the searcher's model must be a toolkit.SearchModel \(SearchModel.load\(model_dir\)\), got str 'model'$",
        ),
        (
            lambda: search_text(Searcher(None, searcher.model, "recipes", check=False), QUERY),  # type: ignore[arg-type]
            r"^the searcher's es must be an Elasticsearch client \(toolkit.make_client\(\)\), got NoneType None$",
        ),
        (  # checked when made, before any request (it was an AttributeError inside __init__)
            lambda: Searcher(None, searcher.model, "recipes"),  # type: ignore[arg-type]
            r"^the searcher's es must be an Elasticsearch client",
        ),
        (lambda: Searcher(es, searcher.model, "  "), r"^the searcher's index must be an index or alias name"),
        (
            lambda: Searcher(es, searcher.model, "x", recheck_s=-1),
            r"^recheck_s must be a number of seconds >= 0",
        ),
        (lambda: SearchModel.load(5), r"^model_dir must be a path \(str or os.PathLike\), got int$"),  # type: ignore[arg-type]
        (
            lambda: SearchModel.load(built_model, device=0),
            r"^device must be a str \(auto, cpu, cuda or cuda:N\)",
        ),  # type: ignore[arg-type]
        (lambda: SearchModel.load(built_model, warm="yes"), r"^warm must be True or False"),  # type: ignore[arg-type]
    ]
    for call, message in cases:
        with pytest.raises(ConfigError, match=message):
            call()


def test_numpy_integers_count_and_one_string_is_one_item(searcher: Searcher) -> None:
    assert len(search_text(searcher, QUERY, k=np.int64(3)).hits) == 3
    one = toolkit.query(searcher, "玉ねぎ", plus="炒める", options=SearchOptions(k=5))
    assert _ranked(one) == _ranked(
        toolkit.query(searcher, "玉ねぎ", plus=("炒める",), options=SearchOptions(k=5))
    )
    first = search_text(searcher, QUERY, k=1).hits[0].step_id
    assert _ranked(toolkit.query(searcher, like=first)) == _ranked(toolkit.query(searcher, like=[first]))
    narrowed = search_text(searcher, QUERY, k=3, filters=Filters(ingredients=["玉ねぎ"]))
    assert narrowed.hits


def test_messages_make_sense_from_python_and_the_cli(searcher: Searcher, sample_root: Path) -> None:
    _, photo = _photo_step(sample_root)
    result = toolkit.query(searcher, photo=photo, options=SearchOptions(mode="keyword", k=3))
    assert any(n.startswith("mode 'keyword' (--mode) applies to a text alone") for n in result.notes)
    # --explain with a photo was ignored without a word; it is noted as --mode is
    explained = toolkit.query(searcher, photo=photo, options=SearchOptions(k=3, explain=True))
    assert explained.explanation is None
    assert any(n.startswith("explain (--explain) applies to a text alone") for n in explained.notes)
    assert not any("--explain" in n for n in toolkit.query(searcher, QUERY, options=SearchOptions(k=3)).notes)
    with pytest.raises(ToolkitError, match=r"the plus/minus texts \(--plus/--minus\) cancel its base out"):
        toolkit.query(searcher, "玉ねぎ", minus="玉ねぎ")
    with pytest.raises(
        ToolkitError, match=r"not both \(to compose the photo with texts, give them as plus/minus"
    ):
        toolkit.query(searcher, QUERY, photo=photo)
