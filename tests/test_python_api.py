"""The README's "Python API" example runs as written, against the real node, and `import toolkit` stays cheap."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import numpy as np
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


# --- what a user's type checker sees ----------------------------------------------------------------------------


def _type_checking_imports(package: ModuleType) -> dict[str, str]:
    """Public name -> ``module`` / ``module:attribute`` as the ``if TYPE_CHECKING:`` block of ``package``'s
    ``__init__.py`` imports it."""
    import ast

    assert package.__file__
    tree = ast.parse(Path(package.__file__).read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    names: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names:
            names[alias.asname or alias.name] = node.module + (f":{alias.name}" if alias.asname else "")
    return names


@pytest.mark.parametrize("name", ["toolkit", "toolkit.mapping", "toolkit.image"])
def test_type_checkers_see_every_public_name_as_it_is_loaded(name: str) -> None:
    """The names were loaded by a module ``__getattr__`` only, so to mypy and IDEs every one of them was ``Any``:
    a user's typed script was checked against nothing. They are imported for type checkers now, as loaded, in
    ``toolkit`` and in the subpackages that load their names lazily too."""
    package = importlib.import_module(name)
    assert _type_checking_imports(package) == package._EXPORTS
    assert package.__all__ == [*(["__version__"] if name == "toolkit" else []), *sorted(package._EXPORTS)]


def test_the_types_of_public_signatures_are_exported() -> None:
    """``SearchResult.groups`` holds ``Group``s and the photo queries take a ``PhotoSource``: both public."""
    from toolkit.image.loading import PhotoSource
    from toolkit.search.engine import Group

    assert toolkit.Group is Group and toolkit.PhotoSource is PhotoSource
    assert {"Group", "PhotoSource"} <= set(toolkit.__all__)


def test_mypy_checks_a_users_script_against_the_public_api(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(
        "import toolkit\n"
        "def run(searcher: toolkit.Searcher) -> float:\n"
        "    result: toolkit.SearchResult = toolkit.search_text(searcher, '玉ねぎ', k=5)\n"
        "    toolkit.search_text(searcher, 5)\n"
        "    toolkit.build('data/', 'model/', toolkit.IndexOptions())\n"
        "    return result.hits[0].score\n",
        encoding="utf-8",
    )
    repo = Path(toolkit.__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", str(script)],
        capture_output=True,
        text=True,
        cwd=repo,  # the repository's mypy settings and cache
    )
    errors = re.findall(r"user_script\.py:(\d+): error: (.*)", out.stdout)
    assert [line for line, _ in errors] == ["4", "5"], out.stdout + out.stderr
    assert '"search_text" has incompatible type "int"; expected "str"' in errors[0][1]
    assert '"build" has incompatible type "IndexOptions"' in errors[1][1]


# --- library calls leave nothing running ------------------------------------------------------------------------


def test_a_call_without_progress_bars_starts_no_thread(
    es_settings: EsSettings, built_model: Path, search_alias: str
) -> None:
    """A bar that is off was a ``tqdm(disable=True)``, which starts tqdm's monitor thread: ``evaluate`` through an
    index left a ``tqdm_monitor`` thread running in the user's process (it wakes every 10 s, for good)."""
    code = (
        "import sys, threading, toolkit\n"
        "from toolkit.progress import progress_bar, track\n"
        "assert list(track(range(3), False, 'x', 'x')) == [0, 1, 2]\n"
        "with progress_bar(False, 'x', 'x', total=3) as bar:\n"
        "    bar.update(1); bar.set_postfix(loss='1')\n"
        "es = toolkit.make_client(toolkit.EsSettings(url=sys.argv[1]))\n"
        "result = toolkit.evaluate(sys.argv[2], es, sys.argv[3], modes='knn', limit=3)\n"
        "print(sorted(result['through_index']['modes']))\n"
        "print(sorted(t.name for t in threading.enumerate()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, es_settings.url or "", str(built_model), search_alias],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    modes, threads = out.stdout.strip().splitlines()[-2:]
    assert "'knn'" in modes and "'keyword'" not in modes  # one str is one mode (it was 'k', 'n', 'n')
    assert threads == "['MainThread']", out.stdout


# --- arguments of the wrong type at the entry points ------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda es: toolkit.build("data/", "model/", {"encoder": "pixels"}),
            r"^options must be .*BuildOptions",
        ),
        (lambda es: toolkit.index_dataset(None, "data/", "model/"), r"^es must be an Elasticsearch client"),
        (
            lambda es: toolkit.index_dataset(es, "data/", "model/", {"alias": "x"}),
            r"^options must be .*IndexOpt",
        ),
        (
            lambda es: toolkit.update_index(es, "data/", "model/", {"alias": "x"}),
            r"^options must be .*UpdateOpt",
        ),
        (lambda es: toolkit.delete_recipes("http://x", ["r1"]), r"^es must be an Elasticsearch client"),
        (lambda es: toolkit.remove_old_versions(None, "recipes"), r"^es must be an Elasticsearch client"),
        (
            lambda es: toolkit.evaluate("model/", "http://x", "recipes"),
            r"^es must be an Elasticsearch client",
        ),
        (lambda es: toolkit.evaluate("model/", es, "recipes", modes=["fuzzy"]), r"unknown evaluation mode"),
        (lambda es: toolkit.make_client("http://127.0.0.1:9200"), r"^settings must be .*EsSettings.*got str"),
        (lambda es: toolkit.IndexOptions(vector_options={"type": "flat"}), r"^index vector_options must be"),
        (
            lambda es: toolkit.IndexOptions(bulk={"chunk_size": 10}),
            r"^index bulk must be a toolkit.BulkOptions",
        ),
        (
            lambda es: toolkit.UpdateOptions(bulk={"chunk_size": 10}),
            r"^update bulk must be a toolkit.BulkOpt",
        ),
    ],
)
def test_entry_points_name_an_argument_of_the_wrong_type(es: Elasticsearch, call, message: str) -> None:
    """Each was an ``AttributeError`` deep inside (``'dict' object has no attribute 'read_options'``), or work
    done first (the evaluation in memory before a mode was checked)."""
    with pytest.raises(toolkit.ConfigError, match=message):
        call(es)


