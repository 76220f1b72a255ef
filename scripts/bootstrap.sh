#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install the toolkit with its dev tools.
# The dependencies live in a cache outside the repository, keyed by the dependency list, so a fresh clone
# reuses them (torch is a multi-GB CUDA build on PyPI); ./.venv links to this checkout's own small
# environment on top of them, which installs the toolkit from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
need() { command -v "$1" >/dev/null 2>&1; }
apt_pkgs=()
if ! need java || ! need mvn; then apt_pkgs+=(openjdk-17-jdk-headless maven); fi  # the local Elasticsearch node
if ! need chromium; then apt_pkgs+=(chromium); fi                                   # the search page's browser test
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    echo "installing ${apt_pkgs[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
  else
    echo "warning: missing ${apt_pkgs[*]}: java and mvn run the local Elasticsearch node (or set ES_URL);" \
      "chromium runs the search page's browser test" >&2
  fi
fi

deps_hash=$("$PY" - <<'PYEOF'
import hashlib, sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
spec = sorted(p["dependencies"]) + sorted(sum(p.get("optional-dependencies", {}).values(), []))
pins = open("constraints.txt", encoding="utf-8").read()  # the tested versions: part of the environment
print(hashlib.sha256(("%d.%d" % sys.version_info[:2] + "\n".join(spec) + "\n" + pins).encode()).hexdigest()[:12])
PYEOF
)
if [ -d .venv ] && [ ! -L .venv ]; then
  VENV=$(pwd)/.venv            # a developer's own venv: used as is
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$VENV"
  exit 0
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/jrecipe-search
BASE=${JRS_VENV:-$cache/venvs/$deps_hash}   # the dependencies, shared by every checkout
if [ ! -f "$BASE/.complete" ]; then
  echo "creating virtual environment $BASE (first time: downloads torch, a few minutes)" >&2
  rm -rf "$BASE"
  "$PY" -m venv "$BASE"
  "$BASE/bin/python" -m pip install -q --upgrade pip
  "$BASE/bin/python" -m pip install -q -c constraints.txt -e ".[dev,weights,onnx]"
  "$BASE/bin/python" -m pip uninstall -q -y jrecipe-search   # each checkout installs itself (below)
  touch "$BASE/.complete"
fi
# This checkout's own small environment on top of BASE: the toolkit installed from here, so two checkouts on
# one machine never run each other's code. BASE's packages are on its path; its tools are linked.
key=$("$PY" -c 'import hashlib, os, sys; print(hashlib.sha256(f"{os.getcwd()}|{sys.argv[1]}".encode()).hexdigest()[:16])' "$BASE")
VENV=$cache/checkouts/$key
if [ ! -f "$VENV/.complete" ]; then
  rm -rf "$VENV"
  "$PY" -m venv --without-pip "$VENV"
  "$VENV/bin/python" - "$BASE" "$VENV" <<'PYEOF'
import subprocess, sys, sysconfig
from pathlib import Path
base, venv = Path(sys.argv[1]), Path(sys.argv[2])
base_lib = subprocess.check_output(
    [str(base / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
).strip()
# BASE's packages (and their own .pth files) on this environment's path, after its own
pth = Path(sysconfig.get_paths()["purelib"]) / "zz_jrecipe_search_base.pth"
pth.write_text(f"import site; site.addsitedir({base_lib!r})\n", encoding="utf-8")
shebang = f"#!{base}/bin/python".encode()
for tool in sorted((base / "bin").iterdir()):
    name, target = tool.name, venv / "bin" / tool.name
    skip = name.startswith(("activate", "Activate", "python")) or name == "jrs"
    if skip or not tool.is_file() or target.exists() or target.is_symlink():
        continue
    with tool.open("rb") as f:
        script = f.read(len(shebang)) == shebang
    if script:  # a console script: run it with this environment's python
        rest = tool.read_bytes().partition(b"\n")[2]
        target.write_bytes(f"#!{venv}/bin/python".encode() + b"\n" + rest)
        target.chmod(0o755)
    else:  # a binary (ruff) or a script for another interpreter
        target.symlink_to(tool)
PYEOF
  touch "$VENV/.complete"
fi
ln -sfn "$VENV" .venv
# Cheap: (re)point the editable install at this checkout.
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$VENV"
