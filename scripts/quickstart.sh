#!/usr/bin/env bash
# Quickstart on a fresh machine: virtual environment, a local Elasticsearch, sample data, then the main job
# end to end: train (Word2Vec, photo features, shared-space mapping), index, evaluate, example queries.
# Uses ES_URL instead of the local node when it is set. Re-running reuses the data and the model
# (delete $JRS_QUICKSTART_DIR to start over) and loads a fresh index version behind the alias.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${JRS_QUICKSTART_DIR:-work/quickstart}
RECIPES=${JRS_QUICKSTART_RECIPES:-300}
ALIAS=${JRS_INDEX:-recipes}
bash scripts/bootstrap.sh >/dev/null
. .venv/bin/activate
if [ -z "${ES_URL:-}" ]; then
  jrs es up
fi
jrs es ping   # fails fast, with one clear line, when the cluster is unreachable or refuses the credentials

step() { printf '\n== %s\n' "$*" >&2; }
if [ ! -f "$WORK/data/recipes.jsonl" ]; then
  step "sample data: $RECIPES synthetic recipes"
  jrs sample-data "$WORK/data" --recipes "$RECIPES" --quiet
fi
if [ ! -f "$WORK/model/manifest.json" ]; then
  step "build: tokenise, Word2Vec, photo features, shared-space mapping, evaluation"
  jrs build "$WORK/data" "$WORK/model" --quiet
fi
step "index into the alias $ALIAS"
jrs index "$WORK/data" "$WORK/model" --alias "$ALIAS" --quiet
jrs indices --alias "$ALIAS" --remove-old --keep 1 >/dev/null
step "evaluate: held-out steps through the index"
jrs evaluate "$WORK/model" --index "$ALIAS" --quiet

export JRS_MODEL="$WORK/model" JRS_INDEX="$ALIAS"
step "kNN: a sentence finds photos"
jrs search "玉ねぎを飴色になるまで炒める" -k 5
step "keyword (BM25 on fugashi tokens)"
jrs search "にんじんを千切りにする" --mode keyword -k 5
step "hybrid (BM25 + kNN in one request)"
jrs search "鶏肉を焼く" --mode hybrid -k 5
photo=$(find "$WORK/data/images" -name '*.jpg' | sort | head -n 1)
step "by photo: $photo"
jrs search --image "$photo" -k 5
step "composed: 玉ねぎを炒める + 煮る - 炒める (vector arithmetic in the shared space)"
jrs search "玉ねぎを炒める" --plus "煮る" --minus "炒める" -k 5
echo "quickstart finished: data and model under $WORK, index alias $ALIAS" >&2
