"""``jrs grid``, ``jrs embedding-map`` and ``jrs report``: pictures of the search to look at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from toolkit.cli.common import emit, json_option, progress_enabled, quiet_option, user_errors
from toolkit.cli.options import (
    default_from,
    index_option,
    ingredient_option,
    model_option,
    refuse_without_index,
    writable_file,
)
from toolkit.search.modes import DEFAULT_K, TEXT_MODES, modes_help

dataset_option = click.option(
    "--dataset",
    "dataset_root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Dataset root holding the photos [default: the dataset the model was built on].",
)


def _grid_out(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """``jrs grid --out``: a suffix that names the image format, checked before any search."""
    from toolkit.viz.grid import GridFormatError, image_format

    try:
        image_format(value)
    except GridFormatError as e:
        raise click.BadParameter(str(e), ctx, param) from e
    return value


def _png_out(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """``--out`` of a picture only written as PNG: a ``.png`` path, never PNG bytes under another suffix."""
    if value.suffix.lower() != ".png":
        raise click.BadParameter(f"{value}: this picture is written as PNG; name it *.png", ctx, param)
    return value


def _out_option(check: Callable[[click.Context, click.Parameter, Path], Path], help_text: str) -> Callable:
    """The required ``--out`` / ``-o`` picture path, checked by ``check`` and :func:`writable_file` (a folder
    it can be written in) while the options are read."""
    return click.option(
        "--out",
        "-o",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        callback=lambda ctx, param, value: writable_file(ctx, param, check(ctx, param, value)),
        help=help_text,
    )


@click.command("grid")
@click.argument("text", required=False)
@model_option
@index_option
@dataset_option
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Query by photo.")
@default_from(
    "toolkit.search.dispatch:SearchOptions.mode", "--mode", type=click.Choice(TEXT_MODES), help=modes_help()
)
@click.option("-k", "k", type=int, default=DEFAULT_K, show_default=True, help="Photos in the grid.")
@default_from(
    "toolkit.viz.grid:GridLayout.columns", "--columns", type=click.IntRange(min=1), help="Photos per row."
)
@ingredient_option
@_out_option(_grid_out, "Picture to write; its suffix picks the format: .png, .jpg/.jpeg or .webp.")
@json_option
@user_errors
def grid_cmd(
    text: str | None,
    model_dir: Path,
    index: str,
    dataset_root: Path | None,
    image: Path | None,
    mode: str,
    k: int,
    columns: int,
    ingredients: tuple[str, ...],
    out: Path,
    as_json: bool,
) -> None:
    """Render the top-k photos for TEXT (or --image) as one picture with rank, score, title and step text."""
    from toolkit.es.client import make_client
    from toolkit.model import SearchModel
    from toolkit.search.dispatch import check_query_lengths, search_photo, search_text
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters
    from toolkit.viz.grid import GridLayout, write_grid
    from toolkit.viz.space import dataset_root_for

    if (text is None) == (image is None):
        raise click.UsageError("give a query TEXT or --image PATH (one of them)")
    if image is not None and mode != "knn":
        raise click.UsageError(f"--mode {mode} applies to a query TEXT alone: a photo query is a kNN search")
    check_query_lengths(text)  # as `jrs search`: before the model loads or the cluster is asked
    root = dataset_root_for(model_dir, dataset_root)
    filters = Filters(ingredients=ingredients)
    with Searcher(make_client(), SearchModel.load(model_dir), index) as searcher:
        if image is not None:
            result = search_photo(searcher, image, k, filters)
            query = f"写真: {image.name}"
        else:
            result = search_text(searcher, text, mode, k, filters)  # type: ignore[arg-type]
            query = text  # type: ignore[assignment]
    subtitle = f"mode {result.mode}, top {k}, index {index}"
    summary = write_grid(query, result.hits, root, out, subtitle, GridLayout(columns=columns))
    emit(summary, as_json, f"wrote {out} ({summary['width']}x{summary['height']}, {len(result.hits)} photos)")


@click.command("embedding-map")
@model_option
@dataset_option
@_out_option(_png_out, "PNG to write.")
@default_from(
    "toolkit.viz.embedding_map:MapOptions.color_by",
    "--color-by",
    help="Category: method (cooking method), main (main ingredient), ingredient, or tag:PREFIX.",
)
@default_from(
    "toolkit.viz.embedding_map:MapOptions.projection", "--projection", type=click.Choice(["tsne", "pca"])
)
@click.option("--query", "queries", multiple=True, help="Query text to mark on the map (repeatable).")
@default_from(
    "toolkit.viz.embedding_map:MapOptions.max_pairs",
    "--max-pairs",
    type=int,
    help="Text/photo pairs to draw.",
)
@default_from(
    "toolkit.viz.embedding_map:MapOptions.categories",
    "--categories",
    type=int,
    help="Most frequent categories kept.",
)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None, help="Only this split.")
@default_from("toolkit.viz.embedding_map:MapOptions.seed", "--seed", type=int)
@default_from(
    "toolkit.viz.embedding_map:MapOptions.threads",
    "--threads",
    type=int,
    help="Threads for the projection (0: all).",
)
@json_option
@quiet_option
@user_errors
def embedding_map_cmd(
    model_dir: Path,
    dataset_root: Path | None,
    out: Path,
    color_by: str,
    projection: str,
    queries: tuple[str, ...],
    max_pairs: int,
    categories: int,
    split: str | None,
    seed: int,
    threads: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Draw text and photo points of the shared space in 2-D, by modality and by category, queries marked."""
    from toolkit.errors import ToolkitError
    from toolkit.model import SearchModel
    from toolkit.viz.embedding_map import MapOptions, write_embedding_map
    from toolkit.viz.space import dataset_root_for

    if max_pairs < 2 or categories < 1 or threads < 0:
        raise ToolkitError(
            f"need --max-pairs >= 2, --categories >= 1 and --threads >= 0, got {max_pairs}, {categories}, {threads}"
        )
    opts = MapOptions(color_by, projection, max_pairs, categories, seed, split, threads or None)
    root = dataset_root_for(model_dir, dataset_root)
    summary = write_embedding_map(SearchModel.load(model_dir), out, root, queries, opts)
    cats = ", ".join(f"{c} {n}" for c, n in summary["categories"].items())
    emit(summary, as_json, f"wrote {out}: {summary['points']} points ({projection}); {color_by}: {cats}")


