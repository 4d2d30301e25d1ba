#!/usr/bin/env bash
# gpt2q-data end to end: encode/decode round trips through the real program, prepare + info
# (text, JSON Lines, llm.c shards),
# and every bad input giving one clear error line, a non-zero exit and no output file.
# usage: test_cli.sh BUILD_DIR
set -u
BIN="$1/gpt2q-data"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"

# -- encode / decode
check '[ "$(printf "Hello world" | "$BIN" encode)" = "15496 995" ]' "encode Hello world"
check '[ "$(printf "Hello world" | "$BIN" encode --json)" = "[15496,995]" ]' "encode --json"
check '[ "$(printf "" | "$BIN" encode)" = "" ]' "encode empty"
check '[ "$(echo "[15496, 995]" | "$BIN" decode)" = "Hello world" ]' "decode JSON array"
printf 'a\tb  c\n\n\xff\xfe broken \xe3\x80 utf8 \xf0\x9f\xa4\x97 <|endoftext|> it'"'"'s\r\n' >"$T/odd.bin"
"$BIN" encode <"$T/odd.bin" >"$T/odd.ids" && "$BIN" decode <"$T/odd.ids" >"$T/odd.back"
check 'cmp -s "$T/odd.bin" "$T/odd.back"' "odd bytes round trip"
check '! grep -qw 50256 "$T/odd.ids"' "endoftext is plain text by default"
check '[ "$(printf "a<|endoftext|>b" | "$BIN" encode --allow-special)" = "64 50256 65" ]' "--allow-special"
head -c 200000 /dev/urandom >"$T/rand.bin"
"$BIN" encode <"$T/rand.bin" | "$BIN" decode >"$T/rand.back"
check 'cmp -s "$T/rand.bin" "$T/rand.back"' "random bytes round trip"
expect_error "decode out of range" "50257" sh -c "echo '1 2 50257' | '$BIN' decode"
expect_error "decode garbage" "expected a token id" sh -c "echo '1 x 3' | '$BIN' decode"
expect_error "decode unclosed" "closing" sh -c "echo '[1, 2' | '$BIN' decode"

# -- prepare / info
printf 'In the beginning God created the heaven and the earth.\n' >"$T/a.txt"
printf 'And the earth was without form, and void.\n' >"$T/b.txt"
perl -e 'print pack("l<3", 20240520, 1, 4), "\0" x 1012, pack("S<4", 50256, 40, 41, 42)' >"$T/s.bin"
"$BIN" prepare --input "$T/a.txt" "$T/b.txt" "$T/s.bin" --out "$T/tok.h5" --val-fraction 0.2 --val-block 4 --json >"$T/prep.json" 2>"$T/prep.err"
check '[ -f "$T/tok.h5" ]' "prepare wrote the file"
check '! ls "$T"/tok.h5.tmp.* >/dev/null 2>&1' "no temp file left"
n_a=$(printf 'In the beginning God created the heaven and the earth.\n' | "$BIN" encode | wc -w)
check 'grep -q "\"tokens\":[[:space:]]*$((n_a + 1))" "$T/prep.json"' "source token count = ids + EOT"
"$BIN" info "$T/tok.h5" --json --check >"$T/info.json"
check 'grep -q "\"vocab_size\":[[:space:]]*50257" "$T/info.json"' "info vocab"
check 'grep -q "\"ids_checked\":[[:space:]]*true" "$T/info.json"' "info --check"
tr=$(grep -o '"train_tokens":[[:space:]]*[0-9]*' "$T/info.json" | grep -o '[0-9]*$')
va=$(grep -o '"val_tokens":[[:space:]]*[0-9]*' "$T/info.json" | grep -o '[0-9]*$')
total=$(grep -o '"tokens":[[:space:]]*[0-9]*' "$T/prep.json" | head -1 | grep -o '[0-9]*$')
check '[ $((tr + va)) -eq "$total" ] && [ "$va" -gt 0 ]' "train + val = tokens"
check 'h5dump -H "$T/tok.h5" | grep -q "DATASET \"train\""' "h5dump reads it"
check '"$BIN" info "$T/s.bin" | grep -q "4 tokens"' "info on a shard"
sha_before=$(sha256sum "$T/tok.h5")
# export: the splits as llm.c shards, the same tokens (read back by prepare, one shard per split)
"$BIN" export "$T/tok.h5" --out "$T/ex" >"$T/export.out"
check '"$BIN" info "$T/ex_train.bin" | grep -q " $tr tokens" && "$BIN" info "$T/ex_val.bin" | grep -q " $va tokens"' \
  "export writes train ($tr) and val ($va) shards"
