#!/usr/bin/env bash
# The test command: set up the environment, lint, then run the whole suite against a real Elasticsearch
# (a local node started by the tests, or the cluster named by ES_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >/dev/null
. .venv/bin/activate
ruff check toolkit tests bench scripts
ruff format --check toolkit tests bench scripts
python -m pytest "$@"
