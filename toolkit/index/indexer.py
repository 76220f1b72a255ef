"""``jrs index``: a dataset + a model directory -> a versioned index behind an alias, resumable."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from toolkit.data.jsonl import iter_recipes, recipes_path
from toolkit.data.schema import is_part_record
from toolkit.device import DEFAULT_DEVICE
from toolkit.errors import ConfigError, ToolkitError, check_argument
from toolkit.es.client import check_client, raising_toolkit_errors
from toolkit.fingerprint import fingerprint
from toolkit.index import lifecycle
from toolkit.index.bulk import Batch, BulkOptions, Checkpoint, LoadCounts, LoadSummary, bulk_load, check_int
from toolkit.index.centring import (
    META_KEY,
    centre_from_meta,
    collection_centre,
    collection_feature_stats,
    sample_features,
)
from toolkit.index.documents import (
    DocStats,
    DocumentBuilder,
    build_features,
    check_image_base_url,
    recipe_batches,
)
from toolkit.index.feature_stats import META_KEY as FEATURE_META_KEY
from toolkit.index.feature_stats import FeatureStats
from toolkit.index.hubness import EXTRA_DIMS, correction_for, correction_from_meta
from toolkit.index.hubness import META_KEY as HUB_META_KEY
from toolkit.index.locking import hold_write_locks
from toolkit.index.template import DEFAULT_ALIAS, IndexModelInfo, VectorIndexOptions
from toolkit.locks import exclusive
from toolkit.model import SearchModel
from toolkit.rejects import Reject, RejectsWriter, check_rejects_file
from toolkit.resume import decide_resume

#: Reject stages that are notes on a record still indexed (a photo dropped, no text vector), not losses.
NOTE_STAGES = ("image", "text")
#: Stage of the rejects that ``bulk_load`` writes and counts itself.
LOADER_STAGE = "index"


def loses_a_record(reject: Reject) -> bool:
    """Whether ``reject`` is a step (or input line) not indexed, as ``rejected`` counts them: not a note on a
    step still indexed (:data:`NOTE_STAGES`), not a dropped ingredient or tag of a recipe whose steps are
    indexed (:func:`~toolkit.data.schema.is_part_record`), and not a document Elasticsearch refused
    (:data:`LOADER_STAGE`: ``bulk_load`` counts those)."""
    if reject.stage in NOTE_STAGES or reject.stage == LOADER_STAGE:
        return False
    return not (reject.stage == "validate" and is_part_record(reject.record))


_log = logging.getLogger(__name__)


def loads_dir(model_dir: str | Path) -> Path:
    """Where loads keep their checkpoints by default: ``MODEL_DIR/loads``."""
    return Path(model_dir) / "loads"


def checkpoint_path(checkpoint_dir: str | Path, name: str) -> Path:
    """The checkpoint of loads into ``name`` (an alias or index)."""
    return Path(checkpoint_dir) / f"{name}.checkpoint.json"


def checkpoint_lock(checkpoint_dir: str | Path, name: str) -> AbstractContextManager[None]:
    """The lock of the checkpoint of loads into ``name`` (``NAME.checkpoint.lock`` next to it), held by a load
    besides :func:`~toolkit.index.locking.write_lock`: loads of one name into two clusters with one
    ``checkpoint_dir`` would otherwise share the checkpoint. The second raises :class:`~toolkit.locks.Busy`."""
    path = checkpoint_path(checkpoint_dir, name).with_suffix(".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a read-only model directory
        raise ConfigError(
            f"cannot create {path.parent}, where a load keeps its checkpoint ({e.strerror or e}): make it "
            "writable, or give the load another checkpoint directory (IndexOptions.checkpoint_dir)"
        ) from e
    return exclusive(path, f"a load using the checkpoint {checkpoint_path(checkpoint_dir, name)}")


class CountingRejects(RejectsWriter):
    """A rejects file that tells records lost (``lost``) from notes on records still indexed (stages in
    :data:`NOTE_STAGES`; ``photos_dropped`` counts stage ``image``) and from ingredients or tags dropped from a
    recipe whose steps are indexed (``parts_dropped``). While ``muted`` (re-reading the part a resumed load
    already did) it counts without writing."""

    def __init__(self, path: str | Path | None) -> None:
        super().__init__(path)
        self.lost = 0
        self.photos_dropped = 0
        self.parts_dropped = 0
        self.muted = False

    def write(self, reject: Reject) -> None:
        if reject.stage == "image":
            self.photos_dropped += 1
        elif loses_a_record(reject):
            self.lost += 1
        elif reject.stage == "validate":
            self.parts_dropped += 1
        if not self.muted:
            super().write(reject)


@dataclass
class IndexOptions:
    """How :func:`index_dataset` loads; validated on construction (:class:`~toolkit.errors.ConfigError`).

    - ``alias``: the alias whose next version ``<alias>-NNNNNN`` the load creates (from the template
      ``<alias>-template``) and then points at
    - ``index``: load into this concrete index (or the one index behind this alias) instead of a new version
    - ``vector_options``: how the vector fields are indexed (HNSW, int8, bbq, flat)
    - ``replicas``: replicas after the load (None: 0 for a new index or version; an existing index given by
      ``index`` keeps its own); ``keep_replicas``: keep them during the load too (slower; the load survives
      losing a node of the cluster)
    - ``batch_steps``: steps per batch (each batch is checkpointed once acknowledged); ``bulk``: how batches
      are sent
    - ``image_base_url``: prefix of each document's ``image_url``; ``raw_features``: also index the raw
      backbone feature (``image_feature``)
    - ``swap``: point ``alias`` at the new version once loaded; ``restart``: ignore an unfinished load's
      checkpoint; ``checkpoint_dir``: where checkpoints go (default ``MODEL_DIR/loads``)
    - ``device``: where photos not in the build's features are encoded (``auto``, ``cpu``, ``cuda[:N]``)
    - ``adapt_features``: a new index reads its photos' backbone features with the collection's own
      per-feature mean and standard deviation (:mod:`toolkit.index.feature_stats`); ``center_photos``: a new
      index centres its photo vectors on the collection's mean photo vector (:mod:`toolkit.index.centring`);
      ``hubness_correction``: a new index corrects its photo vectors for
      hubness (:mod:`toolkit.index.hubness`: two more dimensions). An existing index keeps what it was
      created with.
    """

    alias: str = DEFAULT_ALIAS
    index: str | None = None
    vector_options: VectorIndexOptions = field(default_factory=VectorIndexOptions)
    replicas: int | None = None
    keep_replicas: bool = False
    batch_steps: int = 256
    bulk: BulkOptions = field(default_factory=BulkOptions)
    image_base_url: str | None = None
    raw_features: bool = False
    swap: bool = True
    restart: bool = False
    checkpoint_dir: Path | None = None
    device: str = DEFAULT_DEVICE
    adapt_features: bool = True
    center_photos: bool = True
    hubness_correction: bool = True

    def __post_init__(self) -> None:
        lifecycle.check_target(self.alias, self.index)
        if self.replicas is not None:
            check_int("index replicas", self.replicas, 0)
        check_int("index batch_steps", self.batch_steps, 1)
        check_image_base_url("index image_base_url", self.image_base_url)
        check_argument(
            "index vector_options", self.vector_options, VectorIndexOptions, "a toolkit.VectorIndexOptions"
        )
        check_argument("index bulk", self.bulk, BulkOptions, "a toolkit.BulkOptions")


_RESUME_LABELS = {
    "input_fingerprint": "input",
    "model_fingerprint": "model",
    "options_fingerprint": "index options",
}


def input_fingerprint(dataset_root: Path) -> str:
    """The dataset's recipes file as it is now: path, size and mtime (ns: a rewrite within a second counts)."""
    return _recipes_file_fingerprint(dataset_root, ns=True)


