"""scripts/bootstrap.sh: two checkouts on one machine share the dependencies but each runs its own code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COPIED = ("pyproject.toml", "constraints.txt", "README.md", "LICENSE", "toolkit", "scripts")


def _checkout(root: Path) -> Path:
    root.mkdir()
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, root / name)
    return root


def _bootstrap(checkout: Path) -> Path:
    out = subprocess.run(
        ["bash", "scripts/bootstrap.sh"], cwd=checkout, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


def _run(checkout: Path, *args: str) -> str:
    out = subprocess.run(  # run from elsewhere: the import must come from the install, not the cwd
        [str(checkout / ".venv/bin/python"), *args],
        cwd=checkout.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(
    not (REPO / ".venv").is_symlink(),
    reason="this checkout uses a venv of its own, not bootstrap.sh's shared dependency cache",
)
def test_two_checkouts_each_run_their_own_code(tmp_path: Path) -> None:
    first, second = _checkout(tmp_path / "first"), _checkout(tmp_path / "second")
    envs = [_bootstrap(first), _bootstrap(second)]
    try:
        assert envs[0] != envs[1]
        # after the second checkout bootstrapped, the first still imports (and its jrs runs) its own code
        for checkout in (first, second):
            where = _run(checkout, "-c", "import toolkit; print(toolkit.__file__)")
            assert Path(where).resolve().is_relative_to(checkout.resolve()), where
            script = (checkout / ".venv/bin/jrs").read_text(encoding="utf-8").splitlines()[0]
            assert script == f"#!{(checkout / '.venv').resolve()}/bin/python", script
        # the shared dependencies and the dev tools are there
        assert _run(first, "-c", "import torch, gensim, fugashi; print('ok')") == "ok"
        assert os.access(first / ".venv/bin/ruff", os.X_OK)
        assert _run(first, "-m", "pytest", "--version").startswith("pytest")
        # bootstrapping again reuses the checkout's environment
        assert _bootstrap(first) == envs[0]
    finally:
        for env in envs:  # only the checkouts' own small environments, never the shared dependencies
            if env.parent.name == "checkouts":
                shutil.rmtree(env, ignore_errors=True)
