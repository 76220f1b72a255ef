"""``jrs merge-vectors``: one vector set from the shard vector sets of ``embed-images --shard``."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.common import emit, json_option, refuse_model_dir, user_errors


@click.command("merge-vectors")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a vector set in OUT_DIR (every file of it), or write into a directory holding other files.",
)
@json_option
@user_errors
def merge_vectors_cmd(out_dir: Path, shard_dirs: tuple[Path, ...], overwrite: bool, as_json: bool) -> None:
    """Merge the SHARD_DIRS written by `jrs embed-images --shard I/N` into OUT_DIR.

    The result is row for row what one unsharded run writes (same ids, order, vectors, metadata and
    photo_rejects.jsonl). Refuses shards of other encoders or item lists, a shard missing or given
    twice, an OUT_DIR that is one of the shards, and (without --overwrite) one that is not empty.
    """
    from toolkit.shards import merge_vector_sets

    refuse_model_dir(out_dir, "merge-vectors")
    result = merge_vector_sets(shard_dirs, out_dir, overwrite=overwrite)
    rejects = f" (reasons in {result.photo_rejects})" if result.photo_rejects else ""
    emit(
        result.to_dict(),
        as_json,
        f"merged {result.shards} shards into {out_dir}: {result.rows} vectors ({result.dim}-d) "
        f"of {result.items} photos, {result.rejected} rejected{rejects}",
    )


commands = [merge_vectors_cmd]
