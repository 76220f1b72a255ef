"""Messy input through ``jrs index`` with a real model and a real node: every bad record is named in the
rejects file with its reason, every valid record is indexed, and read = indexed + rejected + skipped."""

from __future__ import annotations

import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from PIL import Image

from toolkit.cli.main import cli
from toolkit.es.config import EsSettings
from toolkit.rejects import read_rejects

FIXTURE = Path(__file__).parent / "fixtures" / "bad_input"

#: (record, stage, fragment of the reason): records lost (stages read / validate).
LOST = [
    ("recipes.jsonl:line 2", "read", "malformed JSON"),
    ("recipes.jsonl:line 3", "validate", "field title: missing"),
    ("recipes.jsonl:line 4", "validate", "field recipe_id: must be a string"),
    ("recipes.jsonl:line 5", "validate", "field steps: must be a list"),
    ("pos-dup:2", "validate", "duplicate position 2"),
    ("pos-dup:2", "validate", "duplicate position 2"),
    ("pos-dup:steps[3]", "validate", "position: must be a positive integer"),
    ("pos-dup:4", "validate", "text: missing"),
    ("pos-dup:5", "validate", "text: must be a string"),
    ("pos-dup:6", "validate", "image: must be a string or null"),
    ("huge:1", "validate", "over the limit of 20000"),
    ("recipes.jsonl:line 11", "read", "not valid UTF-8"),
    ("recipes.jsonl:line 13", "validate", "duplicate recipe_id 'ok-01'"),
    ("odd-uni:1", "validate", "text: is not valid Unicode: an unpaired surrogate '\\ud800' at character 5"),
    ("odd-uni:steps[2]", "validate", "position: must be at most 2147483647"),
    ("recipes.jsonl:line 15", "validate", "field recipe_id: is not valid Unicode"),
    # a key given twice in one object (JSON would keep the last silently): the object it is in is dropped
    ("recipes.jsonl:line 16", "validate", "recipe dup-steps: field steps: key given 2 times"),
    ("dup-text:1", "validate", "field steps[0].text: key given 2 times"),
]
#: Ingredients and tags dropped from a recipe whose steps are still indexed: named, but no step is lost.
PARTS = [("dup-text:ingredients[0]", "validate", "field ingredients[0].name: key given 2 times")]
#: Notes on steps that are still indexed: the photo was not used, or the text has no vector.
NOTES = [
    ("img-bad:1", "image", "image file not found"),
    ("img-bad:2", "image", "truncated image file"),
    ("img-bad:3", "image", "photo not used: not an image"),  # header garbled: not identifiable
    ("img-bad:4", "image", "empty file (0 bytes)"),
    ("img-bad:5", "image", "decompression bomb"),
    ("paths:1", "image", "escapes the dataset root"),
    ("paths:2", "image", "must be relative to the dataset root"),
    ("paths:3", "image", "resolves outside the dataset root"),
    ("odd-uni:2", "image", "image: is not valid Unicode"),
    ("odd-text:1", "text", "no word of the text is in the model's vocabulary"),
    ("odd-text:2", "text", "no word of the text is in the model's vocabulary"),
    ("odd-text:3", "text", "no word of the text is in the model's vocabulary"),
]
WITH_PHOTO = [
    "ok-01:1",
    "ok-01:2",
    "ok-01:3",
    "img-odd:1",
    "img-odd:2",
    "img-odd:3",
    "img-odd:4",
    "img-odd:5",
]
WITH_PHOTO += ["paths:4"]
TEXT_ONLY = [
    "pos-dup:1",
    "huge:2",
    "odd-uni:2",
    "odd-text:1",
    "odd-text:2",
    "odd-text:3",
    "paths:1",
    "paths:2",
    "paths:3",
]
TEXT_ONLY += [f"img-bad:{i}" for i in range(1, 6)]
TEXT_ONLY += ["dup-text:2"]  # its step 1 and ingredient 1 repeat a key; an unknown key given twice is ignored


