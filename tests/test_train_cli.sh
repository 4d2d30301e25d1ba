#!/usr/bin/env bash
# gpt2q-train end to end on a small model: training lowers the loss; resume is bit-exact
# (N steps + resume + M steps == N+M steps: same losses, same parameter and optimizer bytes);
# SIGKILL during checkpointing never leaves an unloadable newest checkpoint; a NaN loss stops
# with the step named and nothing saved; QAT, --export; prompt-masked fine-tuning; bad inputs give
# one clear error line.
# usage: test_train_cli.sh BUILD_DIR FIXTURE_DIR
set -u
. "$(dirname "$0")/lib.sh"
test_init "$@"

small_setup 32
printf 'eval_every = 4\neval_batches = 2\nsample_len = 4\n' >>"$T/m.cfg"
train() { "$B/gpt2q-train" --data "$T/tok.h5" --config "$T/m.cfg" "$@"; }
losses() { grep -o '"loss": [0-9.e+-]*' "$1/train.jsonl" | cut -d' ' -f2 | tr '\n' ' '; }

# -- --help names every option --print-config prints, in its flag spelling, with what it does
"$B/gpt2q-train" --help >"$T/help.txt"
missing=$("$B/gpt2q-train" --print-config | cut -d' ' -f1 | tr _ - |
  while read -r k; do grep -qE "^  --$k +[a-zA-Z(]" "$T/help.txt" || echo "$k"; done)
check '[ -z "$missing" ] && [ "$("$B/gpt2q-train" --print-config | wc -l)" -gt 40 ]' "--help describes every option (missing: $missing)"

# -- training lowers the loss, writes its outputs
train --out "$T/a" --steps 30 --ckpt-every 10 >"$T/a.log" 2>&1
check '[ -f "$T/a/ckpt-00000030.h5" ] && [ -f "$T/a/ckpt-00000020.h5" ] && [ -f "$T/a/ckpt-00000010.h5" ]' "checkpoints written"
check '[ "$(wc -l <"$T/a/train.jsonl")" -eq 30 ]' "one JSONL line per step"
first=$(losses "$T/a" | cut -d' ' -f1); last=$(losses "$T/a" | awk '{print $NF}')
check 'awk "BEGIN{exit !($last < $first - 1.0)}"' "loss falls by > 1 nat over 30 steps ($first -> $last)"
check 'grep -q "val_loss" "$T/a/train.jsonl"' "validation loss logged"
check 'grep -q "^sample at step 30" "$T/a.log"' "greedy sample printed"
check 'grep -q "memory: parameters" "$T/a.log"' "memory plan printed"
check 'command -v gnuplot >/dev/null && [ -s "$T/a/loss.svg" ] || ! command -v gnuplot >/dev/null' "loss.svg"
train --out "$T/k" --steps 12 --ckpt-every 1 --keep 2 >/dev/null 2>&1
check '[ "$(ls "$T/k"/ckpt-*.h5 | wc -l)" -eq 2 ]' "--keep 2 keeps two checkpoints"

# -- bit-exact resume: 12 steps vs 5 + resume 7 (ending in another epoch order state too)
train --out "$T/full" --steps 12 >/dev/null 2>&1
train --out "$T/part" --steps 12 --stop-after 5 >/dev/null 2>&1
check '[ -f "$T/part/ckpt-00000005.h5" ] && [ ! -f "$T/part/ckpt-00000012.h5" ]' "--stop-after 5 stopped with a checkpoint"
"$B/gpt2q-train" --out "$T/part" --resume >"$T/resume.log" 2>&1
check 'grep -q "resumed from .*ckpt-00000005.h5 at step 5" "$T/resume.log"' "resume message"
check '[ "$(losses "$T/full")" = "$(losses "$T/part")" ]' "resumed losses equal uninterrupted ($(losses "$T/part") vs $(losses "$T/full"))"
check 'h5diff "$T/full/ckpt-00000012.h5" "$T/part/ckpt-00000012.h5" /params >/dev/null' "resumed parameters are bit-identical"
check 'h5diff "$T/full/ckpt-00000012.h5" "$T/part/ckpt-00000012.h5" /optim >/dev/null' "resumed AdamW state is bit-identical"
check 'h5dump -A -g /state "$T/part/ckpt-00000012.h5" | grep -q "step"' "h5dump reads the checkpoint"
"$B/gpt2q-train" --out "$T/part" --resume --steps 8 >"$T/resume2.log" 2>&1
check 'grep -q "^nothing to train: .*ckpt-00000012.h5 is at step 12 and steps = 8" "$T/resume2.log" && [ ! -e "$T/part/ckpt-00000008.h5" ]' \
  "resume past --steps says there is nothing to train"

