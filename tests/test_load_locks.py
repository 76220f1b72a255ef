"""The lock loads and live updates of one alias take (:mod:`toolkit.index.locking`), on the real node: one file
per (cluster, alias) whatever the model or checkpoint directory, and never in the model directory."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from toolkit.cli.main import cli
from toolkit.errors import ConfigError
from toolkit.index.bulk import LoadCounts
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.locking import LOCK_DIR_ENV, related_names, write_lock, write_lock_path
from toolkit.index.update import UpdateOptions, update_index
from toolkit.locks import Busy
from toolkit.rejects import read_rejects


def _dataset(root: Path, recipes: int) -> Path:
    """``recipes`` text-only recipes of two steps each (a load of them is quick)."""
    root.mkdir(parents=True)
    lines = [
        json.dumps(
            {
                "recipe_id": f"k{i}",
                "title": "玉ねぎの炒め物",
                "steps": [{"position": p, "text": "玉ねぎを薄切りにして、中火で炒めます。"} for p in (1, 2)],
            },
            ensure_ascii=False,
        )
        for i in range(recipes)
    ]
    (root / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _model_without_writable_loads(built_model: Path, dest: Path) -> Path:
    """A copy of the model whose ``loads`` cannot be created (a file stands there): as a read-only model
    directory is to a load's lock (the tests run as root, for whom a mode bit does not forbid a write)."""
    shutil.copytree(built_model, dest, ignore=shutil.ignore_patterns("loads"))
    (dest / "loads").write_text("not a directory\n", encoding="utf-8")
    return dest


@contextmanager
def _load_held_open(es: Elasticsearch, root: Path, model: Path, opts: IndexOptions) -> Iterator[list[object]]:
    """A load of ``root`` in a thread, waiting inside its locks after its first batch for the block; yields the
    list that then holds its summary (or the error it raised)."""
    loading, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def held_open(_counts: LoadCounts) -> None:
        loading.set()
        release.wait(60)

    def load() -> None:
        try:
            outcome.append(index_dataset(es, root, model, opts, on_batch=held_open))
        except BaseException as e:  # reported by the caller's assertion
            outcome.append(e)

    runner = threading.Thread(target=load)
    runner.start()
    try:
        assert loading.wait(120), outcome
        yield outcome
    finally:
        release.set()
        runner.join(120)


def test_a_load_with_its_own_checkpoint_dir_and_an_update_exclude_each_other(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path, es_settings
) -> None:
    """A load locked ``CHECKPOINT_DIR/NAME.checkpoint.lock``, an update ``MODEL_DIR/loads/NAME.checkpoint.lock``:
    with a checkpoint dir of its own the load did not keep an update of the same alias out, and an update needed
    write access to ``MODEL_DIR/loads``. Both lock one file per (cluster, alias) now."""
    root = _dataset(tmp_path / "data", 6)
    alias = index_name
    opts = IndexOptions(alias=alias, checkpoint_dir=tmp_path / "ckpt", batch_steps=2)
    with _load_held_open(es, root, built_model, opts) as outcome:
        lock = write_lock_path(es, alias)
        assert built_model not in lock.parents and tmp_path not in lock.parents
        with pytest.raises(Busy, match=f"a load or update of {alias} is already running") as busy:
            update_index(es, root, built_model, UpdateOptions(alias=alias))
        assert str(lock) in str(busy.value)
        args = ["index", str(root), str(built_model), "--alias", alias, "--update"]
        res = CliRunner().invoke(cli, args, env={"ES_URL": es_settings.url})
        assert res.exit_code == 2, res.output
        assert "is already running in another process" in res.output and str(lock) in res.output
        with pytest.raises(
            Busy, match=f"a load or update of {alias}"
        ):  # a second load, another checkpoint dir
            index_dataset(es, root, built_model, IndexOptions(alias=alias, checkpoint_dir=tmp_path / "other"))
    assert isinstance(outcome[0], dict) and outcome[0]["indexed"] == 12, outcome

    read_only = _model_without_writable_loads(built_model, tmp_path / "model")
    assert update_index(es, root, read_only, UpdateOptions(alias=alias))["unchanged"] == 12
    with pytest.raises(ConfigError, match="where a load keeps its checkpoint") as refused:  # a load needs one
        index_dataset(es, root, read_only, IndexOptions(alias=alias))
    assert str(read_only / "loads") in str(refused.value) and "checkpoint_dir" in str(refused.value)