"$BIN" prepare --input "$T/ex_train.bin" --out "$T/re.h5" --val-fraction 0 >/dev/null 2>&1
check 'diff <(h5dump -d /train -y -w 0 "$T/tok.h5" | grep -v "^HDF5\|tok.h5") <(h5dump -d /train -y -w 0 "$T/re.h5" | grep -v "^HDF5\|re.h5")' \
  "the exported train shard holds the train split's tokens"
expect_error "export without --out" "needs --out" "$BIN" export "$T/tok.h5"
expect_error "export of a missing file" "nope.h5" "$BIN" export "$T/nope.h5" --out "$T/ex2"
check '[ ! -e "$T/ex2_train.bin" ]' "no shard after a failed export"
expect_error "export to a missing dir" "/no/such/dir" "$BIN" export "$T/tok.h5" --out /no/such/dir/x

# -- JSON Lines (--jsonl KEY): each line's field is one document; the tokenizer test vectors
# ({"text", "ids"}, with a blank line and CRLF endings among them) give EOT + ids per line
VEC="$(dirname "$0")/fixtures/gpt2_bpe_vectors.jsonl"
awk '{ printf "%s%s\n", $0, (NR % 7 ? "" : "\r") } NR == 100 { print "" ; print "   " }' "$VEC" >"$T/v.jsonl"
"$BIN" prepare --input "$T/v.jsonl" --jsonl text --out "$T/v.h5" --val-fraction 0 >/dev/null 2>&1
h5dump -d /train -y -w 0 -o "$T/v.ids" "$T/v.h5" >/dev/null 2>&1
perl -MJSON::PP -ne 'next unless /\S/; print join("\n", 50256, @{decode_json($_)->{ids}}), "\n"' "$VEC" >"$T/v.want"
check '[ -s "$T/v.want" ] && cmp -s <(tr -c "0-9" "\n" <"$T/v.ids" | grep .) "$T/v.want"' \
  "--jsonl: every line's text tokenized as a document ($(wc -l <"$T/v.want") ids expected)"
printf '{"text": "a"}\n{"title": "b"}\n' >"$T/nokey.jsonl"
expect_error "--jsonl: a line without the field" 'nokey.jsonl:2: no string field "text"' \
  "$BIN" prepare --input "$T/nokey.jsonl" --jsonl text --out "$T/j.h5"
printf '{"text": "a"}\n\n{"text": "b"\n' >"$T/bad.jsonl"
expect_error "--jsonl: a line that is not JSON" "bad.jsonl:3: not a JSON value" \
  "$BIN" prepare --input "$T/bad.jsonl" --jsonl text --out "$T/j.h5"
printf '{"text": "a"} {"text": "b"}\n' >"$T/two.jsonl"
expect_error "--jsonl: two values on a line" "two.jsonl:1: not a JSON value" \
  "$BIN" prepare --input "$T/two.jsonl" --jsonl text --out "$T/j.h5"
printf '\xef\xbb\xbf{"text": "Hello world"}  \n' >"$T/bom.jsonl"
"$BIN" prepare --input "$T/bom.jsonl" --jsonl text --out "$T/bom.h5" --val-fraction 0 >/dev/null 2>&1
h5dump -d /train -y -w 0 -o "$T/bom.ids" "$T/bom.h5" >/dev/null 2>&1
check '[ "$(tr -c "0-9" " " <"$T/bom.ids" | xargs)" = "50256 15496 995" ]' \
  "--jsonl: a UTF-8 byte-order mark before the first line is skipped"
printf '{"text": 3}\n' >"$T/num.jsonl"
expect_error "--jsonl: a field that is not a string" 'num.jsonl:1: no string field' \
  "$BIN" prepare --input "$T/num.jsonl" --jsonl text --out "$T/j.h5"
check '[ ! -e "$T/j.h5" ]' "no token file after a bad JSON line"

# -- --jsonl-prompt PKEY: consecutive vectors as prompt and completion; the reference is the
# vectors' own ids: EOT + prompt ids + completion ids per line, mask 1, then 0 for each prompt id,
# then 1 for each completion id
perl -MJSON::PP -e 'my @v = map { decode_json($_) } grep { /\S/ } <>; my $js = JSON::PP->new->utf8->canonical;
  open(my $j, ">", "'"$T"'/pc.jsonl"); open(my $i, ">", "'"$T"'/pc.want"); open(my $m, ">", "'"$T"'/pc.mask");
  for (my $k = 0; $k + 1 < @v; $k += 2) { my ($p, $c) = @v[$k, $k + 1];
    print $j $js->encode({q => $p->{text}, a => $c->{text}}), "\n";
    print $i join("\n", 50256, @{$p->{ids}}, @{$c->{ids}}), "\n";
    print $m join("\n", 1, (0) x @{$p->{ids}}, (1) x @{$c->{ids}}), "\n"; }' "$VEC"
