"""Versioned indices behind an alias (``recipes`` -> ``recipes-000003``), bulk-load settings, atomic swaps."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from toolkit.errors import ConfigError, ToolkitError
from toolkit.es.client import check_client, raising_toolkit_errors
from toolkit.fingerprint import FingerprintMismatch
from toolkit.index.hubness import META_KEY as HUB_META_KEY
from toolkit.index.template import KEEP_OLD_VERSIONS, IndexModelInfo, VectorIndexOptions, render_template

log = logging.getLogger(__name__)

LOAD_SETTINGS = {"index": {"refresh_interval": "-1", "number_of_replicas": 0}}
#: What Elasticsearch refuses in an index or alias name (besides upper case and a leading ``-_+``).
FORBIDDEN_NAME_CHARS = frozenset('\\/*?"<>|,#: ')
MAX_NAME_BYTES = 255
#: What a version adds to its alias's name (``-NNNNNN``, :func:`versioned_name`).
VERSION_SUFFIX_LEN = 7


class IndexNotFound(ToolkitError):
    """An index or alias is missing, or does not name the one index (or same-made indices) needed."""


#: ``_meta`` entries that indices searched together must share (:func:`index_info`), with what they stand for:
#: vectors of one model, photo vectors laid out alike. Others may differ: the toolkit version that made each,
#: its photo centre (only a photo query is centred on it: refused over indices centred apart).
SHARED_META = {
    "model_fingerprint": "model",
    "dims": "vector size",
    HUB_META_KEY: "photo hubness correction",
}


#: vector fields whose size an index's ``_meta`` also records, by field: indices of one model may map them
#: differently (``image_feature``, the raw backbone feature: only loads with ``--raw-features`` map it)
VECTOR_FIELD_META = {"image_feature": "raw_feature_dims"}


def __getattr__(name: str) -> Any:
    """``IndexError_``: the deprecated name of :class:`IndexNotFound` (it read like the builtin IndexError)."""
    if name == "IndexError_":
        warnings.warn(
            "toolkit.index.lifecycle.IndexError_ is deprecated: use IndexNotFound (also toolkit.IndexNotFound)",
            DeprecationWarning,
            stacklevel=2,
        )
        return IndexNotFound
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_index_name(name: str, field: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``name`` when Elasticsearch accepts it as an index or alias name; else :class:`ConfigError` naming
    ``field`` (lower case only; none of ``\\ / * ? " < > | , # :`` or a space; not starting with ``- _ +``;
    not ``.`` or ``..``; at most ``max_bytes`` bytes of UTF-8)."""
    if not isinstance(name, str) or not name:
        problem = "it is empty" if name == "" else f"it is a {type(name).__name__}, not a string"
    elif name != name.lower():
        problem = "it has upper-case letters"
    elif bad := sorted(FORBIDDEN_NAME_CHARS & set(name)):
        problem = "it contains " + " ".join(repr(c) for c in bad)
    elif name[0] in "-_+":
        problem = f"it starts with {name[0]!r}"
    elif name in (".", ".."):
        problem = "it is . or .."
    elif len(name.encode("utf-8")) > max_bytes:
        problem = f"it is longer than {max_bytes} bytes"
    else:
        return name
    raise ConfigError(f"{field} {name!r} is not a valid Elasticsearch index name: {problem}")


def check_target(alias: str, index: str | None) -> None:
    """Refuse an ``alias`` (whose versions add ``-NNNNNN``) or ``index`` that Elasticsearch would not accept."""
    check_index_name(alias, "alias", MAX_NAME_BYTES - VERSION_SUFFIX_LEN)
    if index is not None:
        check_index_name(index, "index")


def template_name(alias: str) -> str:
    return f"{alias}-template"


def versioned_name(alias: str, version: int) -> str:
    return f"{alias}-{version:06d}"


def _version_of(alias: str, index: str) -> int | None:
    m = re.fullmatch(re.escape(alias) + r"-(\d{6})", index)
    return int(m.group(1)) if m else None