# -- SIGKILL while checkpointing every step: the newest complete checkpoint always loads
for delay in 0.3 0.7 1.1; do
  rm -rf "$T/kill"
  "$B/gpt2q-train" --data "$T/tok.h5" --config "$T/m.cfg" --out "$T/kill" --steps 100000 --ckpt-every 1 --keep 3 \
    >/dev/null 2>&1 & # the program itself, so that kill -9 reaches it
  pid=$!
  # the first complete checkpoint (up to 5 minutes: a loaded machine starts slowly)
  for _ in $(seq 3000); do ls "$T/kill" 2>/dev/null | grep -qE '^ckpt-[0-9]+\.h5$' && break; sleep 0.1; done
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  latest=$(ls "$T/kill" | grep -E '^ckpt-[0-9]+\.h5$' | sort | tail -1) # temp files are not candidates
  n=$(basename "$latest" .h5 | sed 's/ckpt-0*//')
  if [ -n "$latest" ] && "$B/gpt2q-train" --out "$T/kill" --resume --steps $((n + 1)) --eval-every 0 >"$T/k.log" 2>&1; then ok
  elif [ -z "$latest" ]; then bad "killed after ${delay}s: no complete checkpoint in $T/kill: $(ls "$T/kill" 2>&1)"
  else bad "killed after ${delay}s: newest checkpoint $latest did not resume: $(tail -2 "$T/k.log")"; fi
done

# -- NaN: weights that overflow (llm.c .bin, all 1e30) stop training at step 1, nothing saved
perl -e '
  my ($L,$NH,$C,$T,$V,$Vp)=(2,2,32,32,50257,50304);
  my $n=$Vp*$C+$T*$C+$L*(2*$C+3*$C*$C+3*$C+$C*$C+$C+2*$C+4*$C*$C+4*$C+4*$C*$C+$C)+2*$C;
  print pack("l<8",20240326,3,$T,$V,$L,$NH,$C,$Vp), "\0" x (248*4), pack("f<",1e30) x $n;' >"$T/huge.bin"
expect_error "nan loss" "step 1: loss is nan" train --out "$T/nan" --steps 5 --init "$T/huge.bin"
check '! ls "$T/nan"/ckpt-*.h5 >/dev/null 2>&1' "no checkpoint after a NaN"

# -- bad inputs
printf 'n_layer = 2\nbogus_key = 3\n' >"$T/bad.cfg"
expect_error "unknown config key" "bad.cfg:2: unknown option 'bogus_key'" "$B/gpt2q-train" --data "$T/tok.h5" --config "$T/bad.cfg"
expect_error "bad flag value" "lr = 'abc'" train --out "$T/x" --lr abc
expect_error "missing data" "nope.h5" "$B/gpt2q-train" --data "$T/nope.h5" --out "$T/x"
expect_error "vocab mismatch" "vocabulary of 50257 tokens, the model has 1000" train --out "$T/x" --vocab-size 1000
head -c 5000 "$FX/model.safetensors" >"$T/trunc.safetensors"
expect_error "truncated safetensors" "trunc.safetensors: .*truncated" train --out "$T/x" --init "$T/trunc.safetensors"
head -c 3000 "$T/a/ckpt-00000030.h5" >"$T/trunc.h5"
expect_error "truncated checkpoint" "trunc.h5" train --out "$T/x" --init "$T/trunc.h5"
mkdir -p "$T/hf" && cp "$FX/model.safetensors" "$T/hf/" && sed 's/"n_embd": 32/"n_embd": 64/' "$FX/config.json" >"$T/hf/config.json"
expect_error "config.json disagrees" "config.json: n_embd = 64" train --out "$T/x" --init "$T/hf/model.safetensors"
expect_error "resume without checkpoint" "no checkpoint" "$B/gpt2q-train" --out "$T/empty" --resume
sha=$(sha256sum "$T/a/ckpt-00000030.h5")
expect_error "init file missing" "missing.bin" train --out "$T/a" --init "$T/missing.bin"
check '[ "$(sha256sum "$T/a/ckpt-00000030.h5")" = "$sha" ]' "a failed run leaves existing checkpoints untouched"

# -- fine-tune from the HF fixture (vocab 96 model on GPT-2 data is refused; from our own checkpoint works)
train --out "$T/ft" --steps 3 --init "$T/a/ckpt-00000030.h5" >"$T/ft.log" 2>&1
check 'grep -q "initialised from" "$T/ft.log" && [ -f "$T/ft/ckpt-00000003.h5" ]' "fine-tune from a gpt2q checkpoint"
ft_first=$(losses "$T/ft" | cut -d' ' -f1)
check 'awk "BEGIN{exit !($ft_first < $first - 1.0)}"' "fine-tuning starts from the trained loss ($ft_first vs fresh $first)"

