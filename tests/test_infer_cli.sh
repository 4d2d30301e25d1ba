#!/usr/bin/env bash
# gpt2q-infer end to end on a small GPT-2-vocabulary model: generate (greedy is deterministic,
# sampling follows the seed, stops and limits), answer (a JSON Lines file's prompts, exact match), eval of the float and the packed int4 model,
# bench and compare outputs, logits JSON, and the bad inputs of the issue: a file that is not a
# model, an export with an unknown format, a prompt longer than the context, an
# <|endoftext|>-only prompt, -n 0.
# usage: test_infer_cli.sh BUILD_DIR FIXTURE_DIR
set -u
. "$(dirname "$0")/lib.sh"
test_init "$@"

small_trained 20
"$B/gpt2q-export" "$C" --format int4 --layers all -o "$T/q.h5" >/dev/null
check '[ -f "$C" ] && [ -f "$T/q.h5" ]' "model and export made"
# cuBLAS costs ~150 MB of RSS at start-up: the runner must not link it (its GPU path has no cuBLAS)
check '! (ldd "$B/gpt2q-infer" 2>/dev/null | grep -qi cublas)' "gpt2q-infer does not load cuBLAS"
I="$B/gpt2q-infer"

# -- searched scales (-mse) and activation-aware calibration (--calib)
"$B/gpt2q-export" "$C" --format int3-g32-mse --layers all -o "$T/mse.h5" --json >"$T/mse.json"
check 'grep -q "\"scale_search\": \"mse\"" "$T/mse.json" && h5dump -a /tensors/h.0.mlp.c_fc.weight/scale_search "$T/mse.h5" | grep -q mse' \
  "-mse: the export records scale_search = mse"
"$B/gpt2q-export" "$C" --format int3-g32-mse --layers all --calib "$T/tok.h5" --calib-tokens 4096 -o "$T/cal.h5" \
  >"$T/cal.out" 2>"$T/cal.err"
check 'h5dump -a /calibration "$T/cal.h5" | grep -q "train split, 4096 tokens"' "--calib records its data and token count"
check '! cmp -s <(h5dump -d /tensors/h.0.mlp.c_fc.weight/scales "$T/mse.h5" | tail -n +3) <(h5dump -d /tensors/h.0.mlp.c_fc.weight/scales "$T/cal.h5" | tail -n +3)' \
  "--calib changes the searched scales"
for f in mse cal; do
  "$B/gpt2q-infer" eval "$T/$f.h5" --data "$T/tok.h5" --json >"$T/$f.eval" 2>/dev/null
  check 'grep -q "\"loss\": [0-9]" "$T/$f.eval"' "the runner evaluates the $f export (same layout)"
done
expect_error "--calib without -mse or -gptq" "calibrates -mse and -gptq" "$B/gpt2q-export" "$C" --format int3 --calib "$T/tok.h5" -o "$T/bad.h5"

# -- GPTQ (-gptq with --calib): the runner takes its export as any other; on the calibration
# split it beats round to nearest (what GPTQ minimizes, layer by layer)
"$B/gpt2q-export" "$C" --format int3-gptq --layers all --calib "$T/tok.h5" --calib-tokens 4096 -o "$T/gptq.h5" --json \
  >"$T/gptq.json" 2>"$T/gptq.err"
check 'grep -q "\"scale_search\": \"gptq\"" "$T/gptq.json" && h5dump -a /tensors/h.1.attn.c_attn.weight/scale_search "$T/gptq.h5" | grep -q gptq' \
  "-gptq: the export records scale_search = gptq"
check 'h5dump -a /calibration "$T/gptq.h5" | grep -q "train split, 4096 tokens, GPTQ damp 0.01"' "-gptq records its calibration"
"$B/gpt2q-export" "$C" --format int3-gptq --layers all --calib "$T/tok.h5" --calib-tokens 4096 -o "$T/gptq2.h5" >"$T/gptq2.out" 2>"$T/gptq2.err"
check 'grep -q "GPTQ wte.weight .*output error .*round to nearest" "$T/gptq2.err" && grep -q "GPTQ: 9 tensors on 4096 calibration tokens" "$T/gptq2.err"' \
  "-gptq reports each tensor's output error against round to nearest's"
