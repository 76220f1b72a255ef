"""Selecting the Elasticsearch version of the local node without changing the default, and a JDK to run it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli.main import cli
from toolkit.es import node
from toolkit.es.node import NodeError, java_feature_version, java_home
from toolkit.versions import ES_VERSION, es_version, required_java


def test_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JRS_ES_VERSION", raising=False)
    assert es_version() == ES_VERSION and ES_VERSION.startswith("8.")
    monkeypatch.setenv("JRS_ES_VERSION", "9.2.4")
    assert es_version() == "9.2.4"
    assert (required_java("8.19.21"), required_java("9.2.4")) == (17, 21)


def test_cli_version_option_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    out = " ".join(CliRunner().invoke(cli, ["es", "up", "--help"], env={"JRS_ES_VERSION": ""}).output.split())
    assert f"default: {ES_VERSION}" in out and "JRS_ES_VERSION" in out


def _fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n", encoding="utf-8")
    (home / "release").write_text(f'JAVA_VERSION="{version}"\n', encoding="utf-8")
    return home


def test_a_new_enough_jdk_is_found_beside_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jdk17 = _fake_jdk(tmp_path, "jdk-17", "17.0.15")
    jdk21 = _fake_jdk(tmp_path, "jdk-21", "21.0.5")
    assert (java_feature_version(jdk17), java_feature_version(jdk21)) == (17, 21)
    monkeypatch.setattr(node, "JVM_DIRS", (tmp_path,))
    monkeypatch.delenv("ES_JAVA_HOME", raising=False)
    monkeypatch.setenv("JAVA_HOME", str(jdk17))
    assert java_home("9.2.4") == jdk21  # 9.x: JAVA_HOME is too old, the newer one beside it is used
    assert java_home("8.19.21") == jdk21  # 8.x runs on 17, but a 21+ beside it indexes vectors faster
    (jdk21 / "bin" / "java").rename(jdk21 / "bin" / "java.off")
    assert java_home("8.19.21") == jdk17  # without a 21+, the default JDK keeps running 8.x
    (jdk21 / "bin" / "java.off").rename(jdk21 / "bin" / "java")
    monkeypatch.setenv("ES_JAVA_HOME", str(jdk17))
    with pytest.raises(NodeError, match="is Java 17; Elasticsearch 9.2.4 needs Java 21"):
        java_home("9.2.4")  # named explicitly for Elasticsearch: no silent substitute
    monkeypatch.delenv("ES_JAVA_HOME")
    (jdk21 / "bin" / "java").unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(NodeError, match="no JDK 21 or newer"):
        java_home("9.2.4")
