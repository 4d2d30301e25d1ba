#!/usr/bin/env bash
# Disk full, for every program that writes files: the write fails part way (simulated with a
# file-size limit, `ulimit -f`, with SIGXFSZ ignored so that the write returns an error as on a
# full disk). Each program must print one error line naming the file, exit 1 (not crash), and
# leave no damaged output: no partial file, no temp file, an older file untouched.
#   gpt2q-data prepare / export, gpt2q-train (checkpoint; train.jsonl when resuming and while
#   appending), gpt2q-export (HDF5, GGUF, llm.c and the HF folder), gpt2q-infer compare and chart.
# usage: test_disk_full.sh BUILD_DIR FIXTURE_DIR
set -u
. "$(dirname "$0")/lib.sh"
test_init "$@"

# full KB CMD...: run CMD with files limited to KB kilobytes
full() {
  local kb=$1
  shift
  (trap '' XFSZ; ulimit -f "$kb"; exec "$@")
}
# on_full NAME PATTERN KB CMD...: CMD on a disk of KB kilobytes exits 1 (not a crash: HDF5 used to
# segfault at exit after a failed write) with one stderr line matching PATTERN
on_full() {
  local name="$1" pattern="$2" kb="$3"
  shift 3
  full "$kb" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -ne 1 ]; then bad "$name: exit $rc, not 1 ($(cat "$T/err"))"; return; fi
  if [ "$(grep -c . "$T/err")" -ne 1 ]; then bad "$name: expected one error line, got: $(cat "$T/err")"; return; fi
  if ! grep -q -- "$pattern" "$T/err"; then bad "$name: message '$(cat "$T/err")' lacks '$pattern'"; return; fi
  ok
}
# nothing_left DIR PATTERN: no file in DIR matching PATTERN (the output and its temp files)
nothing_left() { [ -z "$(ls -A "$1" 2>/dev/null | grep -E "$2")" ]; }

small_trained 30 # (the runs below that fail write elsewhere; this one is resumed)

# -- gpt2q-data
mkdir -p "$T/d"
on_full "prepare, disk full" "d/tok.h5: .*disk full" 16 "$B/gpt2q-data" prepare \
  --input "$FX/../gpt2_bpe_vectors.jsonl" --out "$T/d/tok.h5"
check 'nothing_left "$T/d" "tok"' "prepare, disk full: no token file or temp file left ($(ls "$T/d"))"
on_full "export shards, disk full" "d/sh_train.bin: .*disk full" 16 "$B/gpt2q-data" export "$T/tok.h5" --out "$T/d/sh"
check 'nothing_left "$T/d" "sh"' "export shards, disk full: no shard or temp file left ($(ls "$T/d"))"

# -- gpt2q-train: the checkpoint
on_full "train, checkpoint on a full disk" "ckpt-00000003.h5: writing .*disk full" 256 "$B/gpt2q-train" \
  --data "$T/tok.h5" --config "$T/m.cfg" --out "$T/tf" --steps 3
check 'nothing_left "$T/tf" "ckpt|tmp"' "train, disk full: no checkpoint or temp file left ($(ls "$T/tf"))"
# -- gpt2q-train: train.jsonl, rewritten on resume (kept lines) and appended each step
check '[ -f "$C" ]' "a 30-step run to resume"
cp "$T/r/train.jsonl" "$T/log30"
size=$(stat -c %s "$T/log30")
kb=$(((size - 1) / 1024)) # below the log's size: its rewrite on resume fails
on_full "resume, train.jsonl rewrite on a full disk" "train.jsonl: .*disk full" $kb "$B/gpt2q-train" \
  --out "$T/r" --resume --steps 40
check 'cmp -s "$T/r/train.jsonl" "$T/log30" && nothing_left "$T/r" "tmp"' "the log is untouched, no temp file left"
kb=$(((size + 1023) / 1024)) # room for a few more lines, not for ten: an append fails part way
on_full "resume, train.jsonl append on a full disk" "train.jsonl: writing failed (disk full" $kb \
  "$B/gpt2q-train" --out "$T/r" --resume --steps 40
