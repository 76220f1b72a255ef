#!/usr/bin/env bash
# Quickstart on a fresh machine: virtual environment, a local Elasticsearch, sample data, then the main job
# end to end: train (Word2Vec, photo features, shared-space mapping), index, evaluate, example queries.
# Uses ES_URL instead of the local node when it is set. Re-running reuses the data and the model
# (delete $JRS_QUICKSTART_DIR to start over) and loads a fresh index version behind the alias.
# Every example must return at least one hit, else the script stops with a non-zero status.
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
examples=()
# example TITLE COMMAND...: announce, run, print its output; stop unless it printed a first hit (" 1. ...").
example() {
  local title=$1 out
  shift
  step "example: $title"
  out=$("$@")
  printf '%s\n' "$out"
  case $'\n'"$out" in
    *$'\n 1. '*) examples+=("$title") ;;
    *) echo "quickstart: the example '$title' returned no result" >&2; exit 1 ;;
  esac
}

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
# find | sort: sort reads everything find writes and the $(...) reads everything sort writes, so no reader
# stops early (a `| head` here dies of SIGPIPE under pipefail on some machines).
photos=$(find "$WORK/data/images" -name '*.jpg' | sort)
photo=${photos%%$'\n'*}
if [ -z "$photo" ]; then
  echo "quickstart: no photo under $WORK/data/images" >&2
  exit 1
fi
example "kNN: a sentence finds photos" jrs search "玉ねぎを飴色になるまで炒める" -k 5
example "keyword (BM25 on fugashi tokens)" jrs search "にんじんを千切りにする" --mode keyword -k 5
example "hybrid (BM25 + kNN in one request)" jrs search "鶏肉を焼く" --mode hybrid -k 5
example "by photo: $photo" jrs search --image "$photo" -k 5
example "composed: 玉ねぎを炒める + 煮る - 炒める (vector arithmetic in the shared space)" \
  jrs search "玉ねぎを炒める" --plus "煮る" --minus "炒める" -k 5

step "summary"
python - "$WORK" "$ALIAS" "${examples[@]}" <<'PYEOF'
import json, sys
from pathlib import Path

work, alias, examples = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
ev = json.loads((work / "model" / "evaluation.json").read_text(encoding="utf-8"))
print(f"data:   {work / 'data'} (recipes.jsonl + images/)")
rejects = work / "model" / "rejects.jsonl"  # written by the build only when it rejected something
if rejects.is_file():
    n = sum(1 for line in rejects.read_text(encoding="utf-8").splitlines() if line.strip())
    print(f"model:  {work / 'model'} (manifest.json, evaluation.json, rejects.jsonl: {n} rejected)")
else:
    print(f"model:  {work / 'model'} (manifest.json, evaluation.json; nothing rejected)")
print(f"index:  alias {alias}")
t2i = ev.get("model_pooled", {}).get("text_to_image", {})
if "R@10" in t2i:
    chance = ev.get("chance", {}).get("text_to_image", {}).get("R@10")
    print(
        f"held-out {ev.get('split', 'test')} split ({ev.get('pairs', {}).get('test', '?')} text/photo pairs): "
        f"text->image R@1 {100 * t2i['R@1']:.1f} %, R@5 {100 * t2i['R@5']:.1f} %, R@10 {100 * t2i['R@10']:.1f} %, "
        f"MedR {t2i['MedR']:g}" + (f" (chance R@10 {100 * chance:.1f} %)" if chance is not None else "")
    )
else:
    print(f"held-out metrics: {work / 'model' / 'evaluation.json'} (jrs evaluate {work / 'model'})")
print(f"examples with results: {len(examples)} ({'; '.join(e.split(':')[0] for e in examples)})")
m, i = work / "model", alias
print("next:")
print(f"  jrs web --model {m} --index {i}                       # search page on http://127.0.0.1:8000/")
print(f"  jrs grid 玉ねぎを飴色になるまで炒める --model {m} --index {i} --out grid.png")
print(f"  jrs report {m} --index {i} --out report.html")
PYEOF
echo "quickstart finished: data and model under $WORK, index alias $ALIAS" >&2