def list_versions(es: Elasticsearch, alias: str) -> list[str]:
    """Existing ``<alias>-NNNNNN`` indices, oldest first."""
    found = es.indices.get(index=f"{alias}-*", ignore_unavailable=True, allow_no_indices=True).body
    names = [n for n in found if _version_of(alias, n) is not None]
    return sorted(names, key=lambda n: _version_of(alias, n) or 0)


def alias_targets(es: Elasticsearch, alias: str) -> list[str]:
    try:
        return sorted(es.indices.get_alias(name=alias).body)
    except NotFoundError:
        return []


def concrete_index(es: Elasticsearch, name: str) -> str:
    """The index ``name`` names: itself, or the one index the alias ``name`` points at (a clear error when
    the alias points at several: a load or update writes to one index)."""
    targets = alias_targets(es, name) if es.indices.exists_alias(name=name) else []
    if not targets:
        return name
    if len(targets) != 1:
        raise IndexNotFound(
            f"{name!r} is an alias of {len(targets)} indices ({', '.join(targets)}); name one of them with --index"
        )
    return targets[0]


def put_template(
    es: Elasticsearch,
    alias: str,
    model: IndexModelInfo,
    options: VectorIndexOptions | None = None,
    replicas: int = 0,
) -> dict[str, Any]:
    """Create or update the index template that new versions of ``alias`` are created from.

    A template the node refuses (an ``index_options`` type it does not offer, ``bbq_hnsw`` under 64 dims)
    raises :class:`~toolkit.errors.ConfigError` with the node's own reason."""
    opts = options or VectorIndexOptions()
    body = render_template(alias, model, opts, replicas=replicas)
    try:
        es.indices.put_index_template(name=template_name(alias), **body)
    except BadRequestError as e:
        reason = _root_reason(e.body)
        hint = ""
        if "Unknown vector index options type" in reason:
            hint = f"; this node's Elasticsearch version does not offer {opts.type}: use --index-type hnsw"
        raise ConfigError(
            f"Elasticsearch refused the index template for {alias!r} (--index-type {opts.type}, "
            f"{model.dims} dims): {reason}{hint}"
        ) from e
    return body


def _root_reason(body: Any) -> str:
    """The innermost ``caused_by`` reason of an Elasticsearch error body (the node's actual complaint)."""
    err = body.get("error") if isinstance(body, dict) else None
    reason = str(body)
    while isinstance(err, dict):
        reason = str(err.get("reason", reason))
        err = err.get("caused_by")
    return reason


def create_version(es: Elasticsearch, alias: str) -> str:
    """Create the next ``<alias>-NNNNNN`` index from the template, with bulk-load settings applied."""
    versions = list_versions(es, alias)
    if es.indices.exists(index=alias) and not es.indices.exists_alias(name=alias):
        raise IndexNotFound(f"{alias!r} is a concrete index, not an alias; choose another --alias")
    nxt = (_version_of(alias, versions[-1]) or 0) + 1 if versions else 1
    name = versioned_name(alias, nxt)
    es.indices.create(index=name, settings=LOAD_SETTINGS)
    return name


def begin_load(es: Elasticsearch, index: str) -> dict[str, Any]:
    """Switch an index to bulk-friendly settings (refresh off, no replicas); return what to restore."""
    current = es.indices.get_settings(index=index, flat_settings=True).body[index]["settings"]
    previous = {
        "index.refresh_interval": current.get("index.refresh_interval", "1s"),
        "index.number_of_replicas": int(current.get("index.number_of_replicas", 1)),
    }
    es.indices.put_settings(index=index, settings=LOAD_SETTINGS)
    return previous


def finish_load(es: Elasticsearch, index: str, restore: dict[str, Any]) -> None:
    """Restore the settings a load changed, then refresh so the documents are searchable."""
    settings = dict(restore)
    if settings.get("index.refresh_interval") in (None, "-1"):
        settings["index.refresh_interval"] = "1s"
    es.indices.put_settings(index=index, settings=settings)
    es.indices.refresh(index=index)


