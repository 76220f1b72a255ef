"""A self-contained HTML evaluation report: metrics table, recall@K curve, baselines, sample queries with
their photo grids. Every picture is inlined as a ``data:`` URI; the page loads nothing from elsewhere.

Input is the plain metrics dicts of ``MODEL_DIR/evaluation.json`` (written by ``jrs build``) or any dict
of the same shape: ``{name: {"text_to_image": {"R@1": ..}, "image_to_text": {..}, ...}}``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import numbers
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import __version__
from toolkit.errors import ModelDirError, ToolkitError
from toolkit.evaluation.metrics import DIRECTIONS, is_figure, positive_ranks
from toolkit.search.engine import Searcher
from toolkit.search.modes import DEFAULT_K

EVALUATION_FILE = "evaluation.json"
#: Numbers of a result that describe the protocol rather than measure it (not table columns).
META_KEYS = {"n", "pool", "draws", "seed"}
#: What each known result name means (shown under the table).
DESCRIPTIONS = {
    "model_pooled": "trained model, Recipe1M-style pools (mean over draws)",
    "model_full": "trained model, ranked against the whole evaluation split",
    "random_towers": "baseline: the same towers with random weights (must be clearly beaten)",
    "chance": "baseline: a random ranking (R@K = K/N)",
    "keyword": "baseline: token overlap with the step text (sees the text next to each photo)",
    "keyword_overlap": "baseline: BM25 overlap with the step text beside each photo (text-only, oracle-ish)",
    "cca_pooled": "linear baseline: CCA fitted on the model's own training pairs and features, 1k pools",
    "cca_full": "linear baseline: CCA, ranked against the whole evaluation split",
    "ridge_pooled": "linear baseline: ridge regression text -> photo features on the same pairs, 1k pools",
    "ridge_full": "linear baseline: ridge regression, ranked against the whole evaluation split",
}
GRADED_CRITERIA = ("main", "method", "both")


def load_evaluation(model_dir: str | Path) -> dict[str, Any]:
    """``MODEL_DIR/evaluation.json``; a :class:`ModelDirError` naming it when it is missing or damaged."""
    from toolkit.vectorset import read_json_object

    path = Path(model_dir) / EVALUATION_FILE
    if not path.is_file():
        raise ModelDirError(f"{path} does not exist; build the model with `jrs build` first")
    return read_json_object(path, "rebuild the model with `jrs build`")


def result_sets(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The named results of ``evaluation``: entries with per-direction metrics or flat ``R@K`` keys, also
    inside one level of grouping."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in evaluation.items():
        if not isinstance(value, dict):
            continue
        if _is_result(value):
            out[name] = value
        else:  # one level of grouping, e.g. {"baselines": {"bm25": {...}}} -> "baselines.bm25"
            out.update({f"{name}.{k}": v for k, v in value.items() if isinstance(v, dict) and _is_result(v)})
    return out


def _is_result(value: dict[str, Any]) -> bool:
    return any(isinstance(value.get(d), dict) for d in DIRECTIONS) or any(
        str(k).startswith("R@") for k in value
    )


def with_chance(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add a ``chance`` row for the pool size of the first result, unless one is there."""
    if "chance" in results or not results:
        return results
    from toolkit.evaluation.baselines import chance_metrics

    first = next(iter(results.values()))
    size = int(first.get("pool") or first.get("n") or 0)
    ks = sorted(int(k[2:]) for k in _metric_dicts(first)[0][1] if k.startswith("R@"))
    if size < 1 or not ks:
        return results
    c = chance_metrics(size, ks)
    return {**results, "chance": {"protocol": "chance", "pool": size, "text_to_image": c, "image_to_text": c}}


