"""The one search function behind the CLI, the search page and the API: a text, a photo or example steps
in any mode, optionally grouped by recipe, composed with ``plus``/``minus`` texts, and explained."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from toolkit.chars import is_blank
from toolkit.data.schema import unencodable
from toolkit.errors import ConfigError, ToolkitError
from toolkit.model import check_query_length, check_query_text
from toolkit.search.engine import Searcher, SearchResult, check_searcher_parts, given
from toolkit.search.modes import DEFAULT_K, HYBRID_FIELD_MODES, TEXT_MODES
from toolkit.search.queries import (
    Filters,
    Grouping,
    HybridParams,
    KnnParams,
    compose,
    num_candidates_for,
    whole_number,
)

if TYPE_CHECKING:
    from PIL import Image

    from toolkit.image.loading import PhotoSource

log = logging.getLogger(__name__)

GROUPS = ("recipe",)


@dataclass(frozen=True)
class SearchOptions:
    """How to search: mode, size, filters, fusion weights, grouping and explanation; checked when made
    (a :class:`~toolkit.errors.ConfigError` names the bad field). ``filters``/``hybrid`` None: the defaults; a
    ``hybrid`` field the mode does not use (:data:`~toolkit.search.modes.HYBRID_FIELD_MODES`: the boosts weigh
    ``hybrid`` and ``linear`` only) must stay at its default."""

    mode: str = "knn"
    k: int = DEFAULT_K
    num_candidates: int | None = None
    filters: Filters = field(default_factory=Filters)
    hybrid: HybridParams = field(default_factory=HybridParams)
    #: ``"recipe"``: one hit per recipe (its best step), with its best ``per_group`` steps inside
    group: str | None = None
    per_group: int = 3
    #: tokens, known/unknown words with suggestions, leave-one-word-out contributions
    explain: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.mode, str) or self.mode not in TEXT_MODES:
            raise ConfigError(f"unknown search mode {self.mode!r}; choose one of {', '.join(TEXT_MODES)}")
        params = knn_params(self.k, self.num_candidates)  # the one rule of the CLI, the page and the API
        object.__setattr__(self, "k", params.k)
        if self.num_candidates is not None:
            object.__setattr__(self, "num_candidates", params.num_candidates)
        for name, kind in (("filters", Filters), ("hybrid", HybridParams)):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, kind())
            elif not isinstance(value, kind):
                raise ConfigError(
                    f"{name} must be a toolkit.{kind.__name__} (e.g. {kind.__name__}(**{name}) for a dict), "
                    f"got {given(value)}"
                )
        _check_hybrid_fields(self.mode, self.hybrid)
        if self.group is not None and not isinstance(self.group, str):
            raise ConfigError(f"group must be None or one of {', '.join(GROUPS)}, got {given(self.group)}")
        object.__setattr__(self, "per_group", whole_number("per_group", self.per_group, None))
        if not isinstance(self.explain, bool):
            raise ConfigError(f"explain must be True or False, got {given(self.explain)}")
        self.grouping()

    def grouping(self) -> Grouping | None:
        if self.group is None:
            return None
        if self.group not in GROUPS:
            raise ConfigError(f"unknown grouping {self.group!r}; choose one of {', '.join(GROUPS)}")
        return Grouping(per_group=self.per_group)


def _check_hybrid_fields(mode: str, hybrid: HybridParams) -> None:
    """A :class:`ConfigError` naming a ``hybrid`` field set (not at its default) that ``mode`` does not use
    (:data:`~toolkit.search.modes.HYBRID_FIELD_MODES`): it would be ignored."""
    defaults = HybridParams()
    for name, modes in HYBRID_FIELD_MODES.items():
        value = getattr(hybrid, name)
        if mode not in modes and value != getattr(defaults, name):
            raise ConfigError(
                f"hybrid.{name} applies to mode {' or '.join(map(repr, modes))}, not {mode!r} (which ignores "
                f"it): leave it at {getattr(defaults, name)!r} or choose one of those modes"
            )


def check_query_lengths(text: str | None, plus: Sequence[str] = (), minus: Sequence[str] = ()) -> None:
    """A :class:`ToolkitError` naming the text and the limit when the query or a plus/minus text is over
    :data:`~toolkit.model.MAX_QUERY_CHARS` characters (what the CLI checks before anything loads)."""
    if text is not None:
        check_query_length(text)
    for what, parts in (("plus", plus), ("minus", minus)):
        for part in parts:
            check_query_length(part, f"the {what} text {_shown(part)} (--{what})")


def search(
    searcher: Searcher,
    text: str | None = None,
    *,
    photo: PhotoSource | None = None,
    like: Sequence[str] | str = (),
    plus: Sequence[str] | str = (),
    minus: Sequence[str] | str = (),
    options: SearchOptions | None = None,
) -> SearchResult:
    """Run one query. Exactly one base: ``text`` (in ``options.mode``), ``photo`` (a path, the bytes of an
    image file, a ``PIL.Image`` or an ``H x W x 3`` / ``H x W`` ``uint8`` array), or ``like`` (step ids: the
    mean of their photo vectors, plus ``text`` when given); ``plus``/``minus`` texts compose a vector query
    (kNN). ``like``, ``plus`` and ``minus`` take a sequence of str, or one str as one item. A clear
    :class:`~toolkit.errors.ToolkitError` for a bad argument, mode, k, grouping, a missing query or a text over
    :data:`~toolkit.model.MAX_QUERY_CHARS` characters, before any request."""
    _check_searcher(searcher)
    if options is not None and not isinstance(options, SearchOptions):
        raise ConfigError(f"options must be a toolkit.SearchOptions, got {given(options)}")
    opts = options or SearchOptions()
    if text is not None:
        _check_text_type("text", text)
    like, plus, minus = _texts("like", like), _texts("plus", plus), _texts("minus", minus)
    if text is not None and is_blank(text):  # only white space or invisible characters: no text
        text = None
    if text is None and photo is None and not like:
        raise ToolkitError("the query is empty: give a text, a photo or steps to search like")
    if text is not None:
        check_query_text(text)  # clear errors before any tokenising: blank, or not valid Unicode
    check_query_lengths(text, plus, minus)  # before any request: Elasticsearch's own limit names nothing
    for what, parts in (("plus", plus), ("minus", minus)):
        for part in parts:
            try:
                check_query_text(part)
            except ToolkitError as e:  # say which text: the query itself is fine
                raise ToolkitError(f"the {what} text {part!r} (--{what}): {e}") from e
    bad_ids = [step_id for step_id in like if unencodable(step_id)]
    if bad_ids:
        raise ToolkitError(f"cannot search like these steps: {bad_ids!r} {unencodable(bad_ids[0])}")
    if photo is not None and (text is not None or like):
        raise ToolkitError(
            "give a text or a photo, not both (to compose the photo with texts, give them as plus/minus: "
            "--plus/--minus)"
        )
    image = _decoded_photo(photo, searcher) if photo is not None else None
    params = knn_params(opts.k, opts.num_candidates)
    group = opts.grouping()
    not_text_alone = photo is not None or bool(like or plus or minus)
    ignored = [
        note
        for note, applies in (
            (
                f"mode {opts.mode!r} (--mode) applies to a text alone: a photo, like-these or composed query "
                "is a kNN search",
                opts.mode != "knn",
            ),
            (
                "explain (--explain) applies to a text alone: a photo, like-these or composed query has no "
                "words of its own to explain",
                opts.explain,
            ),
        )
        if applies and not_text_alone
    ]
    composed_notes = (
        _composed_notes(searcher, None if photo is not None else text, plus, minus)
        if like or photo is not None or plus or minus
        else []
    )
    if like:
        from toolkit.search.like import like_vector

        vector, note = like_vector(searcher, like, text)
        if plus or minus:
            vector = _composed(searcher, vector, plus, minus)
            note += f", composed with {len(plus)} plus and {len(minus)} minus text(s)"
        # the examples are left out by the ids like_vector looked up (padding stripped)
        filters = _excluding(opts.filters, [s.strip() for s in like if s.strip()])
        result = searcher.knn(vector, params, filters, mode="like", group=group)
        result.notes[:0] = composed_notes
        result.notes.append(note)
    elif photo is not None or plus or minus:
        base = _photo_vector(searcher, photo, image) if photo is not None else searcher.text_vector(text)  # type: ignore[arg-type]
        vector = _composed(searcher, base, plus, minus)
        label = "image" if photo is not None and not (plus or minus) else "composed"
        if label == "image":  # a photo alone is sent as the index stores photos: its own scores 1
            vector = searcher.as_stored_photo(vector)
        result = searcher.knn(vector, params, opts.filters, mode=label, group=group)
        result.notes[:0] = composed_notes
    else:
        assert text is not None
        text, notes, explanation = _prepare_text(searcher, text, opts)
        result = _run_text(searcher, text, opts, params, group)
        result.notes[:0] = notes
        if explanation is not None:
            from toolkit.search.explain import contributions

            explanation["contributions"] = contributions(searcher, text, opts, params, result)
            result.explanation = explanation
    result.notes.extend(ignored)
    if opts.filters.ingredients and not searcher.has_field("ingredient_keys"):
        result.notes.append(
            "this index was made before ingredient keys: --ingredient matches names as written only (たまねぎ "
            "does not find 玉ねぎ); `jrs index --update` or a new load adds them"
        )
    return result


def _run_text(
    searcher: Searcher, text: str, opts: SearchOptions, params: KnnParams, group: Grouping | None
) -> SearchResult:
    if opts.mode == "knn":
        return searcher.text_knn(text, params, opts.filters, group=group)
    if opts.mode == "keyword":
        return searcher.keyword(text, opts.k, opts.filters, group=group)
    if opts.mode == "hybrid":
        return searcher.hybrid(text, params, opts.filters, opts.hybrid, group=group)
    if opts.mode == "linear":
        return searcher.linear(text, params, opts.filters, opts.hybrid, group=group)
    return searcher.rrf(text, params, opts.filters, opts.hybrid, group=group)


def _prepare_text(searcher: Searcher, text: str, opts: SearchOptions) -> tuple[str, list[str], dict | None]:
    """Notes on words the model does not know (searching with the known ones; an error with suggestions
    when none is known) and, with ``explain``, the explanation so far."""
    from toolkit.search.explain import explain_tokens

    explanation = explain_tokens(searcher.model, text) if opts.explain else None
    if opts.mode == "keyword":  # BM25 needs no vocabulary
        return text, [], explanation
    note = _vocabulary_note(searcher, text, "the query")
    return text, [note] if note else [], explanation


def _vocabulary_note(searcher: Searcher, text: str, what: str) -> str | None:
    """A note when some words of ``text`` (``what`` names it: "the query", "the plus text '...'") are not in
    the model's vocabulary, None when all are; a :class:`ToolkitError` with the nearest known words when none
    is (a vector cannot be made of it)."""
    from toolkit.search.explain import SUGGESTED_WORDS, suggestions, vocabulary_split

    _, known, unknown = vocabulary_split(searcher.model, text)
    unknown = list(dict.fromkeys(unknown))
    if not known:
        if not unknown:  # only particles, symbols or stopwords
            if what == "the query":  # embed_query says so
                return None
            raise ToolkitError(
                f"no word of {what} is in the model's vocabulary (tokens after filtering: none)"
            )
        hints = "; ".join(
            f"{w} -> {', '.join(suggestions(searcher.model, w)) or 'none'}" for w in unknown[:SUGGESTED_WORDS]
        )
        raise ToolkitError(
            f"no word of {what} is in the model's vocabulary (unknown: {', '.join(unknown)}; "
            f"nearest known words: {hints})"
        )
    if not unknown:
        return None
    said = "" if what == "the query" else f"{what}: "
    return (
        f"{said}searched with the known words {' '.join(dict.fromkeys(known))}; "
        f"not in the model's vocabulary: {' '.join(unknown)}"
    )


def _composed_notes(
    searcher: Searcher, text: str | None, plus: Sequence[str], minus: Sequence[str]
) -> list[str]:
    """:func:`_vocabulary_note` of each text of a composed or more-like-these query (naming the text), so a
    text with unknown words is said and one with no known word is a clear error before any vector is made."""
    texts = [("the query", text)] if text is not None else []
    texts += [(f"the plus text {p!r} (--plus)", p) for p in plus]
    texts += [(f"the minus text {m!r} (--minus)", m) for m in minus]
    return [note for what, t in texts if (note := _vocabulary_note(searcher, t, what))]


def _composed(searcher: Searcher, base: np.ndarray, plus: Sequence[str], minus: Sequence[str]) -> np.ndarray:
    """normalise(base + Σ plus − Σ minus); a clear error when the texts cancel the base out."""
    try:
        return compose(
            base, [searcher.text_vector(p) for p in plus], [searcher.text_vector(m) for m in minus]
        )
    except ValueError as e:
        raise ToolkitError(
            f"the composed query is empty: the plus/minus texts (--plus/--minus) cancel its base out ({e})"
        ) from e


def _excluding(filters: Filters, step_ids: Sequence[str]) -> Filters:
    from dataclasses import replace

    return replace(filters, exclude_step_ids=tuple(filters.exclude_step_ids) + tuple(step_ids))


def search_text(
    searcher: Searcher,
    text: str,
    mode: str = "knn",
    k: int = DEFAULT_K,
    filters: Filters | None = None,
    num_candidates: int | None = None,
    hybrid: HybridParams | None = None,
) -> SearchResult:
    """Run ``text`` in ``mode`` (one of ``TEXT_MODES``); a clear error for a bad argument, mode or k."""
    _check_searcher(searcher)
    _check_text_type("text", text)
    if is_blank(text):
        raise ToolkitError("the query text is empty")
    opts = SearchOptions(
        mode,
        k,
        num_candidates,
        Filters() if filters is None else filters,
        HybridParams() if hybrid is None else hybrid,
    )
    return search(searcher, text, options=opts)


def search_step_text(searcher: Searcher, text: str, mode: str = "knn", k: int = DEFAULT_K) -> SearchResult:
    """:func:`search_text` of a dataset's own step text (an evaluation report's sample queries): the same
    search, without :data:`~toolkit.model.MAX_QUERY_CHARS`, which bounds what a person types, not a step (up to
    :data:`~toolkit.data.schema.DEFAULT_MAX_TEXT_LEN` characters), so no step is refused that searched before."""
    _check_searcher(searcher)
    _check_text_type("text", text)
    check_query_text(text)
    opts = SearchOptions(mode, k)
    text, notes, _ = _prepare_text(searcher, text, opts)
    result = _run_text(searcher, text, opts, knn_params(opts.k, opts.num_candidates), opts.grouping())
    result.notes[:0] = notes
    return result


def search_photo(
    searcher: Searcher, photo: PhotoSource, k: int = DEFAULT_K, filters: Filters | None = None
) -> SearchResult:
    """Query by photo (a path, the bytes of an image file, a ``PIL.Image`` or an ``H x W x 3`` / ``H x W``
    ``uint8`` array): its shared-space vector against the indexed photos."""
    _check_searcher(searcher)
    if photo is None:
        raise ConfigError("search_photo needs a photo: a path, bytes, a PIL.Image or a uint8 array")
    return search(
        searcher, photo=photo, options=SearchOptions(k=k, filters=Filters() if filters is None else filters)
    )


def knn_params(k: int, num_candidates: int | None = None) -> KnnParams:
    """``k`` and its candidates (:func:`~toolkit.search.queries.num_candidates_for`), checked."""
    k = whole_number("k", k)
    if num_candidates is not None:
        num_candidates = whole_number("num_candidates", num_candidates, None)
    return KnnParams(k=k, num_candidates=num_candidates_for(k, num_candidates))


def _check_searcher(searcher: object) -> None:
    """A :class:`ConfigError` unless ``searcher`` is a :class:`Searcher` over a client, a model and an index
    name (a ``Searcher`` checks them when made; its attributes may have been replaced since)."""
    if not isinstance(searcher, Searcher):
        raise ConfigError(
            "searcher must be a toolkit.Searcher(es, toolkit.SearchModel.load(model_dir), index), "
            f"got {given(searcher)}"
        )
    check_searcher_parts(searcher.es, searcher.model, searcher.index)


def _shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _check_text_type(name: str, value: object) -> None:
    if isinstance(value, (bytes, bytearray)):
        raise ConfigError(f"{name} must be a str, got bytes: decode it first (e.g. data.decode('utf-8'))")
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a str, got {given(value)}")


def _texts(name: str, value: object) -> tuple[str, ...]:
    """``like``/``plus``/``minus`` as a tuple of str: one str is one item (not its characters), None none."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be a str or a sequence of str, got {given(value)}")
    items = tuple(value)
    for item in items:
        _check_text_type(f"every item of {name}", item)
    return items