# -- QAT: fine-tune int4 from the trained checkpoint; export + three-row report at the end
train --out "$T/qat" --steps 6 --init "$T/a/ckpt-00000030.h5" --qat int4-g32 --qat-layers all --lr 1e-3 >"$T/qat.log" 2>&1
check 'grep -q "QAT: .* weights" "$T/qat.log" && grep -qE "QAT recovered|no gap to recover" "$T/qat.log"' "QAT run prints its report"
check '[ -f "$T/qat/model-int4-g32.h5" ] && [ -f "$T/qat/qat_report.json" ]' "QAT export and report written"
check 'grep -q "\"model\": \"ptq\"" "$T/qat/qat_report.json" && grep -q "gap_recovered" "$T/qat/qat_report.json"' "qat_report.json rows"
check 'h5dump -A -g /tensors/wte.weight "$T/qat/model-int4-g32.h5" | grep -q "int4"' "tied embedding exported as int4"
# --hf of a QAT run's checkpoint: its float weights, with a note naming the quantized file to export instead
"$B/gpt2q-export" "$T/qat/ckpt-00000006.h5" --hf -o "$T/qathf" >/dev/null 2>"$T/qathf.err"
check '[ -f "$T/qathf/model.safetensors" ] && grep -q "^note: .*qat = int4-g32.*model-int4-g32.h5" "$T/qathf.err"' \
  "--hf of a QAT checkpoint notes the quantized file ($(cat "$T/qathf.err"))"
"$B/gpt2q-export" "$T/a/ckpt-00000030.h5" --llmc -o "$T/plain.bin" >/dev/null 2>"$T/plain.err"
check '[ -s "$T/plain.bin" ] && [ ! -s "$T/plain.err" ]' "no note for a checkpoint without QAT ($(cat "$T/plain.err"))"
# report_loss RUN: the QAT row of its qat_report.json; eval_loss MODEL [args]: gpt2q-infer eval's loss
report_loss() { grep -o '"model": "qat", "val_loss": [0-9.]*' "$1/qat_report.json" | grep -o '[0-9.]*$'; }
eval_loss() {
  local m="$1"; shift
  "$B/gpt2q-infer" eval "$m" --data "$T/tok.h5" --batch 4 --seq 32 --json "$@" 2>/dev/null |
    grep -o '"loss": [0-9.]*' | grep -o '[0-9.]*$'
}
qat_loss=$(report_loss "$T/qat")
exp_loss=$(eval_loss "$T/qat/model-int4-g32.h5")
# the trainer (fake-quant, fp32 weights) and the packed runner agree to float round-off
check '[ -n "$qat_loss" ] && awk "BEGIN{d = $qat_loss - $exp_loss; exit !(d < 2e-5 && d > -2e-5)}"' \
  "QAT loss ($qat_loss) == the export's loss in gpt2q-infer ($exp_loss) to 2e-5"
# --final-eval 0 (the demo's fine-tunes, which it scores itself): no whole-split evaluation and no
# report rows, the same exported tensors and parameters as the run that scored them (the files
# differ only in the run folder they name)
train --out "$T/qn" --steps 6 --init "$T/a/ckpt-00000030.h5" --qat int4-g32 --qat-layers all --lr 1e-3 \
  --final-eval 0 >"$T/qn.log" 2>&1
check '! grep -qE "final validation|QAT recovered|no gap to recover" "$T/qn.log" && grep -q "not scored here" "$T/qn.log"' \
  "--final-eval 0 scores nothing at the end"
check 'grep -q "\"rows\": \[\]" "$T/qn/qat_report.json"' "--final-eval 0: qat_report.json without rows"
check 'h5diff "$T/qat/model-int4-g32.h5" "$T/qn/model-int4-g32.h5" /tensors >/dev/null &&
  h5diff "$T/qat/ckpt-00000006.h5" "$T/qn/ckpt-00000006.h5" /params >/dev/null' "--final-eval 0: the same export and parameters"
# bit-exact resume with QAT and a delayed start (the spec is in the checkpoint)
train --out "$T/qf" --steps 8 --init "$T/a/ckpt-00000030.h5" --qat nf4-dq --qat-group 32 --qat-start-step 3 >/dev/null 2>&1
train --out "$T/qp" --steps 8 --init "$T/a/ckpt-00000030.h5" --qat nf4-dq --qat-group 32 --qat-start-step 3 --stop-after 4 >/dev/null 2>&1
"$B/gpt2q-train" --out "$T/qp" --resume >"$T/qr.log" 2>&1
check '[ "$(losses "$T/qf")" = "$(losses "$T/qp")" ] && h5diff "$T/qf/ckpt-00000008.h5" "$T/qp/ckpt-00000008.h5" /params >/dev/null' \
  "QAT resume is bit-exact ($(losses "$T/qp") vs $(losses "$T/qf"))"
