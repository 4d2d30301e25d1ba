#!/usr/bin/env bash
# Tokenizer throughput, ours beside tiktoken on the same text in the same run.
# usage: bench/tokenizer.sh [TEXT_FILE] [BUILD_DIR]   (default text: the KJV Bible, ~4.3 MB)
# tiktoken comes from PyPI into a private venv (.venv-bench), used only for this comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
text="${1:-}"
build="${2:-build}"
if [ -z "$text" ]; then
  mkdir -p out
  text=out/kjv.txt
  [ -s "$text" ] || bible -l0 "gen1:1-rev22:21" >"$text"
fi
[ -x "$build/bench/bench_tokenizer" ] || { echo "build first: cmake --build $build" >&2; exit 1; }
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench && .venv-bench/bin/pip install -q tiktoken==0.14.0
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
ours_all=$("$build/bench/bench_tokenizer" "$text" 5)
echo "$ours_all" | head -n -1
ours=$(echo "$ours_all" | tail -1)
theirs=$(.venv-bench/bin/python bench/tiktoken_bench.py "$text" 5)
python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'impl':<16} {'tokens':>9} {'MB/s 1 thread':>14} {'MB/s ' + str(a['threads']) + ' threads':>16}")
for r in (a, b):
    print(f"{r['impl']:<16} {r['tokens']:>9} {r['mbps_1']:>14.2f} {r['mbps_all']:>16.2f}")
print(f"{'ratio ours/tiktoken':<26} {a['mbps_1'] / b['mbps_1']:>14.2f} {a['mbps_all'] / b['mbps_all']:>16.2f}")
print("identical ids:", a["ids_sha256"] == b["ids_sha256"])
PY
