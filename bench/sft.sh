#!/usr/bin/env bash
# Prompt-masked fine-tuning end to end, float vs PTQ vs QAT on a task score: a synthetic question /
# answer corpus (144 made-up names, each with one of 12 tribes; questions in 4 wordings; the answer is the
# tribe), a pretrained model fine-tuned on the answers only (the prompts masked out of the loss),
# then its int4 / int3 PTQ exports (gpt2q-train --export), and from it an int3 QAT fine-tune beside
# a float one of the same steps (and its int3 PTQ), each scored
# by loss on the held-out answers and by exact match of greedy answers to held-out questions
# (gpt2q-infer compare --answers).
# usage: bench/sft.sh INIT_MODEL [OUT_DIR] [STEPS]   (INIT_MODEL: e.g. the demo's out/tiny)
set -euo pipefail
init="$1"; out="${2:-out/sft}"; steps="${3:-300}"
B=$(cd "$(dirname "$0")/.." && pwd)/build
mkdir -p "$out"
perl -e 'srand(7);
  my @s = qw(ab el iz or un am ek ith ob ur an esh); my @names;
  for my $x (@s) { for my $y (@s) { push @names, ucfirst($x . $y) } }
  my @tribes = qw(Reuben Simeon Levi Judah Dan Naphtali Gad Asher Issachar Zebulun Joseph Benjamin);
  my %t; $t{$_} = $tribes[int(rand @tribes)] for @names;
  my @q = ("Of which tribe was %s?", "Name the tribe of %s.", "%s belonged to the tribe of which son of Jacob?",
    "Tell me the tribe of %s.");
  open(my $tr, ">", "'"$out"'/train.jsonl"); open(my $te, ">", "'"$out"'/test.jsonl");
  for my $i (0 .. 3399) { my $n = $names[int(rand @names)]; my $k = int(rand @q);
    my $line = sprintf("{\"prompt\": \"Question: $q[$k]\\nAnswer:\", \"response\": \" %s\"}\n", $n, $t{$n});
    print { $i < 3000 ? $tr : $te } $line }'
"$B/gpt2q-data" prepare --input "$out/train.jsonl" --jsonl response --jsonl-prompt prompt --out "$out/train.h5" \
  --val-fraction 0 | tail -1
"$B/gpt2q-data" prepare --input "$out/test.jsonl" --jsonl response --jsonl-prompt prompt --out "$out/test.h5" \
  --val-fraction 0.99 --val-block 64 | tail -1
common=(--data "$out/train.h5" --sample-len 0 --eval-every 0 --batch 8 --seq 128 --warmup 20)
t0=$(date +%s)
# the float fine-tune, its int4 / int3 PTQ exports (every product but the LM head) scored at the end
"$B/gpt2q-train" "${common[@]}" --init "$init" --out "$out/float" --steps "$steps" --lr 3e-4 \
  --export "int4-g64 int3-g64" --export-layers all-but-lm_head | tail -5
# from it, 100 more steps two ways: QAT int3 on the same products, and float (+ its int3 PTQ): the
# fair comparison for QAT (the same steps, data and learning rate)
"$B/gpt2q-train" "${common[@]}" --init "$out/float" --out "$out/qat-int3" --steps 100 --lr 1e-4 --qat int3-g64 \
  --qat-layers all-but-lm_head | tail -2
"$B/gpt2q-train" "${common[@]}" --init "$out/float" --out "$out/ft-float" --steps 100 --lr 1e-4 \
  --export int3-g64 --export-layers all-but-lm_head | tail -3
echo "training: $(( $(date +%s) - t0 )) s"
# each run folder: its checkpoint and its model-*.h5, on the held-out questions
"$B/gpt2q-infer" compare "$out/float" "$out/ft-float" "$out/qat-int3" --data "$out/test.h5" --answers "$out/test.jsonl" \
  --prompt-key prompt --ref-key response --out "$out/compare"
