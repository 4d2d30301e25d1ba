#!/usr/bin/env bash
# Inference side by side: gpt2q-infer on our packed exports vs llama.cpp (llama-cpp-python,
# built from source from PyPI) on our GGUF exports of the SAME GPT-2 124M-shaped checkpoint,
# both with the same threads, in one run. Also compares the logits of the two engines on
# identical Q4_0 / Q8_0 weights (our int4-g32 and q8_0 exports are byte-identical to them).
#   bench/infer.sh [BUILD_DIR] [WORK_DIR]
# Needs: a built tree; /opt/gq-venv (or $GQ_PY) with llama-cpp-python for the llama.cpp rows
# (skipped with a note if missing). Prints a table; JSON lines in WORK_DIR/bench.jsonl.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
W=${2:-/tmp/gq_bench_infer}
PY=${GQ_PY:-/opt/gq-venv/bin/python}
HERE=$(cd "$(dirname "$0")" && pwd)
THREADS=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS=$THREADS
mkdir -p "$W"
cd "$W"

if [ ! -f run/ckpt-00000001.h5 ]; then
  # a GPT-2 124M-shaped model: one training step from the GPT-2 init on a small text
  head -c 200000 "$HERE/../README.md" "$HERE/../docs/"*.md >text.txt 2>/dev/null || true
  "$B/gpt2q-train" --config gpt2-124m --data text.txt --steps 1 --batch 1 --seq 32 --eval-every 0 --out run >train.log 2>&1
fi
C=run/ckpt-00000001.h5
ex() { [ -f "$2" ] || "$B/gpt2q-export" "$C" "${@:3}" -o "$2" >/dev/null; }
ex x int4-g64.h5 --format int4 --group 64 --layers all
ex x int4-g32.h5 --format int4 --group 32 --layers all
ex x int4-g64-emb8.h5 --format 'mlp.*=int4,attn.*=int4,lm_head=int8'
ex x int8.h5 --format int8 --layers all
ex x q8_0.h5 --format q8_0 --layers all
ex x nf4.h5 --format nf4 --layers all
ex x q4_0.gguf --gguf --format int4 --group 32 --layers all
ex x q8_0.gguf --gguf --format q8_0 --layers all

: >bench.jsonl
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads"
printf '%-24s %-16s %8s %9s %9s %10s %10s %8s\n' engine model load_s "50tok_s" RSS_MB prefill/s decode/s bw_share
for m in "$C" int8.h5 q8_0.h5 int4-g32.h5 int4-g64.h5 int4-g64-emb8.h5 nf4.h5; do
  j=$("$B/gpt2q-infer" bench "$m" --json)
  echo "$j" >>bench.jsonl
  echo "$j" | "$PY" -c 'import json,sys,os; d=json.load(sys.stdin); print("%-24s %-16s %8.3f %9.3f %9.1f %10.1f %10.1f %7.0f%%" % ("gpt2q-infer", os.path.basename(d["model"]).replace(".h5",""), d["load_s"], d["generate_s"], d["peak_rss_mb"], d["prefill_tok_s"], d["decode_tok_s"], 100*d["bandwidth_share"]))'
done
if "$PY" -c 'import llama_cpp' 2>/dev/null; then
  for g in q4_0.gguf q8_0.gguf; do
    j=$("$PY" "$HERE/llamacpp.py" --threads "$THREADS" "$g")
    echo "$j" >>bench.jsonl
    echo "$j" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print("%-24s %-16s %8.3f %9.3f %9.1f %10.1f %10.1f %8s" % (d["engine"], d["model"].replace(".gguf",""), d["load_s"], d["generate_s"], d["peak_rss_mb"], d["prefill_tok_s"], d["decode_tok_s"], "-"))'
  done
  # logits on identical weights
  P="In the beginning God created the heaven and the earth."
  for pair in "int4-g32.h5 q4_0.gguf" "q8_0.h5 q8_0.gguf"; do
    set -- $pair
    "$B/gpt2q-infer" logits "$1" --prompt "$P" >ours.json
    "$PY" "$HERE/llamacpp.py" --logits "$P" "$2" >theirs.json
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
a = json.load(open("ours.json")); b = json.load(open("theirs.json"))
assert a["tokens"] == b["tokens"], ("tokenization differs", a["tokens"], b["tokens"])
x, y = a["logits"], b["logits"]
d = max(abs(p - q) for p, q in zip(x, y)); s = max(abs(q) for q in y)
am = lambda v: max(range(len(v)), key=v.__getitem__)
top = lambda v: sorted(range(len(v)), key=lambda i: -v[i])[:10]
print("logits %s vs llama.cpp %s: same %d tokens; max |diff| %.4g (logits up to %.3g, %.2g relative); argmax %s; top-10 overlap %d/10"
      % (sys.argv[1], sys.argv[2], len(a["tokens"]), d, s, d / s, "equal" if am(x) == am(y) else "DIFFERENT", len(set(top(x)) & set(top(y)))))
EOF
  done
else
  echo "(llama-cpp-python not installed in $PY: llama.cpp rows skipped; pip install llama-cpp-python)"
fi
