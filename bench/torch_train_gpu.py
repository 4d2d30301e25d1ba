#!/usr/bin/env python3
"""The PyTorch peer of `gpt2q-train --device cuda` on the GPU: the same GPT-2 as
torch_train.py (tied padded embedding, tanh GELU, explicit causal attention) and the same
AdamW (fused), one full step (forward, backward, clip, step) timed with CUDA synchronisation
after warm-up, in four modes: fp32 (TF32 off: what our fp32 backend computes), fp32 with
TF32 matmuls, bf16 autocast, and bf16 autocast under torch.compile. Prints tokens/s and MFU
(6 N + attention FLOPs per token against the dense datasheet rates: 67 TFLOP/s fp32,
495 tf32, 989 bf16 for an H100/H200 SXM).
usage: torch_train_gpu.py L H C B T [steps] [modes, comma-separated]"""
import json
import sys
import time

import torch

from torch_train import GPT

PEAK = {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12, "bf16-compile": 989e12}


def main():
    L, H, C, B, T = (int(a) for a in sys.argv[1:6])
    steps = int(sys.argv[6]) if len(sys.argv) > 6 else 10
    modes = sys.argv[7].split(",") if len(sys.argv) > 7 else ["fp32", "tf32", "bf16", "bf16-compile"]
    for mode in modes:
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.allow_tf32 = mode == "tf32"
        torch.manual_seed(0)
        model = GPT(L, H, C, maxT=T).cuda()
        n_params = sum(p.numel() for p in model.parameters())
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                lr=1e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
        fwd = torch.compile(model) if mode.endswith("compile") else model
        g = torch.Generator(device="cuda").manual_seed(1)

        def step():
            x = torch.randint(0, 50257, (B, T), generator=g, device="cuda")
            y = torch.randint(0, 50257, (B, T), generator=g, device="cuda")
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode.startswith("bf16")):
                loss = fwd(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        try:
            t_warm = time.perf_counter()
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            t_warm = time.perf_counter() - t_warm
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / steps
        except torch.cuda.OutOfMemoryError:  # a batch that does not fit is a row that says so
            print(json.dumps({"impl": f"pytorch {torch.__version__} {mode}", "B": B, "T": T, "error": "out of memory",
                              "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2)}), flush=True)
            del model, opt, fwd
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            continue
        tok_s = B * T / dt
        flops_per_token = 6 * n_params + 12 * L * C * T  # llm.c's estimate (attention with the full T)
        print(json.dumps({"impl": f"pytorch {torch.__version__} {mode}", "B": B, "T": T, "ms_per_step": 1e3 * dt,
                          "tokens_per_s": round(tok_s), "mfu": round(tok_s * flops_per_token / PEAK[mode], 4),
                          "warmup_s": round(t_warm, 1), "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2)}),
              flush=True)
        del model, opt, fwd
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
