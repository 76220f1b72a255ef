"""Image -> image retrieval quality: precision@k of neighbours that share a recipe tag with the query.

A neighbour is relevant when its recipe shares a label with the query's recipe: for the criterion
``"dish"`` the ``dish:…`` tag, for ``"main"`` the ``main:…`` tag, for ``"dish|main"`` either of
them. Photos of the query's own recipe are left out of its gallery (they share every tag, and
a near-duplicate step photo would say nothing about the encoder). ``chance`` is the precision a
random ranking would have (the share of relevant photos in each query's gallery).

:func:`precision_at_k` works on any vectors; :func:`evaluate_image_encoders` extracts features
of a dataset's held-out photos with several encoders and compares them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.device import DEFAULT_DEVICE, resolve_device
from toolkit.errors import ConfigError, ToolkitError
from toolkit.evaluation.metrics import l2_normalize
from toolkit.seeding import check_seed

DEFAULT_CRITERIA: tuple[str, ...] = ("dish", "main", "dish|main")
#: ``heldout`` is val + test: the photos a ``jrs simclr`` run on the train split never saw.
SPLIT_CHOICES = ("heldout", "test", "val", "train", "all")


def _label_matrix(labels: Sequence[Collection[str] | str]) -> np.ndarray:
    """Boolean ``[N, L]`` one-hot matrix of each item's label set."""
    sets = [{x} if isinstance(x, str) else set(x) for x in labels]
    vocab = {lab: j for j, lab in enumerate(sorted({lab for s in sets for lab in s}))}
    m = np.zeros((len(sets), max(1, len(vocab))), dtype=np.float32)
    for i, s in enumerate(sets):
        for lab in s:
            m[i, vocab[lab]] = 1.0
    return m


def precision_at_k(
    vectors: np.ndarray,
    labels: Sequence[Collection[str] | str],
    k: int = 10,
    groups: Sequence[str] | None = None,
    block: int = 1024,
) -> dict[str, float | None]:
    """Mean precision@k of cosine nearest neighbours, each item querying all the others.

    ``labels[i]`` is item ``i``'s label set (or one label): a neighbour is relevant when the sets
    intersect. Items with the same ``groups`` value never retrieve each other (nor themselves).
    Queries with fewer than ``k`` candidates are scored on those they have; queries with none
    are skipped, and so are queries with no label (nothing can be relevant to them: they would pull
    precision and chance towards 0 by the share of unlabelled items; as in
    :func:`toolkit.evaluation.graded.graded_precision`). They are still neighbours of the others. Returns ``precision`` (mean), ``chance`` (mean share of relevant candidates),
    ``lift`` (precision / chance), ``k`` and ``queries``.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    x = l2_normalize(vectors, "image vectors")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"precision@k needs at least 2 items, got {n}")
    if len(labels) != n or (groups is not None and len(groups) != n):
        raise ValueError(f"{n} vectors but {len(labels)} label sets and {len(groups or [])} groups")
    lab = _label_matrix(labels)
    labelled = np.asarray(lab.any(axis=1))
    group_ids = np.unique(np.asarray(groups), return_inverse=True)[1] if groups is not None else np.arange(n)
    precisions, chances = [], []
    for start in range(0, n, block):
        stop = min(n, start + block)
        scores = x[start:stop] @ x.T
        excluded = group_ids[start:stop, None] == group_ids[None, :]
        excluded[np.arange(stop - start), np.arange(start, stop)] = True
        scores[excluded] = -np.inf
        relevant = (lab[start:stop] @ lab.T) > 0
        candidates = (~excluded).sum(axis=1)
        kk = min(k, n - 1)
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n else np.argsort(-scores, axis=1)
        top_rel = np.take_along_axis(relevant, top, axis=1) & np.isfinite(
            np.take_along_axis(scores, top, axis=1)
        )
        for r in range(stop - start):
            c = int(candidates[r])
            if c == 0 or not labelled[start + r]:
                continue
            precisions.append(top_rel[r].sum() / min(k, c))
            chances.append((relevant[r] & ~excluded[r]).sum() / c)
    if not precisions:
        if not labelled.any():
            raise ValueError("no item has a label: nothing can be relevant")
        raise ValueError("no query has any candidate neighbour (every item is in the same group?)")
    p, ch = float(np.mean(precisions)), float(np.mean(chances))
    return {
        "precision": p,
        "chance": ch,
        "lift": p / ch if ch > 0 else None,  # None (JSON null): no chance to compare with
        "k": int(k),
        "queries": len(precisions),
    }


def criterion_prefixes(criterion: str) -> list[str]:
    """The tag prefixes of ``criterion`` (``"dish|main"`` -> ``["dish", "main"]``)."""
    prefixes = [p.strip() for p in criterion.split("|") if p.strip()]
    if not prefixes:
        raise ConfigError(f"empty relevance criterion {criterion!r}")
    return prefixes


def criterion_labels(tags: Sequence[Sequence[str]], criterion: str) -> list[set[str]]:
    """Each item's labels for ``criterion`` (``"dish"``, ``"main|dish"``, …): its tags with those prefixes."""
    prefixes = criterion_prefixes(criterion)
    return [{t for t in item if t.split(":", 1)[0] in prefixes and ":" in t} for item in tags]


