"""``jrs index`` and ``jrs indices``: bulk loads into versioned indices behind an alias."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.common import emit, json_option, progress_enabled, quiet_option, user_errors
from toolkit.cli.options import default_from, given_on_command_line, refuse_given
from toolkit.device import DEVICE_HELP
from toolkit.index.template import DEFAULT_ALIAS, INDEX_TYPES, KEEP_OLD_VERSIONS


def _image_base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--image-base-url``: refused before any work when it cannot prefix photo paths into URLs."""
    from toolkit.index.documents import image_base_url_refusal

    refusal = image_base_url_refusal(value)
    if refusal is not None:
        raise click.BadParameter(refusal, ctx, param)
    return value


@click.command("index")
@click.argument("dataset_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True, help="Alias over versioned indices.")
@click.option("--index", "index_name", default=None, help="Load into this concrete index instead.")
@click.option("--no-swap", is_flag=True, help="Do not point the alias at the new version.")
@default_from(
    "toolkit.index.template:VectorIndexOptions.type",
    "--index-type",
    type=click.Choice(INDEX_TYPES),
    help="index_options of the vector fields (bbq_hnsw where the node offers it: Elasticsearch 8.15+).",
)
@default_from("toolkit.index.template:VectorIndexOptions.m", "--m", "hnsw_m", type=int, help="HNSW m.")
@default_from(
    "toolkit.index.template:VectorIndexOptions.ef_construction",
    "--ef-construction",
    type=int,
    help="HNSW ef_construction (candidates kept while linking a vector: better graph, slower load).",
)
@click.option(
    "--replicas",
    type=int,
    default=None,
    help="Replicas after the load [default: 0 for a new version; an existing --index keeps its own].",
)
@click.option(
    "--keep-replicas",
    is_flag=True,
    help="Keep the replicas during the load (slower; survives losing a node).",
)
@default_from(
    "toolkit.index.bulk:BulkOptions.chunk_size", "--chunk-size", type=int, help="Documents per bulk request."
)
@default_from(
    "toolkit.index.bulk:BulkOptions.max_chunk_bytes",
    "--max-chunk-bytes",
    type=int,
    help="Bytes per bulk request.",
)
@default_from(
    "toolkit.index.bulk:BulkOptions.max_retries",
    "--max-retries",
    type=int,
    help="Retries of a bulk request the node throttles or drops (with backoff).",
)
@click.option("--max-errors", type=int, default=None, help="Stop after more than this many rejects.")
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(path_type=Path),
    default=None,
    help="JSON-lines file of the records not indexed and why (default: MODEL_DIR/loads/ALIAS.rejects.jsonl; "
    "with --update, which only reads MODEL_DIR: $JRS_HOME/rejects/CLUSTER/ALIAS.update-rejects.jsonl).",
)
@click.option(
    "--image-base-url",
    default=None,
    callback=_image_base_url,
    help="Prefix of each photo's image_url (Kibana thumbnails; Hit.image_url): an http(s) URL or a path from "
    "the server root, e.g. http://127.0.0.1:8000/photo/ while `jrs web` serves the photos.",
)
@click.option("--raw-features", is_flag=True, help="Also index the raw backbone feature (image_feature).")
@click.option("--restart", is_flag=True, help="Ignore an unfinished load's checkpoint.")
@default_from(
    "toolkit.index.indexer:IndexOptions.adapt_features",
    "--adapt-features/--no-adapt-features",
    help="A new index reads its photos' backbone features with the collection's own per-feature mean and "
    "standard deviation instead of the training photos' (from the same sample as the centre; stored in "
    "_meta.photo_feature_stats, used by later loads, --update and photo queries): helps a collection drawn or "
    "photographed unlike the training photos, changes little one like them. An existing index keeps what it "
    "was created with; a load into it warns when its photos do not fit those statistics (photo_feature_drift "
    "in --json).",
)
@default_from(
    "toolkit.index.indexer:IndexOptions.center_photos",
    "--center-photos/--no-center-photos",
    help="A new index centres its photo vectors on the collection's mean photo vector (estimated from up to "
    "2,000 photos; stored in _meta.photo_centre, used by later loads, --update and photo queries): helps a "
    "collection that looks unlike the training photos. An existing index keeps what it was created with; a "
    "load into it warns when its photos do not fit that centre (photo_drift in --json).",
)
@default_from(
    "toolkit.index.indexer:IndexOptions.hubness_correction",
    "--hubness-correction/--no-hubness-correction",
    help="A new index scores each photo down by how close it sits to every text (CSLS against up to 2,000 "
    "of the model's training step texts, stored in the photo vector: image_vector gets 2 more dimensions "
    "and is queried with [v, 1, 0]/sqrt(2)). An existing index keeps what it was created with.",
)
@click.option(
    "--update",
    is_flag=True,
    help="Update the index the alias points to in place: send new and changed steps only (content hash), "
    "delete steps a recipe no longer has. Recipes missing from DATASET_ROOT are kept (see `jrs delete`).",
)
@default_from(
    "toolkit.index.indexer:IndexOptions.device",
    "--device",
    help="Where photos not in the build's features are encoded: " + DEVICE_HELP,
)
@json_option
@quiet_option
@user_errors
@click.pass_context
def index_cmd(
    ctx: click.Context,
    dataset_root: Path,
    model_dir: Path,
    alias: str,
    index_name: str | None,
    no_swap: bool,
    index_type: str,
    hnsw_m: int,
    ef_construction: int,
    replicas: int | None,
    keep_replicas: bool,
    chunk_size: int,
    max_chunk_bytes: int,
    max_retries: int,
    max_errors: int | None,
    rejects_path: Path | None,
    image_base_url: str | None,
    raw_features: bool,
    restart: bool,
    adapt_features: bool,
    center_photos: bool,
    hubness_correction: bool,
    update: bool,
    device: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Index every step of DATASET_ROOT with the vectors of MODEL_DIR (resumable, idempotent).

    Exit status: 0 when every record was indexed, 1 when records were rejected (see --rejects). A photo that
    cannot be used leaves its step indexed text-only: noted in --rejects, exit 0.
    """
    from toolkit.device import resolve_device
    from toolkit.es.client import make_client
    from toolkit.index.bulk import BulkOptions
    from toolkit.index.indexer import IndexOptions, index_dataset
    from toolkit.index.template import VectorIndexOptions

    if update:
        refuse_given(
            ctx,
            LOAD_ONLY_OPTIONS,
            ("decides", "decide"),
            "how a new version is made; --update changes the live index in place, which keeps the options it "
            "was created with",
        )
    device = resolve_device(device)  # before any work: a bad spec or a missing GPU is a clear error
    bulk = BulkOptions(
        chunk_size=chunk_size, max_chunk_bytes=max_chunk_bytes, max_retries=max_retries, max_errors=max_errors
    )
    if update:
        _update(
            dataset_root,
            model_dir,
            alias,
            index_name,
            bulk,
            image_base_url,
            raw_features,
            rejects_path,
            device,
            as_json,
            progress_enabled(quiet),
        )
        return
    opts = IndexOptions(
        alias=alias,
        index=index_name,
        vector_options=VectorIndexOptions(type=index_type, m=hnsw_m, ef_construction=ef_construction),
        replicas=replicas,
        keep_replicas=keep_replicas,
        bulk=bulk,
        image_base_url=image_base_url,
        raw_features=raw_features,
        swap=not no_swap,
        restart=restart,
        device=device,
        adapt_features=adapt_features,
        center_photos=center_photos,
        hubness_correction=hubness_correction,
    )  # options checked before connecting: a bad option is a usage error even with no cluster up
    rejects_path = rejects_path or (model_dir / "loads" / f"{index_name or alias}.rejects.jsonl")
    result = index_dataset(
        make_client(),
        dataset_root,
        model_dir,
        opts,
        rejects_path=rejects_path,
        progress=progress_enabled(quiet),
    )
    result["rejects_file"] = (
        str(rejects_path) if rejects_path.is_file() else None
    )  # as other commands: None when none
    result["device"] = device
    emit(
        result,
        as_json,
        lambda: (
            f"{result['index']}: read {result['read']}, indexed {result['indexed']}, rejected {result['rejected']}, "
            f"skipped {result['skipped']} ({result['docs_per_s']:.0f} docs/s); "
            f"{result['text_only']} text-only steps; "
            + _alias_line(result)
            + (f"; rejects in {rejects_path}" if result["rejected"] else "")
            + _notes_line(result, rejects_path)
        ),
    )
    if result["rejected"] or result["stopped_early"]:
        raise SystemExit(1)


#: ``jrs index`` options that decide how a new version is made: ``--update`` changes the live index in
#: place and keeps what it was created with, so it refuses them instead of ignoring them
LOAD_ONLY_OPTIONS = (
    ("--no-swap", "no_swap"),
    ("--index-type", "index_type"),
    ("--m", "hnsw_m"),
    ("--ef-construction", "ef_construction"),
    ("--replicas", "replicas"),
    ("--keep-replicas", "keep_replicas"),
    ("--restart", "restart"),
    ("--adapt-features/--no-adapt-features", "adapt_features"),
    ("--center-photos/--no-center-photos", "center_photos"),
    ("--hubness-correction/--no-hubness-correction", "hubness_correction"),
)


def _alias_line(result: dict) -> str:
    """What happened to the alias: moved to the new index, or why not."""
    if result["alias"] is None:
        return f"loaded into {result['index']} (no alias moved)"
    if result["swapped"]:
        return f"alias {result['alias']} -> {result['index']}"
    if result["stopped_early"]:
        why = "the load stopped early (--max-errors)"
    elif result["count"] == 0 and result["rejected"]:
        why = "every record was rejected"
    elif result["count"] == 0 and result["read"] == 0:
        why = "the input holds no recipe"
    else:
        why = "--no-swap"
    return f"alias {result['alias']} not moved ({why}); {result['index']} holds this load"


def _notes_line(result: dict, rejects_path: Path) -> str:
    """Steps indexed without something: photos not used, texts without a vector (reasons in the file)."""
    parts = []
    if result.get("photos_dropped"):
        parts.append(f"{result['photos_dropped']} photos not used (their steps indexed text-only)")
    if result.get("no_text_vector"):
        parts.append(f"{result['no_text_vector']} steps without a text vector")
    if result.get("ingredients_or_tags_dropped"):
        parts.append(
            f"{result['ingredients_or_tags_dropped']} ingredients or tags dropped (their steps indexed)"
        )
    return f"\nnoted: {', '.join(parts)}; reasons in {rejects_path}" if parts else ""


def _update(
    dataset_root: Path,
    model_dir: Path,
    alias: str,
    index_name: str | None,
    bulk,
    image_base_url: str | None,
    raw_features: bool,
    rejects_path: Path | None,
    device: str,
    as_json: bool,
    progress: bool,
) -> None:
    """``jrs index --update``: the live index updated in place, counts reconciled."""
    from toolkit.es.client import make_client
    from toolkit.index.update import UpdateOptions, default_rejects_path, update_index

    opts = UpdateOptions(
        alias=alias,
        index=index_name,
        bulk=bulk,
        image_base_url=image_base_url,
        raw_features=raw_features,
        device=device,
    )
    es = make_client()
    # not in the model directory, which an update only reads (it may be read-only)
    rejects_path = rejects_path or default_rejects_path(es, index_name or alias)
    result = update_index(es, dataset_root, model_dir, opts, rejects_path=rejects_path, progress=progress)
    result["rejects_file"] = (
        str(rejects_path) if rejects_path.is_file() else None
    )  # as other commands: None when none
    result["device"] = device
    emit(
        result,
        as_json,
        lambda: (
            f"{result['index']}: read {result['read']} = indexed {result['indexed']} + unchanged "
            f"{result['unchanged']} + rejected {result['rejected']} + deleted {result['deleted']}; "
            f"{result['count']} documents"
            + (f"; rejects in {rejects_path}" if result["rejected"] else "")
            + (
                "\nstopped early (--max-errors): the recipes after the stop were not updated; fix the "
                "rejected records (or raise --max-errors) and run the update again"
                if result["stopped_early"]
                else ""
            )
        ),
    )
    if result["rejected"] or result["stopped_early"]:
        raise SystemExit(1)


@click.command("delete")
@click.option("--recipe", "recipes", multiple=True, required=True, help="Recipe id to remove (repeatable).")
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True, help="Alias whose index is changed.")
@click.option("--index", "index_name", default=None, help="Change this concrete index instead.")
@json_option
@user_errors
def delete_cmd(recipes: tuple[str, ...], alias: str, index_name: str | None, as_json: bool) -> None:
    """Remove recipes (every step) from the index the alias points to, in place.

    Exit status: 0 when every step found was deleted, 1 when some could not be.
    """
    from toolkit.es.client import make_client
    from toolkit.index.update import delete_recipes, recipe_ids_to_delete

    recipe_ids_to_delete(recipes)  # checked before connecting: a blank id is a usage error with no cluster up
    result = delete_recipes(make_client(), recipes, alias, index_name)
    emit(
        result,
        as_json,
        lambda: (
            f"{result['index']}: {result['deleted']} steps of {len(result['recipes']) - len(result['missing'])} "
            f"recipes deleted; {result['count']} documents"
            + (f"; not found: {', '.join(result['missing'])}" if result["missing"] else "")
        ),
    )
    if result["rejected"]:
        raise SystemExit(1)


@click.command("indices")
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True)
@click.option(
    "--remove-old",
    is_flag=True,
    help="Delete versions the alias does not point at (not one another alias names).",
)
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=KEEP_OLD_VERSIONS,
    show_default=True,
    help="Old versions kept with --remove-old (0: none).",
)
@json_option
@user_errors
@click.pass_context
def indices_cmd(ctx: click.Context, alias: str, remove_old: bool, keep: int, as_json: bool) -> None:
    """List the versions behind an alias (and remove old ones on request)."""
    from toolkit.es.client import make_client
    from toolkit.index import lifecycle

    if given_on_command_line(ctx, "keep") and not remove_old:
        raise click.UsageError("--keep applies to --remove-old: add --remove-old to delete old versions")
    # as `jrs index` and `jrs delete`: a name Elasticsearch refuses is exit 2
    lifecycle.check_target(alias, None)
    es = make_client()
    removed = lifecycle.remove_old_versions(es, alias, keep) if remove_old else []
    live = lifecycle.alias_targets(es, alias)
    versions = [
        {"index": v, "live": v in live, "count": int(es.count(index=v)["count"])}
        for v in lifecycle.list_versions(es, alias)
    ]
    data = {"alias": alias, "versions": versions, "removed": removed}
    emit(data, as_json, lambda: _versions_text(alias, versions, removed, remove_old))


def _versions_text(alias: str, versions: list[dict], removed: list[str], remove_old: bool) -> str:
    """The versions left (``*``: behind the alias), then one line per index ``--remove-old`` deleted."""
    lines = [f"{'*' if v['live'] else ' '} {v['index']}  {v['count']} docs" for v in versions]
    lines = lines or [f"no versions of {alias}"]
    lines += [f"removed {name}" for name in removed]
    if remove_old and not removed:
        lines.append("removed nothing (no old version beyond --keep)")
    return "\n".join(lines)


commands = [index_cmd, delete_cmd, indices_cmd]
