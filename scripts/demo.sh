#!/usr/bin/env bash
# The main job end to end on the embedded default corpus, the King James Bible (Debian's
# bible-kjv package). Stages so far: build; prepare the corpus into out/tokens.h5; train the
# `tiny` GPT-2 (configs/tiny.cfg) on it (~10 minutes on 2 cores) into out/tiny.
# PTQ/QAT, export and the comparison table/chart join as their issues land.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

out=out
mkdir -p "$out"
echo "== corpus: King James Bible =="
bible -l0 "gen1:1-rev22:21" >"$out/kjv.txt"
echo "$(wc -c <"$out/kjv.txt") bytes of text in $out/kjv.txt"

echo "== prepare: tokenize into $out/tokens.h5 (5% validation split) =="
./build/gpt2q-data prepare --input "$out/kjv.txt" --out "$out/tokens.h5" --val-fraction 0.05
./build/gpt2q-data info "$out/tokens.h5" --check
./build/gpt2q-data info "$out/tokens.h5" --json >"$out/tokens.json"
echo "as JSON: $out/tokens.json"

echo "== train: tiny GPT-2 (configs/tiny.cfg) on the KJV tokens =="
rm -rf "$out/tiny"
./build/gpt2q-train --data "$out/tokens.h5" --config tiny --out "$out/tiny"
echo "run folder: $out/tiny (checkpoint, train.jsonl, loss.svg)"
