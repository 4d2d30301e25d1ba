#!/usr/bin/env python3
"""A `gpt2q-export --hf` folder in transformers, beside `gpt2q-infer` on the same tokens: the
folder is loaded as any user would load it (GPT2LMHeadModel / AutoTokenizer.from_pretrained), its
validation loss is taken over the windows `gpt2q-infer eval` scores (non-overlapping windows of
--seq tokens, stride --seq, over the split's tokens in order), and the greedy continuation of a
prompt is printed, so that the two runners' losses and texts can be compared.

  build/gpt2q-data export tokens.h5 --out /tmp/kjv            # llm.c shards: /tmp/kjv_val.bin
  build/gpt2q-export out/tiny/ckpt-00000560.h5 --hf -o /tmp/tiny-hf
  /opt/gq-venv/bin/python bench/hf_eval.py /tmp/tiny-hf /tmp/kjv_val.bin --seq 128
  build/gpt2q-infer eval out/tiny/ckpt-00000560.h5 --data tokens.h5 --json

(Debian's python3-torch with transformers 4.38.2 in a venv, as tests/fixtures/make_gpt2_fixture.py.)
Prints one JSON line.
"""
import argparse
import json
import time

import numpy as np
import torch
from transformers import AutoTokenizer, GPT2LMHeadModel


def shard_tokens(path):
    """The tokens of an llm.c shard (256 int32 header: magic 20240520, version 1, count; uint16)."""
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype="<i4")
        if header[0] != 20240520 or header[1] != 1:
            raise SystemExit("%s: not an llm.c token shard (magic %d, version %d)" % (path, header[0], header[1]))
        tokens = np.frombuffer(f.read(), dtype="<u2")
    if len(tokens) != header[2]:
        raise SystemExit("%s: %d tokens, the header says %d" % (path, len(tokens), header[2]))
    return tokens.astype(np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("shard")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", default="In the beginning")
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = GPT2LMHeadModel.from_pretrained(a.folder, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(a.folder)
    tokens = shard_tokens(a.shard)
    T = a.seq
    windows = (len(tokens) - 1) // T
    total, scored, t0 = 0.0, 0, time.time()
    with torch.no_grad():
        for w0 in range(0, windows, a.batch):
            w1 = min(windows, w0 + a.batch)
            x = torch.tensor(np.stack([tokens[w * T:w * T + T] for w in range(w0, w1)]))
            y = torch.tensor(np.stack([tokens[w * T + 1:w * T + T + 1] for w in range(w0, w1)]))
            logits = model(x).logits.float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
            total += float(loss)
            scored += y.numel()
        secs = time.time() - t0
        ids = tok(a.prompt, return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=a.n, do_sample=False, pad_token_id=tok.eos_token_id)
    print(json.dumps({"folder": a.folder, "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                      "loss": round(total / scored, 6), "tokens": scored, "seq": T, "seconds": round(secs, 3),
                      "tokens_per_s": round(scored / secs, 1), "prompt": a.prompt,
                      "prompt_ids": ids[0].tolist(), "greedy": tok.decode(out[0][ids.shape[1]:]),
                      "transformers": __import__("transformers").__version__, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