def legacy_input_fingerprint(dataset_root: Path) -> str:
    """:func:`input_fingerprint` as checkpoints written before index options were recorded have it (whole-second
    mtime), so such an interrupted load still resumes after an upgrade."""
    return _recipes_file_fingerprint(dataset_root, ns=False)


def _recipes_file_fingerprint(dataset_root: Path, ns: bool) -> str:
    st = os.stat(recipes_path(dataset_root))
    return fingerprint(str(dataset_root.resolve()), st.st_size, st.st_mtime_ns if ns else int(st.st_mtime))


def options_fingerprint(opts: IndexOptions) -> str:
    """What of ``opts`` shapes a new index and its documents: a load resumes only under the same ones (the
    replicas and bulk settings do not matter)."""
    return fingerprint(
        "index-options/1",
        asdict(opts.vector_options),
        opts.image_base_url,
        opts.raw_features,
        opts.center_photos,
        opts.hubness_correction,
        # absent when off, so the fingerprint is the one loads had before the option: a load interrupted
        # before it resumes with --no-adapt-features (with the default it starts a new version, as README says)
        *(["adapt-features"] if opts.adapt_features else []),
    )


def _batches(
    dataset_root: Path,
    builder: DocumentBuilder,
    rejects: CountingRejects,
    start: int,
    batch_steps: int,
    notes: DocStats,
) -> Iterator[Batch]:
    """Stream recipes -> batches. Recipes before ``start`` (a resume point) are read and counted as
    skipped; records rejected while reading count as read + rejected (as skipped before ``start``)."""
    position = 0
    seen_lost = 0
    groups = recipe_batches(iter_recipes(dataset_root, rejects, check_images=True), batch_steps)
    while True:
        rejects.muted = position < start
        group = next(groups, None)
        rejects.muted = False
        lost_reading = rejects.lost - seen_lost
        seen_lost = rejects.lost
        if group is None:
            if lost_reading:
                yield Batch(docs=[], read=lost_reading, rejected=lost_reading, position=position)
            return
        todo = group[max(0, start - position) :]
        skipped = sum(len(r.steps) for r in group[: len(group) - len(todo)])
        before_start = position < start
        position += len(group)
        docs: list[dict[str, Any]] = []
        if todo:
            docs, stats = builder.build(todo, rejects)
            notes.text_only += stats.text_only
            notes.no_text_vector += stats.no_text_vector
            notes.encoded_now += stats.encoded_now
        lost_building = rejects.lost - seen_lost
        seen_lost = rejects.lost
        if before_start and not todo:
            skipped += lost_reading
            lost_reading = 0
        lost = lost_reading + lost_building
        yield Batch(
            docs=docs, read=len(docs) + skipped + lost, rejected=lost, skipped=skipped, position=position
        )