check 'grep -q "QAT: " "$T/qr.log"' "resumed run keeps the QAT spec"
# -- W8A8: int8 activations too; its export scored with int8 activations (gpt2q-infer --act int8)
# gives the trainer's W8A8 loss, and resume is bit-exact
train --out "$T/w8" --steps 6 --init "$T/a/ckpt-00000030.h5" --qat int4-g32 --qat-layers all --qat-act int8 >"$T/w8.log" 2>&1
check 'grep -q "their inputs as int8" "$T/w8.log" && grep -q "\"activations\": \"int8\"" "$T/w8/qat_report.json"' \
  "W8A8 QAT runs and says so"
w8_loss=$(report_loss "$T/w8")
w8_int8=$(eval_loss "$T/w8/model-int4-g32.h5" --act int8); w8_f32=$(eval_loss "$T/w8/model-int4-g32.h5")
check '[ -n "$w8_loss" ] && awk "BEGIN{d = $w8_loss - $w8_int8; exit !(d < 5e-6 && d > -5e-6)}"' \
  "W8A8 QAT loss ($w8_loss) == its export's loss with --act int8 ($w8_int8) to 5e-6"
check '[ -n "$w8_f32" ] && awk "BEGIN{d = $w8_loss - $w8_f32; exit !(d > 2e-5 || d < -2e-5)}"' \
  "... and differs from its float-activation loss ($w8_f32 vs $w8_int8)"
check 'h5dump -A -g / "$T/w8/model-int4-g32.h5" | grep -q "trained_activations" && ! h5dump -A -g / "$T/qat/model-int4-g32.h5" | grep -q "trained_activations"' \
  "the W8A8 export records its int8 activations (the weight-only QAT export does not)"
check '"$B/gpt2q-infer" eval "$T/w8/model-int4-g32.h5" --data "$T/tok.h5" --batch 4 --seq 32 2>&1 >/dev/null | grep -q "trained with int8 activations"' \
  "gpt2q-infer eval notes that --act int8 scores it as trained"
"$B/gpt2q-export" "$T/w8/model-int4-g32.h5" --hf -o "$T/w8hf" >/dev/null 2>"$T/w8hf.err"
check '[ -f "$T/w8hf/model.safetensors" ] && grep -q "^note: .*trained with int8 activations" "$T/w8hf.err"' \
  "--hf of a W8A8 export notes that a float runner multiplies float activations ($(cat "$T/w8hf.err"))"
check 'grep -q "QAT recovered\|no gap to recover" "$T/w8.log" && [ "$(grep -c "QAT recovered\|no gap to recover" "$T/qat.log")" -eq 1 ]' \
  "the report says one thing about the PTQ gap"
train --out "$T/wp" --steps 6 --init "$T/a/ckpt-00000030.h5" --qat int4-g32 --qat-layers all --qat-act int8 --stop-after 3 >/dev/null 2>&1
"$B/gpt2q-train" --out "$T/wp" --resume >/dev/null 2>&1
check '[ "$(losses "$T/w8")" = "$(losses "$T/wp")" ] && h5diff "$T/w8/ckpt-00000006.h5" "$T/wp/ckpt-00000006.h5" /params >/dev/null' \
  "W8A8 resume is bit-exact"
# -- learned scales (-lsq): the QAT loss is its export's loss (the export takes the trained scales
# from the checkpoint), gpt2q-export of that checkpoint writes the same tensors, resume is
# bit-exact whether it stops before QAT starts or after (the scales and their moments saved)
lsq=(--steps 8 --init "$T/a/ckpt-00000030.h5" --qat int3-g32-lsq --qat-layers all --qat-start-step 3)
train --out "$T/ls" "${lsq[@]}" >"$T/ls.log" 2>&1
check 'grep -q "group scales learned (LSQ)" "$T/ls.log" && [ -f "$T/ls/model-int3-g32-lsq.h5" ]' "LSQ QAT runs and exports"
ls_loss=$(report_loss "$T/ls")
ls_eval=$(eval_loss "$T/ls/model-int3-g32-lsq.h5")
check '[ -n "$ls_loss" ] && [ -n "$ls_eval" ] && awk "BEGIN{d = $ls_loss - $ls_eval; exit !(d < 2e-5 && d > -2e-5)}"' \
  "LSQ QAT loss ($ls_loss) == its export's loss in gpt2q-infer ($ls_eval) to 2e-5"