#: ``jrs report`` options that only apply to the sample queries searched with --index: (flag, parameter).
REPORT_SAMPLE_OPTIONS = (("--query", "queries"), ("--samples", "samples"), ("-k", "k"))


@click.command("report")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    callback=writable_file,
    help="HTML to write.",
)
@dataset_option
@click.option("--index", default=None, help="Alias or index: adds sample queries with their photo grids.")
@click.option(
    "--query",
    "queries",
    multiple=True,
    help="Sample query (repeatable; needs --index) [default: evaluation steps].",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Sample queries when none are given (needs --index).",
)
@click.option(
    "-k",
    "k",
    type=click.IntRange(1, 100),
    default=DEFAULT_K,
    show_default=True,
    help="Photos per sample grid (needs --index).",
)
@json_option
@quiet_option
@user_errors
@click.pass_context
def report_cmd(
    ctx: click.Context,
    model_dir: Path,
    out: Path,
    dataset_root: Path | None,
    index: str | None,
    queries: tuple[str, ...],
    samples: int,
    k: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write a self-contained HTML report of MODEL_DIR: metrics, recall@K curve, baselines, sample grids.

    --query, --samples and -k shape the sample grids, which need --index (they are searched there).
    """
    from toolkit.model import check_query_length, check_query_text, read_manifest
    from toolkit.viz.report import write_report

    if not index:
        refuse_without_index(
            ctx,
            REPORT_SAMPLE_OPTIONS,
            ("shapes", "shape"),
            "the sample queries, which are searched in an index",
        )
    for q in queries:
        check_query_text(q)
        check_query_length(q, f"the --query text {q[:40]!r}{'...' if len(q) > 40 else ''}")
    read_manifest(model_dir)  # a damaged model directory is an error, not a note in the page
    searcher = None
    if index:
        from toolkit.es.client import make_client
        from toolkit.model import SearchModel
        from toolkit.search.engine import Searcher

        searcher = Searcher(make_client(), SearchModel.load(model_dir), index)
    try:
        summary = write_report(
            model_dir,
            out,
            searcher,
            dataset_root=dataset_root,
            queries=queries,
            sample_count=samples,
            k=k,
            progress=progress_enabled(quiet),
        )
    finally:
        if searcher is not None:
            searcher.close()
    emit(
        summary, as_json, f"wrote {out} ({summary['bytes']} bytes, {len(summary['samples'])} sample queries)"
    )


commands = [grid_cmd, embedding_map_cmd, report_cmd]