def _decoded_photo(photo: object, searcher: Searcher) -> Image.Image | None:
    """A photo given as data (bytes, a PIL image, an array) decoded now by the safe loader, so a bad one fails
    before any model work; None for a path (the searcher reads the file)."""
    from toolkit.image.loading import ImageRejected, check_photo_data, load_photo

    if isinstance(photo, (str, os.PathLike)):
        return None
    try:
        # a file's bytes decode like the collection's photos (a big JPEG at reduced size); a PIL image or an
        # array as given; a wrong type is load_photo's ConfigError, before the encoder is built
        draft = None
        if isinstance(photo, (bytes, bytearray, memoryview)):
            check_photo_data(photo)  # by its header, before the encoder is built for the draft size
            draft = searcher.model.photo_draft_size()
        return load_photo(photo, draft_size=draft)  # type: ignore[arg-type]
    except ImageRejected as e:
        raise ToolkitError(f"query photo ({_photo_label(photo)}): {e}") from e


def _photo_label(photo: Any) -> str:
    if isinstance(photo, np.ndarray):
        return f"a {'x'.join(map(str, photo.shape))} {photo.dtype} array"
    if isinstance(photo, (bytes, bytearray, memoryview)):
        return f"{memoryview(photo).nbytes} bytes"
    size = getattr(photo, "size", None)
    return (
        f"a {size[0]}x{size[1]} {photo.mode} PIL image" if isinstance(size, tuple) else type(photo).__name__
    )


def _photo_vector(searcher: Searcher, photo: PhotoSource, image: Image.Image | None) -> np.ndarray:
    """The shared-space vector of a query photo, centred like the indexed photos."""
    if image is None:
        return searcher.image_vector(cast("str | os.PathLike[str]", photo))  # a path: see _decoded_photo
    # Searcher.image_vector takes a path: a photo given as data is read like the index's photos here
    return searcher.photo_vectors([image])[0]
