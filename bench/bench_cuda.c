/* bench_cuda: every CUDA op at GPT-2 124M training shapes (B=8, T=1024, C=768, 12 heads,
 * V=50257 padded to 50304), timed with CUDA events (median of 20 after 3 warm-ups), as
 * achieved bandwidth (the fewest bytes the op must move: inputs read once, outputs written
 * once) against the device-to-device copy bandwidth measured here in the same process, and as
 * FLOP/s for the GEMM-bound ops against the fp32 (non-tensor-core) datasheet rate of an
 * H100/H200 SXM, 67 TFLOP/s. bench/attention_torch.py times PyTorch's attention on the same
 * shape in the same device call (scripts/gpu-run.sh bench). Prints figures; never fails on time.
 *   usage: bench_cuda [B T] | bench_cuda decode (the decode products only) */
#include "backend.h"
#include "cuda_ops.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "qmatmul.h"
#include "quant.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP32_PEAK_TFLOPS 67.0

static double copy_gbs;
static const gq_backend *G;

static void die(int rc, const char *what) {
    if (rc) {
        fprintf(stderr, "bench_cuda: %s: %s\n", what, gq_errmsg(rc));
        exit(1);
    }
}

static void *dalloc(size_t bytes) {
    void *p = NULL;
    die(G->alloc(&p, bytes), "cudaMalloc");
    return p;
}

static void dfill(float *d, size_t n, float lo, float hi, uint64_t seed) {
    float *h = malloc(n * sizeof *h);
    gq_rng r;
    gq_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) h[i] = lo + (hi - lo) * gq_rng_float(&r);
    die(G->upload(d, h, n * sizeof *h), "upload");
    free(h);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static cudaEvent_t e0, e1;
static double g_last_ms; /* the median of TIME's last row */

#define TIME(label, bytes, flops, call)                                                                       \
    do {                                                                                                      \
        float ms_[20];                                                                                        \
        for (int w_ = 0; w_ < 3; w_++) die((call), label);                                                   \
        for (int i_ = 0; i_ < 20; i_++) {                                                                     \
            cudaEventRecord(e0, 0);                                                                           \
            die((call), label);                                                                               \
            cudaEventRecord(e1, 0);                                                                           \
            cudaEventSynchronize(e1);                                                                         \
            cudaEventElapsedTime(&ms_[i_], e0, e1);                                                           \
        }                                                                                                     \
        qsort(ms_, 20, sizeof *ms_, cmp_float);                                                               \
        double ms = ms_[10], gbs = (double)(bytes) / ms / 1e6, tf = (double)(flops) / ms / 1e9;               \
        g_last_ms = ms;                                                                                       \
        if ((flops) > 0)                                                                                      \
            printf("| %-36s | %9.3f | %8.0f | %5.1f%% | %7.2f | %5.1f%% |\n", label, ms, gbs, 100 * gbs / copy_gbs, \
                   tf, 100 * tf / FP32_PEAK_TFLOPS);                                                          \
        else                                                                                                  \
            printf("| %-36s | %9.3f | %8.0f | %5.1f%% |         |        |\n", label, ms, gbs, 100 * gbs / copy_gbs); \
    } while (0)

/* 8 fake-quant calls as the trainer's refresh makes them: a status word each, read back once */
static int fq_run(float *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec, void *work,
                  uint64_t *status) {
    for (int i = 0; i < 8; i++) {
        int rc = G->fakequant_forward(out, mask, w, rows, cols, spec, work, 0, status + i);
        if (rc) return rc;
    }
    uint64_t host[8];
    int rc = G->download(host, status, sizeof host);
    for (int i = 0; i < 8 && !rc; i++)
        if (host[i] != UINT64_MAX) rc = GQ_ENAN;
    return rc;
}