check 'cmp -s <(h5dump "$T/gptq.h5" | grep -v "/gptq") <(h5dump "$T/gptq2.h5" | grep -v "/gptq")' "GPTQ is deterministic"
"$B/gpt2q-export" "$C" --format int3-gptq --layers all --calib "$T/tok.h5" --calib-tokens 4096 --gptq-act-order \
  -o "$T/gptq-act.h5" >/dev/null 2>&1
check 'h5dump -a /calibration "$T/gptq-act.h5" | grep -q "GPTQ damp 0.01, act-order" && ! cmp -s <(h5dump -d /tensors/h.1.attn.c_attn.weight/qweight "$T/gptq.h5" | tail -n +3) <(h5dump -d /tensors/h.1.attn.c_attn.weight/qweight "$T/gptq-act.h5" | tail -n +3)' \
  "--gptq-act-order: recorded, other codes"
"$B/gpt2q-export" "$C" --format int3 --layers all -o "$T/rtn3.h5" >/dev/null
for f in gptq rtn3; do
  "$B/gpt2q-infer" eval "$T/$f.h5" --data "$T/tok.h5" --split train --max-tokens 4096 --json >"$T/$f.eval" 2>/dev/null
done
gl=$(grep -o '"loss": [0-9.]*' "$T/gptq.eval" | cut -d' ' -f2)
rl=$(grep -o '"loss": [0-9.]*' "$T/rtn3.eval" | cut -d' ' -f2)
echo "GPTQ int3 on the calibration tokens: $gl, round to nearest $rl"
check 'awk -v g="$gl" -v r="$rl" "BEGIN { exit !(g > 0 && g < r) }"' "GPTQ int3 on the calibration tokens: loss $gl below round to nearest's $rl"
expect_error "-gptq without --calib" "add --calib" "$B/gpt2q-export" "$C" --format int4-gptq -o "$T/bad.h5"
expect_error "-gptq with -mse" "-gptq takes the format's absmax rule" "$B/gpt2q-export" "$C" --format int4-gptq-mse --calib "$T/tok.h5" -o "$T/bad.h5"
expect_error "-gptq to GGUF without --calib" "add --calib" "$B/gpt2q-export" "$C" --gguf --format int4-g32-gptq -o "$T/bad.gguf"
expect_error "nf4-gptq to GGUF" "int4-g32-gptq (Q4_0)" "$B/gpt2q-export" "$C" --gguf --format nf4-gptq --calib "$T/tok.h5" -o "$T/bad.gguf"
"$B/gpt2q-export" "$C" --gguf --format int4-g32-gptq --calib "$T/tok.h5" --calib-tokens 2048 -o "$T/gptq.gguf" --json >"$T/gg.json" 2>/dev/null
check 'grep -q "\"quantized_tensors\": [1-9]" "$T/gg.json" && [ -s "$T/gptq.gguf" ]' "int4-g32-gptq to GGUF (Q4_0 blocks with GPTQ's codes)"
"$B/gpt2q-export" "$C" --format int3-g32-gptq --calib "$T/tok.h5" --calib-tokens 2048 --gptq-damp 0 -o "$T/damp0.h5" >/dev/null 2>&1
check 'h5dump -a /calibration "$T/damp0.h5" | grep -qE "GPTQ damp 0([^.0-9]|$)"' "--gptq-damp 0 is taken as given (not the default)"
expect_error "--gptq-damp -1" "--gptq-damp must be" "$B/gpt2q-export" "$C" --format int4-gptq --calib "$T/tok.h5" --gptq-damp -1 -o "$T/bad.h5"
check '[ ! -e "$T/bad.gguf" ]' "a failed GGUF export leaves no file"
expect_error "--calib-tokens 0" "positive integer" "$B/gpt2q-export" "$C" --format int3-mse --calib "$T/tok.h5" --calib-tokens 0 -o "$T/bad.h5"
expect_error "--calib with a missing file" "nothing.h5" "$B/gpt2q-export" "$C" --format int3-mse --calib "$T/nothing.h5" -o "$T/bad.h5"
expect_error "-mse on int8" "-mse applies to" "$B/gpt2q-export" "$C" --format int8-mse -o "$T/bad.h5"
check '[ ! -e "$T/bad.h5" ]' "failed exports leave no file"