@raising_toolkit_errors
def index_dataset(
    es: Elasticsearch,
    dataset_root: str | Path,
    model_dir: str | Path,
    options: IndexOptions | None = None,
    rejects_path: str | Path | None = None,
    progress: bool = False,
    on_batch: Callable[[LoadCounts], None] | None = None,
) -> dict[str, Any]:
    """Index every step of the dataset; resume an interrupted load of the same input and model.

    ``progress`` shows a bar over the steps read; ``on_batch`` is called with each batch's counts once it
    is acknowledged and checkpointed. Notes go to this module's logger. Elasticsearch failures raise
    :class:`~toolkit.errors.ToolkitError` (:class:`~toolkit.es.client.EsUnavailable` when it stops answering
    or refuses the credentials), chained from the client's exception.

    Returns what ``jrs index --json`` prints (less ``rejects_file`` and ``device``), counted for this run:

    - ``index``: the concrete index loaded; ``alias``: the alias (None with ``options.index``);
      ``swapped``: whether the alias now points at ``index`` (not when the load stopped early, or when
      every record it read was rejected); ``previous``: the indices it pointed at before
    - ``read`` = ``indexed`` + ``rejected`` + ``skipped``: records read (steps, or unparsable input lines),
      indexed, not indexed (reasons in ``rejects_path``), skipped (loaded before the resume point)
    - ``seconds``, ``docs_per_s``, ``retries`` (bulk requests retried), ``resumed_from`` (recipes already
      loaded by the run resumed, 0 for a new load), ``stopped_early`` (``bulk.max_errors`` exceeded: the alias
      was not moved)
    - ``text_only`` (steps indexed without a photo), ``no_text_vector`` (steps without a text vector),
      ``photos_encoded_now`` (photos not in the build's features, encoded by this load), ``photos_dropped``
      (photos that could not be used: their steps indexed text-only), ``ingredients_or_tags_dropped``
      (an ingredient or tag that breaks the format: its recipe's steps indexed without it)
    - ``model_fingerprint``; ``photo_features_adapted`` / ``photos_centred`` / ``photos_hubness_corrected``:
      whether the index reads its photo features with the collection's statistics / centres / hubness-corrects
      its photo vectors; ``photo_drift``: ``{photos, ratio, expected, shifted}``, how
      this load's photos sit about the index's photo centre (:mod:`toolkit.index.drift`; None without a
      centre or photos); ``photo_feature_drift``: ``{photos, mean_shift, spread_ratio, shifted}``, how their
      backbone features sit against the index's feature statistics (:class:`~toolkit.index.drift.FeatureDrift`;
      None without statistics or photos); ``count``: documents in ``index`` after the load

    A second load or a live update of the same alias or index on the same cluster while this one runs (whatever
    its model or checkpoint directory), or a load with the same checkpoint, raises :class:`~toolkit.locks.Busy`
    naming the lock (:func:`~toolkit.index.locking.write_lock`, :func:`checkpoint_lock`) before it creates
    anything; a lock directory it cannot write raises :class:`~toolkit.errors.ConfigError` naming it, and so
    does a ``rejects_path`` it could not write (before anything is read or created, not at the first reject).
    """
    check_client(es)
    if options is not None:
        check_argument("options", options, IndexOptions, "None or a toolkit.IndexOptions")
    if rejects_path is not None:
        check_rejects_file(rejects_path, "give a writable file with --rejects (index_dataset's rejects_path)")
    with ExitStack() as held:  # the load's checkpoint locked once its path is known
        return _index_dataset(es, dataset_root, model_dir, options, rejects_path, progress, on_batch, held)


