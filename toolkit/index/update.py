"""Live updates of the index an alias points to, without a rebuild: new and changed recipes are sent, unchanged
documents are not (each carries a content hash), steps a recipe no longer has and recipes asked for are deleted.

Counting: ``read`` = every step considered (each input step, or an unparsable input record, plus each indexed
step of an updated recipe that the input no longer has) = ``indexed`` + ``unchanged`` + ``rejected`` +
``deleted``. An interrupted update leaves every acknowledged document with its new hash, so running it again
sends only what is still missing or different.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers

from toolkit.data.jsonl import iter_recipes
from toolkit.data.schema import Recipe, Step
from toolkit.device import DEFAULT_DEVICE
from toolkit.errors import ConfigError, ToolkitError, check_argument
from toolkit.es.client import check_client, raising_toolkit_errors
from toolkit.index import lifecycle
from toolkit.index.bulk import (
    Batch,
    BulkOptions,
    LoadCounts,
    LoadSummary,
    bulk_load,
    check_int,
    partial_doc,
)
from toolkit.index.centring import centre_from_meta
from toolkit.index.documents import DocumentBuilder, build_features, check_image_base_url, recipe_batches
from toolkit.index.feature_stats import FeatureStats
from toolkit.index.hubness import correction_from_meta
from toolkit.index.locking import cluster_key, lock_file_name, write_lock
from toolkit.index.template import DEFAULT_ALIAS
from toolkit.model import SearchModel
from toolkit.rejects import Reject, RejectsWriter, start_rejects_file

log = logging.getLogger(__name__)

#: What to do when an update's rejects file cannot be written (checked before the update does any work).
REJECTS_FIX = "give a writable file with --rejects (update_index's rejects_path)"


@dataclass
class UpdateOptions:
    """How :func:`update_index` updates; validated on construction (:class:`~toolkit.errors.ConfigError`).

    - ``alias``: the alias whose one index is updated; ``index``: update this concrete index instead
    - ``batch_steps``, ``bulk``, ``image_base_url``, ``raw_features``: as in
      :class:`~toolkit.index.indexer.IndexOptions` (give the ones the index was loaded with)
    - ``device``: where new or changed photos are encoded (``auto``, ``cpu``, ``cuda[:N]``)
    """

    alias: str = DEFAULT_ALIAS
    index: str | None = None
    batch_steps: int = 256
    bulk: BulkOptions = field(default_factory=BulkOptions)
    image_base_url: str | None = None
    raw_features: bool = False
    device: str = DEFAULT_DEVICE

    def __post_init__(self) -> None:
        lifecycle.check_target(self.alias, self.index)
        check_int("update batch_steps", self.batch_steps, 1)
        check_image_base_url("update image_base_url", self.image_base_url)
        check_argument("update bulk", self.bulk, BulkOptions, "a toolkit.BulkOptions")


@dataclass
class _Plan:
    """Per-run tallies that do not go through the bulk loader (``keys_only``: of the documents sent, those
    given their ingredient keys only, :func:`_compare`)."""

    unchanged: int = 0
    stale: list[str] = field(default_factory=list)
    keys_only: int = 0


def live_index(es: Elasticsearch, alias: str, index: str | None = None) -> str:
    """The one concrete index an update writes to: ``index``, or the index behind ``alias``."""
    if index:
        if not es.indices.exists(index=index):
            raise lifecycle.IndexNotFound(f"index {index!r} does not exist; build it with `jrs index`")
        return lifecycle.concrete_index(es, index)
    targets = lifecycle.alias_targets(es, alias)
    if len(targets) != 1:
        raise lifecycle.IndexNotFound(
            f"alias {alias!r} points at {len(targets)} indices ({', '.join(targets) or 'none'}); "
            "an update needs exactly one (build it with `jrs index`, or name one with --index)"
        )
    return targets[0]


def indexed_hashes(es: Elasticsearch, index: str) -> tuple[dict[str, str | None], dict[str, set[str]]]:
    """``step_id -> content_hash`` (None for documents indexed before hashes) and ``recipe_id -> step ids``."""
    hashes: dict[str, str | None] = {}
    by_recipe: dict[str, set[str]] = {}
    for hit in helpers.scan(
        es, index=index, query={"query": {"match_all": {}}}, _source=["recipe_id", "content_hash"], size=5000
    ):
        src = hit.get("_source", {})
        hashes[hit["_id"]] = src.get("content_hash")
        by_recipe.setdefault(src.get("recipe_id", ""), set()).add(hit["_id"])
    return hashes, by_recipe


def _update_batches(
    root: Path,
    builder: DocumentBuilder,
    rejects: _LostCounter,
    hashes: dict[str, str | None],
    by_recipe: dict[str, set[str]],
    batch_steps: int,
    plan: _Plan,
) -> Iterator[Batch]:
    """Recipes -> batches of the documents that differ from the index (new or changed steps only)."""
    seen = 0
    groups = recipe_batches(iter_recipes(root, rejects, check_images=True), batch_steps)
    for group in groups:
        todo, partial = [], []
        for recipe in group:
            ids = {recipe.step_id(s): s for s in recipe.steps}
            changed, keys_only = _compare(builder, recipe, ids, hashes)
            plan.unchanged += len(ids) - len(changed) - len(keys_only)
            plan.keys_only += len(keys_only)
            plan.stale += sorted(by_recipe.get(recipe.recipe_id, set()) - set(ids))
            partial += keys_only
            if changed:
                todo.append(replace(recipe, steps=changed))
        docs = (builder.build(todo, rejects)[0] if todo else []) + partial
        lost, seen = rejects.lost - seen, rejects.lost
        yield Batch(docs=docs, read=len(docs) + lost, rejected=lost)
    if rejects.lost - seen:
        lost = rejects.lost - seen
        yield Batch(docs=[], read=lost, rejected=lost)


def _compare(
    builder: DocumentBuilder, recipe: Recipe, ids: dict[str, Step], hashes: dict[str, str | None]
) -> tuple[tuple[Step, ...], list[dict[str, Any]]]:
    """The steps of ``recipe`` (``ids``: by step id) whose document must be built and sent, and partial
    updates (ingredient keys and hash) of those whose indexed document differs from the one built now only
    by its ingredient keys: indexed before the hash covered them, it carries the legacy hash
    (:meth:`~toolkit.index.documents.DocumentBuilder.legacy_step_hash`), and its texts and photo need no
    new vectors."""
    changed: list[Step] = []
    keys_only: list[dict[str, Any]] = []
    for sid, step in ids.items():
        stored, new = hashes.get(sid, ""), builder.step_hash(recipe, step)
        if stored == new:
            continue
        if stored and stored == builder.legacy_step_hash(recipe, step):
            fields = {"ingredient_keys": builder.ingredient_keys(recipe), "content_hash": new}
            keys_only.append(partial_doc(sid, fields))
        else:
            changed.append(step)
    return tuple(changed), keys_only


class _LostCounter(RejectsWriter):
    """Counts records lost while reading or building (notes on indexed records are written, not counted)."""

    def __init__(self, path: str | Path | None) -> None:
        super().__init__(path)
        self.lost = 0

    def write(self, reject: Reject) -> None:
        from toolkit.index.indexer import loses_a_record

        if loses_a_record(reject):
            self.lost += 1
        super().write(reject)


def delete_documents(
    es: Elasticsearch, index: str, ids: Iterable[str], rejects: RejectsWriter
) -> tuple[int, int]:
    """Delete documents by id; (deleted, rejected). One already gone counts as deleted (a re-run's case)."""
    deleted = rejected = 0
    actions = ({"_op_type": "delete", "_index": index, "_id": i} for i in ids)
    for ok, info in helpers.streaming_bulk(es, actions, raise_on_error=False, max_retries=3):
        item = info.get("delete", {})
        if ok or item.get("status") == 404:
            deleted += 1
        else:
            rejected += 1
            reason = f"HTTP {item.get('status')}: {item.get('error')}"
            rejects.write(Reject(record=str(item.get("_id")), stage="delete", reason=reason))
    return deleted, rejected


@raising_toolkit_errors
def default_rejects_path(es: Elasticsearch, name: str) -> Path:
    """Where ``jrs index --update`` of ``name`` (an alias or index) writes its rejects by default:
    ``rejects/<cluster>/<name>.update-rejects.jsonl`` in the toolkit's cache (``JRS_HOME``, beside the default
    ``locks/``), not in the model directory, which an update only reads (it may be read-only). The cluster is
    named as its locks are (:func:`~toolkit.index.locking.cluster_key`), so updates of two clusters never share
    the file, and one update at a time writes it (they hold the lock)."""
    from toolkit.es.node import toolkit_home

    stem = lock_file_name(name).removesuffix(".lock")
    return toolkit_home() / "rejects" / cluster_key(es) / f"{stem}.update-rejects.jsonl"


@raising_toolkit_errors
def update_index(
    es: Elasticsearch,
    dataset_root: str | Path,
    model_dir: str | Path,
    options: UpdateOptions | None = None,
    rejects_path: str | Path | None = None,
    progress: bool = False,
    on_batch: Callable[[LoadCounts], None] | None = None,
) -> dict[str, Any]:
    """Add new recipes and replace changed steps of ``dataset_root`` in the live index, in place
    (``jrs index --update``): steps a recipe no longer has are deleted; recipes missing from the dataset are
    kept (:func:`delete_recipes`).

    ``progress``, ``on_batch`` and the errors as in :func:`toolkit.index.indexer.index_dataset`. Returns what
    ``jrs index --update --json`` prints (less ``rejects_file`` and ``device``): ``index``, ``alias``, ``read``
    = ``indexed`` + ``unchanged`` + ``rejected`` + ``deleted``, ``retries``, ``seconds``, ``count``
    (documents after the update), ``photo_drift``, ``photo_feature_drift`` and ``stopped_early``.

    A document indexed before the content hash covered the ingredient keys, and otherwise unchanged, is sent
    as a partial update (its keys and new hash; counted in ``indexed``), not rebuilt. A second update or a
    load of the same alias (or index) on the same cluster while this one runs, whatever its model or checkpoint
    directory, raises :class:`~toolkit.locks.Busy` naming the lock (:func:`~toolkit.index.locking.write_lock`:
    not in ``model_dir``, which may be read-only) before anything is written. ``rejects_path`` (None: rejects
    are logged) starts afresh; one that cannot be written is a :class:`ConfigError` naming it, before any work.
    """
    check_client(es)
    if options is not None:
        check_argument("options", options, UpdateOptions, "None or a toolkit.UpdateOptions")
    opts = options or UpdateOptions()
    model = SearchModel.load(model_dir, opts.device)  # before the lock: a wrong directory is not written to
    # a second update (or a load) of the same alias at once would do the same work into the same index
    with write_lock(es, opts.index or opts.alias):
        # this update's rejects only; a file that cannot be written stops it here, before any work
        if rejects_path is not None:
            start_rejects_file(rejects_path, REJECTS_FIX)
        return _update_index(es, dataset_root, model, opts, rejects_path, progress, on_batch)


def _update_index(
    es: Elasticsearch,
    dataset_root: str | Path,
    model: SearchModel,
    opts: UpdateOptions,
    rejects_path: str | Path | None,
    progress: bool,
    on_batch: Callable[[LoadCounts], None] | None,
) -> dict[str, Any]:
    root = Path(dataset_root)
    target = live_index(es, opts.alias, opts.index)
    info = lifecycle.check_index_model(es, target, model.fingerprint)
    lifecycle.ensure_added_fields(es, target)
    start = time.monotonic()
    hashes, by_recipe = indexed_hashes(es, target)
    features, written_ns = build_features(model, root)
    builder = DocumentBuilder(model, root, features, opts.image_base_url, opts.raw_features, written_ns)
    builder.feature_stats = FeatureStats.from_meta(info.meta, model.feature_dims)  # read alike
    builder.photo_centre = centre_from_meta(info.meta, model.dims)  # new photos centred like the others
    builder.photo_hub = correction_from_meta(info.meta, model)  # and corrected alike
    plan = _Plan()
    with _LostCounter(rejects_path) as rejects:
        batches = _update_batches(root, builder, rejects, hashes, by_recipe, opts.batch_steps, plan)
        summary: LoadSummary = bulk_load(
            es, target, batches, rejects, options=opts.bulk, progress=progress, on_batch=on_batch
        )
        deleted, delete_failed = delete_documents(es, target, plan.stale, rejects)
    es.indices.refresh(index=target)
    if plan.keys_only:
        log.info(
            "%s: %d documents indexed before ingredient keys were given their keys only (texts and photos "
            "not embedded again)",
            target,
            plan.keys_only,
        )
    c = summary.counts
    result: dict[str, Any] = {
        "index": target,
        "alias": None if opts.index else opts.alias,
        "read": c.read + plan.unchanged + len(plan.stale),
        "indexed": c.indexed,
        "unchanged": plan.unchanged,
        "rejected": c.rejected + delete_failed,
        "deleted": deleted,
        "retries": summary.retries,
        "seconds": round(time.monotonic() - start, 3),
        "count": int(es.count(index=target)["count"]),
        "photo_drift": builder.centre_drift.report(target),
        "photo_feature_drift": builder.feature_drift.report(target),
        # --max-errors reached: the recipes after the stop were neither compared nor updated
        "stopped_early": summary.stopped_early,
    }
    if result["read"] != result["indexed"] + result["unchanged"] + result["rejected"] + result["deleted"]:
        raise ToolkitError(f"internal accounting error: {result}")
    return result


def recipe_ids_to_delete(recipe_ids: Iterable[str]) -> list[str]:
    """The distinct ids of ``recipe_ids`` (one string is one id), or a :class:`ConfigError` for none, or for a
    blank or non-string one (before, a blank id was dropped without a word)."""
    asked = [recipe_ids] if isinstance(recipe_ids, str) else list(recipe_ids)
    bad = [r for r in asked if not isinstance(r, str) or not r.strip()]
    if bad:
        raise ConfigError(
            f"recipe ids must be non-blank strings, got {', '.join(map(repr, bad))} (--recipe ID)"
        )
    if not asked:
        raise ConfigError("name at least one recipe to delete (--recipe ID)")
    return list(dict.fromkeys(r.strip() for r in asked))


@raising_toolkit_errors
def delete_recipes(
    es: Elasticsearch,
    recipe_ids: Iterable[str],
    alias: str = DEFAULT_ALIAS,
    index: str | None = None,
    rejects_path: str | Path | None = None,
) -> dict[str, Any]:
    """Remove every step of ``recipe_ids`` from the live index (``jrs delete``): returns ``index``, ``recipes``
    (the ids asked for), ``missing`` (those not found), ``read`` (steps found) = ``deleted`` + ``rejected``,
    and ``count`` (documents left). Errors as in :func:`toolkit.index.indexer.index_dataset`; a
    :class:`~toolkit.locks.Busy` naming the index while a load or update of it runs (it could write the
    deleted steps back, or hold documents not yet searchable)."""
    check_client(es)
    lifecycle.check_target(alias, index)
    wanted = recipe_ids_to_delete(recipe_ids)
    with write_lock(es, index or alias):
        return _delete_steps(es, wanted, live_index(es, alias, index), rejects_path)


def _delete_steps(
    es: Elasticsearch, wanted: list[str], target: str, rejects_path: str | Path | None
) -> dict[str, Any]:
    found: dict[str, list[str]] = {}
    for hit in helpers.scan(
        es, index=target, query={"query": {"terms": {"recipe_id": wanted}}}, _source=["recipe_id"]
    ):
        found.setdefault(hit["_source"]["recipe_id"], []).append(hit["_id"])
    ids = [i for r in wanted for i in found.get(r, [])]
    with RejectsWriter(rejects_path) as rejects:
        deleted, rejected = delete_documents(es, target, ids, rejects)
    es.indices.refresh(index=target)
    return {
        "index": target,
        "recipes": wanted,
        "missing": [r for r in wanted if r not in found],
        "read": len(ids),
        "deleted": deleted,
        "rejected": rejected,
        "count": int(es.count(index=target)["count"]),
    }