check 'h5dump -A -g /tensors/h.0.mlp.c_fc.weight "$T/ls/model-int3-g32-lsq.h5" | grep -q "learned"' \
  "the export says its scales were learned"
"$B/gpt2q-export" "$T/ls/ckpt-00000008.h5" --format int3-g32-lsq --layers all -o "$T/ls.h5" >/dev/null 2>&1
check 'h5diff "$T/ls.h5" "$T/ls/model-int3-g32-lsq.h5" /tensors >/dev/null' "gpt2q-export writes the trainer's LSQ export"
"$B/gpt2q-export" "$T/ls/ckpt-00000008.h5" --format int3-g32 --layers all -o "$T/rtn.h5" >/dev/null 2>&1
check '! h5diff -q "$T/rtn.h5" "$T/ls.h5" /tensors/h.0.mlp.c_fc.weight/scales >/dev/null 2>&1' \
  "the learned scales are not the rule's"
for stop in 2 5; do
  train --out "$T/lp$stop" "${lsq[@]}" --stop-after $stop >/dev/null 2>&1
  "$B/gpt2q-train" --out "$T/lp$stop" --resume >/dev/null 2>&1
  check '[ "$(losses "$T/ls")" = "$(losses "$T/lp$stop")" ] && h5diff "$T/ls/ckpt-00000008.h5" "$T/lp$stop/ckpt-00000008.h5" /params >/dev/null && h5diff "$T/ls/ckpt-00000008.h5" "$T/lp$stop/ckpt-00000008.h5" /qat >/dev/null' \
    "LSQ resume after step $stop is bit-exact (weights, learned scales, their moments)"
done
expect_error "-lsq export without learned scales" "no learned scales for" \
  "$B/gpt2q-export" "$T/a/ckpt-00000030.h5" --format int3-g32-lsq -o "$T/x.h5"
check '[ ! -e "$T/x.h5" ] && [ -z "$(ls "$T" | grep "x.h5.tmp")" ]' "... and leaves no file"
expect_error "-lsq on int8" "applies to int4, int3, int2, nf4 and fp4" train --out "$T/x" --qat int8-lsq
expect_error "int8 activations without QAT" "it needs --qat" train --out "$T/x" --qat-act int8
expect_error "unknown activation format" "expected f32 or int8" train --out "$T/x" --qat int4 --qat-act int4
expect_error "unknown QAT format" "unknown format 'int5'" train --out "$T/x" --qat int5
expect_error "QAT selects nothing" "matches no weight" train --out "$T/x" --qat int4-g32 --qat-layers 'h.9.*'

# -- --export: the final checkpoint's PTQ in several formats at the end of the run, each scored on
# the validation split: the files are gpt2q-export's (GPTQ calibrated on the training data as
# gpt2q-export --calib does), the losses gpt2q-infer eval's (its packed kernels) to round-off
train --out "$T/ex" --steps 6 --init "$T/a/ckpt-00000030.h5" --export "int8 int4-g32 nf4-g32 int3-g32-gptq" \
  --export-layers all >"$T/ex.log" 2>&1
for f in int8 int4-g32 nf4-g32 int3-g32-gptq; do
  cal=(); [ $f = int3-g32-gptq ] && cal=(--calib "$T/tok.h5")
  "$B/gpt2q-export" "$T/ex/ckpt-00000006.h5" --format $f --layers all "${cal[@]}" -o "$T/ex-$f.h5" >/dev/null 2>&1
  check 'h5diff "$T/ex/model-$f.h5" "$T/ex-$f.h5" /tensors >/dev/null' "--export $f writes gpt2q-export's tensors"
  jl=$(grep -o "\"format\": \"$f\", [^}]*\"val_loss\": [0-9.]*" "$T/ex/exports.json" | grep -o '[0-9.]*$')
  il=$(eval_loss "$T/ex/model-$f.h5")
  check '[ -n "$jl" ] && [ -n "$il" ] && awk "BEGIN{d = $jl - $il; exit !(d < 2e-5 && d > -2e-5)}"' \
    "--export $f: the trainer's loss ($jl) == gpt2q-infer eval's ($il) to 2e-5"
done
fl=$(grep -o '"float": {[^}]*"val_loss": [0-9.]*' "$T/ex/exports.json" | grep -o '[0-9.]*$')
check '[ -n "$fl" ] && grep -q "^final validation loss $(printf %.4f "$fl") " "$T/ex.log"' \
  "the float row is the run's final validation loss ($fl)"