def check_criteria(tags: Sequence[Sequence[str]], criteria: Sequence[str], where: str) -> None:
    """Refuse a criterion naming a tag prefix no item has (it would score 0 against a chance of 0)."""
    found = sorted({t.split(":", 1)[0] for item in tags for t in item if ":" in t})
    for c in criteria:
        absent = [p for p in criterion_prefixes(c) if p not in found]
        if absent:
            raise ConfigError(
                f"criterion {c!r}: no recipe of {where} has a {', '.join(f'{p}:' for p in absent)} tag "
                f"(tag prefixes found: {', '.join(found) or 'none'})"
            )


def check_labels(specs: Sequence[EncoderSpec]) -> None:
    """Refuse two encoders under one label (their rows could not be told apart)."""
    seen: dict[str, int] = {}
    for spec in specs:
        seen[spec.label or spec.name] = seen.get(spec.label or spec.name, 0) + 1
    repeated = [label for label, n in seen.items() if n > 1]
    if repeated:
        raise ConfigError(
            f"encoder label {', '.join(map(repr, repeated))} is given to more than one -e; "
            "give each its own LABEL= (e.g. -e a=pixels -e b=resnet18:random)"
        )


# --------------------------------------------------------------------------- datasets and encoders


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder to compare: ``[LABEL=]NAME[:WEIGHTS]`` on the command line."""

    name: str
    weights: str = "auto"
    label: str = ""

    @classmethod
    def parse(cls, text: str) -> EncoderSpec:
        head = text.split(":", 1)[0]
        label, _, rest = text.partition("=") if "=" in head else ("", "", text)
        name, _, weights = rest.partition(":")
        if not name:
            raise ConfigError(f"encoder spec {text!r}: expected [LABEL=]NAME[:WEIGHTS]")
        return cls(name, weights or ("auto" if name != "simclr" else ""), label or rest)


@dataclass
class HeldOutPhotos:
    """The photos of one split with their recipe (group) and tags."""

    items: list[tuple[str, Path]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    tags: list[tuple[str, ...]] = field(default_factory=list)


def collect_photos(root: str | Path, split: str = "heldout", split_seed: int = 0) -> HeldOutPhotos:
    """Step photos of the recipes in ``split`` (``heldout`` = val + test), with tags and recipe ids."""
    from toolkit.stages.read import ReadOptions, read_steps

    if split not in SPLIT_CHOICES:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    wanted = {"heldout": {"val", "test"}, "all": {"train", "val", "test"}}.get(split, {split})
    out = HeldOutPhotos()
    for step in read_steps(
        root, None, ReadOptions(split_seed=split_seed)
    ):  # bad records: `jrs data validate`
        if step.split in wanted and step.image is not None:
            out.items.append((step.step_id, step.image))
            out.groups.append(step.recipe_id)
            out.tags.append(step.tags)
    return out


def evaluate_image_encoders(
    root: str | Path,
    specs: Sequence[EncoderSpec],
    *,
    split: str = "heldout",
    split_seed: int = 0,
    k: int = 10,
    criteria: Sequence[str] = DEFAULT_CRITERIA,
    image_size: int | None = None,
    batch_size: int = 32,
    device: str = DEFAULT_DEVICE,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Precision@k of image->image retrieval on ``split``'s photos for every encoder in ``specs``.

    Features go to ``cache_dir/<encoder fingerprint>`` (reused on the next call) or a temporary
    directory. Every encoder is scored on the photos all of them could encode.
    """
    from toolkit.image.encoders import create_encoder
    from toolkit.image.features import extract_features
    from toolkit.vectorset import load_vector_set

    if not specs:
        raise ConfigError("name at least one encoder to evaluate")
    check_labels(specs)
    split_seed = check_seed("split seed", split_seed)  # recorded in the result (JSON)
    photos = collect_photos(root, split, split_seed)
    if len(photos.items) < 2:
        raise ToolkitError(
            f"only {len(photos.items)} photos in the {split} split of {root}; nothing to retrieve"
        )
    check_criteria(photos.tags, criteria, f"the {split} photos of {root}")
    tmp = None
    if cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="jrs-eval-images-")
        cache_dir = tmp.name
    try:
        runs = []
        for spec in specs:
            kw: dict[str, Any] = {"device": resolve_device(device)}  # auto / a missing GPU: one clear answer
            if image_size:
                kw["image_size"] = int(image_size)
            enc = create_encoder(spec.name, weights=spec.weights or None, **kw)  # logs its message
            out = Path(cache_dir) / enc.fingerprint
            # a cache: features of other photos (another split or dataset) are replaced, not refused
            extract_features(
                photos.items, enc, out, batch_size=batch_size, progress=progress, replace_other=True
            )
            vs = load_vector_set(out, mmap=False)
            runs.append((spec, enc, dict(zip(vs.ids, np.asarray(vs.vectors), strict=True))))
    finally:
        if tmp is not None:
            tmp.cleanup()
    keep = [i for i, (sid, _) in enumerate(photos.items) if all(sid in feats for _, _, feats in runs)]
    results = []
    for spec, enc, feats in runs:
        x = np.stack([feats[photos.items[i][0]] for i in keep])
        row: dict[str, Any] = {
            "label": spec.label or spec.name,
            "encoder": enc.name,
            "weights": getattr(enc, "weights_source", spec.weights),
            "fingerprint": enc.fingerprint,
            "dim": int(enc.dim),
            "image_size": applied_image_size(enc, image_size),
            "criteria": {},
        }
        for c in criteria:
            labels = criterion_labels([photos.tags[i] for i in keep], c)
            row["criteria"][c] = precision_at_k(x, labels, k, [photos.groups[i] for i in keep])
        results.append(row)
    return {
        "dataset": str(Path(root).resolve()),
        "split": split,
        "split_seed": split_seed,
        "k": int(k),
        "photos": len(keep),
        "recipes": len({photos.groups[i] for i in keep}),
        "skipped_photos": len(photos.items) - len(keep),
        "criteria": list(criteria),
        "results": results,
    }


def applied_image_size(encoder: Any, requested: int | None) -> int | None:
    """The side of the square an encoder sees: its preprocessing's crop (CNNs) or grid (pixels), else the
    size it was asked for (a plug-in that does not say)."""
    pre = getattr(encoder, "preprocess", None)
    size = getattr(pre, "crop", None) or getattr(pre, "size", None)
    return int(size) if isinstance(size, int) else requested


def results_table(report: dict[str, Any]) -> str:
    """Plain-text comparison: one row per encoder, precision@k (and chance) per criterion, in percent."""
    k, criteria = report["k"], report["criteria"]
    header = ["encoder", "dim", *[f"P@{k} {c} %" for c in criteria]]
    rows = [
        [r["label"], str(r["dim"]), *[f"{100 * r['criteria'][c]['precision']:.1f}" for c in criteria]]
        for r in report["results"]
    ]
    first = report["results"][0]["criteria"]
    rows.append(["(chance)", "", *[f"{100 * first[c]['chance']:.1f}" for c in criteria]])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    intro = (
        f"image->image precision@{k} on {report['photos']} {report['split']} photos of {report['recipes']} recipes "
        "(neighbours from other recipes; relevant = same tag)"
    )
    return "\n".join([intro, *lines])
