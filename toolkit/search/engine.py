"""Run searches against an index built by a model: kNN, keyword, hybrid, by photo and composed queries."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, SupportsIndex

import numpy as np
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from toolkit.errors import ConfigError, ToolkitError, given
from toolkit.es.client import es_errors
from toolkit.index.centring import META_KEY as CENTRE_KEY
from toolkit.index.centring import centre_from_meta, centred
from toolkit.index.feature_stats import META_KEY as FEATURE_STATS_KEY
from toolkit.index.feature_stats import FeatureStats, adapted
from toolkit.index.hubness import (
    EXTRA_DIMS,
    HubCorrection,
    correction_from_meta,
    layout_from_meta,
    lift_query,
    photo_scale,
    recorded_settings,
    unlift_photo,
)
from toolkit.index.lifecycle import IndexNotFound, check_index_model, index_info
from toolkit.model import SearchModel, check_query_text, no_content_word, refuse_pickling, shallow_copy
from toolkit.search.fusion import linear_fuse, rrf_fuse
from toolkit.search.queries import (
    MAX_NUM_CANDIDATES,
    Filters,
    Grouping,
    HybridParams,
    KnnParams,
    compose,
    fusion_msearch_bodies,
    hybrid_request,
    keyword_request,
    knn_request,
    rrf_retriever_request,
)
from toolkit.search.stored import VectorsNotReturned, source_vectors

if TYPE_CHECKING:
    from toolkit.image.loading import PhotoSource

log = logging.getLogger(__name__)

#: how often (seconds) a :class:`Searcher` asks which indices its alias points at: one ``GET <alias>/_alias``
#: (about 0.5 ms on a local node, a seventh of a kNN search), so at most once a second by default
RECHECK_S = 1.0


@dataclass
class Hit:
    """One step found: its score and what the index holds about it.

    ``score`` is on the scale of the mode that ranked it, comparable within one result only:

    * ``knn`` / photo / like / composed queries: Elasticsearch's vector score, ``(1 + cos) / 2`` of the query
      and the stored photo vector (centred and hubness-corrected as the index was made; 1 for a photo's own
      vector);
    * ``keyword``: BM25 of the query's words in the step's ``tokens`` (UniDic lemmas of its text);
    * ``hybrid``: the sum of both, each times its boost;
    * ``rrf``: the sum of ``1 / (rank_constant + rank)`` over the two lists;
    * ``linear``: the sum of each list's min-max normalised score times its weight (0 to the sum of the boosts).
    """

    score: float
    step_id: str
    recipe_id: str
    title: str
    #: the step's place in its recipe (1 = first)
    position: int
    text: str
    #: the photo's path relative to the dataset root (None: a text-only step)
    image_path: str | None = None
    #: ``--image-base-url`` + the path, when the index was loaded with one
    image_url: str | None = None
    #: the recipe's ingredient names
    ingredients: list[str] = field(default_factory=list)

    @classmethod
    def from_es(cls, hit: dict[str, Any]) -> Hit:
        s = hit.get("_source", {})
        return cls(
            score=float(hit.get("_score") or 0.0),
            step_id=s.get("step_id", hit["_id"]),
            recipe_id=s.get("recipe_id", ""),
            title=s.get("title", ""),
            position=int(s.get("position", 0)),
            text=s.get("text", ""),
            image_path=s.get("image_path"),
            image_url=s.get("image_url"),
            ingredients=list(s.get("ingredients") or []),
        )


@dataclass
class Group:
    """One recipe of a grouped result: its best step's score and its best-matching steps, best first."""

    recipe_id: str
    title: str
    score: float
    steps: list[Hit]

    @classmethod
    def from_es(cls, hit: dict[str, Any]) -> Group:
        inner = hit.get("inner_hits", {}).get("steps", {}).get("hits", {}).get("hits", [])
        top = Hit.from_es(hit)
        return cls(top.recipe_id, top.title, top.score, [Hit.from_es(h) for h in inner] or [top])


def group_hits(hits: list[Hit], k: int, per_group: int) -> list[Group]:
    """Group a ranked step list by recipe client-side (after fusion): ``k`` recipes in best-step order."""
    groups: dict[str, Group] = {}
    for h in hits:
        g = groups.get(h.recipe_id)
        if g is None:
            if len(groups) == k:
                continue
            g = groups[h.recipe_id] = Group(h.recipe_id, h.title, h.score, [])
        if len(g.steps) < per_group:
            g.steps.append(h)
    return list(groups.values())


