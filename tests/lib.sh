# tests/lib.sh: the helpers of the shell tests (sourced). Counts passes and failures; the
# caller prints "NAME: P passed, F failed" and exits non-zero on any failure.
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
# expect_error NAME PATTERN CMD...: non-zero exit and exactly one line on stderr matching PATTERN
expect_error() {
  local name="$1" pattern="$2"; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ $rc -eq 0 ]; then bad "$name: exit 0"; return; fi
  if [ "$(grep -c . "$T/err")" -ne 1 ]; then bad "$name: expected one error line, got: $(cat "$T/err")"; return; fi
  if ! grep -q -- "$pattern" "$T/err"; then bad "$name: message '$(cat "$T/err")' lacks '$pattern'"; return; fi
  ok
}
# test_init BUILD_DIR [FIXTURE_DIR]: B and FX, a temp folder T removed at exit (with any
# background job left), 2 OpenMP threads
test_init() {
  B="$1"
  FX="${2:-}"
  T=$(mktemp -d)
  trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
  export OMP_NUM_THREADS=2
}
# small_trained STEPS: small_setup 64 without evaluations or samples during training, trained
# for STEPS steps into $T/r; C is its last checkpoint
small_trained() {
  small_setup 64
  printf 'eval_every = 0\nsample_len = 0\n' >>"$T/m.cfg"
  "$B/gpt2q-train" --data "$T/tok.h5" --config "$T/m.cfg" --out "$T/r" --steps "$1" >"$T/train.log" 2>&1
  C=$(printf '%s/r/ckpt-%08d.h5' "$T" "$1")
}
# small_setup EMBD [prepare args...]: the shell tests' corpus and model in $T (B, FX, T set by
# the caller): tok.h5 from the tokenizer test vectors (~130 KB of text) and m.cfg, a 2-layer,
# 2-head model of EMBD channels on 4 x 32 tokens a step; append more `key = value` lines to m.cfg
small_setup() {
  local embd=$1; shift
  "$B/gpt2q-data" prepare --input "$FX/../gpt2_bpe_vectors.jsonl" --out "$T/tok.h5" --val-block 256 "$@" >/dev/null
  printf 'n_layer = 2\nn_head = 2\nn_embd = %d\nblock_size = 32\nbatch = 4\nseq = 32\nlr = 3e-3\nwarmup = 2\n' \
    "$embd" >"$T/m.cfg"
}