#: fields added to the template after indices were made with it: a load or update into such an index adds
#: them first (an additive mapping change; the mapping is strict): the per-document content hash live
#: updates compare (``jrs index --update``), the spelling-free keys of the recipe's ingredient names
#: (:func:`toolkit.text.ingredients.ingredient_key`)
ADDED_FIELDS: dict[str, dict[str, Any]] = {
    "content_hash": {"type": "keyword", "index": False},
    "ingredient_keys": {"type": "keyword"},
}


def ensure_added_fields(es: Elasticsearch, index: str) -> None:
    """Add the :data:`ADDED_FIELDS` an index made before them lacks."""
    props = es.indices.get_mapping(index=index).body[index]["mappings"].get("properties", {})
    missing = {name: spec for name, spec in ADDED_FIELDS.items() if name not in props}
    if missing:
        es.indices.put_mapping(index=index, properties=missing)


def swap_alias(es: Elasticsearch, alias: str, index: str) -> list[str]:
    """Point ``alias`` at ``index`` in one atomic request; return the indices it pointed at before."""
    before = alias_targets(es, alias)
    actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": alias}} for i in before if i != index]
    actions.append({"add": {"index": index, "alias": alias, "is_write_index": True}})
    es.indices.update_aliases(actions=actions)
    return before


@raising_toolkit_errors
def remove_old_versions(es: Elasticsearch, alias: str, keep: int = KEEP_OLD_VERSIONS) -> list[str]:
    """Delete versions older than the one behind the alias, keeping the newest ``keep`` of them. Only on
    request (``jrs indices --remove-old``); returns the indices deleted. Versions newer than it (a load still
    running, or one made with ``--no-swap``) are never removed, nor is anything while the alias points at no
    version, nor a version another alias still names (a rollback or cross-collection alias searches it).
    A negative ``keep`` is refused; Elasticsearch failures raise :class:`~toolkit.errors.ToolkitError`
    (``EsUnavailable`` when it stops answering)."""
    check_client(es)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ConfigError(f"keep must be a whole number >= 0 (old versions kept), got {keep!r}")
    live = set(alias_targets(es, alias))
    versions = list_versions(es, alias)
    newest_live = max((v for v in versions if v in live), default=None)
    if newest_live is None:
        return []
    old = [v for v in versions if v not in live and v < newest_live]
    aliased = _aliases_of(es, old)
    for name in sorted(aliased):
        log.info(f"{name} kept: the alias(es) {', '.join(aliased[name])} still point at it")
    old = [v for v in old if v not in aliased]
    doomed = old[: max(0, len(old) - keep)]
    for name in doomed:
        es.indices.delete(index=name)
    return doomed


def _aliases_of(es: Elasticsearch, indices: list[str]) -> dict[str, list[str]]:
    """Each of ``indices`` that some alias names -> those aliases, sorted (indices no alias names left out)."""
    if not indices:
        return {}
    found = es.indices.get_alias(index=",".join(indices), ignore_unavailable=True, allow_no_indices=True).body
    return {name: sorted(body.get("aliases", {})) for name, body in found.items() if body.get("aliases")}


@dataclass(frozen=True)
class IndexInfo:
    """What an index (or the indices behind an alias) says about itself: ``name`` and ``meta`` are the last
    index's (by name: the newest version)."""

    name: str
    meta: dict[str, Any]
    count: int
    #: the top-level fields every one of the indices maps (an index made before a field was added lacks it)
    fields: frozenset[str] = frozenset()
    #: every index ``target`` covers, sorted
    indices: tuple[str, ...] = ()
    #: the ``_meta`` entries the indices do not all share (never those of :data:`SHARED_META`)
    differing: frozenset[str] = frozenset()
    #: the vector fields the indices map with different sizes (or some not at all): field -> what differs
    #: (:func:`vector_fields_apart`); a kNN query on such a field cannot search them alike
    vectors_apart: dict[str, str] = field(default_factory=dict)


