#!/usr/bin/env python3
"""The PyTorch reference for the demo's training run: the same model (bench/torch_train.py's
GPT), data (the token file's train split, random windows of T+1), optimizer (AdamW, decay on
2-D tensors, clipping at 1.0) and schedule shape (linear warmup, cosine to 10%), trained for a
wall-time budget; its cosine runs over the steps that fit in that budget (measured from its
own first steps), so it is at its best at the deadline. Then the mean loss over every whole
batch of non-overlapping validation windows, as gpt2q-train's final evaluation.
usage: torch_kjv.py TOKENS.h5 SECONDS [L H C B T lr warmup]"""
import json
import math
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from torch_train import GPT  # noqa: E402


def main():
    path, budget = sys.argv[1], float(sys.argv[2])
    L, H, C, B, T = (int(a) for a in (sys.argv[3:8] if len(sys.argv) > 7 else (4, 4, 256, 8, 128)))
    lr, warmup = (float(sys.argv[8]), int(sys.argv[9])) if len(sys.argv) > 9 else (1e-3, 50)
    torch.set_num_threads(2)
    torch.manual_seed(1337)
    with h5py.File(path, "r") as f:
        train = torch.from_numpy(f["train"][:].astype(np.int64))
        val = torch.from_numpy(f["val"][:].astype(np.int64))
    model = GPT(L, H, C, maxT=T)
    with torch.no_grad():  # GPT-2 init, as gpt2q: N(0, 0.02), projections / sqrt(2L), padding rows 0
        for n, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.02 / math.sqrt(2 * L) if n.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02)
            elif "ln" in n and n.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()
        model.wte.weight[model.V:].zero_()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    g = torch.Generator().manual_seed(1)
    n_win = (len(train) - 1) // T
    t_start = time.perf_counter()
    total_steps, step, losses = None, 0, []
    while time.perf_counter() - t_start < budget:
        step += 1
        if step == 11:  # the schedule's length: what fits in the budget at the measured speed
            per = (time.perf_counter() - t_start) / 10
            total_steps = max(step, int(budget / per))
        s = total_steps or 10**9
        cur = lr * step / warmup if step <= warmup else \
            lr * 0.1 + 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, s - warmup)))) * lr * 0.9
        for grp in opt.param_groups:
            grp["lr"] = cur
        starts = torch.randint(0, n_win, (B,), generator=g) * T
        x = torch.stack([train[i:i + T] for i in starts])
        y = torch.stack([train[i + 1:i + T + 1] for i in starts])
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
    train_time = time.perf_counter() - t_start
    model.eval()
    n_val = (len(val) - 1) // T // B * B
    with torch.no_grad():
        vl = [float(model(torch.stack([val[(k + b) * T:(k + b) * T + T] for b in range(B)]),
                          torch.stack([val[(k + b) * T + 1:(k + b) * T + T + 1] for b in range(B)])))
              for k in range(0, n_val, B)]
    print(json.dumps({"impl": "pytorch " + torch.__version__, "seconds": train_time, "steps": step,
                      "tokens_per_s": step * B * T / train_time, "final_train_loss": float(np.mean(losses[-10:])),
                      "val_loss": float(np.mean(vl)), "val_windows": n_val}))


if __name__ == "__main__":
    main()
