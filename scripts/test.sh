#!/usr/bin/env bash
# The test command: dependencies, a warnings-as-errors build and the whole ctest suite, the
# same suite under AddressSanitizer + UndefinedBehaviorSanitizer, and a short libFuzzer run
# of every fuzz target. GPU tests are skipped (exit 77) on machines without a GPU.
#   GQ_FUZZ_SECONDS=N   seconds per fuzz target (default 15; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

step() { printf '\n== %s ==\n' "$*"; }
jobs=$(nproc)
# ctest runs $jobs tests at once and each test's OpenMP (and OpenBLAS) team has $jobs threads:
# threads that wait sleep instead of spinning on the cores the other test needs (the ASan run
# took 471 s with spinning, 298 s without, on 2 cores)
export OMP_WAIT_POLICY=PASSIVE

step "release build (-Wall -Wextra -Werror) + ctest"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGQ_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

step "ASan + UBSan build + ctest (CPU suite)"
# CUDA is left out here: the CUDA runtime and ASan's shadow memory do not mix; the GPU
# tests run under compute-sanitizer on a GPU machine instead.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGQ_WERROR=ON -DGQ_SANITIZE=ON -DGQ_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
# The CUDA backend's own sources do run here, on the CPU emulator (the *_emu tests), where ASan
# checks every kernel's memory accesses: "device" memory is host memory there. (infer_emu and
# train_emu, the runner and the trainer on the emulator, take 1-2 minutes each in the release
# build: left to it; so are the *_rev runs, the same tests with each block's threads in reverse
# order, a check of ordering, not of addresses. GQ_TEST_SMALL=1: the tests that have one take
# their small form here, e.g. infer_cli_emu one case of each decode path.)
GQ_TEST_SMALL=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -E '^(infer_emu|train_emu|.*_rev)$'

seconds="${GQ_FUZZ_SECONDS:-15}"
if [ "$seconds" -gt 0 ]; then
  step "libFuzzer: ${seconds}s per target"
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DGQ_FUZZ=ON \
    -DGQ_CUDA=OFF -DGQ_WERROR=ON >/dev/null
  targets=(bpe shard safetensors config jsonl)
  cmake --build build-fuzz -j "$jobs" --target "${targets[@]/#/fuzz_}"
  for t in "${targets[@]}"; do
    work=$(mktemp -d)
    cp tests/fuzz/corpus/$t/* "$work/"
    ./build-fuzz/tests/fuzz/fuzz_$t -max_total_time="$seconds" -print_final_stats=0 "$work" 2>"$work.log" ||
      { tail -40 "$work.log"; echo "fuzz_$t FAILED (crash input saved in $(pwd))"; exit 1; }
    echo "fuzz_$t: $(grep -o 'stat::number_of_executed_units: [0-9]*\|#[0-9]*.*DONE.*' "$work.log" | tail -1) ok"
    rm -rf "$work" "$work.log"
  done
fi
step "all tests passed"
