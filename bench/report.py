"""The Markdown table of a suite run (``bench/results.md``) and its copy in the README."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
QUALITY_MARKERS = ("<!-- quality:start -->", "<!-- quality:end -->")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 1000):
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def met(value: Any, goal: str | None) -> str:
    """``yes`` / ``no`` for a goal like ``>= 0.9``; ``report`` when there is none."""
    if goal is None:
        return "report"
    if value is None:
        return "not run"
    op, target = goal.split()
    ok = value >= float(target) if op == ">=" else value <= float(target)
    return "yes" if ok else "**no**"


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results.get("benchmarks", {})
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _scaling_rows(r: dict[str, Any]) -> list[str]:
    rows = []

    def row(what: str, small: Any, large: Any, ratio: Any, ideal: str) -> None:
        if small is not None and large is not None:
            rows.append(f"| {what} | {_fmt(small)} | {_fmt(large)} | {_fmt(ratio)} | {ideal} |")

    sv10, sv100 = _get(r, "text", "step_vectors_per_s_10k"), _get(r, "text", "step_vectors_per_s")
    row("step vectors/s, 10k → 100k steps", sv10, sv100, sv100 / sv10 if sv10 and sv100 else None, "1 (flat)")
    t_s, t_l = _get(r, "train", "small_epoch_s"), _get(r, "train", "train_epoch_s")
    row("train epoch s, 10k → 100k pairs", t_s, t_l, _get(r, "train", "scaling_ratio"), "10")
    b_s, b_l = (
        _get(r, "bulk", "small", "toolkit_x2", "seconds"),
        _get(r, "bulk", "large", "toolkit", "seconds"),
    )
    row("bulk load s (HNSW), 10k → 100k docs", b_s, b_l, _get(r, "bulk", "bulk_scaling_10k_to_100k"), "10")
    raw_s, raw_l = _get(r, "bulk", "small", "raw_x2", "seconds"), _get(r, "bulk", "large", "raw", "seconds")
    row(
        "raw _bulk s (HNSW, server ceiling), 10k → 100k",
        raw_s,
        raw_l,
        raw_l / raw_s if raw_s and raw_l else None,
        "10",
    )
    f_l, f_h = _get(r, "bulk", "flat", "large", "seconds"), _get(r, "bulk", "flat", "huge", "seconds")
    row("bulk load s (flat), 100k → 1M docs", f_l, f_h, _get(r, "bulk", "bulk_scaling_100k_to_1m_flat"), "10")
    m10, m100 = _get(r, "bulk", "bulk_peak_rss_mb_10k"), _get(r, "bulk", "bulk_peak_rss_mb_100k")
    row("bulk peak RSS MB, 10k → 100k docs", m10, m100, m100 / m10 if m10 and m100 else None, "1 (flat)")
    m1m = _get(r, "bulk", "bulk_peak_rss_mb_1m")
    row("bulk peak RSS MB, 100k → 1M docs", m100, m1m, m1m / m100 if m100 and m1m else None, "1 (flat)")
    k10, k100 = _get(r, "search", "small", "knn_p50_ms"), _get(r, "search", "large", "knn_p50_ms")
    row("kNN p50 ms, 10k → 100k docs", k10, k100, k100 / k10 if k10 and k100 else None, "≪ 10 (log)")
    r10, r100 = (
        _get(r, "search", "small", "recall_at_10_nc100"),
        _get(r, "search", "large", "recall_at_10_nc100"),
    )
    row("HNSW recall@10, 10k → 100k docs", r10, r100, None, "–")
    return rows


def _also_measured(r: dict[str, Any]) -> list[str]:
    """Context for the judged figures: the ceilings' own numbers, what the old loader did, other settings."""
    out = []
    b = r.get("benchmarks", {}).get("bulk", {})
    if "bulk_vs_raw_ratio_before_10k" in b:
        out.append(
            f"* bulk, 10k docs: toolkit/raw {_fmt(b.get('bulk_vs_raw_ratio_10k'))}; the loader before this work "
            f"(sequential, stdlib JSON) {_fmt(b['bulk_vs_raw_ratio_before_10k'])}; CPU per document (node + "
            f"loader), raw/toolkit at 100k: {_fmt(b.get('bulk_vs_raw_cpu_ratio'))}"
        )
    large = b.get("large", {})
    if large:
        raw, tk = large.get("raw", {}), large.get("toolkit", {})
        out.append(
            f"* bulk, 100k docs (HNSW): raw {_fmt(raw.get('docs_per_s'))} docs/s with the node on "
            f"{_fmt(raw.get('node_cpu_cores'))} cores; toolkit {_fmt(tk.get('docs_per_s'))} docs/s, node "
            f"{_fmt(tk.get('node_cpu_cores'))} cores + loader {_fmt(tk.get('loader_cpu_cores'))} cores; "
            f"{_fmt(tk.get('cpu_ms_per_doc'))} ms of CPU per document"
        )
    flat = b.get("flat", {})
    if flat:
        fl, naive = flat.get("large", {}), flat.get("naive", {})
        out.append(
            f"* bulk, flat index (no HNSW graph): toolkit {_fmt(fl.get('docs_per_s'))} docs/s (node "
            f"{_fmt(fl.get('node_cpu_cores'))} + loader {_fmt(fl.get('loader_cpu_cores'))} cores), one index() "
            f"per document {_fmt(naive.get('docs_per_s'))} docs/s: ratio {_fmt(b.get('bulk_vs_naive_ratio_flat'))}"
        )
    nv = b.get("naive", {})
    if nv:
        out.append(
            f"* one index() per document (HNSW): {_fmt(nv.get('naive', {}).get('docs_per_s'))} docs/s, the "
            f"toolkit on the same documents {_fmt(nv.get('toolkit', {}).get('docs_per_s'))} docs/s"
        )
    out += _image_lines(r.get("benchmarks", {}).get("image", {}))
    sr = r.get("benchmarks", {}).get("search", {})
    big = sr.get("large", {})
    if big:
        sweep = ", ".join(
            f"{nc}: {_fmt(big.get(f'recall_at_10_nc{nc}'))} (took {_fmt(big.get(f'took_p50_ms_nc{nc}'))} ms)"
            for nc in (100, 200, 400, 800)
            if f"recall_at_10_nc{nc}" in big
        )
        out.append(f"* recall@10 at 100k by num_candidates, uniform random vectors: {sweep}")
        out.append(
            f"* recall@10 at 100k, embedding-like vectors (`text_vector`, num_candidates 100): "
            f"{_fmt(big.get('recall_at_10_structured_nc100'))}; index segments: {_fmt(big.get('segments'))}"
        )
        out.append(
            f"* search overhead p50 {_fmt(big.get('search_overhead_p50_ms'))} ms, of which query embedding "
            f"{_fmt(big.get('query_embed_p50_ms'))} ms; a plain HTTP client's overhead on the same request "
            f"(the floor) {_fmt(big.get('search_overhead_floor_p50_ms'))} ms"
        )
    return out