# -- generate
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 >"$T/g1" 2>"$T/g1.err"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 >"$T/g2" 2>/dev/null
check 'grep -q "^The quick brown" "$T/g1" && [ "$(wc -c <"$T/g1")" -gt 17 ]' "generate prints the prompt and continues it"
check 'cmp -s "$T/g1" "$T/g2"' "greedy generation is deterministic"
check 'grep -q "generated in .* tok/s" "$T/g1.err"' "generate reports its speed on stderr"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 --kv f32 >"$T/g3" 2>/dev/null
check 'cmp -s "$T/g1" "$T/g3"' "the fp16 KV cache (default) and --kv f32 generate the same greedy text"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 2 --kv f8 >/dev/null 2>"$T/kv.err"
kv_rc=$?
check '[ $kv_rc -eq 2 ] && grep -q -- "--kv takes f16 or f32" "$T/kv.err"' "--kv with a bad value: exit 2 and one clear line"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 --device cpu >"$T/g4" 2>/dev/null
check 'cmp -s "$T/g1" "$T/g4"' "--device cpu is the default"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 2 --device tpu >/dev/null 2>"$T/dev.err"
dev_rc=$?
check '[ $dev_rc -eq 2 ] && grep -q -- "--device takes cpu, cuda or auto" "$T/dev.err"' "--device with a bad value: exit 2"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 2 --gpu-weights f8 >/dev/null 2>"$T/gw.err"
gw_rc=$?
check '[ $gw_rc -eq 2 ] && grep -q -- "--gpu-weights takes auto, f32, f16 or bf16" "$T/gw.err"' "--gpu-weights with a bad value: exit 2"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 2 --act int4 >/dev/null 2>"$T/act.err"
act_rc=$?
check '[ $act_rc -eq 2 ] && grep -q -- "--act takes f32 or int8" "$T/act.err"' "--act with a bad value: exit 2"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 --act int8 >"$T/g7" 2>/dev/null
check 'grep -q "^The quick brown" "$T/g7"' "--act int8 generates"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 --gpu-weights bf16 >"$T/g6" 2>/dev/null
check 'cmp -s "$T/g1" "$T/g6"' "--gpu-weights changes nothing on the CPU"
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 --device cuda >"$T/g5" 2>"$T/cuda.err"
cuda_rc=$?
if [ $cuda_rc -eq 0 ]; then # a GPU: it runs and continues the prompt
  check 'grep -q "^The quick brown" "$T/g5" && [ "$(wc -c <"$T/g5")" -gt 17 ]' "--device cuda generates on the GPU"
else # none (or no CUDA in this build): one line that says so
  check '[ $cuda_rc -eq 1 ] && [ "$(wc -l <"$T/cuda.err")" -eq 1 ] && grep -q "device cuda.*no CUDA" "$T/cuda.err"' \
    "--device cuda without a GPU: exit 1 and one clear line ($(cat "$T/cuda.err"))"
fi
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 --temperature 1.5 --top-k 50 --top-p 0.95 --seed 7 >"$T/s1" 2>/dev/null
"$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 --temperature 1.5 --top-k 50 --top-p 0.95 --seed 7 >"$T/s2" 2>/dev/null
check 'cmp -s "$T/s1" "$T/s2"' "sampling with a seed is reproducible"
differ=0
for s in 1 2 3 4; do
  "$I" generate "$T/q.h5" --prompt "The quick brown" -n 12 --temperature 1.5 --seed $s >"$T/s3" 2>/dev/null
  cmp -s "$T/s1" "$T/s3" || differ=1
