"""``jrs merge-vectors``: one vector set from the shard vector sets of ``embed-images --shard``."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.common import emit, json_option, user_errors


@click.command("merge-vectors")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@json_option
@user_errors
def merge_vectors_cmd(out_dir: Path, shard_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Merge the SHARD_DIRS written by `jrs embed-images --shard I/N` into OUT_DIR.

    The result is row for row what one unsharded run writes (same ids, order, vectors and
    metadata). Refuses shards of other encoders or item lists, a shard missing or given twice.
    """
    from toolkit.shards import merge_vector_sets

    result = merge_vector_sets(shard_dirs, out_dir)
    emit(
        result.to_dict(),
        as_json,
        f"merged {result.shards} shards into {out_dir}: {result.rows} vectors ({result.dim}-d) "
        f"of {result.items} photos, {result.rejected} rejected",
    )


commands = [merge_vectors_cmd]
