"""``jrs sample-data``, ``jrs validate`` and ``jrs import-cookpad``: make, check and convert datasets."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click

from toolkit.cli.common import (
    emit,
    json_option,
    progress_enabled,
    quiet_option,
    refuse_model_dir,
    user_errors,
)
from toolkit.cli.options import default_from
from toolkit.data.sample_variant import (
    BACKGROUNDS,
    COMBOS,
    PALETTES,
    PHOTO_RATIO,
    PHRASINGS,
    SAMPLE_IMAGE_SIZE,
    STYLES,
)

if TYPE_CHECKING:
    from toolkit.data.jsonl import ValidationReport

#: How many rejects ``validate`` lists before pointing at the rejects file.
SHOWN_REJECTS = 20


def _styles(value: str) -> str:
    """``--style``: one style name, or several joined by ``+``; every part must be a known style."""
    parts = [part.strip().lower() for part in value.split("+")]
    unknown = [part for part in parts if part not in STYLES]
    if unknown:
        raise click.BadParameter(f"{', '.join(map(repr, unknown))} is not one of {', '.join(STYLES)}")
    return "+".join(parts)


@click.command("sample-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--recipes", "n_recipes", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--image-size",
    type=click.IntRange(16, 1024),
    default=SAMPLE_IMAGE_SIZE,
    show_default=True,
    help="Photo side (px).",
)
@click.option(
    "--photo-ratio",
    type=click.FloatRange(0.0, 1.0),
    default=PHOTO_RATIO,
    show_default=True,
    help="Share of steps that get a photo.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Drawing processes."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace recipes.jsonl and images/ if OUT_DIR already has them."
)
@default_from(
    "toolkit.data.sample_variant:SampleVariant.style",
    "--style",
    callback=lambda ctx, param, value: _styles(value),
    help=f"Drawing style: {'|'.join(STYLES)}; several joined by + (flat+mosaic) alternate by photo.",
)
@default_from(
    "toolkit.data.sample_variant:SampleVariant.palette",
    "--palette",
    type=click.Choice(PALETTES),
    help="Colour grading.",
)
@default_from(
    "toolkit.data.sample_variant:SampleVariant.background",
    "--background",
    type=click.Choice(BACKGROUNDS),
    help="Background set.",
)
@default_from(
    "toolkit.data.sample_variant:SampleVariant.phrasing",
    "--phrasing",
    type=click.Choice(PHRASINGS),
    help="Step sentences: the plain grammar, or paraphrased (other templates, endings, synonyms).",
)
@default_from(
    "toolkit.data.sample_variant:SampleVariant.extra",
    "--extra-ingredient",
    "extra",
    type=click.FloatRange(0.0, 1.0),
    help="Share of photos that also show an ingredient the step does not name.",
)
@default_from(
    "toolkit.data.sample_variant:SampleVariant.combos",
    "--combos",
    type=click.Choice(COMBOS),
    help="Ingredient x cooking-method pairs: all, or only the seen / the held-out half.",
)
@default_from(
    "toolkit.data.sample_variant:SampleVariant.id_prefix",
    "--id-prefix",
    help="Recipe id prefix (keep collections apart).",
)
@json_option
@quiet_option
@user_errors
def sample_data(
    out_dir: Path,
    n_recipes: int,
    seed: int,
    image_size: int,
    photo_ratio: float,
    workers: int,
    overwrite: bool,
    style: str,
    palette: str,
    background: str,
    phrasing: str,
    extra: float,
    combos: str,
    id_prefix: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write a deterministic synthetic Japanese recipe dataset (recipes.jsonl + drawn step photos).

    The variant options draw or phrase it another way, for measuring retrieval under distribution shift
    (the defaults give the plain collection).
    """
    from toolkit.data.sample import generate_sample
    from toolkit.data.sample_variant import SampleVariant

    variant = SampleVariant(style, palette, background, phrasing, extra, combos, id_prefix=id_prefix)
    refuse_model_dir(out_dir, "sample-data")
    summary = generate_sample(
        out_dir,
        n_recipes,
        seed=seed,
        image_size=image_size,
        photo_ratio=photo_ratio,
        workers=workers,
        variant=variant,
        overwrite=overwrite,
        progress=progress_enabled(quiet),
    )
    emit(
        summary.to_dict(),
        as_json,
        f"wrote {summary.recipes} recipes, {summary.steps} steps ({summary.photos} with photos, "
        f"{summary.text_only} text-only) to {summary.root} in {summary.seconds:.1f} s "
        f"({summary.steps_per_s:.0f} steps/s)",
    )