done
check '[ $differ = 1 ]' "other seeds give other samples"
"$I" generate "$T/q.h5" --prompt "Hello" -n 0 >"$T/n0" 2>"$T/n0.err"
check '[ $? -eq 0 ] && grep -q "nothing to generate" "$T/n0.err"' "-n 0: a message, exit 0"
"$I" generate "$T/q.h5" --prompt "<|endoftext|>" -n 5 >"$T/eot" 2>"$T/eot.err"
check '[ $? -eq 0 ]' "an <|endoftext|>-only prompt generates ($(cat "$T/eot.err"))"
"$I" generate "$T/q.h5" --prompt "" -n 5 >/dev/null 2>"$T/empty.err"
check '[ $? -eq 0 ] && grep -q "empty" "$T/empty.err"' "an empty prompt starts from <|endoftext|>, with a message"
long=$(printf 'word %.0s' $(seq 1 60))
"$I" generate "$T/q.h5" --prompt "$long" -n 8 >"$T/long" 2>"$T/long.err"
check '[ $? -eq 0 ] && grep -q "keeps its last 24" "$T/long.err"' "a prompt longer than the context is cut, with a message"
"$I" generate "$T/q.h5" --prompt "x" -n 500 >/dev/null 2>"$T/big.err"
check '[ $? -eq 0 ] && grep -q "does not fit the context" "$T/big.err"' "-n beyond the context is limited, with a message"

# -- eval: the packed int4 model near the float one, JSON fields
"$I" eval "$C" --data "$T/tok.h5" --json >"$T/ef.json" 2>/dev/null
"$I" eval "$T/q.h5" --data "$T/tok.h5" --json >"$T/eq.json" 2>/dev/null
lf=$(grep -o '"loss": [0-9.]*' "$T/ef.json" | cut -d' ' -f2)
lq=$(grep -o '"loss": [0-9.]*' "$T/eq.json" | cut -d' ' -f2)
check '[ -n "$lf" ] && [ -n "$lq" ] && awk "BEGIN{d = $lq - $lf; exit !(d > -0.05 && d < 0.05)}"' "int4 loss ($lq) close to float ($lf)"
check 'grep -q "\"stride\": 32" "$T/eq.json" && grep -q "\"kind\": \"int4-g64\"" "$T/eq.json"' "eval JSON names the stride and the format"
# --max-tokens under one batch (32 windows of 32 tokens): the batch shrinks to the windows wanted
# while the loader still reads whole batches of its own size; the loss is the first window's
l1=$("$I" eval "$C" --data "$T/tok.h5" --max-tokens 32 --json 2>/dev/null | grep -o '"loss": [0-9.]*' | cut -d' ' -f2)
l1b=$("$I" eval "$C" --data "$T/tok.h5" --max-tokens 32 --batch 1 --json 2>/dev/null | grep -o '"loss": [0-9.]*' | cut -d' ' -f2)
check '[ -n "$l1" ] && [ "$l1" = "$l1b" ]' "eval --max-tokens 32 (one window) = the same window with --batch 1 ($l1 vs $l1b)"

