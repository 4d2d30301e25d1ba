#!/usr/bin/env bash
# Inference side by side: gpt2q-infer on our packed exports vs llama.cpp (llama-cpp-python,
# built from source from PyPI) on our GGUF exports and transformers (PyTorch, CPU, fp32) on our
# `--hf` folder of the SAME GPT-2 124M-shaped checkpoint, all with the same threads, in one run.
# Also compares the logits of the engines on identical weights (our int4-g32 and q8_0 exports are
# byte-identical to llama.cpp's Q4_0 / Q8_0; the --hf folder holds the checkpoint's fp32 values).
#   bench/infer.sh [BUILD_DIR] [WORK_DIR]
# Needs: a built tree; /opt/gq-venv (or $GQ_PY) with llama-cpp-python for the llama.cpp rows and
# transformers for its rows (each skipped with a note if missing). Prints a table; JSON lines in
# WORK_DIR/bench.jsonl.
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
[ -f hf/model.safetensors ] || "$B/gpt2q-export" "$C" --hf -o hf >/dev/null

# compare_logits OURS.json THEIRS.json LABEL: the same tokens, the largest logit difference, argmax, top 10
compare_logits() {
  "$PY" - "$@" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
assert a["tokens"] == b["tokens"], ("tokenization differs", a["tokens"], b["tokens"])
x, y = a["logits"], b["logits"]
d = max(abs(p - q) for p, q in zip(x, y)); s = max(abs(q) for q in y)
am = lambda v: max(range(len(v)), key=v.__getitem__)
top = lambda v: sorted(range(len(v)), key=lambda i: -v[i])[:10]
print("logits %s: same %d tokens; max |diff| %.4g (logits up to %.3g, %.2g relative); argmax %s; top-10 overlap %d/10"
      % (sys.argv[3], len(a["tokens"]), d, s, d / s, "equal" if am(x) == am(y) else "DIFFERENT", len(set(top(x)) & set(top(y)))))
EOF
}
row() { # a JSON line of bench/llamacpp.py or bench/hf_cpu.py as a table row
  "$PY" -c 'import json,sys; d=json.load(sys.stdin); print("%-28s %-16s %8.3f %9.3f %9.1f %10.1f %10.1f %8s" % (d["engine"], d["model"].replace(".gguf",""), d["load_s"], d["generate_s"], d["peak_rss_mb"], d["prefill_tok_s"], d["decode_tok_s"], "-"))'
}
P="In the beginning God created the heaven and the earth."

: >bench.jsonl
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads"
printf '%-28s %-16s %8s %9s %9s %10s %10s %8s\n' engine model load_s "50tok_s" RSS_MB prefill/s decode/s bw_share
for m in "$C" int8.h5 q8_0.h5 int4-g32.h5 int4-g64.h5 int4-g64-emb8.h5 nf4.h5; do
  j=$("$B/gpt2q-infer" bench "$m" --json)
  echo "$j" >>bench.jsonl
  echo "$j" | "$PY" -c 'import json,sys,os; d=json.load(sys.stdin); print("%-28s %-16s %8.3f %9.3f %9.1f %10.1f %10.1f %7.0f%%" % ("gpt2q-infer", os.path.basename(d["model"]).replace(".h5",""), d["load_s"], d["generate_s"], d["peak_rss_mb"], d["prefill_tok_s"], d["decode_tok_s"], 100*d["bandwidth_share"]))'
done
if "$PY" -c 'import llama_cpp' 2>/dev/null; then
  for g in q4_0.gguf q8_0.gguf; do
    j=$("$PY" "$HERE/llamacpp.py" --threads "$THREADS" "$g")
    echo "$j" >>bench.jsonl
    echo "$j" | row
  done
  for pair in "int4-g32.h5 q4_0.gguf" "q8_0.h5 q8_0.gguf"; do # logits on identical weights
    set -- $pair
    "$B/gpt2q-infer" logits "$1" --prompt "$P" >ours.json
    "$PY" "$HERE/llamacpp.py" --logits "$P" "$2" >theirs.json
    compare_logits ours.json theirs.json "$1 vs llama.cpp $2"
  done
else
  echo "(llama-cpp-python not installed in $PY: llama.cpp rows skipped; pip install llama-cpp-python)"
fi
if "$PY" -c 'import transformers' 2>/dev/null; then
  j=$("$PY" "$HERE/hf_cpu.py" --threads "$THREADS" hf 2>/dev/null)
  echo "$j" >>bench.jsonl
  echo "$j" | row
  # (--kv f32: transformers keeps its cache in fp32; gpt2q-infer's default fp16 cache moves these logits by ~4e-4)
  "$B/gpt2q-infer" logits "$C" --kv f32 --prompt "$P" >ours.json
  "$PY" "$HERE/hf_cpu.py" --logits "$P" hf >theirs.json 2>/dev/null
  compare_logits ours.json theirs.json "$(basename "$C") (--kv f32) vs transformers on its --hf folder"
else
  echo "(transformers not installed in $PY: its rows skipped; pip install transformers safetensors)"
fi
