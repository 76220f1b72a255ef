#!/usr/bin/env bash
# Quickstart on a fresh machine: virtual environment, a local Elasticsearch, sample data, and the main
# job end to end as far as it exists. Uses ES_URL instead of the local node when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${JRS_QUICKSTART_DIR:-work/quickstart}
bash scripts/bootstrap.sh >/dev/null
. .venv/bin/activate
if [ -z "${ES_URL:-}" ]; then
  jrs es up
fi
jrs es status || [ -n "${ES_URL:-}" ]
echo "quickstart finished: working files under $WORK"