# -- bench, logits, compare
"$I" bench "$T/q.h5" --json >"$T/b.json" 2>/dev/null
check 'grep -q "\"decode_tok_s\": [0-9]" "$T/b.json" && grep -q "\"model_memory_bytes\": [0-9]" "$T/b.json" && grep -q "\"bandwidth_share\"" "$T/b.json"' "bench JSON"
"$I" logits "$T/q.h5" --prompt "Hello world" >"$T/l.json" 2>/dev/null
check '[ "$(grep -o "\"logits\": \[.*\]" "$T/l.json" | tr "," "\n" | wc -l)" -eq 50257 ] && grep -q "\"tokens\": \[15496, 995\]" "$T/l.json"' "logits JSON: ids and 50257 logits"
"$I" compare "$C" "$T/q.h5" --data "$T/tok.h5" --names float,int4 --out "$T/cmp" >"$T/cmp.out" 2>/dev/null
check '[ -s "$T/cmp/results.md" ] && [ -s "$T/cmp/results.json" ] && grep -q "| int4 | int4-g64 |" "$T/cmp/results.md"' "compare writes its table and JSON"
"$I" compare "$C" "$T/q.h5" --data "$T/tok.h5" --names float,int4 --out "$T/cmp8" --act int8 >/dev/null 2>&1
check 'grep -q "| int4 | int4-g64 + int8 act. |" "$T/cmp8/results.md" && grep -q "| float | fp32 |" "$T/cmp8/results.md" && grep -q "\"act\":.*\"int8\"" "$T/cmp8/results.json"' \
  "compare --act int8: the quantized rows say so (the float row multiplies floats)"
if command -v gnuplot >/dev/null; then
  check 'grep -q "<svg" "$T/cmp/chart.svg"' "compare chart"
  rm -f "$T/cmp/chart.svg"
  check '"$I" chart "$T/cmp" 2>/dev/null && grep -q "<svg" "$T/cmp/chart.svg"' "chart draws compare's chart again from chart.dat"
fi
expect_error "a value out of range" "generate: '--temperature -1': not a value --temperature takes" \
  "$I" generate "$T/q.h5" --prompt a --temperature -1
expect_error "bench -n 1 (no decode step to time)" "bench: '-n 1': not a value -n takes" "$I" bench "$T/q.h5" -n 1
expect_error "an unknown option" "eval: unexpected or incomplete argument '--bogus'" "$I" eval "$T/q.h5" --bogus
expect_error "chart without chart.dat" "nowhere/chart.dat: cannot open" "$I" chart "$T/nowhere"
# a missing model or data file: named at once, before any model runs
expect_error "compare with a missing model" "nope.h5: cannot open" "$I" compare "$C" "$T/nope.h5" --data "$T/tok.h5" --out "$T/cmpx"
expect_error "compare with a missing data file" "nodata.h5: cannot open" "$I" compare "$C" --data "$T/nodata.h5" --out "$T/cmpx"

# -- GGUF export from the command line (the vocabulary found beside the program)
"$B/gpt2q-export" "$C" --gguf --format q8_0 --layers all -o "$T/m.gguf" >/dev/null 2>"$T/gguf.err"
check '[ "$(head -c 4 "$T/m.gguf")" = GGUF ]' "gpt2q-export --gguf writes a GGUF file ($(cat "$T/gguf.err"))"
expect_error "GGUF with int4 g64" "Q4_0" "$B/gpt2q-export" "$C" --gguf --format int4 --layers all -o "$T/bad.gguf"
check '[ ! -e "$T/bad.gguf" ]' "a refused GGUF export leaves no file"

# -- transformers' folder and llm.c's file (gpt2q-export --hf / --llmc): the runner reads them back
# to the same loss; a quantized export's weights go out dequantized, as the runner uses them
"$B/gpt2q-export" "$C" --hf -o "$T/hf" >/dev/null
"$B/gpt2q-export" "$C" --llmc -o "$T/m.bin" >/dev/null
"$B/gpt2q-export" "$T/q.h5" --hf -o "$T/hfq" >/dev/null
"$B/gpt2q-export" "$C" --hf --dtype bf16 -o "$T/hfb" >/dev/null
for f in "$C" "$T/hf" "$T/m.bin" "$T/q.h5" "$T/hfq" "$T/hfb"; do
  "$I" eval "$f" --data "$T/tok.h5" --json 2>/dev/null | grep -o '"loss": [0-9.]*' | cut -d' ' -f2 >>"$T/hf.losses"