check 'grep -qE "^int3-g32-gptq +[0-9.]+ +[+-][0-9.]+ " "$T/ex.log"' "the table is printed"
# resumed: the exports only at the end, the same tensors as the run without a stop
train --out "$T/exr" --steps 6 --init "$T/a/ckpt-00000030.h5" --export "int8 nf4-g32" --stop-after 3 >/dev/null 2>&1
check '[ ! -e "$T/exr/model-int8.h5" ] && [ ! -e "$T/exr/exports.json" ]' "--export waits for the last step"
"$B/gpt2q-train" --out "$T/exr" --resume --final-eval 0 >/dev/null 2>&1
check 'h5diff "$T/ex/model-nf4-g32.h5" "$T/exr/model-nf4-g32.h5" /tensors/h.0.mlp.c_fc.weight >/dev/null && [ -f "$T/exr/model-int8.h5" ]' \
  "a resumed run exports at its end (nf4 tensors equal the uninterrupted run's)"
check '! grep -q "val_loss" "$T/exr/exports.json" && grep -q "\"format\": \"int8\"" "$T/exr/exports.json"' \
  "--final-eval 0: exports.json without losses"
# a QAT run's exports in other formats: its float row is the latent weights
train --out "$T/exq" --steps 3 --init "$T/a/ckpt-00000030.h5" --qat int4-g32 --export int8 >"$T/exq.log" 2>&1
check 'grep -q "^float (latent weights)" "$T/exq.log" && [ -f "$T/exq/model-int4-g32.h5" ] && [ -f "$T/exq/model-int8.h5" ]' \
  "--export beside QAT's own export"
# gpt2q-infer compare takes run folders: the newest checkpoint first (the reference), then every
# model-<format>.h5 in it by name; with two folders each row is named run:model
"$B/gpt2q-infer" compare "$T/ex" --data "$T/tok.h5" --max-tokens 2048 --out "$T/excmp" >/dev/null 2>&1
rows=$(grep -o '^| [a-z0-9-]* |' "$T/excmp/results.md" | tail -n +2 | tr -d '| ' | tr '\n' ' ')
check '[ "$rows" = "float int3-g32-gptq int4-g32 int8 nf4-g32 " ]' "compare RUN: the checkpoint, then the exports ($rows)"
check 'grep -q "^| float | fp32 | [0-9.]* | +0.0000 |" "$T/excmp/results.md"' "... the checkpoint is the reference"
"$B/gpt2q-infer" compare "$T/ex" "$T/exq" --data "$T/tok.h5" --max-tokens 1024 --out "$T/excmp2" >/dev/null 2>&1
check '[ "$(grep -c "^| ex:" "$T/excmp2/results.md")" -eq 5 ] && grep -q "^| exq:float |" "$T/excmp2/results.md" &&
  grep -q "^| exq:int4-g32 |" "$T/excmp2/results.md" && grep -q "^| exq:int8 |" "$T/excmp2/results.md"' \
  "compare RUN RUN: rows named run:model"
# a run folder stands for its newest checkpoint wherever a model is read
l_dir=$(eval_loss "$T/ex"); l_ck=$(eval_loss "$T/ex/ckpt-00000006.h5")
check '[ -n "$l_dir" ] && [ "$l_dir" = "$l_ck" ]' "gpt2q-infer eval RUN = its newest checkpoint ($l_dir vs $l_ck)"
"$B/gpt2q-export" "$T/ex" --format int8 --layers all -o "$T/ex-dir.h5" >/dev/null 2>"$T/exdir.err"
check 'h5diff "$T/ex-dir.h5" "$T/ex/model-int8.h5" /tensors >/dev/null && grep -q "its newest checkpoint, .*ckpt-00000006.h5" "$T/exdir.err"' \
  "gpt2q-export RUN exports its newest checkpoint, and says which"
train --out "$T/exi" --steps 1 --init "$T/ex" >"$T/exi.log" 2>&1
check 'grep -q "^init: .*ex/ckpt-00000006.h5, the run.s newest checkpoint" "$T/exi.log" && grep -q "^initialised from .*ex/ckpt-00000006.h5" "$T/exi.log"' \
  "gpt2q-train --init RUN starts from its newest checkpoint"
expect_error "--export: unknown format" "export = 'int5': unknown format" train --out "$T/x" --export "int8 int5"
expect_error "--export: twice" "named twice" train --out "$T/x" --export "int4-g32 int4-g32"
expect_error "--export: QAT's own file" "QAT's own export" train --out "$T/x" --qat int4-g32 --export int4-g32
expect_error "--export: -lsq without learned scales" "needs --qat with -lsq" train --out "$T/x" --export int3-g32-lsq
expect_error "--export: selects nothing" "matches no weight" train --out "$T/x" --export int4-g32 --export-layers 'h.9.*'
expect_error "--export: group does not fit" "does not divide" train --out "$T/x" --export int4-g48
expect_error "--export: GPTQ on two files" "must be one token file" \
  train --data "$T/tok.h5,$T/tok.h5" --out "$T/x" --export int4-g32-gptq
