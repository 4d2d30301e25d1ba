#!/usr/bin/env bash
# The GPU-session recipe (DEVELOPERS.md, issue 7): one prepared command per device call.
#
#   scripts/gpu-run.sh fetch        here, once: download the Debian packages the kernels-only
#                                   build needs (OpenBLAS for the CPU reference ops) into
#                                   .gpudeps/ (gitignored); carry that folder to the GPU machine
#   scripts/gpu-run.sh STEP...      on the GPU machine, steps in order:
#       env     what the machine has (OS, glibc, GPU, nvcc, cmake, our libraries)
#       build   unpack .gpudeps with dpkg -x into .gpudeps/root (never into /), configure with
#               -DGQ_KERNELS_ONLY=ON (kernels/ and its tests and benches only; no HDF5, cJSON,
#               utf8proc) and build with all cores into build-gpu/
#       test    ctest over the kernels-only suite (CPU references and the `gpu` label)
#       sanitize  compute-sanitizer memcheck and racecheck over the CUDA op test (small shapes)
#       bench   the CUDA kernel benchmark and PyTorch's attention in the same call
#   Logs go to $OUT when it is set (the device tool brings that folder back).
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.gpudeps/root"
out="${OUT:-$PWD/build-gpu/out}"
mkdir -p "$out"

fetch() {
  mkdir -p .gpudeps
  (cd .gpudeps && apt-get download libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0)
  ls -la .gpudeps
}

env_report() {
  grep PRETTY_NAME /etc/os-release; ldd --version | head -1; uname -r
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader
  nvcc --version | tail -1; cmake --version | head -1; ninja --version; gcc --version | head -1
  ldconfig -p | grep -E 'hdf5|openblas|cjson|utf8proc|gfortran' | head; which compute-sanitizer python3
}

build() {
  mkdir -p "$root"
  for f in .gpudeps/*.deb; do dpkg -x "$f" "$root"; done
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DGQ_KERNELS_ONLY=ON -DGQ_CUDA=ON -DGQ_WERROR=ON \
    -DGQ_DEPS_ROOT="$root" >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; return 1; }
  cmake --build build-gpu -j "$(nproc)" 2>&1 | tail -5
}

libpath() { export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; }

run_tests() {
  libpath
  ctest --test-dir build-gpu --output-on-failure -j 8 -LE gpu 2>&1 | tee "$out/ctest.log" | tail -4
  for t in build-gpu/tests/test_cuda_*; do
    echo "== $t"
    "$t" >"$out/$(basename "$t").log" 2>&1
    echo "exit $?"
    grep -E "FAIL|failed|checks" "$out/$(basename "$t").log" | head -30
  done
}

sanitize() {
  libpath
  for t in build-gpu/tests/test_cuda_*; do
    for tool in memcheck racecheck; do
      echo "== compute-sanitizer --tool $tool $t"
      GQ_TEST_SMALL=1 compute-sanitizer --tool "$tool" --error-exitcode 9 "$t" >"$out/san_${tool}_$(basename "$t").log" 2>&1
      echo "exit $?"; tail -3 "$out/san_${tool}_$(basename "$t").log"
    done
  done
}

bench() {
  libpath
  [ -x build-gpu/bench/bench_cuda ] && build-gpu/bench/bench_cuda 2>&1 | tee "$out/bench_cuda.log"
  [ -f bench/attention_torch.py ] && PYTHONUNBUFFERED=1 python3 bench/attention_torch.py 2>&1 | tee "$out/bench_torch.log"
}

[ $# -gt 0 ] || set -- env build test sanitize bench
for step in "$@"; do
  echo "#### $step"
  case "$step" in
    fetch) fetch ;;
    env) env_report ;;
    build) build || exit 1 ;;
    test) run_tests ;;
    sanitize) sanitize ;;
    bench) bench ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
