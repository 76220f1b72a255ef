"""``jrs evaluate``: a model's held-out metrics next to its baselines, and the same queries through the index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from toolkit.cli.common import emit, json_option, progress_enabled, quiet_option, user_errors
from toolkit.cli.options import num_candidates_option, refuse_without_index, writable_file
from toolkit.evaluation.metrics import is_figure
from toolkit.search.modes import DEFAULT_K, TEXT_MODES

#: Rows of the in-memory table: (label, key in evaluation.json).
IN_MEMORY_ROWS = (
    ("model (1k pools)", "model_pooled"),
    ("model (whole split)", "model_full"),
    ("linear CCA (1k pools)", "cca_pooled"),
    ("linear CCA (whole split)", "cca_full"),
    ("linear ridge (1k pools)", "ridge_pooled"),
    ("linear ridge (whole split)", "ridge_full"),
    ("random towers", "random_towers"),
    ("keyword overlap", "keyword_overlap"),
    ("chance", "chance"),
)


def in_memory_table(evaluation: dict[str, Any]) -> str:
    """The build's evaluation (``evaluation.json``) as a table: the model next to its baselines."""
    from toolkit.evaluation.metrics import metrics_table

    rows = {
        label: evaluation[key]
        for label, key in IN_MEMORY_ROWS
        if isinstance(evaluation.get(key), dict) and "text_to_image" in evaluation[key]
    }
    pairs = evaluation.get("pairs", {})
    text = f"held-out {evaluation.get('split', 'test')} split, pairs {pairs}; R@K in %\n{metrics_table(rows)}"
    if evaluation.get("graded"):
        text += "\n\n" + graded_table(evaluation["graded"], "held-out split, whole-split ranking")
    return text


def graded_table(graded: dict[str, dict[str, Any]], where: str) -> str:
    """Graded precision@k rows (main ingredient / method / both, from recipe tags) per method, in %."""
    k = next((g.get("k") for g in graded.values() if g.get("k")), 10)
    lines = [f"graded precision@{k} ({where}; relevant: the hit's recipe shares the query's tag), %"]
    lines.append(f"{'method':<16} {'main':>6} {'method':>7} {'both':>6}")
    chance = next((g for name, g in graded.items() if name in ("chance", "exact_knn")), None)
    for name, g in graded.items():
        cells = [_percent(g.get(c)) for c in ("main", "method", "both")]
        lines.append(f"{name:<16} {cells[0]} {cells[1]:>7} {cells[2]}")
    if chance is not None and "main_chance" in chance:
        # a criterion no query has a label for has no chance either (None): a dash, like its rows
        cells = [_percent(chance.get(f"{c}_chance")) for c in ("main", "method", "both")]
        lines.append(f"{'chance':<16} {cells[0]} {cells[1]:>7} {cells[2]}")
    return "\n".join(lines)


def _percent(value: Any) -> str:
    return f"{100 * value:6.1f}" if is_figure(value) else "     -"


def _mode_cell(key: str, value: Any) -> str:
    """One cell of :func:`index_table`: R@K in percent, others to 3 places, "-" where there is no figure."""
    if not is_figure(value):
        return f"{'-':>7}"
    return f"{100 * value:6.1f}%" if key.startswith("R@") else f"{value:7.3f}"


def index_table(result: dict[str, Any]) -> str:
    """Per-mode figures of :func:`toolkit.evaluation.through_index.evaluate_through_index`."""
    k = result["k"]
    keys = [key for key in next(iter(result["modes"].values())) if key != "n"]
    skipped = [
        f"{len(result[key])} {what}"
        for key, what in (
            ("skipped_no_known_word", "with no known word"),
            ("skipped_photo_not_in_index", "whose photo is not in the index"),
        )
        if result.get(key)
    ]
    lines = [
        f"through index {result['index']}: {result['queries']} queries"
        + (f" ({', '.join(skipped)} left out)" if skipped else "")
        + f", gallery {result['gallery']} photos, k={k}, num_candidates={result['num_candidates']}",
        "mode        " + "  ".join(f"{key:>7}" for key in keys),
    ]
    for mode, m in result["modes"].items():
        lines.append(f"{mode:<11} " + "  ".join(_mode_cell(key, m.get(key)) for key in keys))
    if f"hnsw_recall@{k}" in result:
        recall = result[f"hnsw_recall@{k}"]
        shown = f"{recall:.3f}" if is_figure(recall) else "-"
        lines.append(f"HNSW recall@{k} (kNN top-{k} vs exact top-{k}): {shown}")
    if result.get("rrf_fusion"):
        lines.append(f"rrf fusion: {result['rrf_fusion']}")
    if any(m.endswith("_exact") and m != "exact_knn" for m in result["modes"]):
        lines.append(
            "cca_exact / ridge_exact: linear baselines on the model's training pairs, same gallery, exact"
        )
    if result.get("graded"):
        lines += ["", graded_table(result["graded"], "through the index")]
    return "\n".join(lines)


#: Options that only apply through the index (``--index``): (flag, parameter).
INDEX_ONLY_OPTIONS = (
    ("-k", "k"),
    ("--num-candidates", "num_candidates"),
    ("--mode", "modes"),
    ("--limit", "limit"),
)


@click.command("evaluate")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--index", default=None, help="Also run the held-out queries through this alias or index.")
@click.option(
    "--dataset",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Dataset root of the held-out queries (default: the one the model was built from).",
)
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=DEFAULT_K,
    show_default=True,
    help="Hits per query through the index.",
)
@num_candidates_option
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(TEXT_MODES),
    help="Modes to run through the index (default: all).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Use at most this many held-out queries (through the index).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=writable_file,
    help="Also write a self-contained HTML report (metrics, recall@K curve, baselines, sample photo grids).",
)
@json_option
@quiet_option
@user_errors
@click.pass_context
def evaluate_cmd(
    ctx: click.Context,
    model_dir: Path,
    index: str | None,
    dataset: Path | None,
    k: int,
    num_candidates: int | None,
    modes: tuple[str, ...],
    limit: int | None,
    report_path: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Held-out text->image metrics of MODEL_DIR next to baselines; with --index, also through Elasticsearch."""
    from toolkit.evaluation.through_index import evaluate_model

    if not index:
        refuse_without_index(
            ctx, INDEX_ONLY_OPTIONS, ("applies", "apply"), "to the queries run through an index"
        )
    data = evaluate_model(
        model_dir,
        index=index,
        dataset_root=dataset,
        k=k if index else None,
        num_candidates=num_candidates,
        modes=modes,
        limit=limit,
        report=report_path,
        progress=progress_enabled(quiet),
    )
    emit(data, as_json, lambda: _render(data))


def _render(data: dict[str, Any]) -> str:
    parts = [f"model {data['fingerprint']}", in_memory_table(data["in_memory"])]
    if "through_index" in data:
        parts.append(index_table(data["through_index"]))
    if "report" in data:
        parts.append(f"report written to {data['report']}")
    return "\n\n".join(parts)


commands = [evaluate_cmd]
