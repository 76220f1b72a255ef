#!/usr/bin/env bash
# The test command: set up the environment, lint, then run the whole suite against a real Elasticsearch
# (a local node started by the tests, or the cluster named by ES_URL). With arguments, pytest runs exactly
# those. Without, the image-backend tests (ONNX Runtime / OpenVINO) run in a pytest process of their own,
# apart from the rest (see tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >/dev/null
. .venv/bin/activate
ruff check toolkit tests bench scripts
ruff format --check toolkit tests bench scripts
mypy  # the package ships py.typed: its annotations are checked ([tool.mypy] in pyproject.toml)
if [ "$#" -gt 0 ]; then
  exec python -m pytest "$@"
fi
python -m pytest --ignore=tests/test_image_backends.py
python -m pytest tests/test_image_backends.py