check '[ ! -e "$T/x/ckpt-00000001.h5" ]' "... before any training"

# -- distillation: a teacher is needed; with one, QAT trains and the report is written
expect_error "distillation without a teacher" "needs a teacher" train --out "$T/x" --distill 0.5
train --out "$T/kd" --steps 3 --init "$T/a/ckpt-00000030.h5" --qat int4 --qat-group 32 --distill 0.5 >"$T/kd.log" 2>&1
check 'grep -q "^distillation: targets = 0.50 x data" "$T/kd.log" && [ -f "$T/kd/qat_report.json" ]' "QAT with distillation runs"
# -- devices and precisions: clear errors where they cannot apply
expect_error "unknown device" "expected cpu, cuda or auto" train --out "$T/x" --device tpu
expect_error "bf16 on the CPU" "fp32 only" train --out "$T/x" --device cpu --precision bf16
expect_error "batch = max on the CPU" "batch = max needs the GPU" train --out "$T/x" --device cpu --batch max
expect_error "batch = nonsense" "batch = 'lots': expected an integer" train --out "$T/x" --batch lots

# -- --data takes plain text too: tokenized once into a cached token file in the run folder
train --data "$FX/../gpt2_bpe_vectors.jsonl" --out "$T/txt" --steps 2 >"$T/txt.log" 2>&1
check 'grep -q "data: tokenized .* cached in .*tokens-" "$T/txt.log" && ls "$T/txt"/tokens-*.h5 >/dev/null 2>&1' "text data tokenized and cached"
train --data "$FX/../gpt2_bpe_vectors.jsonl" --out "$T/txt" --steps 2 >"$T/txt2.log" 2>&1
check 'grep -q "using the cached token file" "$T/txt2.log"' "cached token file reused"

# -- --data-jsonl KEY: text --data read as JSON Lines (its own cache); the vectors: 16267 ids with their EOTs
train --data "$FX/../gpt2_bpe_vectors.jsonl" --data-jsonl text --out "$T/txt" --steps 2 >"$T/txj.log" 2>&1
check 'grep -q "data: tokenized .* into 16267 tokens" "$T/txj.log" && [ "$(ls "$T/txt"/tokens-*.h5 | wc -l)" -eq 2 ]' \
  "--data-jsonl tokenizes each line's field, cached apart from the plain-text tokens"

# -- prompt-masked fine-tuning: a prompt / completion JSON Lines corpus whose loss mask leaves the
# prompts out. The trainer's validation loss (its batches weighted by their scored targets) is
# gpt2q-infer eval's on the same file (the runner counts the scored targets itself); the loss
# falls; --data-jsonl-prompt reads the JSON Lines directly (its own cache, the same tokens); a
# window with no scored target (prompts longer than a window) adds no gradient: loss 0, norm 0
perl -e 'my @w = qw(lamb ark dove tent well field vine gate sword crown); srand(3);
  for my $i (0 .. 1499) { my ($x, $y) = ($w[rand @w], $w[rand @w]);
    print "{\"q\": \"Question $i: which word follows $x?\\nAnswer:\", \"a\": \" $y and $x\\n\"}\n" }' >"$T/qa.jsonl"
"$B/gpt2q-data" prepare --input "$T/qa.jsonl" --jsonl a --jsonl-prompt q --out "$T/qa.h5" --val-block 256 >"$T/qa.prep" 2>&1
train --data "$T/qa.h5" --out "$T/sft" --steps 16 --eval-every 8 --sample-len 0 >"$T/sft.log" 2>&1
check 'grep -q "qa.h5 has a loss mask" "$T/sft.log" && [ -f "$T/sft/ckpt-00000016.h5" ]' "training on a masked token file says so"
tv=$(grep -o '"val_loss": [0-9.]*' "$T/sft/train.jsonl" | tail -1 | cut -d' ' -f2)
ev=$("$B/gpt2q-infer" eval "$T/sft" --data "$T/qa.h5" --seq 32 --json 2>/dev/null | grep -o '"loss": [0-9.]*' | cut -d' ' -f2)
scored=$("$B/gpt2q-infer" eval "$T/sft" --data "$T/qa.h5" --seq 32 --json 2>/dev/null | grep -o '"tokens": [0-9]*' | cut -d' ' -f2)
check '[ -n "$tv" ] && [ -n "$ev" ] && awk "BEGIN{d = $tv - $ev; exit !(d < 2e-5 && d > -2e-5)}"' \
  "masked validation: the trainer's $tv = gpt2q-infer eval's $ev (over $scored scored targets)"
