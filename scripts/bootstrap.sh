#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install the toolkit with its dev tools.
# The environment lives in a cache outside the repository, keyed by the dependency list, so a fresh
# clone reuses it (torch is a multi-GB CUDA build on PyPI); ./.venv is a link to it.
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
else
  VENV=${JRS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/jrecipe-search/venvs/$deps_hash}
  if [ ! -f "$VENV/.complete" ]; then
    echo "creating virtual environment $VENV (first time: downloads torch, a few minutes)" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev,weights,onnx]"
    touch "$VENV/.complete"
  fi
  ln -sfn "$VENV" .venv
fi
# Cheap: (re)point the editable install at this checkout.
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$VENV"