check '[ "$(tail -c 1 "$T/r/train.jsonl" | od -An -c | tr -d " ")" = "\n" ] && ! grep -qv "^{\"step\": .*}$" "$T/r/train.jsonl"' \
  "after a failed append every line of the log is whole ($(tail -1 "$T/r/train.jsonl" | cut -c1-60))"
check '[ $(wc -l <"$T/r/train.jsonl") -gt 30 ] && [ $(wc -l <"$T/r/train.jsonl") -lt 40 ] && [ ! -f "$T/r/ckpt-00000040.h5" ]' \
  "the run stopped at the failed line ($(wc -l <"$T/r/train.jsonl") lines, no step-40 checkpoint)"

# -- gpt2q-export
mkdir -p "$T/e"
on_full "export, disk full" "e/q.h5: writing .*disk full" 256 "$B/gpt2q-export" "$C" --format int8 -o "$T/e/q.h5"
on_full "GGUF export, disk full" "e/q.gguf: writing failed (disk full" 256 "$B/gpt2q-export" "$C" \
  --format q8_0 --gguf -o "$T/e/q.gguf"
check 'nothing_left "$T/e" "q"' "export, disk full: no file or temp file left ($(ls "$T/e"))"
on_full "llm.c export, disk full" "e/m.bin: writing failed (disk full" 256 "$B/gpt2q-export" "$C" --llmc -o "$T/e/m.bin"
check 'nothing_left "$T/e" "m.bin"' "llm.c export, disk full: no file or temp file left ($(ls "$T/e"))"
# --hf: a folder written before stays as it was (its files are renamed into place only once all are whole)
"$B/gpt2q-export" "$C" --hf -o "$T/e/hf" >/dev/null
cp -r "$T/e/hf" "$T/hf.good"
on_full "HF export, disk full" "e/hf/model.safetensors: writing failed (disk full" 256 "$B/gpt2q-export" "$C" --hf \
  --dtype bf16 -o "$T/e/hf"
check 'diff -r -q "$T/e/hf" "$T/hf.good" >/dev/null' "HF export, disk full: the older folder untouched, no temp file ($(ls "$T/e/hf"))"
on_full "HF export to a new folder, disk full" "e/hf2/model.safetensors: writing failed (disk full" 256 \
  "$B/gpt2q-export" "$C" --hf -o "$T/e/hf2"
check '[ -z "$(ls -A "$T/e/hf2")" ]' "HF export, disk full: nothing in the new folder ($(ls "$T/e/hf2"))"

# -- gpt2q-infer compare: the reports written whole or not at all
"$B/gpt2q-export" "$C" --format int4 --group 16 --layers all -o "$T/q.h5" >/dev/null
full 1 "$B/gpt2q-infer" compare "$C" "$T/q.h5" --data "$T/tok.h5" --out "$T/c" >/dev/null 2>"$T/c.err"
rc=$?
check '[ $rc -eq 1 ] && tail -1 "$T/c.err" | grep -q "c/results.json: writing failed (disk full"' \
  "compare, disk full: exit 1 ($rc), the error names results.json ($(tail -1 "$T/c.err"))"
check 'nothing_left "$T/c" "json|svg|tmp" && ! grep -q "wrote" "$T/c.err"' \
  "compare, disk full: no results.json, chart or temp file, no 'wrote' line ($(ls "$T/c"))"
if command -v gnuplot >/dev/null; then
  "$B/gpt2q-infer" compare "$C" "$T/q.h5" --data "$T/tok.h5" --out "$T/c" >/dev/null 2>&1
  check 'tail -3 "$T/c/chart.svg" | grep -q "</svg>"' "compare: a whole chart"
  cp "$T/c/chart.svg" "$T/chart.good"
  on_full "chart, disk full" "c/chart.svg: the chart was not written whole (disk full" 2 "$B/gpt2q-infer" chart "$T/c"
  check 'cmp -s "$T/c/chart.svg" "$T/chart.good" && nothing_left "$T/c" "tmp"' "chart, disk full: the older chart untouched"
fi

echo "test_disk_full: $pass passed, $fail failed"
[ $fail -eq 0 ]
