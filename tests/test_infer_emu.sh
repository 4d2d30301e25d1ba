#!/usr/bin/env bash
# gpt2q-infer generate --device cuda end to end where there is no GPU: gpt2q-infer-emu is the
# runner built with the CUDA backend's own sources run on the CPU emulator (tests/cuda_emu.h).
# Issue 9's claims on a small model (2 layers, 2 heads): greedy text identical to the CPU
# runner's (float and int4); sampled text (temperature / top-k / top-p, a seed) identical to the
# CPU runner's, the device drawing from the sampler's Philox stream itself, also where the
# device hands a pick back to the host (more than 2048 candidates) and the host must take the
# same draw. (The emulator refuses graph capture, so the decode step runs op by op here; the
# captured CUDA graph that replays it on a GPU is compared by scripts/gpu-run.sh's same_text.)
# GQ_TEST_SMALL=1 (the sanitizer run, scripts/test.sh): one case of each path (device argmax,
# device sampling, picks handed to the host) instead of every model and option.
# usage: test_infer_emu.sh BUILD_DIR FIXTURE_DIR
set -u
. "$(dirname "$0")/lib.sh"
test_init "$@"

small_trained 20
# int4 in groups of 16: a model the CPU runner runs with float activations, as the GPU does (in
# groups of 32+ it takes int8 activations, whose logits differ by ~1e-3, enough to reorder two
# of an undertrained model's near-equal candidates and so change a sampled pick)
"$B/gpt2q-export" "$C" --format int4 --group 16 --layers all -o "$T/q.h5" >/dev/null
check '[ -f "$C" ] && [ -f "$T/q.h5" ]' "model trained and exported (int4-g16)"
E="$B/tests/gpt2q-infer-emu"
I="$B/gpt2q-infer"
gen() { # gen NAME MODEL [generate options...]: the CPU runner's text and the emulated GPU's
  local name=$1 model=$2
  shift 2
  "$I" generate "$model" --device cpu --prompt "The quick brown" -n 12 "$@" >"$T/$name.cpu" 2>"$T/$name.cpu.err"
  "$E" generate "$model" --device cuda --prompt "The quick brown" -n 12 "$@" >"$T/$name.gpu" 2>"$T/$name.gpu.err"
  check '[ -s "$T/$name.cpu" ] && cmp -s "$T/$name.cpu" "$T/$name.gpu"' \
    "$name: --device cuda (emulated) writes the CPU runner's text ($(tr '\n' ' ' <"$T/$name.cpu" | cut -c1-60) | $(tr '\n' ' ' <"$T/$name.gpu" | cut -c1-60))"
}
# the default --gpu-weights (auto) holds a quantized export's float matrices (here the position
# embedding) in fp16: greedy text is still the CPU runner's; sampled text is compared with the
# fp32 position embedding (--gpu-weights f32), as a draw that falls within 1e-4 of a candidates'
# boundary picks another token under logits that differ by fp16's rounding
full() { [ "${GQ_TEST_SMALL:-0}" != 1 ]; }
gen greedy_int4 "$T/q.h5"
if full; then
gen greedy_int4_f32 "$T/q.h5" --gpu-weights f32
gen greedy_fp32 "$C"
"$E" bench "$T/q.h5" --device cuda --prompt "The quick brown" -n 2 --json >"$T/auto.json" 2>/dev/null
"$E" bench "$T/q.h5" --device cuda --prompt "The quick brown" -n 2 --json --gpu-weights f32 >"$T/f32.json" 2>/dev/null
"$E" bench "$C" --device cuda --prompt "The quick brown" -n 2 --json >"$T/fauto.json" 2>/dev/null
wb() { grep -o '"weight_bytes": [0-9]*' "$1" | grep -o '[0-9]*$'; }
check 'grep -q "\"gpu_weights\": \"f16\"" "$T/auto.json" && grep -q "\"gpu_weights\": \"f32\"" "$T/fauto.json" &&
  [ "$(wb "$T/auto.json")" -lt "$(wb "$T/f32.json")" ]' \
  "--gpu-weights auto: fp16 for the export (weights $(wb "$T/auto.json") < $(wb "$T/f32.json") bytes), fp32 for the float model"
fi
gen sampled_int4 "$T/q.h5" --temperature 0.9 --top-k 40 --top-p 0.95 --seed 7 --gpu-weights f32
full && gen sampled_fp32 "$C" --temperature 1.2 --seed 3
check '! grep -q "handed them to the host" "$T/sampled_int4.gpu.err"' "top-k 40: every pick made on the device"
# top-p near 1 on an undertrained model: more than 2048 candidates, so the device hands every
# pick back and the host samples from the logits with the draw the device would have taken
gen handed_int4 "$T/q.h5" --temperature 1 --top-p 0.9999 --seed 11 --gpu-weights f32
check 'grep -q "12 of 12 picks had more than 2048 candidates" "$T/handed_int4.gpu.err"' \
  "top-p 0.9999: the picks go to the host, and it says so ($(tail -1 "$T/handed_int4.gpu.err"))"
if full; then
gen topk_int4 "$T/q.h5" --temperature 0.9 --top-k 40 --seed 7 --gpu-weights f32
# other seeds give other text on the device too (the draws are not all the same)
"$E" generate "$T/q.h5" --device cuda --prompt "The quick brown" -n 12 --temperature 0.9 --top-k 40 --top-p 0.95 \
  --seed 8 --gpu-weights f32 >"$T/seed8" 2>/dev/null
check '! cmp -s "$T/seed8" "$T/sampled_int4.gpu"' "another seed, another sample"
fi
echo "test_infer_emu: $pass passed, $fail failed"
[ $fail -eq 0 ]