def _validation_text(report: ValidationReport, rejects_file: Path | None, decoded: bool) -> str:
    lines = [
        f"{report.recipes} recipes, {report.steps} steps ({report.steps_with_image} with a usable photo)",
        f"missing photos: {report.missing_images}, unsafe photo paths: {report.unsafe_paths}"
        + (f", photos that do not decode: {report.undecodable_images}" if decoded else ""),
    ]
    if report.steps_without_words:
        lines.append(
            f"steps without a text vector (no word the tokenizer keeps): {report.steps_without_words}"
        )
    if report.ok:
        checked = (
            "photos decoded"
            if decoded
            else "photos not decoded: --decode checks them as build and index will"
        )
        lines.append(f"no rejects: the dataset is valid ({checked})")
        return "\n".join(lines)
    from toolkit.rejects import stage_counts

    stages = stage_counts(Counter(r.stage for r in report.rejects))
    if not report.recipes:
        lines.append("no recipe is valid: there is nothing to build or index")
    lines.append(f"{len(report.rejects)} rejected ({stages}):")
    lines += [f"  {r}" for r in report.rejects[:SHOWN_REJECTS]]
    more = len(report.rejects) - SHOWN_REJECTS
    if more > 0:
        where = f"see {rejects_file}" if rejects_file else "use --rejects FILE to list them all"
        lines.append(f"  ... and {more} more ({where})")
    return "\n".join(lines)


@click.command("validate")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--rejects",
    "rejects_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write rejects (JSONL).",
)
@click.option("--no-images", is_flag=True, help="Do not check photo paths and files.")
@click.option(
    "--decode",
    is_flag=True,
    help="Also decode every photo, as build and index will (slower; steps kept text-only).",
)
@json_option
@user_errors
def validate(root: Path, rejects_file: Path | None, no_images: bool, decode: bool, as_json: bool) -> None:
    """Check a dataset root (recipes.jsonl + photos); exit status 1 if anything is rejected."""
    from toolkit.data.jsonl import DatasetError, recipes_path, validate_dataset
    from toolkit.rejects import RejectsWriter

    if decode and no_images:
        raise click.UsageError("--decode decodes the photos, --no-images skips them: give one or the other")
    if rejects_file is not None:
        rejects_file.unlink(missing_ok=True)
    with RejectsWriter(rejects_file) as writer:
        report = validate_dataset(root, check_images=not no_images, rejects=writer, decode_images=decode)
    if report.ok and report.recipes == 0:
        raise DatasetError(f"{recipes_path(root)} holds no recipes: there is nothing to build or index")
    emit(report.to_dict(), as_json, lambda: _validation_text(report, rejects_file, report.decoded))
    if not report.ok:
        sys.exit(1)


@click.command("import-cookpad")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--copy", "copy_images", is_flag=True, help="Copy photos instead of hard-linking them.")
@click.option(
    "--rejects",
    "rejects_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejects (JSONL)  [default: OUT/import_rejects.jsonl]",
)
@json_option
@quiet_option
@user_errors
def import_cookpad(
    src: Path, out: Path, copy_images: bool, rejects_file: Path | None, as_json: bool, quiet: bool
) -> None:
    """Convert a Cookpad (NII IDR) export in SRC to the JSONL layout in OUT.

    Exit status 1 if any row was rejected (the valid ones are still written; reasons in the rejects file).
    """
    from toolkit.cli.common import EXIT_REJECTS
    from toolkit.data.cookpad import convert_cookpad
    from toolkit.rejects import RejectsWriter, stage_counts

    refuse_model_dir(out, "import-cookpad")
    rejects_file = rejects_file or out / "import_rejects.jsonl"
    rejects_file.unlink(missing_ok=True)
    with RejectsWriter(rejects_file) as writer:
        summary = convert_cookpad(
            src, out, link_images=not copy_images, rejects=writer, progress=progress_enabled(quiet)
        )
    by_stage = writer.summary()["by_stage"]
    data = {
        **summary.to_dict(),
        "rejects_by_stage": by_stage,
        "rejects_file": str(rejects_file) if summary.rejects else None,
    }
    text = (
        f"wrote {summary.recipes} recipes, {summary.steps} steps ({summary.paired} with photos, "
        f"{summary.text_only} text-only) to {summary.out_file}"
    )
    if summary.rejects:
        text += f"\n{summary.rejects} rejected ({stage_counts(by_stage)}): see {rejects_file}"
    emit(data, as_json, text)
    if summary.rejects:
        sys.exit(EXIT_REJECTS)


commands = [sample_data, validate, import_cookpad]
