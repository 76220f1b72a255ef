"""A 2-D map of the shared space: text and photo points projected together (t-SNE or PCA), coloured by
modality in one panel and by a category (cooking method, main ingredient, a recipe tag) in the other,
with query texts marked as stars."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.model import SearchModel
from toolkit.seeding import check_seed
from toolkit.viz.space import OTHER, category_of, paired_space, step_texts, subsample, top_categories

log = logging.getLogger(__name__)

PROJECTIONS = ("tsne", "pca")
#: Modality colours (RGB 0-255) of the first panel; category colours come from CATEGORY_COLOURS.
TEXT_COLOUR = (31, 119, 180)
IMAGE_COLOUR = (255, 127, 14)
QUERY_COLOUR = (214, 39, 40)
#: Distinct category colours (tab10 without the modality/query colours), then grey for "other".
CATEGORY_COLOURS = [
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 128),
    (128, 128, 0),
]
OTHER_COLOUR = (190, 190, 190)


@dataclass
class MapOptions:
    color_by: str = "method"
    projection: str = "tsne"
    max_pairs: int = 400
    categories: int = 8
    seed: int = 0
    split: str | None = None
    threads: int | None = 1  # None: all cores

    def __post_init__(self) -> None:
        # t-SNE takes 0 to 2**32 - 1: refused here, not by scikit-learn
        self.seed = check_seed("embedding map seed", self.seed)


def project(x: np.ndarray, method: str, seed: int = 0, threads: int | None = 1) -> np.ndarray:
    """``[n, d]`` -> ``[n, 2]`` with t-SNE (cosine, PCA init) or PCA, on at most ``threads`` threads
    (None: all). One thread is the default: a map's few hundred points take a second that way, while
    OpenMP threads on a busy machine can take twenty times longer."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _project(x, method, seed)


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method not in PROJECTIONS:
        raise ToolkitError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
    if x.shape[0] < 4:
        raise ToolkitError(f"a map needs at least 4 points, got {x.shape[0]}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (x.shape[0] - 1) / 3))
    tsne = TSNE(2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed)
    return tsne.fit_transform(x)


def _rgb(c: tuple[int, int, int]) -> tuple[float, float, float]:
    return (c[0] / 255, c[1] / 255, c[2] / 255)


def write_embedding_map(
    model: SearchModel,
    out: str | Path,
    dataset_root: str | Path,
    queries: Sequence[str] = (),
    options: MapOptions | None = None,
) -> dict[str, Any]:
    """Project the model's text/photo pairs (and ``queries``) to 2-D and save the two-panel PNG ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.viz.fonts import use_japanese_font_in_matplotlib

    opts = options or MapOptions()
    if opts.categories > len(CATEGORY_COLOURS):
        raise ToolkitError(
            f"at most {len(CATEGORY_COLOURS)} categories can be coloured, got {opts.categories}"
        )
    log.info("embedding the model's text/photo pairs ...")
    space = subsample(paired_space(model, opts.split), opts.max_pairs, opts.seed)
    steps = step_texts(dataset_root)
    labels = top_categories([category_of(steps.get(i), opts.color_by) for i in space.ids], opts.categories)
    query_vecs = [model.embed_query(q) for q in queries]
    n = len(space)
    stacked = np.concatenate([space.text, space.image, *(v[None, :] for v in query_vecs)])
    log.info(f"projecting {len(stacked)} points with {opts.projection} ...")
    xy = project(stacked, opts.projection, opts.seed, opts.threads)
    text_xy, image_xy, query_xy = xy[:n], xy[n : 2 * n], xy[2 * n :]
    names = [c for c, _ in Counter(label for label in labels if label != OTHER).most_common()]
    if OTHER in labels:
        names.append(OTHER)
    colour_of = {c: CATEGORY_COLOURS[i] for i, c in enumerate(names) if c != OTHER} | {OTHER: OTHER_COLOUR}

    family = use_japanese_font_in_matplotlib()
    fig, (ax_mod, ax_cat) = plt.subplots(1, 2, figsize=(14, 7), dpi=100)
    kw = {"s": 14, "linewidths": 0, "alpha": 1.0}
    ax_mod.scatter(*text_xy.T, color=_rgb(TEXT_COLOUR), marker="o", label=f"テキスト (text, {n})", **kw)
    ax_mod.scatter(*image_xy.T, color=_rgb(IMAGE_COLOUR), marker="^", label=f"写真 (photo, {n})", **kw)
    ax_mod.set_title("モダリティ (modality)")
    label_arr = np.array(labels)
    for name in names:
        mask = label_arr == name
        colour = _rgb(colour_of[name])
        ax_cat.scatter(*text_xy[mask].T, color=colour, marker="o", label=f"{name} ({int(mask.sum())})", **kw)
        ax_cat.scatter(*image_xy[mask].T, color=colour, marker="^", **kw)
    ax_cat.set_title(f"カテゴリ ({opts.color_by}); ○ text, △ photo")
    for ax in (ax_mod, ax_cat):
        if len(query_xy):
            ax.scatter(*query_xy.T, color=_rgb(QUERY_COLOUR), marker="*", s=260, edgecolors="black", zorder=5)
            for q, (qx, qy) in zip(queries, query_xy, strict=True):
                ax.annotate(
                    q if len(q) <= 16 else q[:15] + "…",
                    (qx, qy),
                    xytext=(6, 6),
                    textcoords="offset points",
                    fontsize=10,
                    bbox={"boxstyle": "round", "fc": "white", "alpha": 0.85},
                    zorder=6,
                )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=8, markerscale=1.5)
    fig.suptitle(f"共有空間の地図 — {opts.projection.upper()} of {2 * n} points ({model.fingerprint})")
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "projection": opts.projection,
        "pairs": n,
        "points": 2 * n + len(queries),
        "color_by": opts.color_by,
        "categories": {c: int((label_arr == c).sum()) for c in names},
        "colours": {c: list(colour_of[c]) for c in names},
        "queries": [{"text": q, "xy": [float(v) for v in p]} for q, p in zip(queries, query_xy, strict=True)],
        "font": family,
    }