done
read -r l_c l_hf l_bin l_q l_hfq l_hfb < <(tr '\n' ' ' <"$T/hf.losses")
check '[ -n "$l_c" ] && [ "$l_hf" = "$l_c" ] && [ "$l_bin" = "$l_c" ]' \
  "the --hf folder and the --llmc file evaluate to the checkpoint's loss ($l_c / $l_hf / $l_bin)"
check 'awk -v a="$l_q" -v b="$l_hfq" "BEGIN { exit !(a != \"\" && b - a < 1e-4 && a - b < 1e-4) }"' \
  "the int4 export's --hf folder (dequantized) evaluates to the packed export's loss ($l_q / $l_hfq)"
check 'awk -v a="$l_c" -v b="$l_hfb" "BEGIN { exit !(b != \"\" && b != a && b - a < 0.05 && a - b < 0.05) }"' \
  "the bf16 folder: close to the float loss, not equal ($l_c / $l_hfb)"
check 'cmp -s "$T/hf/vocab.json" "$FX/../../../data/gpt2/encoder.json" && cmp -s "$T/hf/merges.txt" "$FX/../../../data/gpt2/vocab.bpe"' \
  "--hf writes GPT-2's tokenizer files beside the model"
"$B/gpt2q-train" --data "$T/tok.h5" --init "$T/hf" --out "$T/fromhf" --steps 1 --batch 2 --seq 16 --eval-every 0 \
  --final-eval 0 --sample-len 0 >/dev/null 2>&1
check '[ -f "$T/fromhf/ckpt-00000001.h5" ]' "gpt2q-train --init takes the --hf folder"
# PTQ straight from the HF folder (or llm.c's file): the same export as from the checkpoint, dataset for
# dataset (h5diff: only the root attribute naming the source differs); GPTQ too; -lsq has no scales there
"$B/gpt2q-export" "$T/hf" --format int4 --layers all -o "$T/q_hf.h5" >/dev/null
"$B/gpt2q-export" "$T/m.bin" --format int4 --layers all -o "$T/q_bin.h5" >/dev/null
for f in q_hf q_bin; do
  diffs=$(h5diff -v "$T/q.h5" "$T/$f.h5" | awk '/^attribute:|^dataset:/ { o = $0 } /^[1-9][0-9]* differences? found/ { print o }')
  check '[ "$(h5diff -v "$T/q.h5" "$T/$f.h5" | grep -c "^dataset:")" -gt 20 ] && [ "$diffs" = "attribute: <source of </>> and <source of </>>" ]' \
    "PTQ from $f's source: every dataset as the checkpoint's export ($diffs)"
done
"$B/gpt2q-export" "$T/hf" --format int3-gptq --layers all --calib "$T/tok.h5" --calib-tokens 2048 -o "$T/gptq_hf.h5" --json \
  >"$T/gptq_hf.json" 2>/dev/null
check 'grep -q "\"scale_search\": \"gptq\"" "$T/gptq_hf.json"' "GPTQ from the HF folder"
"$B/gpt2q-export" "$T/hf" --gguf --format q8_0 --layers all -o "$T/hf.gguf" >/dev/null 2>&1
"$B/gpt2q-export" "$T/m.bin" --gguf --format q8_0 --layers all -o "$T/bin.gguf" >/dev/null 2>&1
check '[ -s "$T/m.gguf" ] && cmp -s "$T/hf.gguf" "$T/m.gguf" && cmp -s "$T/bin.gguf" "$T/m.gguf"' \
  "GGUF from the HF folder and from llm.c's file: the checkpoint's GGUF, byte for byte"
