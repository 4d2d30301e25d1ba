#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python from PyPI, built from source) on our GGUF exports, for
bench/infer.sh. For each GGUF: load time, prefill tok/s (one pass over N tokens), decode tok/s
and the time to generate 50 tokens from "Once upon a time" (greedy, EOS ignored), with the
same thread count as gpt2q-infer; optionally the logits after a prompt, to compare with
`gpt2q-infer logits` on the same weights. Prints one JSON object per model.

usage: llamacpp.py [--threads 2] [--prefill 128] [--logits PROMPT] MODEL.gguf...
"""
import argparse
import json
import os
import resource
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=128)
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--logits", default=None, help="print the logits after this prompt instead of timing")
    a = ap.parse_args()
    import llama_cpp  # noqa: E402  (imported late: its import prints nothing but takes time)

    for path in a.models:
        t0 = time.perf_counter()
        llm = llama_cpp.Llama(model_path=path, n_ctx=max(a.prefill, 64) + 8, n_batch=512, n_threads=a.threads,
                              n_threads_batch=a.threads, logits_all=a.logits is not None, verbose=False)
        load_s = time.perf_counter() - t0
        if a.logits is not None:
            toks = llm.tokenize(a.logits.encode(), add_bos=False, special=True)
            llm.reset()
            llm.eval(toks)
            logits = [float(v) for v in llm.scores[len(toks) - 1][: llm.n_vocab()]]
            print(json.dumps({"model": path, "tokens": toks, "logits": logits}))
            continue
        toks = llm.tokenize(a.prompt.encode(), add_bos=False)
        # 50 tokens, greedy, EOS ignored (as gpt2q-infer bench): first run (what a user pays), then steady state
        runs = []
        for _ in range(2):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(toks)
            t_prefill = time.perf_counter() - t0
            out = []
            t1 = time.perf_counter()
            for k in range(a.n):
                tok = llm.sample(temp=0.0)
                out.append(tok)
                if k + 1 < a.n:
                    llm.eval([tok])
            t_decode = time.perf_counter() - t1
            runs.append((t_prefill, t_decode))
        first = runs[0][0] + runs[0][1]
        decode_tps = (a.n - 1) / runs[1][1]
        # prefill throughput: one pass over `prefill` tokens (best of 3)
        ids = (toks * (a.prefill // len(toks) + 1))[: a.prefill]
        best = 1e30
        for _ in range(3):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(ids)
            best = min(best, time.perf_counter() - t0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps({"model": os.path.basename(path), "engine": "llama.cpp " + llama_cpp.__version__,
                          "threads": a.threads, "load_s": round(load_s, 4), "generate_s": round(first, 4),
                          "prefill_tok_s": round(a.prefill / best, 1), "decode_tok_s": round(decode_tps, 1),
                          "peak_rss_mb": round(rss, 1)}))
        sys.stdout.flush()
        del llm


if __name__ == "__main__":
    main()
