#!/usr/bin/env bash
# Fetch the real-artwork benchmark data of bench/emoji_set.py into DIR (npm registry only; ~250 MB):
# three emoji vendors' 64-px PNGs and the Unicode CLDR Japanese annotations.
#   bash bench/fetch_emoji.sh ~/.cache/jrecipe-search/emoji && export JRS_EMOJI_DIR=~/.cache/jrecipe-search/emoji
set -euo pipefail
dest=${1:?usage: fetch_emoji.sh DIR}
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
get() {  # get PACKAGE@VERSION NAME: unpack the package's files into DIR/NAME
  (cd "$tmp" && npm pack --silent "$1" >/dev/null)
  mkdir -p "$dest/$2"
  tar xzf "$tmp"/*.tgz -C "$dest/$2" --strip-components=1
  rm -f "$tmp"/*.tgz
}
for vendor in google twitter facebook; do
  [ -d "$dest/$vendor/img" ] || get "emoji-datasource-$vendor@16.0.0" "$vendor"
done
[ -d "$dest/cldr/annotations" ] || get "cldr-annotations-full@48.2.0" cldr
echo "emoji benchmark data in $dest"