/* a (rows, cols) weight quantized on the host and uploaded as packed (qmatmul.h's layout) */
static gq_qmat upload_qmat(gq_qspec spec, int rows, int cols, uint64_t seed) {
    size_t n = (size_t)rows * cols;
    float *w = malloc(n * 4);
    gq_rng r;
    gq_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) w[i] = 0.04f * (gq_rng_float(&r) - 0.5f);
    gq_qmat m = {.spec = spec, .rows = rows, .cols = cols};
    if (spec.format == GQ_QF_F32) {
        float *d = dalloc(n * 4);
        die(G->upload(d, w, n * 4), "upload");
        m.f32 = d;
        free(w);
        return m;
    }
    m.group = gq_qgroup(&spec, cols);
    size_t groups = gq_qn_groups(&spec, rows, cols), pb = gq_qpacked_bytes(&spec, rows, cols);
    gq_qtensor q = {malloc(pb), malloc(groups * 4), malloc(groups), malloc(groups), malloc((groups / 256 + 1) * 4), 0};
    size_t bad;
    gq_quantize(&spec, w, rows, cols, &q, &bad);
    void *d = dalloc(pb);
    die(G->upload(d, q.qweight, pb), "upload");
    m.q = d;
    if (gq_qscale_f16(spec.format)) {
        uint16_t *h = malloc(groups * 2);
        for (size_t k = 0; k < groups; k++) h[k] = gq_f32_to_f16(q.scales[k]);
        uint16_t *ds = dalloc(groups * 2);
        die(G->upload(ds, h, groups * 2), "upload");
        m.s16 = ds;
        free(h);
    } else {
        float *ds = dalloc(groups * 4);
        die(G->upload(ds, q.scales, groups * 4), "upload");
        m.s32 = ds;
    }
    if (spec.format == GQ_QF_INT4A) {
        uint8_t *dz = dalloc(groups);
        die(G->upload(dz, q.zeros, groups), "upload");
        m.zeros = dz;
    }
    if (spec.format == GQ_QF_NF4 && spec.double_quant) {
        size_t nb = groups / 256 + 1;
        int8_t *da = dalloc(groups);
        float *d2 = dalloc(nb * 4);
        die(G->upload(da, q.absmax_q, groups), "upload");
        die(G->upload(d2, q.absmax2, nb * 4), "upload");
        m.absmax_q = da, m.absmax2 = d2, m.absmax_offset = q.absmax_offset;
    }
    free(q.qweight), free(q.scales), free(q.zeros), free(q.absmax_q), free(q.absmax2), free(w);
    return m;
}

/* decode products (M = 1) on GPT-2 124M's matrices, as bandwidth of the packed bytes */
static void bench_qmatmul(void) {
    printf("\n| decode product y = W x (M = 1) | ms | packed MB | GB/s | of copy |\n|---|---|---|---|---|\n");
    const struct {
        const char *name;
        gq_qspec s;
    } f[] = {{"fp32", {GQ_QF_F32, 0, 0, 0, 0, 0}}, {"int8", {GQ_QF_INT8, 0, 0, 0, 0, 0}}, {"q8_0", {GQ_QF_Q8_0, 32, 0, 0, 0, 0}},
             {"int4-g64", {GQ_QF_INT4, 64, 0, 0, 0, 0}}, {"int4-g32", {GQ_QF_INT4, 32, 0, 0, 0, 0}}, {"int4a-g64", {GQ_QF_INT4A, 64, 0, 0, 0, 0}},
             {"nf4-g64", {GQ_QF_NF4, 64, 0, 0, 0, 0}}, {"nf4-g64-dq", {GQ_QF_NF4, 64, 1, 0, 0, 0}}, {"fp4-g64", {GQ_QF_FP4, 64, 0, 0, 0, 0}}};
    const int shapes[][2] = {{3072, 768}, {768, 3072}, {50304, 768}};
    float *x = dalloc(3072 * 4 * 8), *y = dalloc(50304 * 4 * 8);
    dfill(x, 3072 * 8, -1, 1, 12);
    for (size_t k = 0; k < sizeof f / sizeof *f; k++)
        for (int s = 0; s < 3; s++) {
            gq_qmat m = upload_qmat(f[k].s, shapes[s][0], shapes[s][1], 13);
            double bytes = (double)gq_qmat_bytes(&m) + shapes[s][1] * 4.0;
            char label[64];
            snprintf(label, sizeof label, "%s [%d,%d]", f[k].name, shapes[s][0], shapes[s][1]);
            float ms_[20];
            for (int w_ = 0; w_ < 3; w_++) die(gq_cuda_qmatmul(y, x, 1, &m, NULL), label);
            for (int i_ = 0; i_ < 20; i_++) {
                cudaEventRecord(e0, 0);
                die(gq_cuda_qmatmul(y, x, 1, &m, NULL), label);
                cudaEventRecord(e1, 0);
                cudaEventSynchronize(e1);
                cudaEventElapsedTime(&ms_[i_], e0, e1);
            }
            qsort(ms_, 20, sizeof *ms_, cmp_float);
            double ms = ms_[10], gbs = bytes / ms / 1e6;
            printf("| %-30s | %7.4f | %8.2f | %6.0f | %5.1f%% |\n", label, ms, bytes / 1e6, gbs, 100 * gbs / copy_gbs);
            const void *bufs[] = {m.f32, m.q, m.s16, m.s32, m.zeros, m.absmax_q, m.absmax2};
            for (int i = 0; i < 7; i++)
                if (bufs[i]) G->free((void *)bufs[i]);
        }
    G->free(x), G->free(y);

    /* the decode step's attention (GPT-2 124M: 12 heads of 64, fp16 cache of 1024 positions) at
     * a few positions: split over positions (flash-decoding) against one block a head */
    enum { AT = 1024, AC = 768, ANH = 12 };
    printf("\n| decode attention, 12 heads x 64, fp16 cache | position | ms split | ms one block a head | ratio |\n"
           "|---|---|---|---|---|\n");
    float *q = dalloc(3 * AC * 4), *o = dalloc(AC * 4);
    void *kc = dalloc((size_t)AT * AC * 2), *vc = dalloc((size_t)AT * AC * 2); /* (zeros: speed only) */
    int32_t *dpos = dalloc(4);
    dfill(q, 3 * AC, -1, 1, 14);
    const int positions[] = {50, 500, 1000};
    for (int k = 0; k < 3; k++) {
        die(G->upload(dpos, &positions[k], 4), "upload");
        double t2[2];
        for (int split = 1; split >= 0; split--) {
            gq_cuda_attend_split(split);
            float ms_[20];
            for (int i_ = 0; i_ < 23; i_++) {
                cudaEventRecord(e0, 0);
                die(gq_cuda_attend(o, q, kc, vc, 1, dpos, 0, 1, ANH, AC, AT), "attend");
                cudaEventRecord(e1, 0);
                cudaEventSynchronize(e1);
                if (i_ >= 3) cudaEventElapsedTime(&ms_[i_ - 3], e0, e1);
            }
            qsort(ms_, 20, sizeof *ms_, cmp_float);
            t2[1 - split] = ms_[10];
        }
        gq_cuda_attend_split(1);
        printf("| | %4d | %.4f | %.4f | %.2fx |\n", positions[k], t2[0], t2[1], t2[1] / t2[0]);
    }
    G->free(q), G->free(o), G->free(kc), G->free(vc), G->free(dpos);
}

int main(int argc, char **argv) {
    if (gq_cuda_device_count() <= 0) {
        fprintf(stderr, "bench_cuda: no CUDA device\n");
        return 77;
    }
    G = gq_backend_cuda();
    const int only_decode = argc > 1 && !strcmp(argv[1], "decode");
    const int B = argc > 2 ? atoi(argv[1]) : 8, T = argc > 2 ? atoi(argv[2]) : 1024;
    const int C = 768, NH = 12, V = 50257, Vp = 50304, N = B * T;
    const size_t NC = (size_t)N * C, P = 124475904; /* GPT-2 124M parameters (llm.c's padded count) */
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    printf("device: %s, %d SMs, %.0f MB L2; shape B=%d T=%d C=%d NH=%d V=%d\n", prop.name, prop.multiProcessorCount,
           prop.l2CacheSize / 1e6, B, T, C, NH, V);

    /* the ceiling: a large device-to-device copy, bytes read + written */
    size_t cb = (size_t)2 << 30;
    void *ca = dalloc(cb), *cbuf = dalloc(cb);
    float ms_copy[10];
    for (int i = 0; i < 12; i++) {
        cudaEventRecord(e0, 0);
        cudaMemcpy(cbuf, ca, cb, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        if (i >= 2) cudaEventElapsedTime(&ms_copy[i - 2], e0, e1);
    }
    qsort(ms_copy, 10, sizeof *ms_copy, cmp_float);
    copy_gbs = 2.0 * cb / ms_copy[5] / 1e6;
    printf("device-to-device copy: %.0f GB/s (read + write)\n\n", copy_gbs);
    G->free(ca), G->free(cbuf);
    if (only_decode) {
        bench_qmatmul();
        return 0;
    }

    float *x = dalloc(NC * 4 * 4), *y = dalloc(NC * 4 * 4), *z = dalloc(NC * 4 * 4), *w = dalloc((size_t)4 * C * C * 4);
    float *wte = dalloc((size_t)Vp * C * 4), *wpe = dalloc((size_t)T * C * 4), *dwte = dalloc((size_t)Vp * C * 4);
    float *dwpe = dalloc((size_t)T * C * 4), *lnw = dalloc(C * 4), *lnb = dalloc(C * 4), *mean = dalloc(N * 4);
    float *rstd = dalloc(N * 4), *bias = dalloc(4 * C * 4), *dbias = dalloc(4 * C * 4), *dw = dalloc((size_t)4 * C * C * 4);
    float *logits = dalloc((size_t)N * Vp * 4), *losses = dalloc(N * 4), *lse = dalloc(N * 4);
    float *att = dalloc((size_t)B * NH * T * T * 4), *scratch = dalloc((size_t)B * NH * T * T * 4);
    int32_t *ids = dalloc(N * 4), *tg = dalloc(N * 4);
    dfill(x, NC * 4, -1, 1, 1), dfill(y, NC * 4, -1, 1, 2), dfill(w, (size_t)4 * C * C, -0.05f, 0.05f, 3);
    dfill(wte, (size_t)Vp * C, -0.1f, 0.1f, 4), dfill(wpe, (size_t)T * C, -0.1f, 0.1f, 5);
    dfill(lnw, C, 0.5f, 1.5f, 6), dfill(logits, (size_t)N * Vp, -5, 5, 7), dfill(att, (size_t)B * NH * T * T, 0, 1e-3f, 8);
    {
        int32_t *h = malloc(N * 4);
        gq_rng r;
        gq_rng_seed(&r, 9);
        for (int i = 0; i < N; i++) h[i] = (int32_t)gq_rng_below(&r, V);
        die(G->upload(ids, h, N * 4), "upload"), die(G->upload(tg, h, N * 4), "upload");
        free(h);
    }

    printf("| op (fp32) | ms | GB/s | of copy | TFLOP/s | of 67 |\n|---|---|---|---|---|---|\n");
    TIME("encoder_forward", 3.0 * NC * 4, 0, G->encoder_forward(x, ids, wte, wpe, B, T, C));
    TIME("encoder_backward (host buckets)", 4.0 * NC * 4, 0, G->encoder_backward(dwte, dwpe, y, ids, B, T, C));
    TIME("layernorm_forward", 2.0 * NC * 4, 0, G->layernorm_forward(z, mean, rstd, x, lnw, lnb, N, C));
    TIME("layernorm_backward (one pass, float4)", 4.0 * NC * 4, 0,
         G->layernorm_backward(z, lnw, lnb, y, x, lnw, mean, rstd, N, C));
    {   /* session 20's float4 one pass against session 15's one pass (a column a lane) and the
         * two-pass form, same run (bytes: the one pass's) */
        const double one = g_last_ms;
        gq_cuda_set_layernorm_fused(2);
        TIME("layernorm_backward (one pass, a column a lane)", 4.0 * NC * 4, 0,
             G->layernorm_backward(z, lnw, lnb, y, x, lnw, mean, rstd, N, C));
        const double lane = g_last_ms;
        gq_cuda_set_layernorm_fused(0);
        TIME("layernorm_backward (two passes)", 4.0 * NC * 4, 0,
             G->layernorm_backward(z, lnw, lnb, y, x, lnw, mean, rstd, N, C));
        gq_cuda_set_layernorm_fused(1);
        printf("| layernorm_backward: two passes / float4 one pass time | %.2fx | | | | |\n", g_last_ms / one);
        printf("| layernorm_backward: column-a-lane one pass / float4 one pass time | %.2fx | | | | |\n", lane / one);
    }
    TIME("matmul_forward qkv (C -> 3C, bias)", (double)(NC + 3 * NC + 3 * C * C) * 4, 2.0 * N * C * 3 * C,
         G->matmul_forward(z, x, w, bias, N, C, 3 * C, 0));
    TIME("matmul_forward fc (C -> 4C, bias)", (double)(NC + 4 * NC + 4 * C * C) * 4, 2.0 * N * C * 4 * C,
         G->matmul_forward(z, x, w, bias, N, C, 4 * C, 0));
    TIME("matmul_backward fc (dinp, dW, db)", (double)(4 * NC * 2 + NC * 2 + 8 * C * C) * 4, 4.0 * N * C * 4 * C,
         G->matmul_backward(z, dw, dbias, y, x, w, N, C, 4 * C, 0));
    TIME("attention_forward (cuBLAS + softmax)", (double)(3 * NC + NC + (size_t)B * NH * T * T) * 4,
         4.0 * B * NH * (double)T * T * (C / NH), G->attention_forward(z, att, x, B, T, C, NH));
    TIME("attention_backward", (double)(3 * NC * 2 + NC + 2.0 * B * NH * T * T) * 4,
         8.0 * B * NH * (double)T * T * (C / NH), G->attention_backward(y, scratch, z, x, z, att, B, T, C, NH));
    {
        float *lse = dalloc((size_t)B * NH * T * 4);
        TIME("attention_forward_flash", (double)(3 * NC + NC) * 4, 4.0 * B * NH * (double)T * T * (C / NH),
             gq_cuda_attention_forward_flash(z, lse, x, B, T, C, NH));
        TIME("attention_backward_flash", (double)(3 * NC * 2 + 2 * NC) * 4, 8.0 * B * NH * (double)T * T * (C / NH),
             gq_cuda_attention_backward_flash(y, z, x, z, lse, B, T, C, NH));
        /* bf16 mode's two forms: the tensor-core flash kernels, and cuBLAS on bf16 copies with
         * bf16 (T, T) matrices (GQ_CUDA_ATTN=cublas); TFLOP/s on the same full-T x T basis (the
         * causal half is the work done; PyTorch's rows use the same basis) */
        for (int wmma = 1; wmma >= 0; wmma--) { /* the WMMA kernels, then the register (mma.sync) ones */
            gq_cuda_set_attention_tc_form(wmma ? GQ_TC_WMMA : GQ_TC_MMA);
            TIME(wmma ? "attention_forward_tc (bf16 WMMA)" : "attention_forward_tc (bf16 mma.sync)",
                 (double)(3 * NC + NC) * 4, 4.0 * B * NH * (double)T * T * (C / NH),
                 gq_cuda_attention_forward_tc(z, lse, x, B, T, C, NH));
            TIME(wmma ? "attention_backward_tc (bf16 WMMA)" : "attention_backward_tc (bf16 mma.sync)",
                 (double)(3 * NC * 2 + 2 * NC) * 4, 8.0 * B * NH * (double)T * T * (C / NH),
                 gq_cuda_attention_backward_tc(y, z, x, z, lse, B, T, C, NH));
        }
        { /* session 19's pipelined forward (the default): from fp32 qkv, then from bf16 (cp.async) */
            gq_cuda_set_attention_tc_form(GQ_TC_PIPE);
            TIME("attention_forward_tc (mma.sync, pipelined)", (double)(3 * NC + NC) * 4,
                 4.0 * B * NH * (double)T * T * (C / NH), gq_cuda_attention_forward_tc(z, lse, x, B, T, C, NH));
            TIME("attention_backward_tc (mma.sync, pipelined)", (double)(3 * NC * 2 + 2 * NC) * 4,
                 8.0 * B * NH * (double)T * T * (C / NH), gq_cuda_attention_backward_tc(y, z, x, z, lse, B, T, C, NH));
            void *q16 = dalloc(3 * NC * 2), *o16 = dalloc(NC * 2);
            float *hx = malloc(3 * NC * sizeof *hx);
            uint16_t *h16 = malloc(3 * NC * 2);
            die(G->download(hx, x, 3 * NC * sizeof *hx), "download");
            for (size_t i = 0; i < 3 * NC; i++) h16[i] = gq_f32_to_bf16(hx[i]);
            die(G->upload(q16, h16, 3 * NC * 2), "upload");
            free(hx), free(h16);
            for (int f = GQ_TC_MMA; f <= GQ_TC_PIPE; f++) {
                gq_cuda_set_attention_tc_form(f);
                TIME(f == GQ_TC_PIPE ? "attention_forward_tc16 (pipelined, cp.async)" : "attention_forward_tc16 (mma.sync)",
                     (double)(3 * NC + NC) * 2, 4.0 * B * NH * (double)T * T * (C / NH),
                     gq_cuda_attention_forward_tc16(o16, lse, q16, B, T, C, NH));
            }
            G->free(q16), G->free(o16);
        }
        if (!gq_cuda_set_matmul(GQ_MATMUL_BF16)) {
            gq_cuda_set_attention_tc(0);
            TIME("attention_forward bf16 cuBLAS", (double)(3 * NC + NC / 2 + (size_t)B * NH * T * T / 2) * 4,
                 4.0 * B * NH * (double)T * T * (C / NH), G->attention_forward(z, att, x, B, T, C, NH));
            TIME("attention_backward bf16 cuBLAS", (double)(3 * NC * 2 + NC + 1.0 * B * NH * T * T) * 4,
                 8.0 * B * NH * (double)T * T * (C / NH), G->attention_backward(y, scratch, z, x, z, att, B, T, C, NH));
            gq_cuda_set_attention_tc(1);
            /* bf16 mode's product operands (the table's ops there): bf16 outputs of layernorm and
             * GELU, products reading a bf16 input and bf16 weights as they lie (x and w read as
             * bf16: speed only) */
            TIME("layernorm_forward (bf16 out)", 1.5 * NC * 4, 0, G->layernorm_forward(z, mean, rstd, x, lnw, lnb, N, C));
            TIME("gelu_forward (4C, bf16 in and out)", 2.0 * 4 * NC * 2, 0, G->gelu_forward(z, x, 4 * NC));
            TIME("gelu_backward (4C, bf16 in and out)", 8.0 * 4 * NC, 0, G->gelu_backward(z, x, y, 4 * NC));
            TIME("matmul_forward fc bf16 (bf16 out, bias)", (double)NC * 2 + 4.0 * C * C * 2 + 4.0 * NC * 10,
                 2.0 * N * C * 4 * C, G->matmul_forward(z, x, w, bias, N, C, 4 * C, 1));
            TIME("matmul_forward fc bf16 (bf16 operands)", (double)NC * 2 + 4.0 * NC * 4 + 4.0 * C * C * 2,
                 2.0 * N * C * 4 * C, G->matmul_forward(z, x, w, bias, N, C, 4 * C, 0));
            TIME("matmul_backward fc bf16 (bf16 operands)",
                 (double)(4 * NC * 1.5 + NC + 8 * C * C) * 4 + NC * 2 + 4.0 * C * C * 2,
                 4.0 * N * C * 4 * C, G->matmul_backward(z, dw, dbias, y, x, w, N, C, 4 * C, 0));
            TIME("matmul_backward fc bf16 (bf16 dout)", (double)(NC + 8 * C * C) * 4 + 4.0 * NC * 2 * 3 + NC * 2 + 4.0 * C * C * 2,
                 4.0 * N * C * 4 * C, G->matmul_backward(z, dw, dbias, y, x, w, N, C, 4 * C, 1));
            die(gq_cuda_set_matmul(GQ_MATMUL_FP32), "set_matmul");
        }
        G->free(lse);
    }
    /* The fused forms (cuBLASLt's epilogues: bias, residual, GELU, GELU's derivative) against the
     * same ops on the separate kernels, in the same run: the MLP's two products forward (fc + GELU,
     * the projection + residual) and the projection's backward through GELU, at tf32 and with bf16
     * operands (x, w read as bf16 there: speed only). Bytes: the fused forms' own traffic. */
    for (int mode = GQ_MATMUL_TF32; mode <= GQ_MATMUL_BF16; mode++) {
        if (gq_cuda_set_matmul(mode) != GQ_OK) continue;
        const double e = G->bf16_operands() ? 2 : 4;
        const char *mn = mode == GQ_MATMUL_TF32 ? "tf32" : "bf16";
        double ms[2][3];
        for (int lt = 1; lt >= 0; lt--) {
            gq_cuda_lt_enable(lt);
            char l0[64], l1[64], l2[64];
            snprintf(l0, sizeof l0, "fc + GELU %s, epilogue %s", mn, lt ? "on" : "off");
            snprintf(l1, sizeof l1, "proj 4C->C + residual %s, epi. %s", mn, lt ? "on" : "off");
            snprintf(l2, sizeof l2, "proj bwd + dGELU %s, epi. %s", mn, lt ? "on" : "off");
            TIME(l0, NC * e + 4.0 * C * C * e + 8.0 * NC * e, 2.0 * N * C * 4 * C,
                 G->matmul_gelu_forward(z, scratch, x, w, bias, N, C, 4 * C));
            ms[lt][0] = g_last_ms;
            TIME(l1, 4.0 * NC * e + 4.0 * C * C * e + 2.0 * NC * 4, 2.0 * N * C * 4 * C,
                 G->matmul_residual_forward(z, y, x, w, bias, N, 4 * C, C));
            ms[lt][1] = g_last_ms;
            TIME(l2, (double)NC * 4 * 2 + 8.0 * NC * e * 3 + 8.0 * C * C * 4, 4.0 * N * C * 4 * C,
                 G->matmul_backward_dgelu(z, dw, dbias, y, x, w, scratch, N, 4 * C, C));
            ms[lt][2] = g_last_ms;
        }
        long long fused = 0, refused = 0;
        gq_cuda_lt_counts(&fused, &refused);
        printf("| %s: separate / fused time | fc+GELU %.2fx | proj+residual %.2fx | bwd+dGELU %.2fx | (cuBLASLt "
               "took %lld products, refused %lld) |\n",
               mn, ms[0][0] / ms[1][0], ms[0][1] / ms[1][1], ms[0][2] / ms[1][2], fused, refused);
    }
    gq_cuda_lt_enable(1);
    die(gq_cuda_set_matmul(GQ_MATMUL_FP32), "set_matmul");
    TIME("gelu_forward (4C)", 2.0 * 4 * NC * 4, 0, G->gelu_forward(z, x, 4 * NC));
    TIME("gelu_backward (4C)", 3.0 * 4 * NC * 4, 0, G->gelu_backward(z, x, y, 4 * NC));
    TIME("residual_forward", 3.0 * NC * 4, 0, G->residual_forward(z, x, y, NC));
    float *logits16 = dalloc((size_t)N * Vp * 2); /* the same logits in bf16 (bf16 operands) */
    die(G->round_bf16_sr(logits16, logits, (size_t)N * Vp, 1, 0, 1), "round_bf16_sr");
    TIME("crossentropy_forward", (double)N * Vp * 4, 0, G->crossentropy_forward(losses, lse, logits, tg, N, V, Vp));
    double ce_ms = g_last_ms;
    TIME("crossentropy_backward (in place)", 2.0 * N * Vp * 4, 0,
         G->crossentropy_backward(logits, lse, tg, 1.0f / N, N, V, Vp));
    ce_ms += g_last_ms;
    /* session 15: the trainer's step takes both in one kernel (the row read once, written once) */
    TIME("crossentropy forward+backward fused", 2.0 * N * Vp * 4, 0,
         G->crossentropy_forward_backward(losses, lse, logits, tg, 1.0f / N, N, V, Vp));
    printf("| crossentropy fp32: forward + backward / fused time | %.2fx | | | | |\n", ce_ms / g_last_ms);
    if (gq_cuda_set_matmul(GQ_MATMUL_BF16) == GQ_OK && G->bf16_operands()) {
        /* bf16 mode's LM head and loss: bf16 logits (cuBLAS stores them), read by the loss and
         * overwritten by their gradient, which the LM head's backward reads (x, wte read as bf16:
         * speed only) */
        TIME("matmul_forward LM head bf16 (bf16 out)", (double)NC * 2 + (double)Vp * C * 2 + (double)N * Vp * 2,
             2.0 * N * C * Vp, G->matmul_forward(logits16, x, wte, NULL, N, C, Vp, 1));
        TIME("crossentropy_forward (bf16 logits)", (double)N * Vp * 2, 0,
             G->crossentropy_forward(losses, lse, logits16, tg, N, V, Vp));
        ce_ms = g_last_ms;
        TIME("crossentropy_backward (bf16, in place)", 2.0 * N * Vp * 2, 0,
             G->crossentropy_backward(logits16, lse, tg, 1.0f / N, N, V, Vp));
        ce_ms += g_last_ms;
        TIME("crossentropy fwd+bwd fused (bf16)", 2.0 * N * Vp * 2, 0,
             G->crossentropy_forward_backward(losses, lse, logits16, tg, 1.0f / N, N, V, Vp));
        printf("| crossentropy bf16: forward + backward / fused time | %.2fx | | | | |\n", ce_ms / g_last_ms);
        TIME("matmul_backward LM head bf16 (bf16 dout)", 2.0 * N * Vp * 2 + NC * 6 + (double)Vp * C * 10,
             4.0 * N * C * Vp, G->matmul_backward(z, dwte, NULL, logits16, x, wte, N, C, Vp, 1));
        die(gq_cuda_set_matmul(GQ_MATMUL_FP32), "set_matmul");
    }
    G->free(logits16);
    {
        float *p = dalloc(P * 4), *g = dalloc(P * 4), *m = dalloc(P * 4), *v = dalloc(P * 4);
        dfill(p, P, -1, 1, 10), dfill(g, P, -1e-2f, 1e-2f, 11);
        double ss;
        TIME("sum_squares (124M grads)", (double)P * 4, 0, G->sum_squares(&ss, g, P));
        TIME("adamw_update (124M params)", 7.0 * P * 4, 0,
             G->adamw_update(p, g, m, v, P, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f));
        /* the bf16 working copy's stochastic rounding (Philox4x32-10: ~20 integer multiplies per
         * four values; it should run at the copy's bandwidth, not at the multipliers') */
        TIME("round_bf16_sr (124M params, bf16 out)", 6.0 * P, 0, G->round_bf16_sr(m, p, P, 1234, 0, 1));
        TIME("round_bf16_sr (124M params, fp32 out)", 8.0 * P, 0, G->round_bf16_sr(v, p, P, 1234, 0, 0));
        G->free(p), G->free(g), G->free(m), G->free(v);
    }
    {
        const int rows = 4 * C, cols = C; /* an MLP weight */
        const size_t n = (size_t)rows * cols;
        uint8_t *mask = dalloc(n);
        const char *names[] = {"int8", "int4-g64", "int4-g32", "int4a-g64", "nf4-g64", "nf4-g64-dq", "fp4-g64"};
        gq_qspec specs[] = {{GQ_QF_INT8, 0, 0, 0, 0, 0}, {GQ_QF_INT4, 64, 0, 0, 0, 0}, {GQ_QF_INT4, 32, 0, 0, 0, 0}, {GQ_QF_INT4A, 64, 0, 0, 0, 0},
                            {GQ_QF_NF4, 64, 0, 0, 0, 0}, {GQ_QF_NF4, 64, 1, 0, 0, 0},  {GQ_QF_FP4, 64, 0, 0, 0, 0}};
        uint64_t *status = dalloc(8 * sizeof(uint64_t));
        for (int k = 0; k < 7; k++) { /* session 14's warp form, then (same run) a thread per group */
            void *work = dalloc(G->fakequant_workspace(rows, cols, &specs[k]));
            char label[64];
            snprintf(label, sizeof label, "fakequant %s [3072,768]", names[k]);
            TIME(label, (double)n * 9, 0, G->fakequant_forward(z, mask, w, rows, cols, &specs[k], work, 0, NULL));
            if (k == 1) { /* the trainer's form: a run of calls, the finite checks read back once */
                const double one_ms = g_last_ms;
                TIME("fakequant int4-g64 x8, status words", (double)n * 9 * 8, 0,
                     fq_run(z, mask, w, rows, cols, &specs[k], work, status));
                printf("| fakequant x8: a host wait per call / status words, time | %.2fx | | | | |\n",
                       8 * one_ms / g_last_ms);
            }
            if (k) {
                const double warp_ms = g_last_ms;
                gq_cuda_set_fakequant_warp(0);
                snprintf(label, sizeof label, "fakequant %s, thread per group", names[k]);
                TIME(label, (double)n * 9, 0, G->fakequant_forward(z, mask, w, rows, cols, &specs[k], work, 0, NULL));
                gq_cuda_set_fakequant_warp(1);
                printf("| fakequant %s: thread per group / warp form time | %.2fx | | | | |\n", names[k],
                       g_last_ms / warp_ms);
            }
            G->free(work);
        }
        TIME("fakequant_backward (mask)", (double)n * 9, 0, G->fakequant_backward(z, mask, n));
        { /* learned scales (-lsq): forward reads the weights and a scale per group, writes the
           * values; backward reads weights and gradients, writes the gradients and the scales'
           * (the bf16 working copy's form: bf16 out) */
            const gq_qspec lsq = {GQ_QF_INT4, 64, 0, 0, 1, 0};
            float *sc = dalloc(n / 64 * sizeof(float)), *dsc = dalloc(n / 64 * sizeof(float));
            float *start = malloc(n / 64 * sizeof(float)); /* (every group's scale 0.01) */
            for (size_t i = 0; i < n / 64; i++) start[i] = 0.01f;
            G->upload(sc, start, n / 64 * sizeof(float));
            free(start);
            TIME("fakequant_lsq int4-g64 [3072,768], bf16 out", (double)n * 6, 0,
                 G->fakequant_lsq_forward(z, w, sc, rows, cols, &lsq, 1, status));
            TIME("fakequant_lsq_backward int4-g64 [3072,768]", (double)n * 12, 0,
                 G->fakequant_lsq_backward(z, dsc, w, sc, rows, cols, &lsq));
            G->free(sc), G->free(dsc);
        }
        G->free(mask), G->free(status);
    }
    printf("\n(single fake-quant calls include the non-finite check's host round trip; the x8 row is the\n"
           " trainer's form, 8 calls with status words and one read back)\n");
    bench_qmatmul();
    return 0;
}