def _metric_dicts(result: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    dirs = [d for d in DIRECTIONS if isinstance(result.get(d), dict)]
    if dirs:
        return [(d.replace("_to_", " → "), result[d]) for d in dirs]
    return [("-", result)]


#: What a cell shows for a figure that is missing or not a number (NaN, infinite)
MISSING = "–"


def _fmt(key: str, value: Any) -> str:
    if not is_figure(value):
        return MISSING
    if key.startswith("R@"):
        return f"{100 * value:.1f}"
    return f"{value:.1f}" if key == "MedR" else f"{value:.3f}"


def metrics_table_html(results: dict[str, dict[str, Any]]) -> str:
    """One row per result and direction; R@K in percent; the std over draws where known."""
    rows = [(name, d, m, r) for name, r in results.items() for d, m in _metric_dicts(r)]
    if not rows:
        return "<p>(no metrics)</p>"
    keys: list[str] = []
    for _, _, m, _ in rows:
        keys += [k for k in m if k not in keys and k not in META_KEYS and isinstance(m[k], numbers.Real)]
    recall = sorted((k for k in keys if k.startswith("R@")), key=lambda k: int(k[2:]))
    keys = recall + [k for k in keys if not k.startswith("R@")]
    head = "".join(f"<th>{html.escape(k)}{' %' if k.startswith('R@') else ''}</th>" for k in keys)
    body = []
    for name, direction, m, result in rows:
        std = result.get("std", {}).get(direction.replace(" → ", "_to_"), {})
        cells = []
        for k in keys:
            cell = _fmt(k, m.get(k))
            if k.startswith("R@") and is_figure(std.get(k)):
                cell += f" <small>± {100 * std[k]:.1f}</small>"
            cells.append(f'<td class="num" data-key="{html.escape(k)}">{cell}</td>')
        pool = result.get("pool", m.get("n", ""))
        body.append(
            f'<tr data-method="{html.escape(name)}"><td>{html.escape(name)}</td><td>{html.escape(direction)}</td>'
            f'<td class="num">{html.escape(str(pool))}</td>{"".join(cells)}</tr>'
        )
    return (
        '<table id="metrics"><thead><tr><th>method</th><th>direction</th><th>pool</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def recall_curve(ranks: dict[str, np.ndarray], n: int) -> dict[str, list[float]]:
    """``R@K`` for ``K = 1..n`` per direction, from 1-based positive ranks."""
    ks = np.arange(1, n + 1)
    return {d: [float(v) for v in (r[:, None] <= ks[None, :]).mean(axis=0)] for d, r in ranks.items()}


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def curve_png(curves: dict[str, list[float]], results: dict[str, dict[str, Any]], n: int | None) -> bytes:
    """The recall@K curve (full evaluation split) with the table's R@K points and the chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.viz.fonts import use_japanese_font_in_matplotlib

    use_japanese_font_in_matplotlib()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for direction, values in curves.items():
        ax.plot(range(1, len(values) + 1), [100 * v for v in values], label=f"model, full split: {direction}")
    markers = iter("osD^vP*X")
    for name, result in results.items():
        if name == "chance":
            continue
        marker = next(markers, "o")
        for direction, m in _metric_dicts(result):
            pts = sorted((int(k[2:]), 100 * v) for k, v in m.items() if k.startswith("R@"))
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=marker, linestyle=":", label=f"{name} {direction}")
    if n:
        ks = np.arange(1, n + 1)
        ax.plot(ks, 100 * ks / n, color="grey", linestyle="--", label=f"chance (N={n})")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Recall@K")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _eval_split(evaluation: dict[str, Any]) -> str:
    return "test" if str(evaluation.get("split", "test")).startswith("test") else "val"


def default_queries(
    dataset_root: Path, model_dir: Path, split: str, count: int
) -> list[tuple[str, str | None]]:
    """``count`` step texts (with their step id) spread over the evaluation split's steps with photos."""
    from toolkit.model import read_manifest
    from toolkit.stages.read import ReadOptions, read_steps

    seed = int(read_manifest(model_dir).get("split_seed", 0))
    with_photo = [
        s for s in read_steps(dataset_root, None, ReadOptions(split_seed=seed)) if s.image is not None
    ]
    pool = [s for s in with_photo if s.split == split] or with_photo
    if not pool:
        return []
    picks = np.linspace(0, len(pool) - 1, num=min(count, len(pool))).round().astype(int)
    return [(pool[i].text, pool[i].step_id) for i in dict.fromkeys(picks.tolist())]


def sample_sections(
    searcher: Searcher,
    dataset_root: Path,
    queries: Sequence[tuple[str, str | None]],
    k: int,
    mode: str,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Search each query and render its grid; ``found_at`` is the rank of the query's own step, if any."""
    from toolkit.progress import track
    from toolkit.search.dispatch import search_step_text
    from toolkit.viz.grid import GridLayout, png_bytes, render_grid

    out = []
    for text, own in track(queries, progress, "sample queries", "query"):
        try:
            result = search_step_text(searcher, text, mode, k)  # a step: not bound by the typed-query limit
        except ToolkitError as e:
            out.append({"query": text, "error": str(e)})
            continue
        image, _ = render_grid(
            text, result.hits, dataset_root, f"mode {mode}, top {k}", GridLayout(columns=min(k, 5))
        )
        ids = [h.step_id for h in result.hits]
        out.append(
            {
                "query": text,
                "step_id": own,
                "found_at": ids.index(own) + 1 if own in ids else None,
                "hits": ids,
                "png": png_bytes(image),
            }
        )
    return out


#: the report runs no script and loads nothing: should collection text ever get past the escaping, a browser
#: still runs none of it and fetches nothing (pictures and the font are inlined ``data:`` URIs)
CSP_META = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
    "style-src 'unsafe-inline'; font-src data:; base-uri 'none'; form-action 'none'\">"
)

STYLE = """
body{font-family:'IPAexGothic','Noto Sans CJK JP','Hiragino Sans',sans-serif;margin:2em auto;max-width:1400px;
color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd}.note{color:#666}section.query{margin:2em 0}
"""


def through_index_section(result: dict[str, Any] | None) -> list[str]:
    """The per-mode table of ``jrs evaluate --index`` (toolkit.evaluation.through_index), if given."""
    if not result or not isinstance(result.get("modes"), dict):
        return []
    esc = html.escape
    facts = [
        f"{key}: {result[key]}"
        for key in ("index", "queries", "gallery", "k", "num_candidates")
        if key in result
    ]
    facts += [
        f"{key}: {value:.3f}" if is_figure(value) else f"{key}: {MISSING}"
        for key, value in result.items()
        if key.startswith("hnsw_recall")
    ]
    table = metrics_table_html(result["modes"]).replace('id="metrics"', 'id="through-index"', 1)
    return [
        "<h2>Through the index</h2>",
        f'<p class="note">{esc(str(result.get("protocol", "")))}; {esc(", ".join(facts))}</p>',
        table,
    ]


def graded_section(graded: dict[str, Any] | None, title: str, table_id: str) -> list[str]:
    """Graded precision@k per method (the hit's recipe shares the query's main ingredient / method / both)."""
    if not graded:
        return []
    esc = html.escape
    rows = {name: g for name, g in graded.items() if isinstance(g, dict)}
    chance = next((g for g in rows.values() if "main_chance" in g), None)
    if chance is not None and "chance" not in rows:
        rows["chance"] = {c: chance[f"{c}_chance"] for c in GRADED_CRITERIA}
    k = next((g["k"] for g in rows.values() if g.get("k")), 10)
    head = "".join(f"<th>P@{k} {c} %</th>" for c in GRADED_CRITERIA)
    body = "".join(
        f'<tr data-method="{esc(name)}"><td>{esc(name)}</td>'
        + "".join(f'<td class="num">{_fmt("R@", g.get(c))}</td>' for c in GRADED_CRITERIA)
        + "</tr>"
        for name, g in rows.items()
    )
    return [
        f"<h2>{esc(title)}</h2>",
        '<p class="note">share of the top hits whose recipe has the query recipe\'s main ingredient, '
        "cooking method, or both (main:/method: tags)</p>",
        f'<table id="{esc(table_id)}"><thead><tr><th>method</th>{head}</tr></thead><tbody>{body}</tbody></table>',
    ]


def render_html(
    title: str,
    results: dict[str, dict[str, Any]],
    evaluation: dict[str, Any],
    curve: bytes | None,
    samples: list[dict[str, Any]],
    notes: list[str],
    through_index: dict[str, Any] | None = None,
) -> str:
    esc = html.escape
    desc = "".join(
        f"<li><b>{esc(n)}</b>: {esc(DESCRIPTIONS.get(n, str(results[n].get('protocol', ''))))}</li>"
        for n in results
    )
    pairs = evaluation.get("pairs", {})
    parts = [
        f'<!DOCTYPE html><html lang="ja"><head><meta charset="utf-8">{CSP_META}<title>{esc(title)}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">jrecipe-search {esc(__version__)}, '
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; evaluation split: "
        f"{esc(str(evaluation.get('split', '?')))}; pairs: {esc(json.dumps(pairs))}</p>",
        '<h2 id="metrics-title">Metrics</h2>',
        metrics_table_html(results),
        f'<h2>Baselines</h2><ul id="baselines">{desc}</ul>',
        *graded_section(evaluation.get("graded"), "Graded relevance (held-out split)", "graded"),
        *through_index_section(through_index),
        *graded_section(
            (through_index or {}).get("graded"), "Graded relevance through the index", "graded-index"
        ),
        "<h2>Recall@K</h2>",
        f'<img id="recall-curve" alt="recall@K curve" src="{_png_data_uri(curve)}">' if curve else "",
        *(f'<p class="note">{esc(n)}</p>' for n in notes),
        "<h2>Sample queries</h2>",
    ]
    if not samples:
        parts.append('<p class="note">no sample queries (give an index to search to see photo grids)</p>')
    for i, s in enumerate(samples, 1):
        # collection text in <bdi>: a right-to-left override in it must not reorder what follows
        parts.append(f'<section class="query" id="query-{i}"><h3>「<bdi>{esc(s["query"])}</bdi>」</h3>')
        if "error" in s:
            parts.append(f'<p class="error">{esc(s["error"])}</p></section>')
            continue
        found = s.get("found_at")
        if s.get("step_id"):
            where = f"found at rank {found}" if found else "not in the top hits"
            parts.append(f'<p class="note">own photo (<bdi>{esc(s["step_id"])}</bdi>): {where}</p>')
        parts.append(
            f'<img class="grid" alt="results for query {i}" src="{_png_data_uri(s["png"])}"></section>'
        )
    parts.append("</body></html>")
    page = "\n".join(p for p in parts if p)
    from toolkit.viz.fonts import subset_font_face

    text = re.sub(r"<[^>]*>|data:[^\"]*", "", page)
    return page.replace("<style>", f"<style>{subset_font_face(html.unescape(text))}\n", 1)


def write_report(
    model_dir: str | Path,
    path: str | Path,
    searcher: Searcher | None = None,
    *,
    evaluation: dict[str, Any] | None = None,
    through_index: dict[str, Any] | None = None,
    dataset_root: str | Path | None = None,
    queries: Sequence[str] = (),
    sample_count: int = 4,
    k: int = DEFAULT_K,
    mode: str = "knn",
    title: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the HTML report of ``model_dir`` to ``path``; return what went into it.

    ``evaluation`` defaults to ``MODEL_DIR/evaluation.json``; the output of ``jrs evaluate --json``
    (``in_memory`` + ``through_index``) is accepted as is. ``through_index`` (the per-mode figures of
    :func:`toolkit.evaluation.through_index.evaluate_through_index`) adds a table. With a ``searcher``,
    ``queries`` (or ``sample_count`` step texts of the evaluation split) are searched and shown as grids;
    a query over :data:`~toolkit.model.MAX_QUERY_CHARS` characters is refused before any work (the sampled
    step texts are not bound by it).
    """
    from toolkit.model import SearchModel, check_query_length

    for query in queries:
        if isinstance(query, str):  # another type is the grid's error, as before (search_step_text says why)
            check_query_length(query, f"the sample query {query[:40]!r}{'...' if len(query) > 40 else ''}")
    model_dir = Path(model_dir)
    evaluation = evaluation if evaluation is not None else load_evaluation(model_dir)
    if not isinstance(evaluation, dict):
        raise ToolkitError(
            f"the evaluation to report is a {type(evaluation).__name__}, not a dict of results"
        )
    if isinstance(evaluation.get("in_memory"), dict):  # the shape `jrs evaluate --json` prints
        through_index = through_index or evaluation.get("through_index")
        evaluation = evaluation["in_memory"]
    results = with_chance(result_sets(evaluation))
    if not results:
        raise ToolkitError(f"no metrics found in the evaluation of {model_dir} (expected per-direction R@K)")
    notes: list[str] = []
    curves: dict[str, list[float]] = {}
    n = None
    model = searcher.model if searcher is not None else None
    try:
        model = model or SearchModel.load(model_dir)
        from toolkit.viz.space import paired_space

        space = paired_space(model, _eval_split(evaluation))
        n = len(space)
        if n >= 2:
            ranks = {
                "text → image": positive_ranks(space.text, space.image),
                "image → text": positive_ranks(space.image, space.text),
            }
            curves = recall_curve(ranks, n)
    except ToolkitError as e:
        notes.append(f"no full recall curve: {e}")
    curve = curve_png(curves, results, n)
    samples: list[dict[str, Any]] = []
    if searcher is not None:
        from toolkit.viz.space import dataset_root_for

        root = dataset_root_for(model_dir, dataset_root)
        chosen: list[tuple[str, str | None]] = [(q, None) for q in queries]
        if not chosen:
            chosen = default_queries(root, model_dir, _eval_split(evaluation), sample_count)
        samples = sample_sections(searcher, root, chosen, k, mode, progress)
    page = render_html(
        title or f"Evaluation report: {model_dir.name}",
        results,
        evaluation,
        curve,
        samples,
        notes,
        through_index,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return {
        "path": str(out),
        "bytes": out.stat().st_size,
        "methods": list(results),
        "through_index_modes": list((through_index or {}).get("modes", {})),
        "curve_points": n,
        "samples": [{k_: v for k_, v in s.items() if k_ != "png"} for s in samples],
        "notes": notes,
    }
