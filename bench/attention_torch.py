"""PyTorch's causal attention on the GPU at the shape bench_cuda times ours (B=8, T=1024,
C=768, 12 heads): scaled_dot_product_attention in fp32 and bf16, and the explicit
matmul-softmax-matmul (what our cuBLAS reference computes), CUDA-event medians of 20 runs
after 3 warm-ups. Run in the same device call as bench_cuda (scripts/gpu-run.sh bench)."""
import sys

import torch
import torch.nn.functional as F


def median_ms(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[reps // 2]


def main():
    B, T = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (8, 1024)
    C, NH = 768, 12
    hs = C // NH
    torch.backends.cuda.matmul.allow_tf32 = False
    flops = 4.0 * B * NH * T * T * hs
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}; B={B} T={T} C={C} NH={NH}")
    print("| attention forward (torch) | ms | TFLOP/s (full T x T) |\n|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        q, k, v = (torch.randn(B, NH, T, hs, device="cuda", dtype=dtype) for _ in range(3))
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        print(f"| sdpa {str(dtype)[6:]} (is_causal) | {ms:.3f} | {flops / ms / 1e9:.1f} |")
        mask = torch.ones(T, T, device="cuda", dtype=torch.bool).tril()

        def explicit():
            a = (q @ k.transpose(-1, -2)) * hs ** -0.5
            a = a.masked_fill(~mask, float("-inf")).softmax(-1)
            return a @ v

        ms = median_ms(explicit)
        print(f"| explicit matmul-softmax-matmul {str(dtype)[6:]} | {ms:.3f} | {flops / ms / 1e9:.1f} |")
        q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        g = torch.randn_like(out)
        ms = median_ms(lambda: torch.autograd.grad(out, (q, k, v), g, retain_graph=True))
        print(f"| sdpa {str(dtype)[6:]} backward | {ms:.3f} | {2 * flops / ms / 1e9:.1f} |")


if __name__ == "__main__":
    main()