expect_error "-lsq from an HF folder" "no learned scales" "$B/gpt2q-export" "$T/hf" --format int4-g32-lsq -o "$T/bad.h5"
mkdir -p "$T/nomodel"
expect_error "a folder without a model" "nomodel: a folder with neither model.safetensors .* nor a ckpt-<step>.h5" "$I" eval "$T/nomodel" --data "$T/tok.h5"
expect_error "--hf with --format" "quantize with --format first" "$B/gpt2q-export" "$C" --hf --format int4 -o "$T/bad"
expect_error "--hf to a .safetensors name" "give -o a folder" "$B/gpt2q-export" "$C" --hf -o "$T/bad.safetensors"
expect_error "--dtype f8" "f32, f16 or bf16" "$B/gpt2q-export" "$C" --hf --dtype f8 -o "$T/bad"
expect_error "--llmc --dtype f16" "llm.c's fp32" "$B/gpt2q-export" "$C" --llmc --dtype f16 -o "$T/bad.bin"
expect_error "--hf from a missing file" "nope.h5: cannot open" "$B/gpt2q-export" "$T/nope.h5" --hf -o "$T/bad"
check '[ ! -e "$T/bad" ] && [ ! -e "$T/bad.bin" ] && [ ! -e "$T/bad.safetensors" ] && [ ! -e "$T/bad.h5" ]' \
  "refused --hf / --llmc / -lsq exports leave nothing"

# -- bad input
printf 'not a model' >"$T/junk.bin"
expect_error "not a model" "junk.bin" "$I" eval "$T/junk.bin" --data "$T/tok.h5"
expect_error "missing model" "missing.h5" "$I" generate "$T/missing.h5" --prompt hi
expect_error "token file as a model" "tok.h5" "$I" bench "$T/tok.h5"
"$I" eval "$T/q.h5" >/dev/null 2>&1
check '[ $? -eq 2 ]' "eval without --data: usage, exit 2"
expect_error "unknown command" "unknown command" "$I" frobnicate "$T/q.h5"

# -- answer: greedy answers to a JSON Lines file's prompts. Each answer is generate's continuation
# of "<|endoftext|>" + the prompt (generate reads the literal as the token), stopped at
# <|endoftext|> or -n; the exact-match rate counts the references equal to the answers with white
# space at either end ignored (half the references below are the answers themselves, padded)
printf '{"q": "The quick brown", "a": "x"}\n\n{"q": "In the beginning", "a": "y"}\n{"q": "And God said", "a": "z"}\n{"q": "Hello", "a": "w"}\n' \
  >"$T/qa.jsonl"
"$I" answer "$T/q.h5" --data "$T/qa.jsonl" --prompt-key q -n 6 --out "$T/ans.jsonl" >"$T/ans.out" 2>"$T/ans.err"
check '[ "$(wc -l <"$T/ans.jsonl")" -eq 4 ] && grep -q "4 prompts of .* answered" "$T/ans.out"' "answer: one JSON line a prompt (the blank line skipped)"
ok=1
for k in 1 3 4 5; do
  q=$(sed -n "${k}p" "$T/qa.jsonl" | perl -MJSON::PP -ne 'print decode_json($_)->{q}')
  want=$("$I" generate "$T/q.h5" --prompt "<|endoftext|>$q" -n 6 2>/dev/null | perl -0pe 's/\n\z//' | perl -0pe 's/^\Q<|endoftext|>'"$q"'\E//')
  got=$(grep "\"line\":$k," "$T/ans.jsonl" | perl -MJSON::PP -ne 'print decode_json($_)->{output}')
  np=$(grep "\"line\":$k," "$T/ans.jsonl" | perl -MJSON::PP -ne 'print decode_json($_)->{prompt_tokens}')
  ids=$(printf '%s' "$q" | "$B/gpt2q-data" encode | wc -w)
  [ -n "$got" ] && [ "$got" = "$want" ] && [ "$np" = $((ids + 1)) ] ||
    { ok=0; echo "line $k: answer '$got', generate '$want'; $np prompt tokens for $ids ids"; }
