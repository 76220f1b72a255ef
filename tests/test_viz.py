"""Pictures on the sample data: result grid, embedding map and HTML report, through the CLI on a real node."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from toolkit.cli.main import cli
from toolkit.errors import ModelDirError, ToolkitError
from toolkit.model import SearchModel
from toolkit.search.engine import Hit, Searcher
from toolkit.search.queries import Filters, KnnParams
from toolkit.viz import grid as grid_mod
from toolkit.viz.fonts import japanese_font_path, pil_font
from toolkit.viz.report import recall_curve, write_report

QUERY = "玉ねぎを薄切りにします。"


@pytest.fixture(scope="module")
def env(es_settings) -> dict[str, str]:
    return {"ES_URL": es_settings.url}


def _png(data: bytes) -> Image.Image:
    Image.open(io.BytesIO(data)).verify()  # raises on a broken file
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return img.convert("RGB")


def test_japanese_font_comes_from_the_package_and_has_kanji() -> None:
    path = japanese_font_path()
    assert "matplotlib_fontja" in path.parts and path.stat().st_size > 1_000_000
    font = pil_font(32)
    masks = {ch: bytes(font.getmask(ch)) for ch in "玉炒切あ"}
    assert all(any(m) for m in masks.values())  # every glyph draws ink
    assert len(set(masks.values())) == 4  # and they differ: no shared "missing glyph" box


def test_wrap_text_fits_the_width_and_marks_cut_text() -> None:
    font = pil_font(15)
    text = "玉ねぎを飴色になるまで中火でじっくり炒めます。" * 3
    lines = grid_mod.wrap_text(text, font, 120, 2)
    assert len(lines) == 2 and lines[-1].endswith("…")
    assert all(font.getlength(line) <= 120 for line in lines)
    short = grid_mod.wrap_text("塩をふる", font, 120, 2)
    assert short == ["塩をふる"]


def test_wrap_text_breaks_at_spaces_and_japanese_anywhere() -> None:
    """Words were split mid-word ("gol" / "den") where a space offered a break; Japanese, which has no spaces,
    still fills each line, and no line starts with closing punctuation."""
    font = pil_font(15)
    text = "Slice the onions thinly and fry them until golden brown, stirring now and then."
    lines = grid_mod.wrap_text(text, font, 120, 10)
    assert " ".join(lines) == text and len(lines) > 3
    assert all(font.getlength(line) <= 120 for line in lines)
    ids = grid_mod.wrap_text("recipe_000123_step_4_of_the_long_name", font, 120, 10)
    assert "".join(ids) == "recipe_000123_step_4_of_the_long_name" and all(x.endswith("_") for x in ids[:-1])
    japanese = "玉ねぎを飴色になるまで中火でじっくり炒めます。塩、こしょうで味を調えます。"
    lines = grid_mod.wrap_text(japanese, font, 120, 10)
    assert "".join(lines) == japanese and all(font.getlength(line) <= 120 for line in lines)
    assert all(font.getlength(line) > 120 - 2 * 15 for line in lines[:-1])  # full, but for one kept with "、"
    assert not any(line[0] in "、。" for line in lines)
    wide = grid_mod.wrap_text("a " + "x" * 60, font, 120, 3)  # a word wider than a line is cut
    assert wide[0] == "a" and wide[-1].endswith("…") and all(font.getlength(x) <= 120 for x in wide)


def test_grid_captions_stay_in_their_cells(tmp_path: Path) -> None:
    """A long recipe id was drawn across the gap into the next cell: every caption line now fits its cell
    (cut with an ellipsis, the step number kept), and nothing is drawn between or beside the cells."""
    long_id = "r" + "0123456789" * 8
    hits = [
        Hit(
            0.9,
            f"{long_id}:12",
            long_id,
            "とても長いタイトルのレシピ" * 4,
            12,
            "Slice the onions thinly " * 5,
            None,
        ),
        Hit(0.8, "r2:1", "r2", "短い", 1, "塩をふる", None),
        Hit(0.7, f"{long_id}:3", long_id, "Title", 3, "玉ねぎを飴色になるまで炒めます。" * 5, None),
    ]
    lay = grid_mod.GridLayout(columns=3)
    image, summary = grid_mod.render_grid("テスト", hits, tmp_path, layout=lay)
    boxes = [c["box"] for c in summary["cells"]]
    top = boxes[0][1]
    pixels = np.asarray(image.crop((0, top, image.width, image.height)))
    edges = [0, *(x for box in boxes for x in (box[0], box[2])), image.width]
    for left, right in zip(edges[::2], edges[1::2], strict=True):  # the gaps between and beside the cells
        gap = pixels[:, left + 2 : right - 2]  # a glyph's anti-aliased edge may touch the gap's first pixel
        assert (gap == grid_mod.BACKGROUND).all(), (left, right)
    body, small = pil_font(lay.body_size), pil_font(max(10, lay.body_size - 2))
    first = summary["cells"][0]["caption"]
    assert first[2].endswith("… (step 12)") and first[2].startswith("r0123") and first[1].endswith("…")
    for cell in summary["cells"]:
        _, title, step_id, *text = cell["caption"]
        assert small.getlength(step_id) <= lay.photo_w
        assert all(body.getlength(x) <= lay.photo_w for x in [title, *text])


def test_grid_command_draws_the_searched_photos_in_rank_order(
    tmp_path: Path, es, built_model: Path, search_alias: str, sample_root: Path, env
) -> None:
    out = tmp_path / "grid.png"
    args = [
        "grid",
        QUERY,
        "--model",
        str(built_model),
        "--index",
        search_alias,
        "--dataset",
        str(sample_root),
    ]
    res = CliRunner().invoke(cli, [*args, "-k", "6", "--columns", "3", "--out", str(out), "--json"], env=env)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    searcher = Searcher(es, SearchModel.load(built_model), search_alias)
    expected = searcher.knn(searcher.text_vector(QUERY), KnnParams(6, 100), Filters()).hits
    assert [c["step_id"] for c in summary["cells"]] == [h.step_id for h in expected]
    img = _png(out.read_bytes())
    lay = grid_mod.GridLayout(columns=3)
    assert img.size == (summary["width"], summary["height"]) and img.width == 3 * lay.photo_w + 4 * lay.pad
    assert summary["height"] >= 2 * lay.cell_h  # two rows of three
    header = np.asarray(img.crop((0, 0, img.width, lay.pad + lay.title_size)))
    assert (header.min(axis=2) < 80).sum() > 200  # the query text is drawn
    for cell in summary["cells"]:
        assert cell["photo"] == "ok"
        x0, y0, x1, y1 = cell["box"]
        tile = np.asarray(img.crop((x0 + 90, y0 + 60, x1 - 90, y1 - 60)), dtype=float)  # centre of the photo
        src = Image.open(sample_root / cell["image_path"]).convert("RGB")
        w, h = src.size
        centre = np.asarray(src.crop((int(w * 0.375), int(h * 0.333), int(w * 0.625), int(h * 0.667))), float)
        assert np.abs(tile.mean(axis=(0, 1)) - centre.mean(axis=(0, 1))).max() < 25, cell
    # query by photo: that photo's own step comes first
    photo = summary["cells"][2]["image_path"]
    by_photo = [
        "grid",
        "--image",
        str(sample_root / photo),
        *args[2:],
        "-k",
        "3",
        "--out",
        str(out),
        "--json",
    ]
    res = CliRunner().invoke(cli, by_photo, env=env)
    assert res.exit_code == 0, res.output
    cells = json.loads(res.stdout)["cells"]
    assert len(cells) == 3 and cells[0]["image_path"] == photo and cells[0]["score"] > 0.99


def test_grid_shows_unsafe_or_missing_photos_as_placeholders(tmp_path: Path, sample_root: Path) -> None:
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(outside)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link.jpg").symlink_to(outside)
    paths = ["../outside.jpg", str(outside), "link.jpg", "missing.jpg", None]
    hits = [Hit(1.0 - i / 10, f"r{i}:1", f"r{i}", "タイトル", 1, "手順の文", p) for i, p in enumerate(paths)]
    image, summary = grid_mod.render_grid("テスト", hits, tmp_path / "root")
    assert [c["photo"] != "ok" for c in summary["cells"]] == [True] * 5
    for cell in summary["cells"]:
        x0, y0, x1, y1 = cell["box"]
        tile = np.asarray(image.crop((x0 + 100, y0 + 60, x1 - 20, y1 - 20)))
        assert (tile == grid_mod.NO_PHOTO).all()  # grey, never the red photo outside the root


def _grid_args(built_model: Path, search_alias: str, sample_root: Path, out: Path, *extra: str) -> list[str]:
    model = ["--model", str(built_model), "--index", search_alias, "--dataset", str(sample_root)]
    return ["grid", QUERY, *model, *extra, "--out", str(out), "--json"]


@pytest.mark.parametrize(
    ("name", "expected"), [("g.jpg", "JPEG"), ("g.JPEG", "JPEG"), ("g.webp", "WEBP"), ("g.png", "PNG")]
)
def test_grid_writes_the_format_its_suffix_names(
    tmp_path: Path, built_model: Path, search_alias: str, sample_root: Path, env, name: str, expected: str
) -> None:
    if expected not in {grid_mod.SUFFIX_FORMATS[s] for s in grid_mod.supported_suffixes()}:
        pytest.skip(f"this Pillow cannot write {expected}")
    out = tmp_path / name
    args = _grid_args(built_model, search_alias, sample_root, out, "-k", "2")
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    Image.open(out).verify()  # raises on a broken file
    with Image.open(out) as img:
        assert img.format == expected == summary["format"]
        assert img.size == (summary["width"], summary["height"]) and len(summary["cells"]) == 2
    assert summary["bytes"] == out.stat().st_size


def test_grid_and_map_refuse_an_unknown_suffix_before_any_work(
    tmp_path: Path, built_model: Path, search_alias: str, sample_root: Path
) -> None:
    nowhere = {"ES_URL": "http://127.0.0.1:9"}  # a search would fail with exit 3, not 2
    for out in (tmp_path / "grid.gif", tmp_path / "grid"):
        res = CliRunner().invoke(cli, _grid_args(built_model, search_alias, sample_root, out), env=nowhere)
        assert res.exit_code == 2, res.output
        assert "--out" in res.output and str(out) in res.output
        assert all(suffix in res.output for suffix in grid_mod.supported_suffixes())
        assert not out.exists()
    photo = next(sample_root.rglob("*.jpg"))
    for extra, said in (
        (["--columns", "0"], "--columns"),
        (["--image", str(photo), "--mode", "keyword"], "kNN"),
    ):
        args = [
            a for a in _grid_args(built_model, search_alias, sample_root, tmp_path / "g.png") if a != QUERY
        ]
        res = CliRunner().invoke(
            cli, [*args, *extra], env=nowhere
        )  # refused, where it was ignored or a late error
        assert res.exit_code == 2 and said in res.output, res.output
    with pytest.raises(grid_mod.GridFormatError, match="grid.bmp"):
        grid_mod.write_grid("テスト", [], sample_root, tmp_path / "grid.bmp")
    out = tmp_path / "map.jpg"  # the embedding map is drawn as PNG only
    args = ["embedding-map", "--model", str(built_model), "--dataset", str(sample_root), "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and str(out) in res.output and ".png" in res.output
    assert not out.exists()


def _ink_columns(img: Image.Image, top: int, bottom: int) -> np.ndarray:
    """Indexes of the pixel columns with any non-background pixel between rows ``top`` and ``bottom``."""
    band = np.asarray(img.convert("RGB").crop((0, top, img.width, bottom)))
    return np.flatnonzero((band != grid_mod.BACKGROUND).any(axis=(0, 2)))


def test_a_grid_without_hits_shows_its_whole_header_and_says_so(
    tmp_path: Path, built_model: Path, search_alias: str, sample_root: Path, env
) -> None:
    out = tmp_path / "none.png"
    args = _grid_args(built_model, search_alias, sample_root, out, "--ingredient", "存在しない食材")
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["cells"] == []
    subtitle = next(line for line in summary["header"] if search_alias in line)  # "mode knn, top 10, index …"
    lay = grid_mod.GridLayout()
    img = Image.open(out)
    assert img.width == summary["width"] >= pil_font(lay.body_size).getlength(subtitle) + 2 * lay.pad
    assert summary["header"][-1] == grid_mod.NO_HITS
    assert pil_font(lay.title_size).getlength(grid_mod.NO_HITS) + 2 * lay.pad <= img.width
    ink = _ink_columns(img, 0, img.height)
    assert ink.size and ink.max() < img.width - lay.pad // 2  # nothing runs into the right edge
    # a grid narrower than its header (one column) wraps the text instead: every line fits, none is lost
    narrow = grid_mod.GridLayout(columns=1)
    image, small = grid_mod.render_grid(QUERY, [], sample_root, subtitle, narrow)
    body = pil_font(narrow.body_size)
    lines = grid_mod.wrap_text(subtitle, body, image.width - 2 * narrow.pad, grid_mod.HEADER_LINES)
    unspaced = lambda text: text.replace(" ", "")  # noqa: E731 - a line broken at a space drops it
    assert unspaced("".join(lines)) == unspaced(subtitle) and len(lines) > 1
    drawn = small["header"]
    assert any(drawn[i : i + len(lines)] == lines for i in range(len(drawn)))
    note = "".join(drawn[drawn.index(lines[-1]) + 1 :])  # the note, wrapped, after it
    assert unspaced(note) == unspaced(grid_mod.NO_HITS)
    assert _ink_columns(image, 0, image.height).max() < image.width - narrow.pad // 2


def test_embedding_map_colours_points_by_category_and_marks_queries(
    tmp_path: Path, built_model: Path, sample_root: Path
) -> None:
    out = tmp_path / "map.png"
    args = ["embedding-map", "--model", str(built_model), "--dataset", str(sample_root), "--out", str(out)]
    args += ["--max-pairs", "60", "--categories", "4", "--query", QUERY, "--query", "鶏肉を揚げます。"]
    res = CliRunner().invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["pairs"] == 60 and summary["points"] == 122 and summary["font"] == "IPAexGothic"
    assert sum(summary["categories"].values()) == 60 and 2 <= len(summary["categories"]) <= 5
    img = np.asarray(_png(out.read_bytes()))
    assert img.shape[:2] == (700, 1400)
    from toolkit.viz.embedding_map import IMAGE_COLOUR, QUERY_COLOUR, TEXT_COLOUR

    def pixels(rgb) -> int:
        return int((img == np.array(rgb, dtype=np.uint8)).all(axis=2).sum())

    for rgb in [TEXT_COLOUR, IMAGE_COLOUR, QUERY_COLOUR, *summary["colours"].values()]:
        assert pixels(rgb) > 5, rgb  # every modality, category and the query stars are drawn
    assert [q["text"] for q in summary["queries"]] == [QUERY, "鶏肉を揚げます。"]


def test_embedding_map_by_recipe_tag_and_bad_category(
    tmp_path: Path, built_model: Path, sample_root: Path
) -> None:
    base = [
        "embedding-map",
        "--model",
        str(built_model),
        "--dataset",
        str(sample_root),
        "--projection",
        "pca",
    ]
    res = CliRunner().invoke(
        cli, [*base, "--color-by", "tag:main", "--out", str(tmp_path / "m.png"), "--json"]
    )
    assert res.exit_code == 0, res.output
    from toolkit.viz.space import step_texts

    mains = {
        t.split(":", 1)[1]
        for s in step_texts(sample_root).values()
        for t in s["tags"]
        if t.startswith("main:")
    }
    assert set(json.loads(res.stdout)["categories"]) - {"その他"} <= mains
    res = CliRunner().invoke(cli, [*base, "--color-by", "colour", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "unknown category 'colour'" in res.output
    assert not (tmp_path / "x.png").exists()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def _images(page: _Page) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for tag, attrs in page.tags:
        if tag == "img":
            src = attrs["src"]
            assert src.startswith("data:image/png;base64,"), src[:40]
            out.setdefault(attrs.get("id") or attrs.get("class", ""), []).append(base64.b64decode(src[22:]))
    return out


def test_report_command_writes_a_self_contained_page(
    tmp_path: Path, built_model: Path, search_alias: str, sample_root: Path, env
) -> None:
    out = tmp_path / "report.html"
    args = [
        "report",
        str(built_model),
        "--out",
        str(out),
        "--index",
        search_alias,
        "--dataset",
        str(sample_root),
    ]
    res = CliRunner().invoke(cli, [*args, "--samples", "2", "-k", "4", "--json"], env=env)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    text, page = _parse(out)
    assert 50_000 < out.stat().st_size < 20_000_000
    # self-contained: nothing is fetched from elsewhere
    assert not [
        t
        for t, a in page.tags
        if t in ("script", "link", "iframe") or (t == "img" and "http" in a["src"][:8])
    ]
    assert "url(http" not in text and "@font-face" in text
    evaluation = json.loads((built_model / "evaluation.json").read_text())
    rows = {(r[0], r[1]): r for r in page.rows[1:]}
    header = page.rows[0]
    for name in ("model_pooled", "model_full", "random_towers"):
        for direction in ("text_to_image", "image_to_text"):
            row = rows[(name, direction.replace("_to_", " → "))]
            r10 = row[header.index("R@10 %")].split("±")[0].strip()
            assert r10 == f"{100 * evaluation[name][direction]['R@10']:.1f}"
            assert row[header.index("MedR")] == f"{evaluation[name][direction]['MedR']:.1f}"
    assert ("chance", "text → image") in rows
    images = _images(page)
    curve = _png(images["recall-curve"][0])
    assert curve.width >= 600 and curve.height >= 400
    assert len(images["grid"]) == 2 == len(summary["samples"])
    for data, sample in zip(images["grid"], summary["samples"], strict=True):
        assert _png(data).width > 400 and len(sample["hits"]) == 4
        assert f"「<bdi>{sample['query']}</bdi>」" in text
    assert summary["curve_points"] == evaluation["pairs"]["test"]


def test_write_report_takes_plain_metrics_without_a_searcher(tmp_path: Path, built_model: Path) -> None:
    metrics = {
        "split": "test",
        "keyword": {
            "pool": 50,
            "text_to_image": {"R@1": 0.25, "R@5": 0.5, "R@10": 0.75, "MedR": 5.0, "MRR": 0.4},
        },
        "baselines": {
            "bm25": {"R@1": 0.125, "R@10": 0.5, "pool": 50},
            "note": "grouped results are found too",
        },
    }
    through = {
        "index": "recipes",
        "k": 10,
        "hnsw_recall@10": 0.95,
        "modes": {"knn": {"R@1": 0.5, "MRR@10": 0.6, "n": 4}},
    }
    # the shape `jrs evaluate --json` prints
    summary = write_report(
        built_model, tmp_path / "r.html", None, evaluation={"in_memory": metrics, "through_index": through}
    )
    text, page = _parse(tmp_path / "r.html")
    assert summary["methods"] == ["keyword", "baselines.bm25", "chance"] and summary["samples"] == []
    assert summary["through_index_modes"] == ["knn"]
    header = page.rows[0]
    assert header == ["method", "direction", "pool", "R@1 %", "R@5 %", "R@10 %", "MedR", "MRR"]
    row = next(r for r in page.rows if r[0] == "keyword")
    assert row[1:8] == ["text → image", "50", "25.0", "50.0", "75.0", "5.0", "0.400"]
    bm25 = next(r for r in page.rows if r[0] == "baselines.bm25")
    assert bm25[2:6] == ["50", "12.5", "–", "50.0"]  # a flat result; R@5 unknown
    chance = next(r for r in page.rows if r[0] == "chance")
    assert chance[3] == f"{100 / 50:.1f}"  # R@1 of a random ranking over the same pool
    knn = next(r for r in page.rows if r[0] == "knn")
    assert knn[3:] == ["50.0", "0.600"] and "hnsw_recall@10: 0.950" in text
    assert "grid" not in _images(page) and "recall-curve" in _images(page)
    with pytest.raises(ModelDirError, match="evaluation.json"):
        write_report(tmp_path, tmp_path / "x.html")


def test_a_figure_that_is_not_a_number_shows_as_missing() -> None:
    """NaN (a metric over no query, a std of one draw) was written as "nan" where a missing figure shows "–"."""
    from toolkit.viz.report import graded_section, metrics_table_html, through_index_section

    nan = float("nan")
    table = metrics_table_html(
        {
            "model": {
                "pool": 9,
                "text_to_image": {"R@1": nan, "R@10": 0.5, "MedR": nan, "MRR": nan},
                "std": {"text_to_image": {"R@1": nan, "R@10": nan}},
            },
            "flat": {"R@1": float("inf"), "R@10": 0.25},
        }
    )
    graded = "".join(graded_section({"model": {"k": 10, "main": nan, "method": 0.5, "both": nan}}, "G", "g"))
    through = "".join(
        through_index_section({"index": "i", "hnsw_recall@10": nan, "modes": {"knn": {"R@1": nan}}})
    )
    for page in (table, graded, through):
        assert "nan" not in page.lower() and "inf" not in page.lower(), page
    cells = re.findall(r'<td class="num"[^>]*>([^<]*)', table)
    assert cells == ["9", "–", "50.0", "–", "–", "", "–", "25.0", "–", "–"], cells
    assert "<small>" not in table  # no "± nan"
    assert graded.count(">–<") == 2 and ">50.0<" in graded
    assert "hnsw_recall@10: –" in through
    # numpy scalars are figures too (np.float32 is not a float): they were shown as missing
    import numpy as np

    cells = re.findall(r'<td class="num"[^>]*>([^<]*)', metrics_table_html({"m": {"R@10": np.float32(0.5)}}))
    assert cells == ["", "50.0"], cells  # no pool; R@10


def test_recall_curve_from_ranks() -> None:
    curve = recall_curve({"t": np.array([1, 3, 3, 4])}, 4)
    assert curve["t"] == [0.25, 0.25, 0.75, 1.0]


def test_report_refuses_sample_options_without_an_index(tmp_path: Path, built_model: Path) -> None:
    """``--query`` without ``--index`` was silently ignored (0 sample queries)."""
    out = tmp_path / "r.html"
    for extra, named in (
        (["--query", "x"], "--query shapes"),
        (["--samples", "2"], "--samples shapes"),
        (["-k", "4", "--query", "x"], "--query, -k shape"),
    ):
        res = CliRunner().invoke(cli, ["report", str(built_model), "--out", str(out), *extra])
        assert res.exit_code == 2, res.output
        assert f"Error: {named} the sample queries, which are searched in an index: add --index ALIAS" in (
            res.stderr
        )
        assert not out.exists()


def test_report_refuses_a_query_that_is_not_utf8(
    tmp_path: Path, built_model: Path, search_alias: str, env
) -> None:
    """``--query $'\\xff'`` (a surrogate-escaped byte in argv) was a UnicodeEncodeError traceback."""
    out = tmp_path / "r.html"
    for query, why in (("\udcff", "is not valid Unicode"), ("  ", "is empty")):
        args = ["report", str(built_model), "--out", str(out), "--index", search_alias, "--query", query]
        res = CliRunner().invoke(cli, args, env=env)
        assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
        (line,) = res.stderr.splitlines()
        assert line.startswith("Error: the query ") and why in line, line
        assert not out.exists()


def test_report_refuses_a_sample_query_over_the_length_limit(
    tmp_path: Path, built_model: Path, search_alias: str, env
) -> None:
    """A typed ``--query`` went to the step-text search, which the query length limit does not bind: a
    12,000-character query reached Elasticsearch. It is refused before any work, as `jrs search` does."""
    from toolkit.model import MAX_QUERY_CHARS

    out, long = tmp_path / "r.html", "玉ねぎを炒める。" * (MAX_QUERY_CHARS // 8 + 1)
    args = ["report", str(built_model), "--out", str(out), "--index", search_alias, "--query", long]
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 2, res.output
    assert f"over the limit of {MAX_QUERY_CHARS}" in res.stderr and "the --query text" in res.stderr
    assert not out.exists()
    with pytest.raises(ToolkitError, match=f"the sample query .* over the limit of {MAX_QUERY_CHARS}"):
        write_report(built_model, out, None, queries=[long])


def test_write_report_length_check_passes_a_query_that_is_not_a_str(
    tmp_path: Path, built_model: Path
) -> None:
    """The length check of the sample queries sliced and stripped every one: a query that is not a str crashed
    it (TypeError: 'int' object is not subscriptable) before any work, where it used to be what the search said
    of it (a grid's error); with no searcher nothing is searched, and the report is written as before."""
    out = tmp_path / "r.html"
    assert write_report(built_model, out, None, queries=[123])["path"] == str(out)  # type: ignore[list-item]
    assert out.exists()


def test_write_report_refuses_an_evaluation_that_is_not_a_dict(tmp_path: Path, built_model: Path) -> None:
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="the evaluation to report is a list, not a dict of results"):
        write_report(built_model, tmp_path / "r.html", evaluation=[])  # type: ignore[arg-type]