def _image_lines(im: dict[str, Any]) -> list[str]:
    """Photos/s per encoder and backend (files -> features on disk), with the load they were measured under."""
    out = []
    load = "/".join(map(str, im.get("machine", {}).get("load_avg", [])))
    labels = (
        ("lite0", "EfficientNet-Lite0"),
        ("lite0_ms4_gem", "EfficientNet-Lite0 ms4-sgem (the build's default)"),
        ("resnet50", "ResNet-50 (random weights)"),
    )
    for key, label in labels:
        e = im.get(key)
        if not e:
            continue
        per = ", ".join(
            f"{b} {v['precision']} {_fmt(v['pipeline_per_s'])} (x{_fmt(v['speedup_vs_torch'])}, "
            f"cos {v['min_cosine_to_torch_on_these_photos']:.5f})"
            for b, v in e["backends"].items()
        )
        out.append(
            f"* image, {label}, files → features photos/s ({im.get('n_images')} JPEGs 512x384, batch "
            f"{im.get('batch_size')}, {im.get('threads')} threads, load average {load} at the start): {per}; "
            f"default backend {e['default_backend']}"
        )
    return out


def render_markdown(results: dict[str, Any], keys: list[tuple[str, str, str, str | None]]) -> str:
    """The results table, the machine it ran on and how the costs scale."""
    m0, m1 = results.get("machine_start", {}), results.get("machine_end", {})
    es = results.get("elasticsearch", {})
    when = results.get("measured") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rerun = "; ".join(f"{name} rerun {at}" for name, at in sorted(results.get("rerun", {}).items()))
    lines = [
        f"Measured {when}{f' ({rerun})' if rerun else ''}"
        f"{' (--quick smoke run: small sizes)' if results.get('quick') else ''} on "
        f"{m0.get('cpus')} cores ({m0.get('cpu_model')}), {m0.get('memory_gib')} GiB RAM; load average "
        f"(1/5/15 min) {'/'.join(map(str, m0.get('load_avg', [])))} at the start, "
        f"{'/'.join(map(str, m1.get('load_avg', [])))} at the end; "
        + (f"Elasticsearch {es['es_version']} on {es['jvm']}, heap {es['heap_gb']} GB; " if es else "")
        + f"suite {results.get('total_s', 0) / 60:.1f} min.",
        "",
        "| key | what | value | goal | met |",
        "|---|---|---:|---|---|",
    ]
    for key, _, what, goal in keys:
        value = results.get(key)
        lines.append(f"| `{key}` | {what} | {_fmt(value)} | {goal or 'report'} | {met(value, goal)} |")
    extra = _also_measured(results)
    if extra:
        lines += ["", "Also measured:", "", *extra]
    scaling = _scaling_rows(results)
    if scaling:
        lines += ["", "| scaling | smaller | larger | ratio | ideal |", "|---|---:|---:|---:|---|", *scaling]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str, markers: tuple[str, str] = (START, END)) -> None:
    """Replace the text between the ``markers`` (default: the bench markers) in ``readme`` with ``table``."""
    start, end = markers
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} markers")
    new = re.sub(
        re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{table}{end}", text, flags=re.S
    )
    readme.write_text(new, encoding="utf-8")