# --- encoding texts and photos in batches -----------------------------------------------------------------------


def test_batches_of_texts_and_photos(built_model: Path, sample_root: Path) -> None:
    from toolkit.image.loading import ImageRejected

    model = toolkit.SearchModel.load(built_model)
    photo = next((sample_root / "images").rglob("*.jpg"))
    with pytest.raises(toolkit.ConfigError, match=r"^texts must be a list of texts \(one text: \[text\]\)"):
        model.embed_texts("玉ねぎを炒める")  # type: ignore[arg-type]  # was embedded character by character
    with pytest.raises(toolkit.ConfigError, match=r"^every item of texts must be a str, got int 5"):
        model.embed_texts(["玉ねぎ", 5])  # type: ignore[list-item]
    with pytest.raises(
        toolkit.ConfigError, match=r"^photos must be a list of photos \(one photo: \[photo\]\)"
    ):
        model.embed_photos(str(photo))  # was 'image file not found' (of the path's first character)
    empty = model.embed_photos([])  # was torch's RuntimeError: stack expects a non-empty TensorList
    assert empty.shape == (0, model.dims) and empty.dtype == np.float32
    vectors = model.embed_photos([photo, photo.read_bytes()])
    assert vectors.shape == (2, model.dims) and np.allclose(vectors[0], vectors[1], atol=1e-5)
    with pytest.raises(ImageRejected, match=r"^photo 1 \(nope\.jpg\): image file not found$"):
        model.embed_photos([photo, "nope.jpg"])  # which one of the batch


def test_a_model_and_a_searcher_have_short_useful_reprs(
    es: Elasticsearch, built_model: Path, search_alias: str
) -> None:
    model = toolkit.SearchModel.load(built_model)
    assert repr(model) == (
        f"SearchModel(directory={str(built_model)!r}, fingerprint={model.fingerprint!r}, "
        f"encoder='resnet18', dims={model.dims}, device='cpu')"
    )  # was the whole manifest, training history included (kB)
    searcher = toolkit.Searcher(es, model, search_alias)
    assert repr(searcher) == f"Searcher(index={search_alias!r} ({search_alias}-000001), model={model!r})"
    assert "not read yet" in repr(toolkit.Searcher(es, model, search_alias, check=False))