def _index_dataset(
    es: Elasticsearch,
    dataset_root: str | Path,
    model_dir: str | Path,
    options: IndexOptions | None,
    rejects_path: str | Path | None,
    progress: bool,
    on_batch: Callable[[LoadCounts], None] | None,
    held: ExitStack,
) -> dict[str, Any]:
    opts = options or IndexOptions()
    root = Path(dataset_root)
    model = SearchModel.load(model_dir, opts.device)
    info = IndexModelInfo(
        fingerprint=model.fingerprint,
        dims=model.dims,
        backbone=model.encoder_name,
        raw_feature_dims=model.feature_dims if opts.raw_features else None,
    )
    in_fp, opt_fp = input_fingerprint(root), options_fingerprint(opts)
    ckpt_dir = opts.checkpoint_dir or loads_dir(model_dir)
    ckpt_path = checkpoint_path(ckpt_dir, opts.index or opts.alias)
    # two runs writing one alias at once would interleave their work; two loads would also share this
    # checkpoint (and resume into each other's index)
    locked = hold_write_locks(es, opts.index or opts.alias, held)
    held.enter_context(checkpoint_lock(ckpt_dir, opts.index or opts.alias))
    ckpt = None if opts.restart else Checkpoint.load(ckpt_path)  # --restart: even a damaged one ignored
    expected = {
        "done": False,
        "input_fingerprint": in_fp,
        "model_fingerprint": model.fingerprint,
        "options_fingerprint": opt_fp,
    }
    if ckpt is not None and not ckpt.options_fingerprint:  # written before options were recorded: resumed as
        expected.update(
            input_fingerprint=legacy_input_fingerprint(root), options_fingerprint=""
        )  # it was then
    decision = decide_resume(
        None if ckpt is None else asdict(ckpt),
        expected,
        overwrite=opts.restart,
        labels=_RESUME_LABELS,
    )
    # a mismatch (other input, model or index options, or a finished load) starts a new load
    resumable = decision.action == "resume" and ckpt is not None and es.indices.exists(index=ckpt.index)
    made_by = lifecycle.index_info(es, ckpt.index).meta if resumable and ckpt is not None else {}
    if ckpt is not None and resumable and made_by.get("model_fingerprint") != model.fingerprint:
        # the checkpoint's index was deleted and made again by a load of another model: resuming would write this
        # model's vectors into it (and move the alias onto the mixture)
        _log.info(
            f"not resuming the unfinished load into {ckpt.index}: it now holds another model's vectors; "
            "starting a new one"
        )
        resumable = False
    if decision.action == "mismatch" and ckpt is not None and not ckpt.done:
        changed = "; ".join(decision.differences)
        _log.info(f"not resuming the unfinished load into {ckpt.index} ({changed}): starting a new one")
    features, written_ns = build_features(model, root)
    builder = DocumentBuilder(model, root, features, opts.image_base_url, opts.raw_features, written_ns)
    creating = not resumable and not (opts.index and es.indices.exists(index=opts.index))
    if creating and (opts.adapt_features or opts.center_photos):
        photos = sample_features(builder)
        stats = collection_feature_stats(photos) if opts.adapt_features else None
        if stats is not None:
            info = replace(info, extra={**info.extra, FEATURE_META_KEY: stats.meta()})
        centre = collection_centre(builder, photos=photos, stats=stats) if opts.center_photos else None
        if centre is not None:
            info = replace(info, extra={**info.extra, META_KEY: [float(x) for x in centre]})
    hub = correction_for(model) if creating and opts.hubness_correction else None
    if hub is not None:
        info = replace(
            info, image_dims=model.dims + EXTRA_DIMS, extra={**info.extra, HUB_META_KEY: hub.meta()}
        )
    if resumable:
        assert ckpt is not None
        target = ckpt.index
        # a new (or resumed) version no alias names yet: a run given it by --index waits for this one
        hold_write_locks(es, target, held, skip=locked)
        _log.info(f"resuming the load into {target} after {ckpt.position} recipes")
        restore: dict[str, Any] = {
            "index.refresh_interval": "1s",
            "index.number_of_replicas": opts.replicas or 0,
        }
        lifecycle.ensure_added_fields(es, target)
        lifecycle.begin_load(es, target)
    else:
        existed = False
        if opts.index:
            target = opts.index
            existed = bool(es.indices.exists(index=target))
            if not existed:
                lifecycle.put_template(es, target, info, opts.vector_options, opts.replicas or 0)
                es.indices.create(index=target, **_template_body(es, target))
                # the template only made this one index: left behind it would shape any later `<name>-*`
                es.indices.delete_index_template(name=lifecycle.template_name(target))
            else:
                target = lifecycle.concrete_index(es, target)  # --index may name an alias
                lifecycle.check_index_model(es, target, model.fingerprint)
                lifecycle.ensure_added_fields(es, target)
        else:
            lifecycle.put_template(es, opts.alias, info, opts.vector_options, opts.replicas or 0)
            target = lifecycle.create_version(es, opts.alias)
        # a new (or resumed) version no alias names yet: a run given it by --index waits for this one
        hold_write_locks(es, target, held, skip=locked)
        restore = lifecycle.begin_load(es, target)  # an existing index's own replicas, unless given
        if opts.replicas is not None or not (opts.index and existed):
            restore["index.number_of_replicas"] = opts.replicas or 0
        ckpt = Checkpoint(
            path=ckpt_path,
            index=target,
            input_fingerprint=in_fp,
            model_fingerprint=model.fingerprint,
            options_fingerprint=opt_fp,
        )
        try:
            ckpt.save()
        except BaseException:  # e.g. a read-only model directory: no index is left with refresh off
            _restore_quietly(es, target, restore)
            raise
        if rejects_path is not None:  # a new load's rejects only (a resumed one adds to its own)
            Path(rejects_path).unlink(missing_ok=True)
    if opts.keep_replicas and restore["index.number_of_replicas"]:
        _keep_replicas(es, target, int(restore["index.number_of_replicas"]))
    # what the index was created with (a resumed or existing index keeps its own statistics and centre, or
    # none); a broken _meta is refused without leaving the index in its load settings (refresh off)
    try:
        meta = lifecycle.index_info(es, target).meta
        builder.feature_stats = FeatureStats.from_meta(meta, model.feature_dims)
        builder.photo_centre = centre_from_meta(meta, model.dims)
        builder.photo_hub = hub if creating else correction_from_meta(meta, model)
    except BaseException:
        _restore_quietly(es, target, restore)
        raise
    if opts.center_photos and builder.photo_centre is None and not creating:
        _log.info(f"{target} was created without a photo centre: its photo vectors stay uncentred")
    notes = DocStats()
    try:
        with CountingRejects(rejects_path) as rejects:
            summary: LoadSummary = bulk_load(
                es,
                target,
                _batches(root, builder, rejects, ckpt.position, opts.batch_steps, notes),
                rejects,
                checkpoint=ckpt,
                options=opts.bulk,
                progress=progress,
                on_batch=on_batch,
                mark_done=False,  # done once the alias is swapped: a rerun after a stop in between resumes
            )
            photos_dropped, parts_dropped = rejects.photos_dropped, rejects.parts_dropped
        lifecycle.finish_load(es, target, restore)
    except BaseException:
        # a load that fails (or is interrupted) leaves no index with refresh off: what it loaded is searchable
        # and a live index keeps serving updates; the checkpoint still resumes it
        _restore_quietly(es, target, restore)
        raise
    previous: list[str] = []
    count = int(es.count(index=target)["count"])
    swapped = opts.index is None and opts.swap and not summary.stopped_early
    if swapped and count == 0 and summary.counts.rejected:
        # every record rejected (a mapping the node accepts but every document fails, a wrong model...):
        # moving the alias would put an empty index in front of the searches the old version answers
        _log.warning(
            f"every record of {target} was rejected ({summary.counts.rejected}): alias {opts.alias} not moved "
            "to it (see the rejects file)"
        )
        swapped = False
    elif swapped and count == 0:
        # no record read at all (an empty or truncated recipes file): the alias keeps the documents it serves
        live = [i for i in lifecycle.alias_targets(es, opts.alias) if i != target]
        serving = int(es.count(index=live)["count"]) if live else 0
        if serving:
            _log.warning(
                f"{target} is empty (the input holds no recipe): alias {opts.alias} not moved off "
                f"{', '.join(live)} ({serving} documents)"
            )
            swapped = False
    if swapped:
        previous = lifecycle.swap_alias(es, opts.alias, target)
    if not summary.stopped_early:
        ckpt.done = True
        ckpt.save()
    result = summary.as_dict()
    result.update(
        {
            "alias": None if opts.index else opts.alias,
            "swapped": swapped,
            "previous": previous,
            "text_only": notes.text_only,
            "no_text_vector": notes.no_text_vector,
            "photos_encoded_now": notes.encoded_now,
            "photos_dropped": photos_dropped,
            "ingredients_or_tags_dropped": parts_dropped,
            "model_fingerprint": model.fingerprint,
            "photo_features_adapted": builder.feature_stats is not None,
            "photos_centred": builder.photo_centre is not None,
            "photos_hubness_corrected": builder.photo_hub is not None,
            "photo_drift": builder.centre_drift.report(target),
            "photo_feature_drift": builder.feature_drift.report(target),
            "count": count,
        }
    )
    if summary.counts.read != summary.counts.indexed + summary.counts.rejected + summary.counts.skipped:
        raise ToolkitError(f"internal accounting error: {result}")
    return result


def _restore_quietly(es: Elasticsearch, index: str, restore: dict[str, Any]) -> None:
    try:
        lifecycle.finish_load(es, index, restore)
    except Exception as e:  # the cluster may be what failed: the load's own error is the one to report
        _log.warning(f"could not restore the settings of {index} after the failed load: {type(e).__name__}")


def _keep_replicas(es: Elasticsearch, index: str, replicas: int) -> None:
    """Give the index its replicas before loading and wait (up to a minute) until they are assigned."""
    es.indices.put_settings(index=index, settings={"index.number_of_replicas": replicas})
    health = es.options(ignore_status=408).cluster.health(index=index, wait_for_status="green", timeout="60s")
    if health.get("status") != "green":
        _log.warning(f"{index} is {health.get('status')}: not every replica could be assigned")


def _template_body(es: Elasticsearch, name: str) -> dict[str, Any]:
    """Settings + mappings of the template ``<name>-template`` for a concrete index called ``name``."""
    tpl = es.indices.get_index_template(name=lifecycle.template_name(name))["index_templates"][0]
    body = tpl["index_template"]["template"]
    return {"settings": body.get("settings", {}), "mappings": body.get("mappings", {})}