"$BIN" prepare --input "$T/pc.jsonl" --jsonl a --jsonl-prompt q --out "$T/pc.h5" --val-fraction 0 >"$T/pc.out" 2>&1
h5dump -d /train -y -w 0 -o "$T/pc.ids" "$T/pc.h5" >/dev/null 2>&1
h5dump -d /train_mask -y -w 0 -o "$T/pc.m" "$T/pc.h5" >/dev/null 2>&1
check '[ -s "$T/pc.want" ] && cmp -s <(tr -c "0-9" "\n" <"$T/pc.ids" | grep .) "$T/pc.want"' \
  "--jsonl-prompt: EOT + the prompt's ids + the completion's ids per line ($(wc -l <"$T/pc.want") ids)"
check 'cmp -s <(tr -c "0-9" "\n" <"$T/pc.m" | grep .) "$T/pc.mask"' \
  "--jsonl-prompt: the loss mask leaves exactly the prompts' ids out ($(grep -c 0 "$T/pc.mask") of them)"
kept=$(grep -c 1 "$T/pc.mask")
check 'grep -q "loss mask: $kept of $(wc -l <"$T/pc.want") train" "$T/pc.out" && "$BIN" info "$T/pc.h5" | grep -q "loss mask: $kept of"' \
  "prepare and info count the scored targets ($kept)"
"$BIN" prepare --input "$T/pc.jsonl" --jsonl a --jsonl-prompt q --out "$T/pcv.h5" --val-fraction 0.2 --val-block 64 >/dev/null 2>&1
"$BIN" info "$T/pcv.h5" --json >"$T/pcv.json"
vs=$(grep -o '"val_scored":[[:space:]]*[0-9]*' "$T/pcv.json" | grep -o '[0-9]*$')
ts=$(grep -o '"train_scored":[[:space:]]*[0-9]*' "$T/pcv.json" | grep -o '[0-9]*$')
check '[ -n "$vs" ] && [ "$vs" -gt 0 ] && [ $((vs + ts)) -eq "$kept" ]' "the mask is split with its tokens ($ts + $vs)"
"$BIN" export "$T/pc.h5" --out "$T/pcx" >/dev/null 2>"$T/pcx.err"
check 'grep -q "loss mask.*not in them" "$T/pcx.err"' "export to llm.c shards says the mask stays behind"
printf '{"q": "a", "a": "b"}\n{"a": "c"}\n' >"$T/noq.jsonl"
expect_error "--jsonl-prompt: a line without the prompt" 'noq.jsonl:2: no string field "q"' \
  "$BIN" prepare --input "$T/noq.jsonl" --jsonl a --jsonl-prompt q --out "$T/j.h5"
expect_error "--jsonl-prompt without --jsonl" "needs --jsonl" "$BIN" prepare --input "$T/noq.jsonl" --jsonl-prompt q --out "$T/j.h5"
expect_error "--jsonl-prompt = --jsonl" "same field" "$BIN" prepare --input "$T/noq.jsonl" --jsonl a --jsonl-prompt a --out "$T/j.h5"
check '[ ! -e "$T/j.h5" ]' "no token file after a bad prompt line"

expect_error "missing input" "nope.txt" "$BIN" prepare --input "$T/nope.txt" --out "$T/tok.h5"
head -c 1030 "$T/s.bin" >"$T/short.bin"
expect_error "truncated shard" "short.bin.*truncated" "$BIN" prepare --input "$T/short.bin" --out "$T/tok.h5"
perl -e 'print pack("l<3", 20240520, 1, 2), "\0" x 1012, pack("S<2", 40, 60000)' >"$T/big.bin"
expect_error "id >= vocab" "big.bin.*60000" "$BIN" prepare --input "$T/big.bin" --out "$T/tok.h5"
check '[ "$(sha256sum "$T/tok.h5")" = "$sha_before" ]' "failed prepares left the good file untouched"
expect_error "prepare to missing dir" "/no/such/dir" "$BIN" prepare --input "$T/a.txt" --out /no/such/dir/x.h5
expect_error "info on text" "not an HDF5" "$BIN" info "$T/a.txt"
expect_error "info missing" "nope.h5" "$BIN" info "$T/nope.h5"
expect_error "bad val fraction" "val-fraction" "$BIN" prepare --input "$T/a.txt" --out "$T/x.h5" --val-fraction 1.5
check '[ ! -e "$T/x.h5" ]' "no output after a usage error"

# -- a broken vocabulary directory
mkdir -p "$T/vocab"
printf '{"a": 0,' >"$T/vocab/encoder.json"
printf '#version: 0.2\n' >"$T/vocab/vocab.bpe"
expect_error "invalid JSON vocab" "encoder.json: invalid JSON" sh -c "echo hi | '$BIN' encode --vocab '$T/vocab'"
expect_error "missing vocab dir" "no encoder.json" sh -c "echo hi | '$BIN' encode --vocab '$T/none'"
expect_error "unknown command" "unknown command" "$BIN" frobnicate

echo "test_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
