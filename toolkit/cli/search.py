"""``jrs search``: a sentence (or a photo) finds step photos through Elasticsearch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from toolkit.chars import visible
from toolkit.cli.common import emit, json_option, user_errors
from toolkit.cli.options import (
    default_from,
    given_on_command_line,
    index_option,
    ingredient_option,
    model_option,
    non_blank,
    num_candidates_option,
)
from toolkit.device import DEVICE_HELP
from toolkit.search.modes import DEFAULT_K, HYBRID_FIELD_MODES, TEXT_MODES, modes_help


def _line(rank: int | str, h) -> str:
    text = h.text if len(h.text) <= 60 else h.text[:59] + "…"
    return f"{rank:>2}. {h.score:8.4f}  {h.title} [{h.step_id}]  {text}  {h.image_path or '-'}"


def _render_explanation(ex: dict) -> list[str]:
    lines = [
        f"tokens: {' '.join(ex['tokens']) or '(none)'}"
        + (
            f"   (keyword tokens: {' '.join(ex['keyword_tokens'])})"
            if ex["keyword_tokens"] != ex["tokens"]
            else ""
        ),
        f"known: {' '.join(ex['known']) or '(none)'}",
    ]
    from toolkit.search.explain import SUGGESTED_WORDS

    for i, u in enumerate(ex["unknown"]):
        if i == SUGGESTED_WORDS:  # past them, no vocabulary scan (a long query must not cost one per word)
            lines.append(f"unknown: {' '.join(v['word'] for v in ex['unknown'][i:])}  (not looked up)")
            break
        lines.append(f"unknown: {u['word']}  (nearest known: {', '.join(u['suggestions']) or 'none'})")
    contrib = ex.get("contributions") or {}
    if contrib.get("words"):
        lines.append(
            f"leave-one-word-out ({contrib['method']}), score lost on the top {len(contrib['hits'])} hits:"
        )
        for w in contrib["words"]:
            per = " ".join(f"{d:+.4f}" for d in w["deltas"])
            lines.append(f"  {w['word']:<10} mean {w['mean_delta']:+.4f}   per hit: {per}")
    elif contrib.get("note"):
        lines.append(f"contributions: {contrib['note']}")
    return lines


def _render(result) -> str:
    lines = [f"mode: {result.mode}" + (f" (fusion: {result.fusion})" if result.fusion else "")]
    lines += [f"note: {n}" for n in result.notes]
    if result.explanation is not None:
        lines += _render_explanation(result.explanation)
    if not result.hits:
        lines.append("no hits")
    if result.groups is not None:
        for rank, g in enumerate(result.groups, 1):
            lines.append(f"{rank:>2}. {g.score:8.4f}  {g.title} [recipe {g.recipe_id}]")
            lines += ["    " + _line("-", h) for h in g.steps]
    else:
        lines += [_line(rank, h) for rank, h in enumerate(result.hits, 1)]
    lines.append(f"took {result.took_ms:.0f} ms in Elasticsearch, {result.total_ms:.0f} ms round trip")
    return "\n".join(
        visible(line) for line in lines
    )  # an indexed text's CR, line break or ESC stays on its line


def _check_boosts(ctx: click.Context, mode: str) -> None:
    """A usage error for ``--keyword-boost``/``--knn-boost`` given in a mode that ignores them."""
    for name in given_on_command_line(ctx, "keyword_boost", "knn_boost"):
        modes = HYBRID_FIELD_MODES[name]
        if mode not in modes:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(
                f"{flag} applies to --mode {' or '.join(modes)} (--mode {mode} ignores it): "
                f"add {' or '.join(f'--mode {m}' for m in modes)}"
            )


@click.command("search")
@click.argument("text", required=False)
@default_from(
    "toolkit.search.dispatch:SearchOptions.mode", "--mode", type=click.Choice(TEXT_MODES), help=modes_help()
)
@click.option(
    "--image", "image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Query by photo."
)
@click.option(
    "--like",
    "like",
    multiple=True,
    metavar="STEP_ID",
    help="More like these steps: the mean of their photo vectors (plus TEXT when given). Repeatable.",
)
@click.option("--group", type=click.Choice(["recipe"]), default=None, help="One hit per recipe (best step).")
@default_from(
    "toolkit.search.dispatch:SearchOptions.per_group",
    "--per-group",
    type=int,
    help="Steps shown per recipe with --group.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Show the tokens, known/unknown words (with suggestions) and each word's effect on the top hits.",
)
@click.option("--plus", multiple=True, help="Add a text to the query vector (composed search).")
@click.option("--minus", multiple=True, help="Subtract a text from the query vector (composed search).")
@model_option
@index_option
@click.option("-k", "k", type=int, default=DEFAULT_K, show_default=True)
@num_candidates_option
@click.option("--recipe", "recipes", multiple=True, callback=non_blank, help="Only these recipe ids.")
@ingredient_option
@click.option("--include-text-only", is_flag=True, help="Also return steps without a photo.")
@default_from(
    "toolkit.search.queries:HybridParams.keyword_boost",
    "--keyword-boost",
    type=float,
    help="Only with --mode hybrid (multiplies the BM25 score) or linear (weight of the normalised keyword list).",
)
@default_from(
    "toolkit.search.queries:HybridParams.knn_boost",
    "--knn-boost",
    type=float,
    help="Only with --mode hybrid (multiplies the kNN score) or linear (weight of the normalised kNN list).",
)
@click.option(
    "--show-query", is_flag=True, help="Print the exact request body (paste into Kibana Dev Tools)."
)
@default_from("toolkit.model:SearchModel.device", "--device", help="Where --image is encoded: " + DEVICE_HELP)
@json_option
@user_errors
@click.pass_context
def search_cmd(
    ctx: click.Context,
    text: str | None,
    mode: str,
    image: Path | None,
    like: tuple[str, ...],
    group: str | None,
    per_group: int,
    explain: bool,
    plus: tuple[str, ...],
    minus: tuple[str, ...],
    model_dir: Path,
    index: str,
    k: int,
    num_candidates: int | None,
    recipes: tuple[str, ...],
    ingredients: tuple[str, ...],
    include_text_only: bool,
    keyword_boost: float,
    knn_boost: float,
    show_query: bool,
    device: str,
    as_json: bool,
) -> None:
    """Find step photos for TEXT (or for a photo with --image, or like other steps with --like),
    optionally composed with --plus/--minus, grouped by recipe with --group recipe."""
    from toolkit.device import resolve_device
    from toolkit.es.client import make_client
    from toolkit.model import SearchModel
    from toolkit.search.dispatch import SearchOptions, check_query_lengths, search
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, HybridParams

    if text is None and image is None and not like:
        raise click.UsageError("give a query TEXT, --image PATH or --like STEP_ID")
    if group is None and given_on_command_line(ctx, "per_group"):
        raise click.UsageError("--per-group applies to --group recipe: add --group recipe")
    if image is not None and text is not None and not (plus or minus):
        raise click.UsageError("give TEXT or --image, not both (or add --plus/--minus to compose)")
    if mode != "knn" and (image is not None or like or plus or minus):
        raise click.UsageError(
            f"--mode {mode} applies to a query TEXT alone: a photo, --like or --plus/--minus query is a kNN search"
        )
    _check_boosts(ctx, mode)
    check_query_lengths(text, plus, minus)  # before the model loads or the cluster is asked
    device = resolve_device(device)  # before any work: a bad spec or a missing GPU is a clear error
    filters = Filters(recipe_ids=recipes, ingredients=ingredients, include_text_only=include_text_only)
    options = SearchOptions(
        mode=mode,
        k=k,
        num_candidates=num_candidates,
        filters=filters,
        hybrid=HybridParams(keyword_boost=keyword_boost, knn_boost=knn_boost),
        group=group,
        per_group=per_group,
        explain=explain,
    )  # built before the model loads: bad boosts or groupings are refused before any work
    t0 = time.perf_counter()
    with Searcher(make_client(), SearchModel.load(model_dir, device), index) as searcher:
        load_ms = (time.perf_counter() - t0) * 1000
        compose_text = text if image is not None else None
        result = search(
            searcher,
            None if image is not None else text,
            photo=image,
            like=like,
            plus=plus + ((compose_text,) if compose_text else ()),
            minus=minus,
            options=options,
        )
    if show_query:
        for body in result.requests:
            click.echo(f"POST {index}/_search\n{json.dumps(body, ensure_ascii=False, indent=2)}", err=as_json)
    data = {**result.as_dict(), "index": index, "model_load_ms": round(load_ms, 1)}
    if image is not None:
        data["device"] = device
    emit(data, as_json, lambda: _render(result))


commands = [search_cmd]