done
check '[ $ok -eq 1 ]' "answer = generate's greedy continuation of <|endoftext|> + the prompt's ids, line by line"
perl -MJSON::PP -e 'open(my $a, "<", "'"$T"'/ans.jsonl"); my @o = map { decode_json($_)->{output} } <$a>;
  open(my $q, "<", "'"$T"'/qa.jsonl"); my @q = grep { /\S/ } <$q>; my $js = JSON::PP->new->utf8->canonical;
  for my $i (0 .. $#q) { my $l = decode_json($q[$i]); $l->{a} = $i % 2 ? "nope" : "  $o[$i]\n"; print $js->encode($l), "\n" }' \
  >"$T/qa_ref.jsonl"
"$I" answer "$T/q.h5" --data "$T/qa_ref.jsonl" --prompt-key q --ref-key a -n 6 --json --out "$T/ansr.jsonl" >"$T/ansr.json" 2>/dev/null
check 'grep -q "\"matched\": 2, \"exact_match\": 0.500000" "$T/ansr.json" && [ "$(grep -c "\"match\":true" "$T/ansr.jsonl")" -eq 2 ]' \
  "answer --ref-key: the exact-match rate (2 of 4 references are the answers, padded with white space)"
# compare --answers: each model's exact-match rate in the table and JSON, the answer command's own
# (references: int4's answers at the default length for lines 1 and 3)
"$I" answer "$T/q.h5" --data "$T/qa.jsonl" --prompt-key q --out "$T/ans16.jsonl" >/dev/null 2>&1
perl -MJSON::PP -e 'open(my $a, "<", "'"$T"'/ans16.jsonl"); my @o = map { decode_json($_)->{output} } <$a>;
  open(my $q, "<", "'"$T"'/qa.jsonl"); my @q = grep { /\S/ } <$q>; my $js = JSON::PP->new->utf8->canonical;
  for my $i (0 .. $#q) { my $l = decode_json($q[$i]); $l->{a} = $i % 2 ? "nope" : $o[$i]; print $js->encode($l), "\n" }' \
  >"$T/qa_ref16.jsonl"
"$I" answer "$C" --data "$T/qa_ref16.jsonl" --prompt-key q --ref-key a --json >"$T/ansc.json" 2>/dev/null
"$I" compare "$C" "$T/q.h5" --data "$T/tok.h5" --names float,int4 --out "$T/cmpa" --max-tokens 2048 \
  --answers "$T/qa_ref16.jsonl" --prompt-key q --ref-key a >"$T/cmpa.out" 2>/dev/null
mf=$(grep -o '"matched": [0-9]*' "$T/ansc.json" | cut -d' ' -f2)
check 'grep -q "| exact match |" "$T/cmpa/results.md" && grep -q "| int4 | int4-g64 | .* | 50.00 % (2 of 4) |" "$T/cmpa/results.md" &&
  grep -q "| float | fp32 | .* % ($mf of 4) |" "$T/cmpa/results.md" && [ "$(grep -c "\"exact_match\"" "$T/cmpa/results.json")" -eq 2 ]' \
  "compare --answers: each model's exact match in the table (int4 2 of 4, float $mf of 4, as answer says)"
expect_error "compare --answers without --ref-key" "usage" "$I" compare "$C" --data "$T/tok.h5" --answers "$T/qa.jsonl" --prompt-key q
expect_error "answer: a line without the prompt field" 'qa.jsonl:1: no string field "p"' "$I" answer "$T/q.h5" --data "$T/qa.jsonl" --prompt-key p
expect_error "answer: a line without the reference field" 'qa.jsonl:1: no string field "r"' "$I" answer "$T/q.h5" --data "$T/qa.jsonl" --prompt-key q --ref-key r
expect_error "answer: -n past the context" "does not fit" "$I" answer "$T/q.h5" --data "$T/qa.jsonl" --prompt-key q -n 5000
expect_error "answer: a missing file" "nope.jsonl" "$I" answer "$T/q.h5" --data "$T/nope.jsonl" --prompt-key q
printf '{"q": "a"} x\n' >"$T/bad.jsonl"
expect_error "answer: a line that is not one JSON value" "bad.jsonl:1: not a JSON value" "$I" answer "$T/q.h5" --data "$T/bad.jsonl" --prompt-key q

echo "test_infer_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
