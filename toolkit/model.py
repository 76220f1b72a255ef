"""A trained model directory, loaded for indexing and queries: tokenizer, word vectors, image encoder
and the two-tower mapping, checked against each other by fingerprint.

Layout written by :func:`toolkit.pipeline.build`::

    MODEL_DIR/manifest.json      fingerprints, encoder spec, dims, toolkit version
    MODEL_DIR/word2vec/          Word2Vec vectors (+ tokenizer config)
    MODEL_DIR/mapping/           two-tower weights + config
    MODEL_DIR/image_features/    backbone features of the dataset's photos (a vector set)
    MODEL_DIR/step_vectors/      Word2Vec means of the dataset's steps (a vector set)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NoReturn, SupportsIndex, TypeVar

import numpy as np

from toolkit.chars import is_blank
from toolkit.device import DEFAULT_DEVICE, is_cuda, resolve_device
from toolkit.errors import ConfigError, ModelDirError, ToolkitError, given
from toolkit.fingerprint import check_fingerprint, fingerprint

if TYPE_CHECKING:
    from toolkit.image.loading import PhotoSource

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
REQUIRED = ("manifest.json", "word2vec", "mapping")
#: What every manifest :func:`toolkit.pipeline.build` writes holds (``encoder``: an object with these).
MANIFEST_KEYS = ("fingerprint", "word2vec_fingerprint", "dims", "encoder")
ENCODER_KEYS = ("name", "fingerprint")

#: Held while an image encoder is built: random initial weights are drawn from torch's process-wide generator
#: (:func:`toolkit.seeding.torch_seeded`), so two builds at once, in any two models, would mix their draws.
_ENCODER_BUILD = threading.Lock()

T = TypeVar("T")


class _built_once(Generic[T]):  # noqa: N801 - used as a decorator, like functools.cached_property
    """Like ``functools.cached_property``, but built once even when threads ask at the same time (under the
    instance's ``_lock``; from Python 3.12 ``cached_property`` no longer locks)."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        with obj._lock:  # once stored, the instance's attribute is found first and no lock is taken
            if self.name not in obj.__dict__:
                obj.__dict__[self.name] = self.build(obj)
            return obj.__dict__[self.name]


def refuse_pickling(obj: object, instead: str) -> NoReturn:
    """Raise the ``TypeError`` that pickling (or deep-copying) ``obj`` gives, saying what to do ``instead``
    (not pickle's "cannot pickle '_thread.RLock' object")."""
    name = type(obj).__name__
    raise TypeError(
        f"a {name} cannot be pickled or deep-copied: it holds locks, loaded networks and connections that "
        f"belong to one process; {instead} (copy.copy makes a shallow copy within a process)"
    )


def shallow_copy(obj: T) -> T:
    """What ``copy.copy`` gave before :func:`refuse_pickling`: a new instance sharing ``obj``'s attributes."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def model_fingerprint(word2vec_fp: str, encoder_fp: str, mapping_fp: str) -> str:
    """The model's identity: what an index records in ``_meta.model_fingerprint``."""
    return fingerprint("jrs-model", word2vec_fp, encoder_fp, mapping_fp)


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelDirError(f"model directory {d} does not exist; build one with `jrs build`")
    missing = [name for name in REQUIRED if not (d / name).exists()]
    if missing:
        raise ModelDirError(f"model directory {d} is incomplete: missing {', '.join(missing)}")
    return _parse_manifest(d / MANIFEST)


def _parse_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``; a :class:`ModelDirError` naming the file when it is damaged."""
    from toolkit.vectorset import read_json_object

    fix = "rebuild the model with `jrs build`"
    manifest = read_json_object(path, fix)
    encoder = manifest.get("encoder")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if isinstance(encoder, dict):
        missing += [f"encoder.{k}" for k in ENCODER_KEYS if k not in encoder]
    elif "encoder" not in missing:
        missing.append("encoder (an object)")
    if missing:
        raise ModelDirError(f"{path} is not a complete model manifest (missing {', '.join(missing)}); {fix}")
    return manifest


#: longest query text, in characters (after trimming): every entry point (the CLI, the library's search functions,
#: the web API) refuses a longer one before anything reaches Elasticsearch. Each token of a keyword query is one
#: clause of its ``match``, and Elasticsearch refuses a query of more clauses than its ``maxClauseCount`` with an
#: error that names neither the query nor the limit (65,536 per GB of heap over the search threads, at least 1,024:
#: 16,384 on the local 1 GB node with 4 search threads); 2,000 characters make at most about 2,000 tokens
MAX_QUERY_CHARS = 2000


def check_query_length(text: str, what: str = "the query") -> None:
    """A :class:`ToolkitError` naming the limit when ``text`` (``what`` names it) is over
    :data:`MAX_QUERY_CHARS` characters after trimming."""
    n = len(text.strip())
    if n > MAX_QUERY_CHARS:
        raise ToolkitError(f"{what} is {n} characters, over the limit of {MAX_QUERY_CHARS}")


def no_content_word(tokens: Sequence[str]) -> ToolkitError:
    """The error of a query whose ``tokens`` (every token, :meth:`Tokenizer.tokenize_all`) hold no content word:
    the one every mode raises (the vector has no word to be made of; BM25 would match particles alone)."""
    shown = " ".join(tokens[:20]) + (" ..." if len(tokens) > 20 else "")
    return ToolkitError(
        "the query has no content word to search for: only particles, auxiliary verbs, symbols or stopwords "
        f"({shown or 'none'})"
    )


def check_query_text(text: str | None) -> str:
    """``text`` unchanged, or a clear error when it is not a str, empty, only white space or invisible characters
    (:func:`~toolkit.chars.is_blank`: what a record's text may not be either) or not valid Unicode."""
    if text is not None and not isinstance(text, str):
        hint = ": decode it first (e.g. data.decode('utf-8'))" if isinstance(text, (bytes, bytearray)) else ""
        raise ConfigError(f"the query must be a str, got {type(text).__name__}{hint}")
    if text is None or is_blank(text):
        raise ToolkitError("the query is empty")
    from toolkit.data.schema import unencodable

    why = unencodable(text)
    if why:
        raise ToolkitError(
            f"the query {why} (bytes that are not UTF-8, e.g. from a terminal in another encoding?)"
        )
    return text


@dataclass
class SearchModel:
    """Everything needed to turn text or photos into shared-space vectors.

    ``device`` (``auto``, ``cpu``, ``cuda[:N]``) is where the photo encoder runs; the text side and the
    mapping stay on the CPU (one query, or one batch of texts, is too small to gain from a GPU).

    One model may serve many threads: each lazily built part (tokenizer, photo encoder) is built once.
    """

    directory: Path
    manifest: dict[str, Any]
    device: str = DEFAULT_DEVICE
    _encoder: Any = field(default=None, repr=False)
    _lock: Any = field(default_factory=threading.RLock, repr=False, compare=False)
    _warmed: bool = field(default=False, repr=False, compare=False)

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        refuse_pickling(
            self, f"load the model in each process instead: SearchModel.load({str(self.directory)!r})"
        )

    def __copy__(self) -> SearchModel:
        return shallow_copy(self)

    def __repr__(self) -> str:  # not the manifest (its training history runs to kilobytes)
        m, encoder = self.manifest, self.manifest.get("encoder") or {}
        return (
            f"SearchModel(directory={str(self.directory)!r}, fingerprint={m.get('fingerprint')!r}, "
            f"encoder={encoder.get('name')!r}, dims={m.get('dims')!r}, device={self.device!r})"
        )

    @classmethod
    def load(
        cls, model_dir: str | os.PathLike, device: str = DEFAULT_DEVICE, warm: bool = False
    ) -> SearchModel:
        """The model in ``model_dir``, its photo encoder to run on ``device`` (a spec or a ``torch.device``,
        resolved now: a bad spec or a missing GPU is a :class:`~toolkit.errors.ConfigError` before anything is
        loaded). ``warm``: build the tokenizer and the photo encoder now (:meth:`warm_up`), not on the first
        query (and a Searcher made with the model builds its index's photo hubness bank when it opens)."""
        if not isinstance(model_dir, (str, os.PathLike)):
            raise ConfigError(
                f"model_dir must be a path (str or os.PathLike), got {type(model_dir).__name__}"
            )
        if type(device).__name__ == "device" and type(device).__module__ == "torch":
            device = str(device)  # a torch.device: its spec
        if device is not None and not isinstance(device, str):
            raise ConfigError(
                f"device must be a str (auto, cpu, cuda or cuda:N), got {type(device).__name__} {device!r}"
            )
        if not isinstance(warm, bool):
            raise ConfigError(f"warm must be True or False, got {warm!r}")
        resolved = resolve_device(device)
        d = Path(model_dir)
        manifest = read_manifest(d)
        model = cls(directory=d, manifest=manifest, device=resolved)
        # verify the parts against the manifest now, so a mixed-up directory fails at load time
        check_fingerprint("word2vec", manifest["word2vec_fingerprint"], model.word_vectors.fingerprint)
        model.mapping  # noqa: B018 - load_mapping checks its input fingerprints
        expected = model_fingerprint(
            manifest["word2vec_fingerprint"], manifest["encoder"]["fingerprint"], model.mapping.fingerprint
        )
        check_fingerprint(
            "model", manifest["fingerprint"], expected, f"manifest of {d} does not match its parts"
        )
        if warm:
            model.warm_up()
        return model

    def warm_up(self) -> SearchModel:
        """Build what the first text or photo query would otherwise build: the tokenizer, the photo encoder
        (a blank photo encoded: its inference backend chosen and run once) and Pillow's decoders; returns the
        model. A :class:`~toolkit.search.engine.Searcher` made with a warmed-up model also builds what its
        index needs (the photo hubness bank) when it opens."""
        from PIL import Image

        self.tokenizer  # noqa: B018
        Image.init()  # the file format plug-ins the first photo opened would import
        self.image_features([Image.new("RGB", (64, 64), "white")])
        self._warmed = True
        return self

    @property
    def warmed(self) -> bool:
        """Whether :meth:`warm_up` ran (``SearchModel.load(warm=True)``)."""
        return self._warmed

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def dims(self) -> int:
        return int(self.manifest["dims"])

    @property
    def feature_dims(self) -> int:
        """Dimensions of the photo encoder's backbone features (what the image side reads)."""
        return int(self.manifest["encoder"]["dim"])

    @property
    def encoder_name(self) -> str:
        return self.manifest["encoder"]["name"]

    @_built_once
    def word_vectors(self):
        from toolkit.text.word2vec import WordVectors

        return WordVectors.load(self.directory / "word2vec")

    @_built_once
    def tokenizer(self):
        from toolkit.text.tokenizer import Tokenizer

        return Tokenizer(self.word_vectors.tokenizer_config)

    @_built_once
    def mapping(self):
        from toolkit.mapping.checkpoint import load_mapping

        return load_mapping(
            self.directory / "mapping",
            expected={
                "word2vec": self.manifest["word2vec_fingerprint"],
                "encoder": self.manifest["encoder"]["fingerprint"],
            },
        )

    def encoder(self):
        """The image encoder the model was trained with, on :attr:`device` (built on first use, once even when
        threads ask together; fingerprint checked). On the CPU it may run on ONNX Runtime/OpenVINO
        (``$JRS_IMAGE_BACKEND`` or auto); on CUDA it runs on torch."""
        if self._encoder is None:
            with _ENCODER_BUILD:
                if self._encoder is None:
                    self._encoder = self._build_encoder()
        return self._encoder

    def photo_draft_size(self) -> int | None:
        """The shortest side the encoder needs: a big JPEG query photo decodes at reduced size down to it, as
        the build and the index decode the collection's photos (so a photo of the collection gets the vector
        the index holds, and a 48 MP phone photo is not refused as too big)."""
        return getattr(self.encoder(), "load_size", None) or None

    def _build_encoder(self):
        from toolkit.image.encoders import create_encoder

        spec = self.manifest["encoder"]
        device = resolve_device(self.device)
        log.debug("building the image encoder %s on %s", spec["name"], device)
        enc = create_encoder(
            spec["name"],
            weights=spec["weights"],
            device=device,
            backend="torch" if is_cuda(device) else None,
            **spec.get("options", {}),
        )
        check_fingerprint(
            "image encoder",
            spec["fingerprint"],
            enc.fingerprint,
            "the encoder's weights differ from those the model was trained with",
        )
        return enc

    # --- text -----------------------------------------------------------------------------------
    def text_features(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Word2Vec means of ``texts`` -> (``[n, 300]`` array, bool mask of texts that had a known token)."""
        from toolkit.text.step_vectors import encode_token_ids, mean_vectors

        wv = self.word_vectors
        token_lists = [self.tokenizer.tokenize(t) for t in texts]
        if len(texts) == 1:  # a query: plain numpy beats setting up embedding_bag (~10x on one text)
            rows = [i for i in map(wv.index.get, token_lists[0]) if i is not None]
            if not rows:
                return np.zeros((1, wv.matrix.shape[1]), dtype=np.float32), np.zeros(1, dtype=bool)
            return wv.matrix[rows].mean(axis=0, dtype=np.float32)[None, :], np.ones(1, dtype=bool)
        flat, offsets = encode_token_ids(token_lists, wv.index)
        vectors, empty = mean_vectors(flat, offsets, wv.matrix)
        return vectors, ~empty

    def text_tokens(self, texts: list[str]) -> tuple[Any, np.ndarray]:
        """Token ids of ``texts`` -> (:class:`~toolkit.text.tokens.TokenBags` of the texts with a known
        token, in order; bool mask of those texts)."""
        from toolkit.text.step_vectors import encode_token_ids
        from toolkit.text.tokens import TokenBags

        flat, offsets = encode_token_ids([self.tokenizer.tokenize(t) for t in texts], self.word_vectors.index)
        bags = TokenBags(flat.astype(np.int32), offsets)
        ok = bags.lengths > 0
        return (bags if ok.all() else bags.take(ok)), ok

    def embed_texts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Shared-space vectors of ``texts`` (a list: one text is ``[text]``), ``[n, dims]`` float32; rows where
        the mask is False have no known token (zeros). A text that is no str is a :class:`ConfigError`."""
        _check_batch("texts", texts, "text")
        for text in texts:
            if not isinstance(text, str):
                raise ConfigError(f"every item of texts must be a str, got {given(text)}")
        mapping = self.mapping.model
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if mapping.text_input == "tokens":
            bags, ok = self.text_tokens(texts)
            if ok.any():
                out[ok] = mapping.embed_text(bags)
            return out, ok
        feats, ok = self.text_features(texts)
        if ok.any():
            out[ok] = mapping.embed_text(feats[ok])
        return out, ok

    def embed_query(self, text: str) -> np.ndarray:
        """One query sentence -> shared-space vector; a clear error when it is empty or no word is known."""
        check_query_text(text)
        vec, ok = self.embed_texts([text])
        if not ok[0]:
            every, tokens = self.tokenizer.tokenize_both(text)
            if not tokens:
                raise no_content_word(every)
            raise ToolkitError(
                f"no word of the query is in the model's vocabulary (tokens after filtering: {tokens})"
            )
        return vec[0]

    # --- images ---------------------------------------------------------------------------------
    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        return self.mapping.model.embed_image(np.asarray(features, dtype=np.float32))

    def image_features(self, photos: Sequence[PhotoSource]) -> np.ndarray:
        """Backbone features of photos (a list: one photo is ``[photo]``): files, or anything
        :func:`toolkit.image.loading.load_photo` takes. A photo that cannot be used raises ImageRejected, which
        names it by its place and what it is when there are several."""
        import torch

        from toolkit.image.loading import ImageRejected, load_photo

        _check_batch("photos", photos, "photo")
        if not len(photos):
            return np.zeros((0, self.feature_dims), dtype=np.float32)
        enc = self.encoder()
        draft = self.photo_draft_size()
        tensors = []
        for i, photo in enumerate(photos):
            try:
                tensors.append(enc.preprocess(load_photo(photo, draft_size=draft)))
            except ImageRejected as e:
                if len(photos) == 1:
                    raise
                raise ImageRejected(f"photo {i} ({_photo_name(photo)}): {e.reason}") from e
        return enc.encode_batch(torch.stack(tensors))

    def embed_photos(self, photos: Sequence[PhotoSource]) -> np.ndarray:
        """Shared-space vectors of photos (a list of paths, bytes, PIL images or uint8 arrays; one photo is
        ``[photo]``; see ``load_photo``), ``[n, dims]`` float32."""
        _check_batch("photos", photos, "photo")
        if not len(photos):
            return np.zeros((0, self.dims), dtype=np.float32)
        return self.embed_image_features(self.image_features(photos))

    def embed_image_files(self, paths: Sequence[Path]) -> np.ndarray:
        return self.embed_photos(paths)


def _check_batch(name: str, values: object, one: str) -> None:
    """A :class:`ConfigError` naming ``name`` when ``values`` is one item (a str, bytes, a path, an image)
    rather than a sequence of them: a str would be taken as its characters."""
    single = isinstance(values, (str, bytes, bytearray, memoryview, os.PathLike)) or hasattr(
        values, "getpixel"
    )
    if single or not isinstance(values, Sequence) and not isinstance(values, np.ndarray):
        raise ConfigError(f"{name} must be a list of {one}s (one {one}: [{one}]), got {given(values)}")


def _photo_name(photo: object) -> str:
    """A photo of a batch in an error message: its path, or what it is."""
    if isinstance(photo, (str, os.PathLike)):
        return str(photo)
    if isinstance(photo, np.ndarray):
        return f"a {'x'.join(map(str, photo.shape))} {photo.dtype} array"
    if isinstance(photo, (bytes, bytearray, memoryview)):
        return f"{memoryview(photo).nbytes} bytes"
    return type(photo).__name__