def index_info(es: Elasticsearch, target: str) -> IndexInfo:
    """``_meta`` and document count of ``target`` (an alias or an index, or several that share the
    :data:`SHARED_META` entries: one model, one photo layout); a clear error when it names none, or indices
    whose vectors do not compare."""
    try:
        mappings = es.indices.get_mapping(index=target).body
    except NotFoundError as e:
        raise IndexNotFound(
            f"index or alias {target!r} does not exist on this cluster; build it with `jrs index`"
        ) from e
    if not mappings:
        raise IndexNotFound(f"{target!r} matches no index on this cluster; build one with `jrs index`")
    names = sorted(mappings)
    metas = {n: mappings[n]["mappings"].get("_meta", {}) for n in names}
    name = names[-1]
    meta = metas[name]
    check_shared_meta(target, metas)
    differing = frozenset(k for n in names for k in {*metas[n], *meta} if metas[n].get(k) != meta.get(k))
    count = int(es.count(index=target)["count"])
    fields = frozenset.intersection(
        *(frozenset(mappings[n]["mappings"].get("properties", {})) for n in names)
    )
    return IndexInfo(
        name=name,
        meta=meta,
        count=count,
        fields=fields,
        indices=tuple(names),
        differing=differing,
        vectors_apart=vector_fields_apart(mappings),
    )


def vector_fields_apart(mappings: dict[str, Any]) -> dict[str, str]:
    """The ``dense_vector`` fields that the indices (``mappings``: index -> its mapping, as ``GET _mapping``
    gives it) do not all map with one size, by field, with what differs: each index's ``dims`` (or "not
    mapped") and, for a field of :data:`VECTOR_FIELD_META`, the size its ``_meta`` records."""
    layouts = {n: _vector_layout(m.get("mappings", {})) for n, m in sorted(mappings.items())}
    names = sorted({f for layout in layouts.values() for f in layout})
    apart: dict[str, str] = {}
    for name in names:
        by_index = {index: layout.get(name, "not mapped") for index, layout in layouts.items()}
        if len(set(by_index.values())) > 1:
            apart[name] = "; ".join(f"{index}: {what}" for index, what in by_index.items())
    return apart


def _vector_layout(mapping: dict[str, Any]) -> dict[str, str]:
    """How one index maps its vector fields: field -> ``"N dims"`` (with the ``_meta`` size where recorded)."""
    meta = mapping.get("_meta", {})
    layout: dict[str, str] = {}
    for name, spec in mapping.get("properties", {}).items():
        if spec.get("type") == "dense_vector":
            layout[name] = f"{spec.get('dims', '?')} dims"
    for name, key in VECTOR_FIELD_META.items():
        layout[name] = f"{layout.get(name, 'not mapped')}, _meta.{key} {meta.get(key, 'none')}"
    return layout


def check_shared_meta(target: str, metas: dict[str, dict[str, Any]]) -> None:
    """Refuse a ``target`` whose indices (``metas``: each one's ``_meta``) differ in a :data:`SHARED_META`
    entry (their vectors do not compare), naming the target, the indices and what differs."""
    names = sorted(metas)
    last = metas[names[-1]]
    other = [n for n in names if any(metas[n].get(k) != last.get(k) for k in SHARED_META)]
    if not other:
        return
    what = [v for k, v in SHARED_META.items() if any(metas[n].get(k) != last.get(k) for n in other)]
    raise IndexNotFound(
        f"{target!r} covers indices made differently ({', '.join(other)} against {names[-1]}: another "
        f"{' and another '.join(what)}), whose vectors do not compare: it points at {', '.join(names)}; "
        f"search one of them, or point {target!r} at indices of one model"
    )


def check_index_model(es: Elasticsearch, target: str, fingerprint: str) -> IndexInfo:
    """Refuse to query an index built by another model (``_meta.model_fingerprint``)."""
    info = index_info(es, target)
    found = info.meta.get("model_fingerprint")
    if found != fingerprint:
        raise FingerprintMismatch(
            f"index {info.name}",
            fingerprint,
            str(found),
            "the index was built with another model; query it with that model directory or re-index",
        )
    return info
