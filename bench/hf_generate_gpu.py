#!/usr/bin/env python3
"""The measurement people publish for the Python stack, on a GPU: a GPT-2 124M-shaped
transformers model (random weights: time and memory do not depend on them) generating 50 tokens
greedily from "Once upon a time" in fp32 and fp16, and with bitsandbytes 8-bit and NF4 when
bitsandbytes is importable. Per mode, one JSON line: GPU memory of the model (bytes allocated by
torch after the load, and cudaMemGetInfo's used bytes before and after) and the time of the
50 tokens (best of 3 after one warm-up run, and the first run).

    python3 bench/hf_generate_gpu.py [modes]      modes: fp32,fp16,int8,nf4 (default: all)

Run beside `gpt2q-infer bench MODEL --device cuda` in the same call (scripts/gpu-run.sh infer)."""
import json
import sys
import time

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

# "Once upon a time" in GPT-2's BPE (our tokenizer's test vectors check the same encoding)
PROMPT_IDS = [7454, 2402, 257, 640]
N_NEW = 50


def used():
    free, total = torch.cuda.mem_get_info()
    return total - free


def build(mode):
    cfg = GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257)
    torch.manual_seed(0)
    if mode in ("fp32", "fp16"):
        m = GPT2LMHeadModel(cfg)
        return m.to("cuda", dtype=torch.float16 if mode == "fp16" else torch.float32)
    # bitsandbytes: quantize a saved model on load, as people do with from_pretrained
    from transformers import BitsAndBytesConfig
    import tempfile

    d = tempfile.mkdtemp()
    GPT2LMHeadModel(cfg).save_pretrained(d)
    q = (BitsAndBytesConfig(load_in_8bit=True) if mode == "int8" else
         BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16))
    return GPT2LMHeadModel.from_pretrained(d, quantization_config=q, device_map={"": 0})


def generate(m):
    ids = torch.tensor([PROMPT_IDS], device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = m.generate(ids, max_new_tokens=N_NEW, min_new_tokens=N_NEW, do_sample=False, pad_token_id=50256)
    torch.cuda.synchronize()
    assert out.shape[1] == len(PROMPT_IDS) + N_NEW
    return time.perf_counter() - t0


def main():
    modes = sys.argv[1].split(",") if len(sys.argv) > 1 else ["fp32", "fp16", "int8", "nf4"]
    torch.zeros(1, device="cuda")  # the context first: not part of any model's memory
    for mode in modes:
        torch.cuda.empty_cache()
        before = used()
        try:
            m = build(mode).eval()
        except Exception as e:  # bitsandbytes missing or unable to run here
            print(json.dumps({"engine": "transformers", "mode": mode, "error": str(e).splitlines()[0][:200]}))
            continue
        torch.cuda.synchronize()
        alloc = torch.cuda.memory_allocated()
        after = used()
        with torch.no_grad():
            first = generate(m)
            best = min(generate(m) for _ in range(3))
        print(json.dumps({"engine": "transformers " + transformers.__version__, "torch": torch.__version__, "mode": mode,
                          "model_allocated_bytes": alloc, "gpu_used_before_bytes": before,
                          "gpu_used_after_load_bytes": after, "generate_50_s": best, "first_generate_50_s": first,
                          "device": torch.cuda.get_device_name(0)}), flush=True)
        del m
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