def test_a_lock_directory_that_cannot_be_written_is_named_with_what_to_do(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dataset(tmp_path / "data", 1)
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv(LOCK_DIR_ENV, str(blocker / "locks"))
    opts = IndexOptions(alias=index_name, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(ConfigError) as refused:
        index_dataset(es, root, built_model, opts)
    message = str(refused.value)
    assert str(blocker / "locks") in message and f"set {LOCK_DIR_ENV} to a writable directory" in message
    assert not list(es.indices.get(index=f"{index_name}*", allow_no_indices=True))  # nothing created
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    with write_lock(es, index_name) as path:
        assert path.parent.parent == tmp_path / "locks"
        with pytest.raises(Busy, match=f"a load or update of {index_name}"):
            index_dataset(es, root, built_model, opts)
    assert index_dataset(es, root, built_model, opts)["indexed"] == 2


def test_a_load_whose_rejects_file_cannot_be_written_stops_before_any_work(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """A full load wrote its rejects file at its first reject: with an unwritable --rejects path it stopped
    part-way, an index half loaded. It is now refused before anything is created, naming the file and the
    option; a resumed load's existing rejects are kept."""
    root = _dataset(tmp_path / "data", 1)
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    opts = IndexOptions(alias=index_name, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(ConfigError) as refused:
        index_dataset(es, root, built_model, opts, rejects_path=blocker / "rejects.jsonl")
    assert str(blocker / "rejects.jsonl") in str(refused.value) and "--rejects" in str(refused.value)
    assert not list(es.indices.get(index=f"{index_name}*", allow_no_indices=True))  # nothing created
    kept = tmp_path / "old.rejects.jsonl"
    kept.write_text('{"record": "x", "stage": "read", "reason": "old"}\n', encoding="utf-8")
    from toolkit.rejects import check_rejects_file

    check_rejects_file(kept, "fix")
    assert kept.read_text(encoding="utf-8").count("old") == 1
    fresh = tmp_path / "new" / "r.jsonl"
    check_rejects_file(fresh, "fix")
    assert not fresh.exists()
    assert index_dataset(es, root, built_model, opts, rejects_path=fresh)["indexed"] == 2


def test_a_shared_lock_directory_gives_its_write_bits_to_what_a_run_creates(
    es: Elasticsearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README says users share one JRS_LOCK_DIR: the cluster directory and lock file a run creates there
    take the directory's group/other write bits (created 0755 / 0644 under the usual umask, another user
    could not create or open a lock beside them); a private lock directory keeps them private."""
    import os
    import stat

    old_umask = os.umask(0o022)
    try:
        shared = tmp_path / "shared"
        shared.mkdir()
        os.chmod(shared, 0o2777)
        monkeypatch.setenv(LOCK_DIR_ENV, str(shared))
        with write_lock(es, index_name) as path:
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o2777
            assert stat.S_IMODE(path.stat().st_mode) == 0o666
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        monkeypatch.setenv(LOCK_DIR_ENV, str(private))
        with write_lock(es, index_name) as path:
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(old_umask)


def _recipe_line(recipe_id: str) -> str:
    steps = [{"position": 1, "text": "人参を乱切りにして、鍋で煮ます。"}]
    return json.dumps({"recipe_id": recipe_id, "title": "人参の煮物", "steps": steps}, ensure_ascii=False)


def test_an_update_of_a_read_only_model_directory_writes_its_rejects_outside_it(
    es: Elasticsearch,
    built_model: Path,
    index_name: str,
    tmp_path: Path,
    es_settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``jrs index --update`` wrote its rejects to ``MODEL_DIR/loads`` by default: with a read-only model
    directory, an update that rejected a record stopped part-way, at its first reject. The default is in the
    cache (``JRS_HOME``) now, and a rejects file that cannot be written stops an update before any work."""
    root = _dataset(tmp_path / "data", 2)
    alias = index_name
    index_dataset(es, root, built_model, IndexOptions(alias=alias, checkpoint_dir=tmp_path / "ckpt"))
    read_only = _model_without_writable_loads(built_model, tmp_path / "model")
    with (root / "recipes.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"recipe_id": "bad"}\n' + _recipe_line("new1") + "\n")
    monkeypatch.setenv("JRS_HOME", str(tmp_path / "home"))
    args = ["index", str(root), str(read_only), "--alias", alias, "--update", "--json"]
    env = {"ES_URL": es_settings.url}
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 1, res.output
    data = json.loads(res.output)
    assert (data["indexed"], data["rejected"]) == (1, 1)
    rejects = Path(data["rejects_file"])
    assert (
        rejects.name == f"{alias}.update-rejects.jsonl" and tmp_path / "home" / "rejects" in rejects.parents
    )
    assert [r.record for r in read_rejects(rejects)] == ["recipes.jsonl:line 3"]

    with (root / "recipes.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(_recipe_line("new2") + "\n")
    blocked = tmp_path / "a-file" / "rejects.jsonl"
    blocked.parent.write_text("", encoding="utf-8")
    res = CliRunner().invoke(cli, [*args, "--rejects", str(blocked)], env=env)
    assert res.exit_code == 2, res.output
    assert f"cannot write the rejects file {blocked}" in res.output and "--rejects" in res.output
    es.indices.refresh(index=alias)
    assert es.count(index=alias, query={"term": {"recipe_id": "new2"}})["count"] == 0  # nothing was sent


def test_a_run_given_the_index_and_one_given_its_alias_exclude_each_other(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """Locks were keyed by the name as given: ``--index recipes-000001`` and the alias ``recipes`` behind which
    it is live took different files, so an update of the index could run during a load of the alias (whose
    swap then hides the update's writes), or two updates of one index by its two names at once."""
    root = _dataset(tmp_path / "data", 2)
    alias = index_name
    index_dataset(es, root, built_model, IndexOptions(alias=alias, checkpoint_dir=tmp_path / "ckpt"))
    (concrete,) = es.indices.get_alias(name=alias).body
    es.indices.put_alias(index=concrete, name=f"{alias}-also")  # a second alias of the live index
    es.indices.create(index=f"{alias}-other")  # unrelated: no lock in common
    try:
        assert related_names(es, alias) == sorted({alias, concrete})
        assert related_names(es, f"{alias}-also") == sorted({f"{alias}-also", concrete})
        assert related_names(es, concrete) == [concrete]
        assert related_names(es, f"{alias}-none") == [f"{alias}-none"]  # nothing there yet: the name alone
        with write_lock(es, alias) as path:
            assert path == write_lock_path(es, alias)
            for name in (concrete, f"{alias}-also"):
                with pytest.raises(Busy, match="a load or update of .* is already running"):
                    update_index(es, root, built_model, UpdateOptions(index=name))
            with write_lock(es, f"{alias}-other"):  # another index entirely is not held up
                pass
        # and the other way round: a load of the alias waits for a run given the index
        with write_lock(es, concrete), pytest.raises(Busy, match=f"a load or update of {alias}"):
            index_dataset(es, root, built_model, IndexOptions(alias=alias, checkpoint_dir=tmp_path / "c2"))
        assert update_index(es, root, built_model, UpdateOptions(index=concrete))["unchanged"] == 4
    finally:
        es.indices.delete(index=f"{alias}-other", ignore_unavailable=True)


def test_loads_of_two_aliases_under_one_wider_alias_do_not_exclude_each_other(
    es: Elasticsearch, index_name: str
) -> None:
    """An alias over several indices (``all-recipes`` over the live version of ``recipes`` and of ``sweets``)
    is nothing a load of ``recipes`` writes or moves: it locked it all the same, so a load of ``sweets`` was
    refused as "a load or update of all-recipes is already running" though no run was given that name. A run
    given the wider alias itself, which names both indices, still waits for either."""
    a, b, wide = f"{index_name}-a", f"{index_name}-b", f"{index_name}-all"
    for alias in (a, b):
        es.indices.create(index=f"{alias}-000001", aliases={alias: {}, wide: {}})
    with write_lock(es, a):
        with write_lock(es, b):  # another alias's load: nothing in common
            pass
        with (
            pytest.raises(Busy, match=f"a load or update of {a}-000001 is already running"),
            write_lock(es, wide),
        ):
            pass
    assert related_names(es, a) == [a, f"{a}-000001"]


def test_a_run_given_the_version_a_load_is_writing_waits_for_it(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """A load of an alias writes a new version that no alias names until the swap: a run given that version
    by ``--index`` took another lock file and wrote into it at the same time."""
    root = _dataset(tmp_path / "data", 6)
    alias = index_name
    opts = IndexOptions(alias=alias, checkpoint_dir=tmp_path / "ckpt", batch_steps=2)
    with _load_held_open(es, root, built_model, opts) as outcome:
        (version,) = es.indices.get(index=f"{alias}-0*").body  # the load's new version, behind no alias yet
        assert not es.indices.exists_alias(name=alias)
        with pytest.raises(Busy, match=f"a load or update of {version} is already running"):
            update_index(es, root, built_model, UpdateOptions(index=version))
        with pytest.raises(Busy, match=f"a load or update of {version}"):
            index_dataset(es, root, built_model, IndexOptions(index=version, checkpoint_dir=tmp_path / "c2"))
    assert isinstance(outcome[0], dict) and outcome[0]["indexed"] == 12, outcome
    assert update_index(es, root, built_model, UpdateOptions(index=version))["unchanged"] == 12
