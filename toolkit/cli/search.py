"""``jrs search``: a sentence (or a photo) finds step photos through Elasticsearch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from toolkit.cli.common import emit, json_option, user_errors


def _render(result) -> str:
    lines = [f"mode: {result.mode}" + (f" (fusion: {result.fusion})" if result.fusion else "")]
    lines += [f"note: {n}" for n in result.notes]
    if not result.hits:
        lines.append("no hits")
    for rank, h in enumerate(result.hits, 1):
        text = h.text if len(h.text) <= 60 else h.text[:59] + "…"
        lines.append(f"{rank:>2}. {h.score:8.4f}  {h.title} [{h.step_id}]  {text}  {h.image_path or '-'}")
    lines.append(f"took {result.took_ms:.0f} ms in Elasticsearch, {result.total_ms:.0f} ms round trip")
    return "\n".join(lines)


@click.command("search")
@click.argument("text", required=False)
@click.option(
    "--mode",
    type=click.Choice(["knn", "keyword", "hybrid", "rrf"]),
    default="knn",
    show_default=True,
    help="knn: text -> photo vectors; keyword: BM25 on tokens; hybrid: both in one request; rrf: rank fusion.",
)
@click.option(
    "--image", "image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Query by photo."
)
@click.option("--plus", multiple=True, help="Add a text to the query vector (composed search).")
@click.option("--minus", multiple=True, help="Subtract a text from the query vector (composed search).")
@click.option(
    "--model", "model_dir", envvar="JRS_MODEL", required=True, type=click.Path(exists=True, path_type=Path)
)
@click.option("--index", default="recipes", show_default=True, envvar="JRS_INDEX", help="Alias or index.")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--num-candidates", type=int, default=100, show_default=True)
@click.option("--recipe", "recipes", multiple=True, help="Only these recipe ids.")
@click.option("--ingredient", "ingredients", multiple=True, help="Only recipes with this ingredient.")
@click.option("--include-text-only", is_flag=True, help="Also return steps without a photo.")
@click.option("--keyword-boost", type=float, default=1.0, show_default=True)
@click.option("--knn-boost", type=float, default=1.0, show_default=True)
@click.option(
    "--show-query", is_flag=True, help="Print the exact request body (paste into Kibana Dev Tools)."
)
@json_option
@user_errors
def search_cmd(
    text: str | None,
    mode: str,
    image: Path | None,
    plus: tuple[str, ...],
    minus: tuple[str, ...],
    model_dir: Path,
    index: str,
    k: int,
    num_candidates: int,
    recipes: tuple[str, ...],
    ingredients: tuple[str, ...],
    include_text_only: bool,
    keyword_boost: float,
    knn_boost: float,
    show_query: bool,
    as_json: bool,
) -> None:
    """Find step photos for TEXT (or for a photo with --image), optionally composed with --plus/--minus."""
    from toolkit.errors import ToolkitError
    from toolkit.es.client import make_client
    from toolkit.model import SearchModel
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, HybridParams, KnnParams

    if text is None and image is None:
        raise click.UsageError("give a query TEXT or --image PATH")
    t0 = time.perf_counter()
    searcher = Searcher(make_client(), SearchModel.load(model_dir), index)
    load_ms = (time.perf_counter() - t0) * 1000
    try:
        params = KnnParams(k=k, num_candidates=num_candidates)
    except ValueError as e:
        raise ToolkitError(str(e)) from e
    filters = Filters(recipe_ids=recipes, ingredients=ingredients, include_text_only=include_text_only)
    hybrid = HybridParams(keyword_boost=keyword_boost, knn_boost=knn_boost)
    if image is not None or plus or minus:
        if image is not None and text is not None and not (plus or minus):
            raise click.UsageError("give TEXT or --image, not both (or add --plus/--minus to compose)")
        vec = searcher.composed_vector(text=None if image else text, image=image, plus=plus, minus=minus)
        label = "image" if image is not None and not (plus or minus) else "composed"
        result = searcher.knn(vec, params, filters, mode=label)
    elif mode == "knn":
        result = searcher.knn(searcher.text_vector(text), params, filters)
    elif mode == "keyword":
        result = searcher.keyword(text, k, filters)
    elif mode == "hybrid":
        result = searcher.hybrid(text, params, filters, hybrid)
    else:
        result = searcher.rrf(text, params, filters, hybrid)
    if show_query:
        for body in result.requests:
            click.echo(f"POST {index}/_search\n{json.dumps(body, ensure_ascii=False, indent=2)}", err=as_json)
    data = {**result.as_dict(), "index": index, "model_load_ms": round(load_ms, 1)}
    emit(data, as_json, lambda: _render(result))


commands = [search_cmd]
