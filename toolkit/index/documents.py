"""Recipe steps -> Elasticsearch documents with shared-space vectors, a batch of recipes at a time.

Vectors stay float32 numpy rows in the documents (no ``tolist()``): the bulk loader serialises them with
orjson directly, which is several times faster and writes each float in its shortest float32 form."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.data.schema import Recipe, Step
from toolkit.errors import ConfigError
from toolkit.es.config import redact_url
from toolkit.fingerprint import fingerprint
from toolkit.image.loading import ImageRejected
from toolkit.index.centring import centred
from toolkit.index.drift import CentreDrift, FeatureDrift
from toolkit.index.feature_stats import FeatureStats, adapted, spread_floor
from toolkit.index.hubness import HubCorrection
from toolkit.model import SearchModel
from toolkit.rejects import Reject, RejectsWriter
from toolkit.text.ingredients import ingredient_key
from toolkit.vectorset import VECTORS, Rows, VectorSet, load_vector_set, same_file

log = logging.getLogger(__name__)

#: ingredient names whose key a builder remembers (cleared when full): a key is asked for every step's hash, and
#: the same few hundred names (塩, 砂糖, 醤油...) recur across a collection's recipes
INGREDIENT_KEY_CACHE = 100_000


#: the schemes an ``image_url`` is shown with (a Kibana thumbnail, a browser's ``<img>``)
IMAGE_URL_SCHEMES = ("http", "https")
_URL_FIX = (
    "give an http:// or https:// URL or a path from the server root (/...), e.g. http://127.0.0.1:8000/photo/"
)


def image_base_url_problem(value: str) -> str | None:
    """Why ``value`` cannot prefix ``image_url`` (None: it can). Each ``image_url`` is ``value`` with one ``/``
    at its end, then the photo's path percent-encoded (:meth:`DocumentBuilder.image_url`): an http(s) URL, a
    ``//host/...`` one or a path from the server root (shown by a page of that server, e.g. a Kibana behind the
    proxy that serves the photos) all make one; a relative path depends on the page showing it."""
    if not value.strip():
        return "it is empty"
    if any(c.isspace() or not c.isprintable() for c in value):
        return "it holds whitespace or control characters (write a space as %20)"
    if "?" in value or "#" in value:
        return "it holds '?' or '#': the photo path would land in its query string or fragment"
    try:
        parts = urlsplit(value)
    except ValueError as e:  # e.g. an unclosed [IPv6 address
        return f"it is not a URL ({e})"
    if parts.username is not None or parts.password is not None:
        return "it carries a user or password, which every document's image_url would show"
    if parts.scheme and parts.scheme.lower() not in IMAGE_URL_SCHEMES:
        return f"its scheme {parts.scheme!r} is not http or https; {_URL_FIX}"
    if parts.scheme and not parts.netloc:
        return f"it names no host; {_URL_FIX}"
    if not parts.scheme and not value.startswith("/"):
        return f"a relative path resolves against whichever page shows it; {_URL_FIX}"
    return None


def image_base_url_refusal(value: object) -> str | None:
    """Why ``value`` is refused, as a message naming it (None: taken; None is no ``image_url`` at all)."""
    if value is None:
        return None
    problem = image_base_url_problem(value) if isinstance(value, str) else f"it is a {type(value).__name__}"
    return (
        None if problem is None else f"{_shown(value)} cannot prefix the photo paths of image_url: {problem}"
    )


def _shown(value: object) -> str:
    """``value`` for a message, its user and password (``http://user:pw@host/``) left out."""
    return repr(redact_url(value) if isinstance(value, str) else value)


def check_image_base_url(name: str, value: object) -> None:
    """:class:`ConfigError` naming ``name`` when ``value`` cannot prefix ``image_url`` (None: no ``image_url``)."""
    refusal = image_base_url_refusal(value)
    if refusal is not None:
        raise ConfigError(f"{name} {refusal}")


@dataclass
class DocStats:
    """Per-batch notes that are not rejections: the step is indexed, with less than it could have."""

    text_only: int = 0
    no_text_vector: int = 0
    encoded_now: int = 0


def build_features(model: SearchModel, dataset_root: str | Path) -> tuple[VectorSet | None, int]:
    """The photo features ``jrs build`` extracted (``MODEL_DIR/image_features``) and the time they were
    written (ns), when they can stand for ``dataset_root``'s photos: only for the dataset the model was built
    on, since step ids alone do not say which photo a row came from. Otherwise ``(None, 0)``."""
    d = model.directory / "image_features"
    if not (d / VECTORS).is_file():
        return None, 0
    built_on = model.manifest.get("dataset")
    if not built_on or Path(built_on).resolve() != Path(dataset_root).resolve():
        log.debug(
            "%s is not the dataset the model was built on (%s): its photos are encoded now",
            dataset_root,
            built_on,
        )
        return None, 0
    return load_vector_set(d), (d / VECTORS).stat().st_mtime_ns


class DocumentBuilder:
    """Builds documents for whole recipes. A photo's features come from the build's feature set when the
    set was made from this dataset, its row for the step was encoded from this very file and the file has not
    changed since, else the photo is encoded now with the model's encoder."""

    def __init__(
        self,
        model: SearchModel,
        dataset_root: str | Path,
        features: VectorSet | None = None,
        image_base_url: str | None = None,
        raw_features: bool = False,
        features_written_ns: int = 0,
    ) -> None:
        self.model = model
        self.root = Path(dataset_root)
        self.features = features
        self._feature_row: Mapping[str, int] = features.index() if features is not None else {}
        # rows read from the file, not through the map: a million photos' features must not become resident
        self._feature_rows = Rows(features.vectors) if features is not None else None
        self._features_written_ns = features_written_ns
        # the photo file each feature row was encoded from: a row stands for a step's photo only when it is
        # that same file (a step's photo may have been swapped for another one that is older than the build)
        self._feature_sources = features.sources if features is not None else None
        if features is not None and self._feature_sources is None:
            log.info(
                "the build's photo features do not record which file each row was encoded from (a model "
                "built before they did): every photo is encoded now; rebuild the model to reuse them"
            )
        self.image_base_url = image_base_url.rstrip("/") + "/" if image_base_url else None
        self.raw_features = raw_features
        #: the index's photo feature statistics (:mod:`toolkit.index.feature_stats`): features are read with them
        self.feature_stats: FeatureStats | None = None
        #: the index's photo centre (:mod:`toolkit.index.centring`): photo vectors are centred on it
        self.photo_centre: np.ndarray | None = None
        #: the index's hubness correction (:mod:`toolkit.index.hubness`): applied after centring
        self.photo_hub: HubCorrection | None = None
        #: how the photos built so far sit against ``photo_centre`` (:mod:`toolkit.index.drift`)
        self.centre_drift = CentreDrift()
        #: how the photo features built so far sit against ``feature_stats`` (:mod:`toolkit.index.drift`)
        self.feature_drift = FeatureDrift()
        self._spread_floor: np.ndarray | None = None  # the model's, computed on first use
        self._ingredient_keys: dict[str, str] = {}  # name -> key (:data:`INGREDIENT_KEY_CACHE`)

    def ingredient_keys(self, recipe: Recipe) -> list[str]:
        """The recipe's :func:`~toolkit.text.ingredients.ingredient_key` set, sorted. Each name is tokenised
        once per builder, not once per step (:meth:`step_hash` asks for every step of every recipe, also for
        the unchanged ones of ``jrs index --update``)."""
        keys = self._ingredient_keys
        out: set[str] = set()
        for ingredient in recipe.ingredients:
            name = ingredient.name
            if not name:
                continue
            key = keys.get(name)
            if key is None:
                if len(keys) >= INGREDIENT_KEY_CACHE:
                    keys.clear()
                key = keys[name] = ingredient_key(self.model.tokenizer, name)
            out.add(key)
        return sorted(out)

    def step_hash(self, recipe: Recipe, step: Step) -> str:
        """What a step's document is made from: the model, the builder's settings, the recipe fields the
        document copies, the step and its photo file's size and mtime. Equal hash: the document is the same."""
        return fingerprint(*self._hash_parts(recipe, step, self.ingredient_keys(recipe)), length=20)

    def legacy_step_hash(self, recipe: Recipe, step: Step) -> str | None:
        """The hash :meth:`step_hash` gave before it covered the ingredient keys (documents indexed before
        them carry it): a document with it is the one built now less ``ingredient_keys``. None where that
        older document differs in more: its ``image_url`` was not percent-encoded yet (a file name with a
        space, ``#``, ``?`` or ``%``), so only a rebuild makes it current."""
        if self.image_base_url and step.image and quote(step.image, safe="/") != step.image:
            return None
        return fingerprint(*self._hash_parts(recipe, step, None), length=20)

    def _hash_parts(self, recipe: Recipe, step: Step, ingredient_keys: list[str] | None) -> list[Any]:
        """What :meth:`step_hash` hashes, in order; without ``ingredient_keys`` (None) the legacy parts."""
        photo: list[int] | None = None
        if step.image:
            try:
                st = resolve_under_root(self.root, step.image).stat()
                photo = [st.st_size, st.st_mtime_ns]
            except (UnsafePathError, OSError):
                photo = [-1, -1]
        recipe_parts: list[Any] = [
            recipe.recipe_id,
            recipe.title,
            recipe.description,
            sorted({i.name for i in recipe.ingredients if i.name}),
        ]
        if ingredient_keys is not None:
            recipe_parts.append(ingredient_keys)
        return [
            self.model.fingerprint,
            self.image_base_url,
            self.raw_features,
            *recipe_parts,
            list(recipe.tags),
            step.position,
            step.text,
            step.image,
            photo,
        ]

    def spread_floor(self) -> np.ndarray:
        """The least per-feature spread the model reads a collection's statistics with (computed once)."""
        if self._spread_floor is None:
            self._spread_floor = spread_floor(self.model)
        return self._spread_floor

    def image_url(self, rel: str) -> str | None:
        """The ``image_url`` of the photo at ``rel`` (None without ``image_base_url``): a URL, a file name's
        ``#``, ``?``, ``%`` or space escaped, as the web page's photo_url does."""
        return self.image_base_url + quote(rel, safe="/") if self.image_base_url else None

    def _photo_features(
        self, wanted: list[tuple[int, str, str]], rejects: RejectsWriter, stats: DocStats
    ) -> dict[int, np.ndarray]:
        """Features for (doc index, step id, relative path) triples; failures become text-only steps."""
        found: dict[int, np.ndarray] = {}
        to_encode: list[tuple[int, str, Path]] = []
        cached: list[tuple[int, int]] = []  # (doc index, feature row)
        for i, step_id, rel in wanted:
            try:
                path = resolve_under_root(self.root, rel)
            except UnsafePathError as e:
                rejects.write(Reject(step_id, "image", f"photo not used: {e}"))
                continue
            row = self._feature_row.get(step_id)
            if row is not None and self._same_photo(row, path) and self._unchanged_since_build(path):
                cached.append((i, row))
            else:
                to_encode.append((i, step_id, path))
        if cached and self._feature_rows is not None:
            rows = self._feature_rows.gather(np.array([r for _, r in cached], dtype=np.int64))
            found.update((i, v) for (i, _), v in zip(cached, rows, strict=True))
        for i, step_id, path in to_encode:
            try:
                found[i] = self.model.image_features([path])[0]
                stats.encoded_now += 1
            except ImageRejected as e:
                rejects.write(Reject(step_id, "image", f"photo not used: {e}"))
        return found

    def _same_photo(self, row: int, path: Path) -> bool:
        """Row ``row`` was encoded from the file now at ``path``: same path, size and mtime (a set without
        sources cannot say: no)."""
        return self._feature_sources is not None and same_file(self._feature_sources[row], path)

    def _unchanged_since_build(self, path: Path) -> bool:
        try:
            return path.stat().st_mtime_ns <= self._features_written_ns
        except OSError:
            return False

    def build(self, recipes: list[Recipe], rejects: RejectsWriter) -> tuple[list[dict[str, Any]], DocStats]:
        stats = DocStats()
        docs: list[dict[str, Any]] = []
        texts: list[str] = []
        wanted: list[tuple[int, str, str]] = []
        tok = self.model.tokenizer
        for recipe in recipes:
            ingredients = sorted({i.name for i in recipe.ingredients if i.name})
            ingredient_keys = self.ingredient_keys(recipe)
            title_tokens = " ".join(tok.tokenize_all(recipe.title))
            for step in recipe.steps:
                step_id = recipe.step_id(step)
                doc: dict[str, Any] = {
                    "_id": step_id,
                    "step_id": step_id,
                    "recipe_id": recipe.recipe_id,
                    "title": recipe.title,
                    "title_tokens": title_tokens,
                    "description": recipe.description,
                    "position": step.position,
                    "text": step.text,
                    "tokens": " ".join(tok.tokenize_all(step.text)),
                    "ingredients": ingredients,
                    "ingredient_keys": ingredient_keys,
                    "tags": list(recipe.tags),
                    "has_image": False,
                    "content_hash": self.step_hash(recipe, step),
                }
                if step.image:
                    wanted.append((len(docs), step_id, step.image))
                docs.append(doc)
                texts.append(step.text)
        if not docs:
            return docs, stats
        text_vecs, ok = self.model.embed_texts(texts)
        for i, doc in enumerate(docs):
            if ok[i]:
                doc["text_vector"] = text_vecs[i]
            else:
                stats.no_text_vector += 1
                reason = "no word of the text is in the model's vocabulary; indexed without text_vector"
                rejects.write(Reject(doc["step_id"], "text", reason))
        feats = self._photo_features(wanted, rejects, stats)
        if feats:
            order = sorted(feats)
            raw = np.stack([feats[i] for i in order])
            if self.feature_stats is not None:
                self.feature_drift.add(raw, self.feature_stats, self.spread_floor())
            shared = self.model.embed_image_features(adapted(raw, self.feature_stats, self.model))
            if self.photo_centre is not None:
                self.centre_drift.add(shared, self.photo_centre)
            image_vecs = centred(shared, self.photo_centre)
            if self.photo_hub is not None:
                image_vecs = self.photo_hub.photo_layout(image_vecs)
            image_rel = {i: rel for i, _, rel in wanted}
            for j, i in enumerate(order):
                doc = docs[i]
                rel = image_rel[i]
                doc["has_image"] = True
                doc["image_path"] = rel
                if self.image_base_url:
                    doc["image_url"] = self.image_url(rel)
                doc["image_vector"] = image_vecs[j]
                if self.raw_features:
                    doc["image_feature"] = raw[j]
        stats.text_only = sum(1 for d in docs if not d["has_image"])
        return docs, stats


def recipe_batches(recipes: Iterable[Recipe], max_steps: int) -> Iterator[list[Recipe]]:
    """Group whole recipes into batches of about ``max_steps`` steps (a recipe is never split)."""
    batch: list[Recipe] = []
    n = 0
    for r in recipes:
        batch.append(r)
        n += len(r.steps)
        if n >= max_steps:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch
