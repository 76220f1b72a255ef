"""The README's "Python API" example runs as written, against the real node, and `import toolkit` stays cheap."""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

import toolkit
from toolkit.es.config import EsSettings

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The first ```python block of the README's "Python API" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no python block under 'Python API'"
    return match.group(1)


def test_import_toolkit_loads_neither_torch_nor_the_client() -> None:
    code = "import sys, toolkit; print(sorted(m for m in ('torch', 'elasticsearch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert set(toolkit.__all__) >= {"SearchModel", "Searcher", "search_text", "search_photo", "make_client"}
    assert {"build", "BuildOptions", "index_dataset", "IndexOptions", "SearchResult", "Hit"} <= set(
        dir(toolkit)
    )
    with pytest.raises(AttributeError):
        toolkit.no_such_name  # noqa: B018


@pytest.mark.parametrize("command", ["build", "train-mapping", "simclr"])
def test_help_shows_the_training_defaults_without_loading_torch(command: str) -> None:
    """`jrs build --help`, `train-mapping --help` and `simclr --help` show MappingConfig's / SimCLRConfig's
    defaults: they took 2-4 s, importing torch to read them. The options now live in modules without it."""
    code = (
        "import contextlib, io, sys\n"
        "from toolkit.cli.main import cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    cli([{command!r}, '--help'], standalone_mode=False)\n"
        "assert '[default: ' in out.getvalue(), out.getvalue()\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_training_options_keep_their_old_import_paths() -> None:
    import toolkit.mapping
    from toolkit.image.simclr import SimCLRConfig
    from toolkit.image.simclr_config import SimCLRConfig as LightSimCLRConfig
    from toolkit.mapping.train import MappingConfig, train_mapping  # the old import paths still work

    assert SimCLRConfig is LightSimCLRConfig

    assert toolkit.mapping.MappingConfig is MappingConfig and toolkit.mapping.train_mapping is train_mapping
    assert set(toolkit.mapping.__all__) >= {"MappingConfig", "TwoTower", "load_mapping", "train_mapping"}
    with pytest.raises(AttributeError):
        toolkit.mapping.no_such_name  # noqa: B018


@pytest.mark.parametrize("first", ["Searcher", "query", "search_text"])
def test_every_public_name_resolves_whatever_is_loaded_first(first: str) -> None:
    """A name loaded first imports its subpackage (``toolkit.search``), which must not shadow another export."""
    code = (
        "import inspect, toolkit\n"
        f"getattr(toolkit, {first!r})\n"
        "bad = [n for n in toolkit.__all__ if n != '__version__' and inspect.ismodule(getattr(toolkit, n))]\n"
        "print(bad, inspect.signature(toolkit.query).parameters['photo'].kind.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "KEYWORD_ONLY"], out.stdout + out.stderr
    subpackages = {m.name for m in pkgutil.iter_modules(toolkit.__path__)}
    assert "search" in subpackages
    assert set(toolkit.__all__) & subpackages == set(), "such a name is shadowed once its subpackage loads"


def test_readme_python_example_runs(
    sample_root: Path,
    es: Elasticsearch,
    es_settings: EsSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(sample_root, tmp_path / "data")
    alias = f"jrs-test-api-{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ES_URL", es_settings.url or "")
    monkeypatch.setenv("JRS_INDEX", alias)
    try:
        exec(compile(readme_example(), "README.md:Python API", "exec"), {"__name__": "__readme__"})
        out = capsys.readouterr().out
        assert re.search(r"^model \w+ test R@10 0\.\d+", out, re.M), out
        assert re.search(r"^indexed \d+ steps into " + re.escape(alias) + r"-\d+ rejected 0$", out, re.M), out
        hits = re.findall(r"^\d\.\d{3}  (\S+:\d+)  ", out, re.M)
        assert len(hits) == 5, out
        assert f"photos like {hits[0]} ['{hits[0]}'" in out  # its own photo comes first
    finally:
        for idx in es.indices.get(index=f"{alias}*", ignore_unavailable=True, allow_no_indices=True):
            es.indices.delete(index=idx, ignore_unavailable=True)
        es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-template")
    assert os.path.isfile(tmp_path / "model" / "manifest.json")