@dataclass
class SearchResult:
    """What one search found: ``hits`` best first (see :class:`Hit` for what ``score`` means per mode), the
    request bodies sent (``requests``: what Kibana Dev Tools would run), ``took_ms`` (Elasticsearch's own
    ``took``; the slower of two when a mode sends two lists) and ``total_ms`` (the client's round trip for the
    search requests), ``fusion`` (how two lists were fused: ``server`` / ``client`` for rrf, ``minmax`` for
    linear) and ``notes`` (what a user should know about the query: unknown words, an ignored mode, no hit)."""

    mode: str
    hits: list[Hit]
    requests: list[dict[str, Any]]
    took_ms: float
    total_ms: float
    fusion: str | None = None
    notes: list[str] = field(default_factory=list)
    #: recipe-level results (``group="recipe"``): ``hits`` then holds each recipe's best step
    groups: list[Group] | None = None
    #: what the query became and what each word did (``explain=True``)
    explanation: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Target:
    """The concrete indices a :class:`Searcher`'s index, alias or pattern resolved to, read with their ``_meta``:
    how their photo vectors were made (centre, hubness ``beta``; the correction itself built on first use)."""

    indices: tuple[str, ...]
    meta: dict[str, Any]
    centre: np.ndarray | None
    beta: float | None
    hub: HubCorrection | None = None
    #: the fields the indices map (:attr:`~toolkit.index.lifecycle.IndexInfo.fields`)
    fields: frozenset[str] = frozenset()
    #: the statistics the indices read photo features with (:mod:`toolkit.index.feature_stats`), or None
    feature_stats: FeatureStats | None = None
    #: the indices were centred on different photo centres, or read their photo features with different
    #: statistics (a photo query cannot be made like them all)
    photos_made_apart: bool = False
    #: the vector fields the indices map with different sizes, with what differs
    #: (:attr:`~toolkit.index.lifecycle.IndexInfo.vectors_apart`): a kNN query on one is refused
    vectors_apart: dict[str, str] = field(default_factory=dict)


def check_searcher_parts(es: object, model: object, index: object) -> None:
    """A :class:`ConfigError` unless ``es`` is an Elasticsearch client, ``model`` a :class:`SearchModel` and
    ``index`` an index or alias name (what a :class:`Searcher` needs)."""
    if not isinstance(es, Elasticsearch):
        raise ConfigError(
            f"the searcher's es must be an Elasticsearch client (toolkit.make_client()), got {given(es)}"
        )
    if not isinstance(model, SearchModel):
        raise ConfigError(
            f"the searcher's model must be a toolkit.SearchModel (SearchModel.load(model_dir)), got {given(model)}"
        )
    if not isinstance(index, str) or not index.strip():
        raise ConfigError(f"the searcher's index must be an index or alias name, got {given(index)}")


