"""``--image-base-url`` / ``image_base_url``: each photo's ``image_url`` is the base with one ``/`` at its end plus
the photo's percent-encoded path (a Kibana thumbnail, ``Hit.image_url``). A base that cannot make such a URL is
refused before any work, by the CLI (naming the flag) and by the option classes of the library."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from toolkit.cli.main import cli
from toolkit.errors import ConfigError
from toolkit.index.documents import DocumentBuilder
from toolkit.index.indexer import IndexOptions
from toolkit.index.update import UpdateOptions

#: nothing listens there: a command that got past its options to the cluster exits 3, not 2
NO_CLUSTER = {"ES_URL": "http://127.0.0.1:1", "JRS_MODEL": None, "JRS_INDEX": None}

#: (base, what the refusal says)
REFUSED = [
    ("", "it is empty"),
    ("  ", "it is empty"),
    ("http://127.0.0.1:8000/my photos/", "whitespace"),
    ("http://127.0.0.1:8000/photo/ ", "whitespace"),
    ("http://127.0.0.1:8000/photo/\t", "whitespace"),
    ("http://127.0.0.1:8000/photo?size=s", "query string or fragment"),
    ("http://127.0.0.1:8000/#/photo/", "query string or fragment"),
    ("ftp://files.example.com/photos/", "scheme 'ftp' is not http or https"),
    ("file:///srv/photos/", "scheme 'file' is not http or https"),
    ("localhost:8000/photo/", "scheme 'localhost' is not http or https"),
    ("http:///photo/", "names no host"),
    ("photos/", "relative path"),
    ("http://[::1/photo/", "not a URL"),
]
#: (base, the image_url of images/r1/1.jpg)
ACCEPTED = [
    ("http://127.0.0.1:8000/photo/", "http://127.0.0.1:8000/photo/images/r1/1.jpg"),
    ("https://cdn.example.com/recipes", "https://cdn.example.com/recipes/images/r1/1.jpg"),
    ("HTTP://cdn.example.com/写真/", "HTTP://cdn.example.com/写真/images/r1/1.jpg"),
    ("/photo/", "/photo/images/r1/1.jpg"),
    ("//cdn.example.com/photo", "//cdn.example.com/photo/images/r1/1.jpg"),
]


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [repr(base) for base, _ in cases]


def _index(tmp_path: Path, *args: str) -> tuple[int, str]:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "model").mkdir(exist_ok=True)
    argv = ["index", str(tmp_path / "data"), str(tmp_path / "model"), *args]
    result = CliRunner().invoke(cli, argv, env=NO_CLUSTER)
    return result.exit_code, result.output


@pytest.mark.parametrize(("base", "reason"), REFUSED, ids=_ids(REFUSED))
@pytest.mark.parametrize("update", [False, True], ids=["load", "update"])
def test_the_cli_refuses_a_base_that_makes_no_url(
    tmp_path: Path, base: str, reason: str, update: bool
) -> None:
    # was taken as given: '' indexed no image_url, the others URLs Kibana cannot show, found out after the load
    code, out = _index(tmp_path, "--image-base-url", base, *(["--update"] if update else []))
    assert code == 2, out  # before connecting: the unreachable cluster would exit 3
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in out, out
    assert "Invalid value for '--image-base-url'" in errors[0] and reason in errors[0], out


@pytest.mark.parametrize(("base", "url"), ACCEPTED, ids=_ids(ACCEPTED))
def test_the_cli_takes_a_base_that_makes_urls(tmp_path: Path, base: str, url: str) -> None:
    code, out = _index(tmp_path, "--image-base-url", base)
    assert code == 3 and "unreachable" in out, out  # past the options, on to the cluster


@pytest.mark.parametrize(("base", "reason"), REFUSED, ids=_ids(REFUSED))
@pytest.mark.parametrize(("options", "name"), [(IndexOptions, "index"), (UpdateOptions, "update")])
def test_the_library_refuses_a_base_that_makes_no_url(
    options: type, name: str, base: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{name} image_base_url {base!r} cannot prefix")) as e:
        options(image_base_url=base)
    assert reason in str(e.value)


@pytest.mark.parametrize(("base", "url"), ACCEPTED, ids=_ids(ACCEPTED))
def test_a_base_that_is_taken_prefixes_the_photo_path(tmp_path: Path, base: str, url: str) -> None:
    assert IndexOptions(image_base_url=base).image_base_url == base  # as given: load fingerprints keep it
    assert UpdateOptions(image_base_url=base).image_base_url == base
    model = SimpleNamespace(fingerprint="m", tokenizer=None)
    builder = DocumentBuilder(model, tmp_path, image_base_url=base)  # type: ignore[arg-type]
    assert builder.image_url("images/r1/1.jpg") == url


def test_the_library_refuses_a_base_that_is_no_string() -> None:
    with pytest.raises(ConfigError, match="index image_base_url PosixPath.*: it is a PosixPath"):
        IndexOptions(image_base_url=Path("/photo"))  # type: ignore[arg-type]


def test_no_base_is_no_image_url() -> None:
    assert IndexOptions().image_base_url is None and UpdateOptions().image_base_url is None