def _png_header_only(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _photos(root: Path, outside: Path) -> None:
    """Valid photos, odd-but-valid formats, broken files and symlinks, written at run time."""
    rng = np.random.default_rng(0)
    images = root / "images"
    for sub in ("ok-01", "odd", "bad"):
        (images / sub).mkdir(parents=True)
    for i in (1, 2, 3):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"ok-01/{i}.jpg")
    odd = images / "odd"
    Image.new("CMYK", (64, 48), (0, 255, 0, 0)).save(odd / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65536, (48, 64))).astype(np.uint16)).save(odd / "deep16.png")
    pal = Image.new("P", (64, 64), 0)
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    pal.putpixel((5, 5), 1)
    pal.save(odd / "palette.png", transparency=0)
    Image.new("RGBA", (64, 64), (255, 0, 0, 100)).save(odd / "alpha.png")
    frames = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(odd / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    bad = images / "bad"
    good = (images / "ok-01/1.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(good[: len(good) * 2 // 5])
    (bad / "corrupt.jpg").write_bytes(good[:20] + rng.bytes(3000))
    (bad / "zero.jpg").write_bytes(b"")
    _png_header_only(bad / "bomb.png", 10_000, 10_000)  # 100 M pixels claimed by a 100-byte file
    outside.write_bytes(good)
    (images / "link_out.jpg").symlink_to(outside)
    (images / "link_in.jpg").symlink_to("ok-01/1.jpg")


@pytest.fixture
def messy_root(tmp_path: Path) -> Path:
    root = tmp_path / "messy"
    root.mkdir()
    raw = (FIXTURE / "recipes.jsonl").read_bytes()
    huge = "玉ねぎを弱火でじっくり炒めます。" * 4300  # ~200 KB of UTF-8, ~69 000 characters
    assert len(huge.encode()) > 200_000
    (root / "recipes.jsonl").write_bytes(raw.replace(b"@@HUGE_STEP@@", huge.encode()))
    _photos(root, tmp_path / "outside-secret.jpg")
    return root


def _ids_with(es: Elasticsearch, index: str, field: str) -> set[str]:
    hits = es.search(index=index, size=100, query={"exists": {"field": field}}, _source=False)["hits"]["hits"]
    return {h["_id"] for h in hits}


def _assert_rows(rows, expected) -> None:
    assert Counter((r.record, r.stage) for r in rows) == Counter((rec, st) for rec, st, _ in expected)
    for record, stage, fragment in expected:
        reasons = [r.reason for r in rows if (r.record, r.stage) == (record, stage)]
        assert any(fragment in reason for reason in reasons), (record, fragment, reasons)


def test_messy_corpus_through_jrs_index(
    es: Elasticsearch, es_settings: EsSettings, messy_root: Path, built_model: Path, index_name: str, tmp_path
) -> None:
    rejects_file = tmp_path / "rejects.jsonl"
    args = ["index", str(messy_root), str(built_model), "--alias", index_name]
    args += ["--rejects", str(rejects_file), "--json", "-q"]
    result = CliRunner().invoke(cli, args, env={"ES_URL": es_settings.url}, catch_exceptions=False)
    assert result.exit_code == 1, result.output  # 1: records were rejected
    out = json.loads(result.stdout)

    rows = list(read_rejects(rejects_file))
    _assert_rows([r for r in rows if r.stage in ("read", "validate")], LOST + PARTS)
    _assert_rows([r for r in rows if r.stage in ("image", "text")], NOTES)
    assert len(rows) == len(LOST) + len(PARTS) + len(NOTES)

    valid = set(WITH_PHOTO) | set(TEXT_ONLY)
    assert (out["read"], out["indexed"], out["rejected"], out["skipped"]) == (
        len(valid) + len(LOST),
        len(valid),
        len(LOST),
        0,
    )
    assert out["read"] == out["indexed"] + out["rejected"] + out["skipped"]
    assert out["photos_dropped"] == 9 and out["no_text_vector"] == 3 and out["count"] == len(valid)
    assert out["ingredients_or_tags_dropped"] == len(PARTS)

    es.indices.refresh(index=out["index"])
    hits = es.search(index=out["index"], size=100, query={"match_all": {}})["hits"]["hits"]
    docs = {h["_id"]: h["_source"] for h in hits}
    assert set(docs) == valid
    assert sorted(i for i, d in docs.items() if d["has_image"]) == sorted(WITH_PHOTO)
    assert all("image_path" not in docs[i] for i in TEXT_ONLY)
    # which documents carry a vector: asked with exists queries (9.x leaves vectors out of _source)
    assert _ids_with(es, out["index"], "image_vector") == set(WITH_PHOTO)
    assert valid - _ids_with(es, out["index"], "text_vector") == {"odd-text:1", "odd-text:2", "odd-text:3"}
    assert docs["paths:4"]["image_path"] == "images/link_in.jpg"  # a symlink inside the root is fine
    # nothing of the files outside the root reached the index
    assert not any("passwd" in json.dumps(d) or "outside-secret" in json.dumps(d) for d in docs.values())

    # the summary for people names what was noted, not only what was lost (a second load, new version)
    text_args = [
        "index",
        str(messy_root),
        str(built_model),
        "--alias",
        index_name,
        "--rejects",
        str(tmp_path / "r2"),
    ]
    text = CliRunner().invoke(
        cli, [*text_args, "-q"], env={"ES_URL": es_settings.url}, catch_exceptions=False
    )
    assert text.exit_code == 1 and f"rejected {len(LOST)}" in text.stdout, text.output
    noted = (
        "noted: 9 photos not used (their steps indexed text-only), 3 steps without a text vector, 1 ingredients "
        f"or tags dropped (their steps indexed); reasons in {tmp_path / 'r2'}"
    )
    assert noted in text.stdout, text.stdout


def test_validate_names_the_same_records_without_a_cluster(messy_root: Path, tmp_path: Path) -> None:
    """``jrs validate`` (no model, no cluster) reports the lost records and unsafe/missing photos."""
    from toolkit.data.jsonl import validate_dataset

    report = validate_dataset(messy_root)
    lost = [r for r in report.rejects if r.stage in ("read", "validate")]
    _assert_rows(lost, LOST + PARTS)
    assert (report.missing_images, report.unsafe_paths) == (1, 3)
    # a text with no word at all (emoji) is named before any build; odd-text:1 (MeCab keeps an interjection)
    # and odd-text:2 (English) have words that only the model's vocabulary can judge
    assert [r.record for r in report.rejects if r.stage == "text"] == ["odd-text:3"]

    # --decode: the photos build and index will not use are named with the same reasons, before any build
    decoded = validate_dataset(messy_root, decode_images=True)
    photo_notes = [n for n in NOTES if n[1] == "image"]
    _assert_rows([r for r in decoded.rejects if r.stage == "image"], photo_notes)
    assert decoded.undecodable_images == 4 and decoded.steps_with_image == len(WITH_PHOTO)
    assert report.steps_with_image == len(WITH_PHOTO) + 4 and report.undecodable_images == 0
    out = CliRunner().invoke(cli, ["validate", str(messy_root), "--decode"])
    assert out.exit_code == 1 and "photos that do not decode: 4" in out.output
    both = CliRunner().invoke(cli, ["validate", str(messy_root), "--decode", "--no-images"])
    assert both.exit_code == 2 and "give one or the other" in both.output
    assert decoded.to_dict()["decoded"] is True and report.to_dict()["decoded"] is False
