#!/usr/bin/env python3
"""transformers (PyTorch, CPU) on a `gpt2q-export --hf` folder of the same checkpoint that
gpt2q-infer runs, for bench/infer.sh: load time, prefill tok/s (one pass over N tokens, best of
3), decode tok/s and the time to generate 50 tokens from "Once upon a time" (greedy, EOS ignored,
the KV cache as transformers keeps it), with the same thread count as gpt2q-infer; or the logits
after a prompt, to compare with `gpt2q-infer logits` on the same weights. One JSON object per
folder, with the fields of bench/llamacpp.py.

usage: hf_cpu.py [--threads 2] [--prefill 128] [--dtype float32|bfloat16] [--logits PROMPT] FOLDER...
"""
import argparse
import json
import os
import resource
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=128)
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--logits", default=None, help="print the logits after this prompt instead of timing")
    a = ap.parse_args()
    import torch  # noqa: E402  (imported late: the import alone takes seconds)
    import transformers  # noqa: E402

    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    for path in a.folders:
        t0 = time.perf_counter()
        model = transformers.GPT2LMHeadModel.from_pretrained(path, torch_dtype=dtype).eval()
        tok = transformers.AutoTokenizer.from_pretrained(path)
        load_s = time.perf_counter() - t0
        with torch.inference_mode():
            if a.logits is not None:
                ids = tok(a.logits).input_ids
                logits = model(torch.tensor([ids])).logits[0, -1].float().tolist()
                print(json.dumps({"model": path, "tokens": ids, "logits": logits}))
                continue
            prompt = torch.tensor([tok(a.prompt).input_ids])
            # 50 tokens, greedy, EOS ignored (as gpt2q-infer bench): first run, then steady state
            runs = []
            for _ in range(2):
                t0 = time.perf_counter()
                out = model(prompt, use_cache=True)
                t_prefill = time.perf_counter() - t0
                past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                t1 = time.perf_counter()
                for k in range(a.n - 1):
                    out = model(nxt, past_key_values=past, use_cache=True)
                    past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                t_decode = time.perf_counter() - t1
                runs.append((t_prefill, t_decode))
            first = runs[0][0] + runs[0][1]
            decode_tps = (a.n - 1) / runs[1][1]
            ids = (prompt[0].tolist() * (a.prefill // prompt.shape[1] + 1))[: a.prefill]
            best = 1e30
            for _ in range(3):
                t0 = time.perf_counter()
                model(torch.tensor([ids]), use_cache=True)
                best = min(best, time.perf_counter() - t0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps({"model": os.path.basename(os.path.normpath(path)),
                          "engine": "transformers %s %s" % (transformers.__version__, a.dtype),
                          "threads": a.threads, "load_s": round(load_s, 4), "generate_s": round(first, 4),
                          "prefill_tok_s": round(a.prefill / best, 1), "decode_tok_s": round(decode_tps, 1),
                          "peak_rss_mb": round(rss, 1)}))
        sys.stdout.flush()
        del model


if __name__ == "__main__":
    main()