first=$(losses "$T/sft" | cut -d' ' -f1); last=$(losses "$T/sft" | awk '{print $NF}')
check 'awk "BEGIN{exit !($last < $first - 1.0)}"' "the completions' loss falls ($first -> $last)"
train --data "$T/qa.jsonl" --data-jsonl a --data-jsonl-prompt q --out "$T/sftj" --steps 1 --sample-len 0 >"$T/sftj.log" 2>&1
"$B/gpt2q-data" prepare --input "$T/qa.jsonl" --jsonl a --jsonl-prompt q --out "$T/qa4096.h5" >/dev/null 2>&1 # the trainer's split
check 'grep -q "data: loss mask: .* targets scored" "$T/sftj.log" && h5diff -q "$T/qa4096.h5" "$(ls "$T/sftj"/tokens-*.h5)" /train_mask &&
  h5diff -q "$T/qa4096.h5" "$(ls "$T/sftj"/tokens-*.h5)" /train' \
  "--data-jsonl-prompt: the cached token file holds prepare's mask"
train --data "$T/qa.jsonl" --data-jsonl a --data-jsonl-prompt q --out "$T/sftj" --steps 1 --sample-len 0 >"$T/sftj2.log" 2>&1
check 'grep -q "using the cached token file" "$T/sftj2.log" && grep -q "tokens-.*h5 has a loss mask" "$T/sftj2.log"' \
  "--data-jsonl-prompt: a run on the cached token file says it trains with the mask"
expect_error "--data-jsonl-prompt without --data-jsonl" "needs data_jsonl" train --data "$T/qa.jsonl" --data-jsonl-prompt q --out "$T/x"
# gradient accumulation weights each micro-batch by its scored targets: 2 x batch 2 is batch 4
# (the same windows; mean over the step's targets), not the mean of two unequal means
train --data "$T/qa.h5" --out "$T/ga1" --steps 4 --batch 4 --eval-every 0 --sample-len 0 >/dev/null 2>&1
train --data "$T/qa.h5" --out "$T/ga2" --steps 4 --batch 2 --grad-accum 2 --eval-every 0 --sample-len 0 >/dev/null 2>&1
d=$(paste <(losses "$T/ga1" | tr -s ' ' '\n') <(losses "$T/ga2" | tr -s ' ' '\n') |
  awk 'NF == 2 {n++; d = $1 - $2; d = d < 0 ? -d : d; if (d > m) m = d} END {printf "%.7f", n == 4 ? m : 99}')
check 'awk "BEGIN{exit !($d < 2e-5)}"' "masked: --grad-accum 2 x --batch 2 = --batch 4 within 2e-5 over 4 steps ($d)"
perl -e 'for my $i (0 .. 59) { print "{\"q\": \"", "word " x 300, "\", \"a\": \" end\"}\n" }' >"$T/long.jsonl"
"$B/gpt2q-data" prepare --input "$T/long.jsonl" --jsonl a --jsonl-prompt q --out "$T/long.h5" --val-fraction 0 >/dev/null 2>&1
train --data "$T/long.h5" --out "$T/lp" --steps 12 --batch 1 --eval-every 0 --sample-len 0 >"$T/lp.log" 2>&1
zero=$(grep -c '"loss": 0.000000, "lr": [0-9.e+-]*, "grad_norm": 0.000000' "$T/lp/train.jsonl")
some=$(grep -vc '"grad_norm": 0.000000' "$T/lp/train.jsonl")
check '[ -f "$T/lp/ckpt-00000012.h5" ] && [ "$zero" -gt 0 ] && [ "$some" -gt 0 ]' \
  "a window without a scored target: loss 0 and no gradient ($zero of 12 steps), the others learn ($some)"
# a file without a validation split: QAT and --export write their files and say they scored nothing
train --data "$T/long.h5" --out "$T/lq" --steps 2 --batch 1 --eval-every 0 --sample-len 0 --qat int4-g32 \
  --export int8 >"$T/lq.log" 2>&1
check '[ -f "$T/lq/model-int4-g32.h5" ] && [ -f "$T/lq/model-int8.h5" ] && grep -q "not scored here: no validation split" "$T/lq.log" &&
  grep -q "(not scored: no validation split)" "$T/lq.log" && ! grep -qi nan "$T/lq.log"' \
  "no validation split: the QAT and PTQ exports written, not scored, no NaN printed"

echo "test_train_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