class Searcher:
    """Queries one index, alias or pattern with the model that built it (fingerprint checked on open, unless
    ``check=False``).

    A name over several indices is searched as one when they share the model and the photo layout
    (:data:`~toolkit.index.lifecycle.SHARED_META`; else :class:`~toolkit.index.lifecycle.IndexNotFound` naming
    them); a photo query over indices centred on different photo centres is refused, naming them, and so is
    a kNN query on a vector field they map with different sizes (:meth:`check_vector_field`).

    ``warm``: build what the first queries would build now (:meth:`warm_up`: the model's tokenizer and photo
    encoder, and the index's photo hubness bank); None: when the model was warmed up
    (``SearchModel.load(warm=True)``).

    ``missing_ok`` (with ``check``): a name that names no index yet is no error on open (a warning is logged;
    ``warm`` warms the model only): the index is read and checked before the first request that comes once it
    exists (each request until then raises :class:`~toolkit.index.lifecycle.IndexNotFound`). For a server
    started before ``jrs index`` made its index.

    It follows an alias that is swapped to a new index (``jrs index`` while a server runs): the concrete indices
    the name resolved to are remembered with their ``_meta`` (model fingerprint, photo centre, hubness
    correction); before a request, at most every ``recheck_s`` seconds, it asks again (one ``GET <name>/_alias``;
    0: before every request). When they changed it reads and checks the ``_meta`` again, logged at INFO: an index
    of another model raises :class:`~toolkit.fingerprint.FingerprintMismatch` on every search until the name
    points at one of this model again, and photo queries take the new index's centre and layout. A query vector
    Elasticsearch refuses for its dimensions (a swap within ``recheck_s``) makes it ask at once and, when the
    target changed, run the search once more. Elasticsearch failures raise the :class:`ToolkitError` they stand
    for (:func:`toolkit.es.client.es_failure`: :class:`~toolkit.es.client.EsUnavailable` when unreachable, exit
    status 3 in the CLI), chained from the original.

    ``close()`` (or leaving a ``with Searcher(...) as searcher:`` block) closes the client ``es`` it was given,
    with its connections: a searcher owns no other resource, so closing it means closing its client. Close it
    only once nothing else (another searcher, a copy of this one, an indexing run) still uses that client."""

    def __init__(
        self,
        es: Elasticsearch,
        model: SearchModel,
        index: str,
        check: bool = True,
        recheck_s: float = RECHECK_S,
        warm: bool | None = None,
        missing_ok: bool = False,
    ) -> None:
        check_searcher_parts(es, model, index)
        for flag, value in (("check", check), ("missing_ok", missing_ok)):
            if not isinstance(value, bool):
                raise ConfigError(f"{flag} must be True or False, got {given(value)}")
        if warm is not None and not isinstance(warm, bool):
            raise ConfigError(f"warm must be True, False or None, got {given(warm)}")
        if isinstance(recheck_s, bool) or not isinstance(recheck_s, (int, float)) or not recheck_s >= 0:
            raise ConfigError(f"recheck_s must be a number of seconds >= 0, got {given(recheck_s)}")
        self.es = es
        self.model = model
        self.index = index
        self.check = check
        self.recheck_s = float(recheck_s)
        self._server_rrf: bool | None = None
        self._target: _Target | None = None  # read on open (check), else on the first request that needs it
        self._checked_at = -math.inf  # when the alias was last resolved (time.monotonic)
        self._fields_checked_at = -math.inf  # when a field the index lacked was last looked for
        self._lock = threading.Lock()
        self._closed = False
        opened = self._open(missing_ok) if check else True
        if not (model.warmed if warm is None else warm):  # None: as warm as the model
            return
        if opened:
            self.warm_up()
        else:  # the index's part is built on first use
            model.warm_up()

    def close(self) -> None:
        """Close the Elasticsearch client the searcher was given, with its connections; a request through the
        searcher after it raises a :class:`ToolkitError` saying it is closed."""
        self._closed = True
        self.es.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        model_dir = str(self.model.directory)
        refuse_pickling(
            self,
            f"make one in each process instead: Searcher(make_client(), SearchModel.load({model_dir!r}), "
            f"{self.index!r})",
        )

    def __copy__(self) -> Searcher:
        return shallow_copy(self)

    def __repr__(self) -> str:
        target = self._target
        indices = "not read yet" if target is None else ", ".join(target.indices)
        return f"Searcher(index={self.index!r} ({indices}), model={self.model!r})"

    def _open(self, missing_ok: bool) -> bool:
        """Read and check the index's ``_meta``; with ``missing_ok`` a name that names no index yet is left for
        the first request (False, with a warning)."""
        if missing_ok:
            with es_errors():
                missing = not self._resolve()
            if missing:
                log.warning(
                    "index or alias %r does not exist yet (build it with `jrs index`): it is read and checked "
                    "on the first request once it does",
                    self.index,
                )
                return False
        self._load()
        return True

    def warm_up(self) -> Searcher:
        """Build what the first queries would otherwise build: the model's tokenizer and photo encoder
        (:meth:`SearchModel.warm_up`) and, when the index's photos carry the hubness correction, its bank
        (a photo query's first use: about 0.2 s). Returns the searcher."""
        self.model.warm_up()
        target = self._current()
        if target.beta is not None:
            self._hub(target)
        return self

    # --- the index behind the name ---------------------------------------------------------------
    def _resolve(self) -> tuple[str, ...]:
        """The concrete indices ``self.index`` names now (none when it names nothing)."""
        try:
            return tuple(sorted(self.es.indices.get_alias(index=self.index).body))
        except NotFoundError:
            return ()

    def _load(self, indices: tuple[str, ...] | None = None) -> _Target:
        """Read (and with ``check`` check) the ``_meta`` of the indices the name resolves to."""
        with es_errors():
            if indices is None:
                indices = self._resolve()
            if self.check:
                info = check_index_model(self.es, self.index, self.model.fingerprint)
            else:
                info = index_info(self.es, self.index)
        meta = info.meta
        photos_made_apart = bool({CENTRE_KEY, FEATURE_STATS_KEY} & info.differing)
        target = _Target(
            indices,
            meta,
            None if photos_made_apart else centre_from_meta(meta, self.model.dims),
            layout_from_meta(meta),
            hub=self._same_hub(meta),
            fields=info.fields,
            feature_stats=None
            if photos_made_apart
            else FeatureStats.from_meta(meta, self.model.feature_dims),
            photos_made_apart=photos_made_apart,
            vectors_apart=info.vectors_apart,
        )
        self._target = target
        self._checked_at = time.monotonic()
        return target

    def _same_hub(self, meta: dict[str, Any]) -> HubCorrection | None:
        """The hubness correction already built for the index read before, when ``meta`` records the same
        settings (its bank comes from this model alike: a swap to a new version does not build it again)."""
        old = self._target.hub if self._target is not None else None
        if old is None or recorded_settings(meta) != (old.k, old.beta, len(old.bank)):
            return None
        return old

    def _hub(self, target: _Target) -> HubCorrection:
        """``target``'s hubness correction, its bank built from the model on first use."""
        if target.hub is None:
            hub = correction_from_meta(target.meta, self.model)  # the _meta read with the beta
            assert hub is not None  # the index records a correction
            target.hub = hub
        return target.hub

    def _follow(self, force: bool = False) -> None:
        """Re-read the ``_meta`` when the name resolves to other indices than when it was read; asked at most
        every ``recheck_s`` seconds, or now with ``force``. Before the ``_meta`` was first read: nothing, or, for
        a checked searcher opened before its index existed, read (and checked) now. Refused once it is closed."""
        if self._closed:
            raise ToolkitError(
                f"the searcher of {self.index!r} is closed, and its Elasticsearch client with it (close() or the "
                "end of its with block): make a new one with a new client (toolkit.make_client())"
            )
        target = self._target
        if target is None:
            if self.check:
                self._open_late()
            return
        if not force and time.monotonic() - self._checked_at < self.recheck_s:
            return
        with self._lock:
            if self._target is not target:  # another thread just re-read it
                return
            self._checked_at = time.monotonic()
            with es_errors():
                indices = self._resolve()
            if indices == target.indices:
                return
            log.info(
                "%s now points at %s (was %s): reading its _meta again",
                self.index,
                ", ".join(indices) or "no index",
                ", ".join(target.indices) or "no index",
            )
            self._checked_at = -math.inf  # asked again on the next request until the new _meta is accepted
            self._load(indices)

    def _open_late(self) -> None:
        """Read and check the ``_meta`` of an index that did not exist when the searcher was made
        (:class:`~toolkit.index.lifecycle.IndexNotFound` while it still does not)."""
        with self._lock:
            if self._target is None:  # not read by another thread meanwhile
                target = self._load()
                log.info("%s exists now: searching %s", self.index, ", ".join(target.indices))

    def _current(self) -> _Target:
        self._follow()
        return self._target or self._load()

    @property
    def indices(self) -> tuple[str, ...]:
        """The concrete indices the name points at (read, and with ``check`` checked, on first use)."""
        return self._current().indices

    @property
    def photo_centre(self) -> np.ndarray | None:
        """The centre the index's photo vectors were centred on (``_meta.photo_centre``), or None; an
        :class:`~toolkit.index.lifecycle.IndexNotFound` naming them when the name covers indices that made their
        photo vectors differently (a query photo cannot be made like them all)."""
        return self._photo_target().centre

    def _photo_target(self) -> _Target:
        """The current target, refused (naming its indices) when a photo cannot be read like all of its photos."""
        target = self._current()
        if target.photos_made_apart:
            raise IndexNotFound(
                f"a photo query over {self.index!r} cannot be centred like its photos: the indices it covers "
                f"({', '.join(target.indices)}) centred theirs on different photo centres (or read their photo "
                "features with different statistics); search one of them "
                "by photo (text and like-these queries search them all)"
            )
        return target

    @property
    def photo_feature_stats(self) -> FeatureStats | None:
        """The statistics the index reads photo features with (``_meta.photo_feature_stats``), or None; refused
        like :attr:`photo_centre` where the indices behind the name differ."""
        return self._photo_target().feature_stats

    @property
    def photo_hubness_beta(self) -> float | None:
        """The hubness correction's ``beta`` when the index's photo vectors carry it, else None."""
        return self._current().beta

    def photo_query(self, vector: np.ndarray) -> np.ndarray:
        """A shared-space query vector in the form the ``image_vector`` field is searched with (with the
        hubness correction: two more dimensions, :func:`toolkit.index.hubness.lift_query`)."""
        return vector if self.photo_hubness_beta is None else lift_query(vector)

    def stored_photo_vector(self, stored: np.ndarray) -> np.ndarray:
        """An indexed ``image_vector`` back in the shared space (drops the hubness correction's dimensions)."""
        beta = self.photo_hubness_beta
        return np.asarray(stored, np.float32) if beta is None else unlift_photo(stored, self.model.dims, beta)

    def as_stored_photo(self, vector: np.ndarray) -> np.ndarray:
        """A shared-space photo vector in the form the index stores it (with the hubness correction: its
        offset computed from the model's bank, built once per index). Searched with, a photo finds its own
        stored photo with cosine 1, as a stored ``image_vector`` pasted into a kNN query does."""
        target = self._current()
        if target.beta is None:
            return vector
        return self._hub(target).photo_layout(np.asarray(vector, np.float32)[None])[0]

    def check_vector_field(self, field: str) -> None:
        """An :class:`~toolkit.index.lifecycle.IndexNotFound` naming the indices and their sizes when the name
        covers indices that map the vector field ``field`` with different sizes, or not all of it (e.g. the raw
        ``image_feature`` of a load with ``--raw-features`` beside one without): a kNN query on it would
        search some of them only, or be refused by Elasticsearch."""
        apart = self._current().vectors_apart.get(field)
        if apart:
            raise IndexNotFound(
                f"a kNN query on {field} over {self.index!r} cannot search its indices alike: they map "
                f"{field} differently ({apart}); search one of them, or point {self.index!r} at indices "
                f"made alike (queries on other fields search them all)"
            )

    def field_vector(self, vector: np.ndarray, field: str) -> np.ndarray:
        """``vector`` in the form ``field`` is searched with: for ``image_vector`` a shared-space vector goes
        through :meth:`photo_query`, one already in the stored form (:meth:`as_stored_photo`) as it is.
        Refused (:meth:`check_vector_field`) where the indices behind the name map ``field`` differently."""
        self.check_vector_field(field)
        if field != "image_vector" or len(vector) != self.model.dims:
            return vector
        return self.photo_query(vector)

    def _relayout(self, vector: np.ndarray, made_under: _Target | None) -> np.ndarray:
        """A vector in the stored photo form of an index since swapped out, in the current index's form."""
        dims = self.model.dims
        if made_under is None or made_under.beta is None or len(vector) != dims + EXTRA_DIMS:
            return vector
        if self._target is made_under:
            return vector
        return self.as_stored_photo(unlift_photo(vector, dims, made_under.beta))

    # --- query vectors ---------------------------------------------------------------------------
    def text_vector(self, text: str) -> np.ndarray:
        return self.model.embed_query(text)

    def photo_vectors(self, photos: Sequence[PhotoSource]) -> np.ndarray:
        """Shared-space vectors of query photos (paths, bytes, PIL images or arrays), read like the index's
        photos: their features with its feature statistics, then centred on its centre, so photo-to-photo
        cosines compare alike (raises ImageRejected for a photo that cannot be used)."""
        target = self._photo_target()  # one read: the statistics and the centre of one version of the alias
        features = adapted(self.model.image_features(photos), target.feature_stats, self.model)
        return centred(self.model.embed_image_features(features), target.centre)

    def image_vector(self, path: str | os.PathLike[str]) -> np.ndarray:
        from toolkit.image.loading import ImageRejected

        try:
            return self.photo_vectors([Path(path)])[0]
        except ImageRejected as e:
            raise ToolkitError(f"query photo {path}: {e}") from e

    def composed_vector(
        self,
        text: str | None = None,
        image: str | Path | None = None,
        plus: Sequence[str] = (),
        minus: Sequence[str] = (),
    ) -> np.ndarray:
        if (text is None) == (image is None):
            raise ToolkitError("a composed query needs exactly one base: a text or a photo")
        base = self.text_vector(text) if text is not None else self.image_vector(image)  # type: ignore[arg-type]
        return compose(base, [self.text_vector(p) for p in plus], [self.text_vector(m) for m in minus])

    def tokens(self, text: str) -> list[str]:
        """The BM25 tokens of ``text`` (every token, particles included, as the ``tokens`` field holds them); a
        :class:`ToolkitError` when it has none, or no content word (what the vector modes refuse too: particles
        alone would match every step that has them)."""
        every, content = self.model.tokenizer.tokenize_both(check_query_text(text))
        if not content:  # none at all included: the vector modes' message, word for word
            raise no_content_word(every)
        return every

    # --- requests --------------------------------------------------------------------------------
    def msearch(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The responses to ``bodies``, searched on the index in one ``_msearch``; a :class:`ToolkitError` with
        Elasticsearch's reason when one of them failed."""
        searches: list[dict[str, Any]] = []
        for b in bodies:
            searches.extend([{"index": self.index}, b])
        self._follow()
        with es_errors():
            responses = self.es.msearch(searches=searches)["responses"]
        for r in responses:
            if "error" in r:
                status = r.get("status", "?")
                raise ToolkitError(
                    f"Elasticsearch refused the request (HTTP {status}): {_reason(r['error'])}"
                )
        return responses

    def mget(self, ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """The documents ``ids`` of the index with ``fields`` of their source (``found`` false when missing),
        in the order asked. Over several indices (where ``_mget`` refuses an alias) they are searched for by
        id, a step held by several taken from the last index by name (the newest version)."""
        indices = self._current().indices
        with es_errors():
            if len(indices) <= 1:
                return self.es.mget(index=self.index, ids=list(ids), source_includes=list(fields))["docs"]
            hits = self.es.search(
                index=self.index,
                query={"ids": {"values": list(ids)}},
                source_includes=list(fields),
                size=len(ids) * len(indices),
            )["hits"]["hits"]
        found: dict[str, dict[str, Any]] = {}
        for h in sorted(hits, key=lambda h: h["_index"]):
            found[h["_id"]] = {**h, "found": True}
        return [found.get(i, {"_id": i, "found": False}) for i in ids]

    def _retrying(self, attempt: Callable[[], SearchResult]) -> SearchResult:
        """``attempt()``; once more when Elasticsearch refused its query vector's dimensions and the name was
        found to point at another index since (swapped within ``recheck_s``)."""
        before = self._target
        try:
            return attempt()
        except ToolkitError as e:
            if "different number of dimensions" not in str(e):
                raise
            self._follow(force=True)
            if self._target is before:
                raise
        return attempt()

    def _run(
        self,
        mode: str,
        body: dict[str, Any],
        fusion: str | None = None,
        group: Grouping | None = None,
        k: int | None = None,
    ) -> SearchResult:
        if group is not None:
            body = group.apply(body, k or int(body["size"]))
        self._follow()
        resp, total = self._search(body)
        raw = resp["hits"]["hits"]
        result = SearchResult(mode, [Hit.from_es(h) for h in raw], [body], float(resp["took"]), total, fusion)
        if group is not None:
            result.groups = [Group.from_es(h) for h in raw]
        return result

    def _search(self, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Elasticsearch's answer to one search ``body`` and the round trip in milliseconds."""
        t = time.perf_counter()
        with es_errors():
            resp = self.es.search(index=self.index, **body)
        return resp.body, (time.perf_counter() - t) * 1000

    def has_field(self, name: str) -> bool:
        """Whether the index (every index behind the name) maps field ``name``; a field it lacked is looked for
        again at most every ``recheck_s`` seconds (``jrs index --update`` adds fields to a live index)."""
        target = self._current()
        if name not in target.fields and time.monotonic() - self._fields_checked_at >= self.recheck_s:
            self._fields_checked_at = time.monotonic()
            try:
                target.fields = index_info(self.es, self.index).fields
            except (
                Exception
            ) as e:  # a note's lookup must not fail a search that has its hits: asked again later
                log.debug("could not read the fields of %s: %s", self.index, type(e).__name__)
        return name in target.fields

    def keyed(self, filters: Filters) -> Filters:
        """``filters`` with the key of each ingredient (:func:`~toolkit.text.ingredients.ingredient_key`, by
        this model's tokenizer): an ingredient filter matches its spelling variants (たまねぎ, 玉ねぎ, 玉葱)."""
        if not filters.ingredients or filters.ingredient_keys:
            return filters
        from toolkit.text.ingredients import ingredient_key

        tok = self.model.tokenizer
        return replace(
            filters, ingredient_keys=tuple(ingredient_key(tok, name) for name in filters.ingredients)
        )

    def knn(
        self,
        vector: np.ndarray,
        params: KnnParams,
        filters: Filters,
        mode: str = "knn",
        group: Grouping | None = None,
    ) -> SearchResult:
        filters = self.keyed(filters)
        return self._knn_with(
            vector,
            params.field,
            lambda query: self._run(mode, knn_request(query, params, filters), group=group, k=params.k),
        )

    def _knn_with(
        self, vector: np.ndarray, field: str, answer: Callable[[np.ndarray], SearchResult]
    ) -> SearchResult:
        """``answer(query)`` with ``vector`` in the form ``field`` is searched with by the index the name points
        at (:meth:`field_vector`), tried again once where the name was found to point at another index since
        (:meth:`_retrying`)."""
        made_under = self._target  # a photo in the stored form was made for this index's layout

        def attempt() -> SearchResult:
            self._follow()
            return answer(self.field_vector(self._relayout(vector, made_under), field))

        return self._retrying(attempt)

    def text_knn(
        self, text: str, params: KnnParams, filters: Filters, group: Grouping | None = None
    ) -> SearchResult:
        """kNN for a text: its query vector against the photos (:meth:`knn`); a text with a word the model
        lacks, and words it has grounded (:mod:`toolkit.mapping.grounding`), gets its best
        :data:`~toolkit.mapping.grounding.DEPTH` candidates reranked by them (not in a grouped search)."""
        vector = self.text_vector(text)
        words = self.reranked_words(text, params, group)
        if words is None:
            return self.knn(vector, params, filters, group=group)
        return self.grounded_knn(vector, words, params, filters)

    def reranked_words(
        self, text: str, params: KnnParams, group: Grouping | None = None
    ) -> np.ndarray | None:
        """The grounded words :meth:`text_knn` reranks ``text``'s candidates with (a search of the photos, not
        grouped: :meth:`grounded_words`), None when it answers plain kNN: the one rule of the search, its
        ``--explain`` and the evaluation."""
        if group is not None or params.field != "image_vector":
            return None
        return self.grounded_words(text)

    def grounded_words(self, text: str) -> np.ndarray | None:
        """The token ids of ``text`` that the model's word grounding reranks with, when it has a word the
        model lacks and the grounding has a share; None otherwise."""
        from toolkit.search.explain import vocabulary_split

        grounding = self.model.mapping.model.grounding
        if grounding is None or grounding.share <= 0 or not vocabulary_split(self.model, text)[2]:
            return None
        bags, ok = self.model.text_tokens([text])
        if not ok[0]:
            return None
        ids = np.asarray(bags.ids[bags.offsets[0] : bags.offsets[1]], dtype=np.int64)
        return ids if len(grounding.rows_of(ids)) else None

    def grounding_term(
        self, words: np.ndarray, stored: np.ndarray, boost: float, beta: float | None = None
    ) -> np.ndarray:
        """What the word grounding of ``words`` (:meth:`grounded_words`) adds to the Elasticsearch kNN score of
        each stored ``image_vector`` row of ``stored``: ``boost * share * sum_w log sigmoid(logit_w) / 2``, times
        ``s / sqrt(2)`` on an index with the hubness correction ``beta`` (:mod:`toolkit.index.hubness`: its
        cosine is the CSLS score times that, and the share was picked on unscaled cosines)."""
        grounding = self.model.mapping.model.grounding
        assert grounding is not None
        stored = np.asarray(stored, np.float32)
        photos = stored if beta is None else unlift_photo(stored, self.model.dims, beta)
        scale = 1.0 if beta is None else photo_scale(beta) / math.sqrt(2.0)
        return boost * scale * grounding.share * grounding.log_probs(words, photos) / 2.0

    def grounded_knn(
        self, vector: np.ndarray, words: np.ndarray, params: KnnParams, filters: Filters
    ) -> SearchResult:
        """kNN of a text's ``vector`` whose best :data:`~toolkit.mapping.grounding.DEPTH` candidates (``k`` if
        more) are reranked by the grounded ``words`` (:meth:`reranked_words`: what :meth:`text_knn` does)."""
        from toolkit.mapping.grounding import DEPTH

        filters = self.keyed(filters)
        depth = min(max(params.k, DEPTH), MAX_NUM_CANDIDATES)
        wide = KnnParams(depth, max(params.num_candidates, depth), params.field, params.boost)

        def answer(query: np.ndarray) -> SearchResult:
            target = self._current()  # the layout the hits' vectors are stored in, read once
            body = knn_request(query, wide, filters)
            body["_source"] = [*body["_source"], params.field]
            resp, total = self._search(body)
            raw = resp["hits"]["hits"]
            if not raw:
                return SearchResult("knn", [], [body], float(resp["took"]), total)
            scores = np.asarray([float(h["_score"] or 0.0) for h in raw])
            try:
                stored = source_vectors(raw, params.field, self.index, "the word grounding's rerank")
            except VectorsNotReturned as e:  # the hits stand as Elasticsearch ranked them
                log.warning("%s", e)
                note = "not reranked by the query's known words: the index returns no photo vectors"
            else:
                scores = scores + self.grounding_term(words, stored, params.boost, target.beta)
                note = (
                    f"the {len(raw)} best photos were reranked by how well they show the query's known words "
                    "(it has a word the model lacks)"
                )
            hits = []
            for i in np.argsort(-scores, kind="stable")[: params.k]:
                hit = Hit.from_es(raw[i])
                hit.score = float(scores[i])
                hits.append(hit)
            result = SearchResult("knn", hits, [body], float(resp["took"]), total)
            result.notes.append(note)
            return result

        return self._knn_with(vector, params.field, answer)

    def keyword(self, text: str, k: int, filters: Filters, group: Grouping | None = None) -> SearchResult:
        """BM25 on the step tokens; a note when no step matched, or when no word of the text is in the model's
        vocabulary (the other modes cannot search it). A text with no content word is refused (:meth:`tokens`)."""
        tokens = self.tokens(text)
        filters = self.keyed(filters)
        result = self._run("keyword", keyword_request(tokens, k, filters), group=group, k=k)
        from toolkit.search.explain import unknown_words_note

        note = unknown_words_note(self.model, text)
        if note:
            result.notes.append(note)
        if not result.hits:
            result.notes.append(
                f"no hit: no {_steps(filters)} holds a word of the query ({' '.join(tokens)})"
            )
        return result

    def hybrid(
        self,
        text: str,
        params: KnnParams,
        filters: Filters,
        hybrid: HybridParams,
        group: Grouping | None = None,
    ) -> SearchResult:
        """One request with ``query`` + ``knn``: boosted scores are added by Elasticsearch."""
        filters = self.keyed(filters)

        def attempt() -> SearchResult:
            vector = self.field_vector(self.text_vector(text), params.field)
            body = hybrid_request(self.tokens(text), vector, params, filters, hybrid)
            return self._run("hybrid", body, fusion="score-sum", group=group, k=params.k)

        return _noted(self._retrying(attempt), filters)

    def rrf(
        self,
        text: str,
        params: KnnParams,
        filters: Filters,
        hybrid: HybridParams,
        group: Grouping | None = None,
    ) -> SearchResult:
        """Reciprocal rank fusion: ``retriever.rrf`` when the cluster offers it, else fused here from
        the two ranked lists fetched in one ``_msearch``. Grouped: the fused list of ``k * knn_factor``
        steps is grouped by recipe here (a rank fusion has no single query to collapse)."""
        return self._fused(self._rrf, text, params, self.keyed(filters), hybrid, group)

    def linear(
        self,
        text: str,
        params: KnnParams,
        filters: Filters,
        hybrid: HybridParams,
        group: Grouping | None = None,
    ) -> SearchResult:
        """Score fusion on one scale: each list's scores min-max normalised over its best ``hybrid.window``
        hits, then summed with the weights ``hybrid.keyword_boost`` and ``hybrid.knn_boost`` (what
        Elasticsearch's ``linear`` retriever computes with ``normalizer: minmax``), fused here from the
        two lists fetched in one ``_msearch``. Grouped like :meth:`rrf`."""
        return self._fused(self._linear, text, params, self.keyed(filters), hybrid, group)

    def _fused(
        self,
        run: Callable[[str, KnnParams, Filters, HybridParams], SearchResult],
        text: str,
        params: KnnParams,
        filters: Filters,
        hybrid: HybridParams,
        group: Grouping | None,
    ) -> SearchResult:
        if group is None:
            return _noted(self._retrying(lambda: run(text, params, filters, hybrid)), filters)
        wide = group.window(params.k)
        wide_params = KnnParams(wide, max(params.num_candidates, wide), params.field)
        result = self._retrying(lambda: run(text, wide_params, filters, hybrid))
        result.groups = group_hits(result.hits, params.k, group.per_group)
        result.hits = [g.steps[0] for g in result.groups]
        result.notes.append(f"grouped by recipe after fusing the best {wide} steps")
        return _noted(result, filters)

    def _query_forms(self, text: str, field: str) -> tuple[list[str], np.ndarray]:
        return self.tokens(text), self.field_vector(self.text_vector(text), field)

    def _both_lists(
        self, tokens: list[str], vector: np.ndarray, params: KnnParams, filters: Filters, hybrid: HybridParams
    ) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], float, float]:
        """The keyword and the kNN list of the best ``max(hybrid.window, k)`` steps, in one ``_msearch``:
        the request bodies, the two hit lists, the slower ``took`` and the round trip (ms)."""
        bodies = fusion_msearch_bodies(tokens, vector, params, filters, hybrid)
        t = time.perf_counter()
        responses = self.msearch(bodies)
        total = (time.perf_counter() - t) * 1000
        lists = [r["hits"]["hits"] for r in responses]
        return bodies, lists, float(max(r["took"] for r in responses)), total

    def _rrf(self, text: str, params: KnnParams, filters: Filters, hybrid: HybridParams) -> SearchResult:
        tokens, vector = self._query_forms(text, params.field)
        if self._server_rrf is not False:
            body = rrf_retriever_request(tokens, vector, params, filters, hybrid)
            try:
                result = self._run("rrf", body, fusion="server")
                self._server_rrf = True
                return result
            except ToolkitError as e:
                if not (isinstance(e.__cause__, ApiError) and _rrf_unavailable(e.__cause__)):
                    raise
                self._server_rrf = False
        bodies, lists, took, total = self._both_lists(tokens, vector, params, filters, hybrid)
        fused = rrf_fuse(lists, params.k, hybrid.rank_constant)
        notes = [
            "server-side RRF is not available on this cluster: fused client-side",
            *_one_sided(fused, lists),
        ]
        return SearchResult("rrf", [Hit.from_es(h) for h in fused], bodies, took, total, "client", notes)

    def _linear(self, text: str, params: KnnParams, filters: Filters, hybrid: HybridParams) -> SearchResult:
        tokens, vector = self._query_forms(text, params.field)
        bodies, lists, took, total = self._both_lists(tokens, vector, params, filters, hybrid)
        fused = linear_fuse(lists, (hybrid.keyword_boost, hybrid.knn_boost), params.k)
        notes = _one_sided(fused, lists)
        return SearchResult("linear", [Hit.from_es(h) for h in fused], bodies, took, total, "minmax", notes)


def _reason(error: Any) -> str:
    """The root cause's reason of an Elasticsearch error object (what the cluster actually complained of)."""
    if not isinstance(error, dict):
        return str(error)
    roots = error.get("root_cause") or [error]
    return str((roots[0] or {}).get("reason") or error.get("reason") or error)


def _steps(filters: Filters) -> str:
    """The steps a search looked at, for a note."""
    steps = "step" if filters.include_text_only else "step with a photo"
    narrowed = filters.recipe_ids or filters.ingredients or filters.tags or filters.exclude_step_ids
    return f"{steps} the filters allow" if narrowed else steps


def _noted(result: SearchResult, filters: Filters) -> SearchResult:
    """``result`` with a note when nothing matched (hybrid and the fusions)."""
    if not result.hits:
        result.notes.append(f"no hit: no {_steps(filters)} matched the query")
    return result


def _one_sided(fused: list[dict[str, Any]], lists: list[list[dict[str, Any]]]) -> list[str]:
    """A note when client-side fusion had only the kNN list (the keyword list first, empty)."""
    if fused and not lists[0]:
        return ["no step holds a word of the query: fused from the kNN list alone"]
    return []


def _rrf_unavailable(e: Exception) -> bool:
    text = str(e).lower()
    if "different number of dimensions" in text:  # the query vector, not the retriever
        return False
    return any(s in text for s in ("unknown retriever [rrf]", "non-compliant", "license", "rrf"))
