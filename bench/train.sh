#!/usr/bin/env bash
# Training-step speed: gpt2q beside PyTorch (CPU, fp32) on the same model, optimizer and
# shapes, in one run: tiny (L4 H4 C256, B=8, T=128) and gpt2-124m (B=4, T=64).
# PyTorch is Debian's python3-torch with OpenBLAS (OpenMP build) selected for libblas.so.3,
# 2 threads, glibc told to keep freed memory (its best configuration, not a strawman).
# usage: bench/train.sh [BUILD_DIR] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
steps="${2:-10}"
[ -x "$build/bench/bench_train" ] || { echo "build first: cmake --build $build" >&2; exit 1; }
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  apt-get install -y -qq python3-torch libopenblas0-openmp >/dev/null
fi
# select the OpenMP OpenBLAS for every name torch may load it by
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  alt=/usr/lib/x86_64-linux-gnu/openblas-openmp/$lib
  [ -e "$alt" ] && update-alternatives --set "$lib-x86_64-linux-gnu" "$alt" >/dev/null 2>&1 || true
done
data=out/tokens.h5
if [ ! -f "$data" ]; then
  mkdir -p out && bible -l0 "gen1:1-rev22:21" >out/kjv.txt
  "$build/gpt2q-data" prepare --input out/kjv.txt --out "$data" >/dev/null
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(grep -o -m1 'avx512f' /proc/cpuinfo || echo 'no avx512')"
export OMP_NUM_THREADS=2
run_pair() { # name L H C B T
  local ours theirs
  ours=$("$build/bench/bench_train" "$data" "$1" "$5" "$6" "$steps" 2 | tail -1)
  theirs=$(MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 /usr/bin/python3 bench/torch_train.py "$2" "$3" "$4" "$5" "$6" "$steps" 2 2)
  python3 - "$1" "$ours" "$theirs" <<'PY'
import json, sys
name, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
share = lambda tok: tok / a["tokens_per_s"] * a["gflops"] / a["sgemm_gflops"] * 100
print(f"{name:<10} B={a['B']} T={a['T']:<4}  gpt2q {a['ms_per_step']:8.1f} ms/step {a['tokens_per_s']:8.1f} tok/s ({share(a['tokens_per_s']):4.1f}% of sgemm)"
      f" | {b['impl']} {b['ms_per_step']:8.1f} ms/step {b['tokens_per_s']:8.1f} tok/s ({share(b['tokens_per_s']):4.1f}%)"
      f" | ratio {a['tokens_per_s'] / b['tokens_per_s']:.2f}x")
print(f"           sgemm 2048^3 ceiling {a['sgemm_gflops']:.1f} GFLOP/s; PyTorch BLAS: {b['blas']}")
if "ce_fused_ms" in a:
    print(f"           the step's cross-entropy: forward + backward {a['ce_separate_ms']:.1f} ms, fused {a['ce_fused_ms']:.1f} ms"
          f" ({a['ce_separate_ms'] / a['ce_fused_ms']:.2f}x)")
PY
}
run_pair tiny 4 4 256 8 128
run_pair gpt2-124m 12 12 768 4 64
