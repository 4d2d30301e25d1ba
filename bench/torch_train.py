#!/usr/bin/env python3
"""The PyTorch peer of bench_train: the same GPT-2 (tied embedding padded to a multiple of 128,
tanh GELU, pre-LN blocks) and the same AdamW (decay on 2-D tensors, foreach implementation),
fp32 on the CPU, a full step (batch, forward, backward, clip, step) timed after warm-up.
Run it with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 (bench/train.sh does):
without them glibc returns the large logits buffers to the OS every step.
usage: torch_train.py L H C B T [steps] [warmup] [threads]"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(s, C, H):
        super().__init__()
        s.H = H
        s.ln_1, s.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        s.c_attn, s.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        s.c_fc, s.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.c_attn(s.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, s.H, C // s.H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // s.H))
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf")).softmax(-1)
        x = x + s.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + s.mlp_proj(F.gelu(s.c_fc(s.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(s, L, H, C, V=50257, maxT=1024):
        super().__init__()
        s.V, s.Vp = V, (V + 127) // 128 * 128
        s.wte, s.wpe = nn.Embedding(s.Vp, C), nn.Embedding(maxT, C)
        s.h = nn.ModuleList(Block(C, H) for _ in range(L))
        s.ln_f = nn.LayerNorm(C)

    def forward(s, idx, targets):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in s.h:
            x = b(x)
        logits = s.ln_f(x) @ s.wte.weight.T
        return F.cross_entropy(logits[..., :s.V].reshape(-1, s.V), targets.reshape(-1))


def blas_in_use():
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() and ".so" in line}
    return ", ".join(sorted(libs)) or "unknown"


def main():
    L, H, C, B, T = (int(a) for a in sys.argv[1:6])
    steps = int(sys.argv[6]) if len(sys.argv) > 6 else 10
    warm = int(sys.argv[7]) if len(sys.argv) > 7 else 2
    threads = int(sys.argv[8]) if len(sys.argv) > 8 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(L, H, C)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    g = torch.Generator().manual_seed(1)
    total = 0.0
    for s in range(warm + steps):
        t0 = time.perf_counter()
        x = torch.randint(0, 50257, (B, T), generator=g)
        y = torch.randint(0, 50257, (B, T), generator=g)
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s >= warm:
            total += time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch " + torch.__version__, "B": B, "T": T, "ms_per_step": 1e3 * total / steps,
                      "tokens_per_s": B * T * steps / total, "threads": torch.get_num_threads(), "blas": blas_in_use()}))


if __name__ == "__main__":
    main()
