#!/usr/bin/env python3
"""tiktoken's GPT-2 encoder on the same text, single-threaded and with all cores, built from
the project's own data/gpt2 vocab files; prints one JSON line like bench_tokenizer.
usage: tiktoken_bench.py TEXT_FILE [runs]"""
import array
import hashlib
import json
import os
import sys
import time

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(ROOT, "data", "gpt2")
PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def main():
    path, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    raw = open(path, "rb").read()
    text = raw.decode("utf-8")
    ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(VOCAB, "vocab.bpe"), os.path.join(VOCAB, "encoder.json"))
    enc = tiktoken.Encoding("gpt2-local", pat_str=PAT, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    enc.encode_ordinary(text[:10000])  # warm up
    best1 = 1e30
    for _ in range(runs):
        t0 = time.perf_counter()
        ids = enc.encode_ordinary(text)
        best1 = min(best1, time.perf_counter() - t0)
    threads = os.cpu_count() or 1
    # tiktoken's own batch API: split on line boundaries into one chunk per thread.
    lines = text.splitlines(keepends=True)
    per = (len(lines) + threads - 1) // threads
    chunks = ["".join(lines[i:i + per]) for i in range(0, len(lines), per)]
    best_all = 1e30
    for _ in range(runs):
        t0 = time.perf_counter()
        enc.encode_ordinary_batch(chunks, num_threads=threads)
        best_all = min(best_all, time.perf_counter() - t0)
    print(json.dumps({"impl": "tiktoken " + tiktoken.__version__, "bytes": len(raw), "tokens": len(ids),
                      "mbps_1": len(raw) / best1 / 1e6, "threads": threads, "mbps_all": len(raw) / best_all / 1e6,
                      "ids_sha256": hashlib.sha256(array.array("i", ids).tobytes()).hexdigest()}))


if __name__ == "__main__":
    main()
