/* Every CUDA op against the CPU reference op, through the two backends' op tables, on random
 * inputs and odd shapes (and one GPT-2-124M-sized shape unless GQ_TEST_SMALL=1, which the
 * compute-sanitizer runs use). Outputs that an op overwrites are poisoned with NaN first, so
 * an unwritten element fails; accumulated outputs start from the same random values on both
 * sides. Tolerances (max over elements of |gpu - cpu| / (atol + rtol |cpu|) <= 1):
 *   exact (bitwise): encoder fwd/bwd (same adds in the same order), residual, fake-quant for
 *     every format of quant.h and its STE mask (the DESIGN's one-quant-definition promise);
 *   gelu, adamw, crossentropy backward: 1e-6 rel (the same arithmetic; exactness reported);
 *   layernorm: 1e-5 (row sums in another order); matmul: 1e-4 (cuBLAS vs OpenBLAS blocking);
 *   attention: 1e-4 forward, 1e-3 backward (four products and a softmax); sum of squares:
 *   1e-12 rel (double, another order); bf16 products and the tensor-core attention: bounds on
 *   max error / max |reference|, stated where they are checked.
 * Exits 77 without a GPU. GQ_TEST_SELF=1 runs the harness with the CPU table on both sides
 * (every comparison must then be bit-exact), a check of the test itself on machines without one.
 * The same source builds test_cuda_ops_emu: the CUDA backend's sources run on the CPU emulator
 * (gq_kernels_emu, docs/GPU.md; cuBLAS a reference product there), with GQ_TEST_SMALL=1. */
#include "backend.h"
#include "cuda_ops.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "gq_test_attention.h"
#include "quant.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const gq_backend *CPU, *GPU;
static gq_rng R;

/* ---- helpers ---- */

static float *hrand(size_t n, float lo, float hi) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * gq_rng_float(&R);
    return x;
}

static void *dev(const void *h, size_t bytes) {
    void *d = NULL;
    CHECK_OK(GPU->alloc(&d, bytes));
    if (h) CHECK_OK(GPU->upload(d, h, bytes));
    return d;
}

/* a device buffer full of NaN (0xff bytes) */
static void *dev_poison(size_t bytes) {
    unsigned char *h = malloc(bytes ? bytes : 1);
    memset(h, 0xff, bytes);
    void *d = dev(h, bytes);
    free(h);
    return d;
}

static float *fetch(const void *d, size_t n) {
    float *h = malloc(n * sizeof *h);
    CHECK_OK(GPU->download(h, d, n * sizeof *h));
    return h;
}

/* Compare; atol = rtol = 0 means bitwise. Returns 1 if within tolerance. */
static int compare(const char *what, const float *gpu, const float *cpu, size_t n, double atol, double rtol) {
    double worst = 0, max_abs = 0;
    size_t at = 0, diff = 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&gpu[i], &cpu[i], 4)) diff++;
        if (isnan(gpu[i]) != isnan(cpu[i])) {
            ok = 0, at = i;
            break;
        }
        double e = fabs((double)gpu[i] - cpu[i]);
        max_abs = e > max_abs ? e : max_abs;
        double r = atol + rtol == 0 ? (memcmp(&gpu[i], &cpu[i], 4) ? INFINITY : 0) : e / (atol + rtol * fabs(cpu[i]));
        if (r > worst) worst = r, at = i;
    }
    if (worst > 1) ok = 0;
    printf("  %-34s n=%-9zu max|err| %.3g  %s%s\n", what, n, max_abs, diff ? "" : "bit-exact",
           ok ? "" : "  <-- FAIL");
    CHECKF(ok, "%s: element %zu: gpu %.9g cpu %.9g", what, at, gpu[at], cpu[at]);
    return ok;
}

/* a device copy of h rounded to bf16 (quant.h's rounding, the kernels' too), and a bf16 device
 * array read back as floats */
static void *dev_bf16(const float *h, size_t n) {
    uint16_t *b = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) b[i] = gq_f32_to_bf16(h[i]);
    void *d = dev(b, n * 2);
    free(b);
    return d;
}

static float *fetch_bf16(const void *d, size_t n) {
    uint16_t *b = malloc(n * 2 + 2);
    CHECK_OK(GPU->download(b, d, n * 2));
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = gq_bf16_to_f32(b[i]);
    free(b);
    return h;
}

/* every element of the bf16 array d equals the rounding of ref (bitwise) */
static void compare_dev_bf16(const char *what, const void *d, const float *ref, size_t n) {
    float *g = fetch_bf16(d, n), *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++) r[i] = gq_bf16_to_f32(gq_f32_to_bf16(ref[i]));
    compare(what, g, r, n, 0, 0);
    free(g), free(r);
}

static void compare_dev(const char *what, const void *d, const float *cpu, size_t n, double atol, double rtol) {
    float *g = fetch(d, n);
    compare(what, g, cpu, n, atol, rtol);
    free(g);
}

typedef struct {
    int B, T, C, NH, OC, V, Vp;
} shape;

/* ---- cases ---- */

static void case_encoder(shape s) {
    size_t BT = (size_t)s.B * s.T, n = BT * s.C;
    int32_t *inp = malloc(BT * sizeof *inp);
    for (size_t i = 0; i < BT; i++) inp[i] = (int32_t)gq_rng_below(&R, i % 3 ? (uint64_t)s.V : 5); /* repeats */
    float *wte = hrand((size_t)s.Vp * s.C, -1, 1), *wpe = hrand((size_t)s.T * s.C, -1, 1);
    float *out = malloc(n * 4), *dout = hrand(n, -1, 1);
    float *dwte = hrand((size_t)s.Vp * s.C, -1, 1), *dwpe = hrand((size_t)s.T * s.C, -1, 1);
    int32_t *d_inp = dev(inp, BT * 4);
    float *d_wte = dev(wte, (size_t)s.Vp * s.C * 4), *d_wpe = dev(wpe, (size_t)s.T * s.C * 4), *d_out = dev_poison(n * 4);
    float *d_dout = dev(dout, n * 4), *d_dwte = dev(dwte, (size_t)s.Vp * s.C * 4), *d_dwpe = dev(dwpe, (size_t)s.T * s.C * 4);
    CPU->encoder_forward(out, inp, wte, wpe, s.B, s.T, s.C);
    CHECK_OK(GPU->encoder_forward(d_out, d_inp, d_wte, d_wpe, s.B, s.T, s.C));
    compare_dev("encoder_forward out", d_out, out, n, 0, 0);
    if (GPU->set_matmul(GQ_MATMUL_BF16) == GQ_OK) { /* bf16 operands: wte and wpe as bf16 arrays */
        void *d_wte16 = dev_bf16(wte, (size_t)s.Vp * s.C), *d_wpe16 = dev_bf16(wpe, (size_t)s.T * s.C);
        float *rte = malloc((size_t)s.Vp * s.C * 4), *rpe = malloc((size_t)s.T * s.C * 4);
        for (size_t i = 0; i < (size_t)s.Vp * s.C; i++) rte[i] = gq_bf16_to_f32(gq_f32_to_bf16(wte[i]));
        for (size_t i = 0; i < (size_t)s.T * s.C; i++) rpe[i] = gq_bf16_to_f32(gq_f32_to_bf16(wpe[i]));
        CPU->encoder_forward(out, inp, rte, rpe, s.B, s.T, s.C); /* the same values as floats */
        CHECK_OK(GPU->encoder_forward(d_out, d_inp, d_wte16, d_wpe16, s.B, s.T, s.C));
        compare_dev("encoder_forward bf16 weights", d_out, out, n, 0, 0);
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
        GPU->free(d_wte16), GPU->free(d_wpe16);
        free(rte), free(rpe);
    }
    CPU->encoder_backward(dwte, dwpe, dout, inp, s.B, s.T, s.C);
    CHECK_OK(GPU->encoder_backward(d_dwte, d_dwpe, d_dout, d_inp, s.B, s.T, s.C));
    compare_dev("encoder_backward dwte", d_dwte, dwte, (size_t)s.Vp * s.C, 0, 0);
    compare_dev("encoder_backward dwpe", d_dwpe, dwpe, (size_t)s.T * s.C, 0, 0);
    void *bufs[] = {d_inp, d_wte, d_wpe, d_out, d_dout, d_dwte, d_dwpe};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
    free(inp), free(wte), free(wpe), free(out), free(dout), free(dwte), free(dwpe);
}

static void case_layernorm(shape s) {
    static int odd_done;
    if (!odd_done) { /* widths the float4 backward does not take: C % 4 != 0, C > 1024 */
        odd_done = 1;
        case_layernorm((shape){1, 37, 50, 2, 0, 0, 0});
        case_layernorm((shape){2, 9, 1100, 4, 0, 0, 0});
    }
    int N = s.B * s.T, C = s.C;
    size_t n = (size_t)N * C;
    float *x = hrand(n, -2, 3), *w = hrand(C, 0.5f, 1.5f), *b = hrand(C, -0.5f, 0.5f), *dy = hrand(n, -1, 1);
    float *y = malloc(n * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4);
    float *dx = hrand(n, -1, 1), *dw = hrand(C, -1, 1), *db = hrand(C, -1, 1);
    float *d_x = dev(x, n * 4), *d_w = dev(w, C * 4), *d_b = dev(b, C * 4), *d_dy = dev(dy, n * 4);
    float *d_y = dev_poison(n * 4), *d_mean = dev_poison(N * 4), *d_rstd = dev_poison(N * 4);
    float *d_dx = dev(dx, n * 4), *d_dw = dev(dw, C * 4), *d_db = dev(db, C * 4);
    CPU->layernorm_forward(y, mean, rstd, x, w, b, N, C);
    CHECK_OK(GPU->layernorm_forward(d_y, d_mean, d_rstd, d_x, d_w, d_b, N, C));
    compare_dev("layernorm_forward out", d_y, y, n, 1e-5, 1e-5);
    compare_dev("layernorm_forward mean", d_mean, mean, N, 1e-6, 1e-5);
    compare_dev("layernorm_forward rstd", d_rstd, rstd, N, 1e-6, 1e-5);
    /* the backward from the CPU's saved statistics on both sides */
    CHECK_OK(GPU->upload(d_mean, mean, N * 4));
    CHECK_OK(GPU->upload(d_rstd, rstd, N * 4));
    CPU->layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, N, C);
    CHECK_OK(GPU->layernorm_backward(d_dx, d_dw, d_db, d_dy, d_x, d_w, d_mean, d_rstd, N, C));
    compare_dev("layernorm_backward dinp (+=)", d_dx, dx, n, 1e-5, 1e-5);
    compare_dev("layernorm_backward dweight (+=)", d_dw, dw, C, 1e-4, 1e-5);
    compare_dev("layernorm_backward dbias (+=)", d_db, db, C, 1e-4, 1e-5);
    if (strcmp(GPU->name, "cpu")) {
        /* the one-pass forms against the two-pass form from the same start: the float4 one pass
         * (the default where C % 4 == 0 and C <= 1024, else a column a lane) gives the input
         * gradient bit for bit (the two-pass form adds a row's terms in the order of the form
         * that would run), the column-a-lane one pass (form 2) within the bound above where
         * the default is the float4 kernel; the parameters' gradients within the bound above
         * (other summation orders) */
        float *s_dx = hrand(n, -1, 1), *s_dw = hrand(C, -1, 1), *s_db = hrand(C, -1, 1), *got[3][3];
        for (int form = 2; form >= 0; form--) {
            CHECK_OK(GPU->upload(d_dx, s_dx, n * 4));
            CHECK_OK(GPU->upload(d_dw, s_dw, C * 4));
            CHECK_OK(GPU->upload(d_db, s_db, C * 4));
            const int was = gq_cuda_set_layernorm_fused(form);
            CHECK_OK(GPU->layernorm_backward(d_dx, d_dw, d_db, d_dy, d_x, d_w, d_mean, d_rstd, N, C));
            gq_cuda_set_layernorm_fused(was);
            got[form][0] = fetch(d_dx, n), got[form][1] = fetch(d_dw, C), got[form][2] = fetch(d_db, C);
        }
        const int vec = C % 4 == 0 && C <= 1024;
        compare("layernorm_backward dinp: 1 pass = 2", got[1][0], got[0][0], n, 0, 0);
        compare("layernorm_backward dweight: 1 ~ 2 passes", got[1][1], got[0][1], C, 1e-4, 1e-5);
        compare("layernorm_backward dbias: 1 ~ 2 passes", got[1][2], got[0][2], C, 1e-4, 1e-5);
        compare(vec ? "layernorm_backward dinp: column a lane ~ float4" : "layernorm_backward dinp: column a lane = 2",
                got[2][0], got[0][0], n, vec ? 1e-5 : 0, vec ? 1e-5 : 0);
        compare("layernorm_backward dweight: column a lane ~ 2 passes", got[2][1], got[0][1], C, 1e-4, 1e-5);
        compare("layernorm_backward dbias: column a lane ~ 2 passes", got[2][2], got[0][2], C, 1e-4, 1e-5);
        for (int f = 0; f < 3; f++)
            for (int k = 0; k < 3; k++) free(got[f][k]);
        free(s_dx), free(s_dw), free(s_db);
    }
    void *bufs[] = {d_x, d_w, d_b, d_dy, d_y, d_mean, d_rstd, d_dx, d_dw, d_db};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
    free(x), free(w), free(b), free(dy), free(y), free(mean), free(rstd), free(dx), free(dw), free(db);
}

static void case_matmul(shape s) {
    int N = s.B * s.T, C = s.C, OC = s.OC;
    float *x = hrand((size_t)N * C, -1, 1), *w = hrand((size_t)OC * C, -0.1f, 0.1f), *b = hrand(OC, -1, 1);
    float *dy = hrand((size_t)N * OC, -1, 1), *y = malloc((size_t)N * OC * 4), *dx = malloc((size_t)N * C * 4);
    float *dw = hrand((size_t)OC * C, -1, 1), *db = hrand(OC, -1, 1);
    float *d_x = dev(x, (size_t)N * C * 4), *d_w = dev(w, (size_t)OC * C * 4), *d_b = dev(b, OC * 4);
    float *d_dy = dev(dy, (size_t)N * OC * 4), *d_y = dev_poison((size_t)N * OC * 4), *d_dx = dev_poison((size_t)N * C * 4);
    float *d_dw = dev(dw, (size_t)OC * C * 4), *d_db = dev(db, OC * 4);
    CPU->matmul_forward(y, x, w, b, N, C, OC, 0);
    CHECK_OK(GPU->matmul_forward(d_y, d_x, d_w, d_b, N, C, OC, 0));
    compare_dev("matmul_forward out (bias)", d_y, y, (size_t)N * OC, 1e-4, 1e-4);
    CHECK(CPU->matmul_forward(y, x, w, b, N, C, OC, 1) == GQ_EUNSUPPORTED);
    if (strcmp(GPU->name, "cpu")) { /* a bf16 output: the backend's own fp32 result (bias included) rounded once */
        float *g = fetch(d_y, (size_t)N * OC);
        void *d_y16 = dev_poison((size_t)N * OC * 2);
        CHECK_OK(GPU->matmul_forward(d_y16, d_x, d_w, d_b, N, C, OC, 1));
        compare_dev_bf16("matmul_forward bf16 out (bias)", d_y16, g, (size_t)N * OC);
        GPU->free(d_y16);
        free(g);
    }
    CPU->matmul_forward(y, x, w, NULL, N, C, OC, 0);
    CHECK_OK(GPU->matmul_forward(d_y, d_x, d_w, NULL, N, C, OC, 0));
    compare_dev("matmul_forward out (no bias)", d_y, y, (size_t)N * OC, 1e-4, 1e-4);
    CPU->matmul_backward(dx, dw, db, dy, x, w, N, C, OC, 0);
    CHECK_OK(GPU->matmul_backward(d_dx, d_dw, d_db, d_dy, d_x, d_w, N, C, OC, 0));
    CHECK(CPU->matmul_backward(dx, dw, NULL, dy, x, w, N, C, OC, 1) == GQ_EUNSUPPORTED);
    compare_dev("matmul_backward dinp", d_dx, dx, (size_t)N * C, 1e-4, 1e-4);
    compare_dev("matmul_backward dweight (+=)", d_dw, dw, (size_t)OC * C, 1e-4, 1e-4);
    compare_dev("matmul_backward dbias (+=)", d_db, db, OC, 1e-4, 1e-5);
    void *bufs[] = {d_x, d_w, d_b, d_dy, d_y, d_dx, d_dw, d_db};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
}

static void case_attention(shape s) {
    int B = s.B, T = s.T, C = s.C, NH = s.NH;
    size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    float *qkv = hrand(nqkv, -1, 1), *dy = hrand(nout, -1, 1), *out = malloc(nout * 4), *att = malloc(natt * 4);
    float *dqkv = malloc(nqkv * 4), *scratch = malloc(natt * 4);
    float *d_qkv = dev(qkv, nqkv * 4), *d_dy = dev(dy, nout * 4), *d_out = dev_poison(nout * 4);
    float *d_att = dev_poison(natt * 4), *d_dqkv = dev_poison(nqkv * 4), *d_scratch = dev_poison(natt * 4);
    CPU->attention_forward(out, att, qkv, B, T, C, NH);
    CHECK_OK(GPU->attention_forward(d_out, d_att, d_qkv, B, T, C, NH));
    compare_dev("attention_forward out", d_out, out, nout, 1e-5, 1e-4);
    compare_dev("attention_forward att", d_att, att, natt, 1e-6, 1e-4);
    CHECK_OK(GPU->upload(d_att, att, natt * 4)); /* the backward from the same saved softmax */
    CPU->attention_backward(dqkv, scratch, dy, qkv, out, att, B, T, C, NH);
    CHECK_OK(GPU->attention_backward(d_dqkv, d_scratch, d_dy, d_qkv, d_out, d_att, B, T, C, NH));
    compare_dev("attention_backward dqkv", d_dqkv, dqkv, nqkv, 1e-4, 1e-3);
    void *bufs[] = {d_qkv, d_dy, d_out, d_att, d_dqkv, d_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
    free(qkv), free(dy), free(out), free(att), free(dqkv), free(scratch);
}

static void case_flash(shape s) {
    if (GPU == CPU) return; /* a CUDA-only entry point */
    int B = s.B, T = s.T, C = s.C, NH = s.NH;
    size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    float *qkv = hrand(nqkv, -1, 1), *dy = hrand(nout, -1, 1), *out = malloc(nout * 4), *att = malloc(natt * 4);
    float *dqkv = malloc(nqkv * 4), *scratch = malloc(natt * 4);
    float *d_qkv = dev(qkv, nqkv * 4), *d_dy = dev(dy, nout * 4), *d_out = dev_poison(nout * 4);
    float *d_lse = dev_poison((size_t)B * NH * T * 4), *d_dqkv = dev_poison(nqkv * 4);
    CPU->attention_forward(out, att, qkv, B, T, C, NH);
    CHECK_OK(gq_cuda_attention_forward_flash(d_out, d_lse, d_qkv, B, T, C, NH));
    compare_dev("attention_forward_flash out", d_out, out, nout, 1e-5, 1e-4);
    CPU->attention_backward(dqkv, scratch, dy, qkv, out, att, B, T, C, NH);
    CHECK_OK(gq_cuda_attention_backward_flash(d_dqkv, d_dy, d_qkv, d_out, d_lse, B, T, C, NH));
    compare_dev("attention_backward_flash dqkv", d_dqkv, dqkv, nqkv, 1e-4, 1e-3);
    /* deterministic: the same inputs give the same bits */
    float *first = fetch(d_dqkv, nqkv);
    CHECK_OK(gq_cuda_attention_backward_flash(d_dqkv, d_dy, d_qkv, d_out, d_lse, B, T, C, NH));
    float *second = fetch(d_dqkv, nqkv);
    CHECK(!memcmp(first, second, nqkv * 4));
    void *bufs[] = {d_qkv, d_dy, d_out, d_lse, d_dqkv};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
    free(qkv), free(dy), free(out), free(att), free(dqkv), free(scratch), free(first), free(second);
}

/* The tensor-core flash attention (bf16 operands) against the fp32 CPU op, on its own shapes
 * (head sizes 16, 48, 64, 80, 128; one tile, a partial last tile, several tiles, T = 1024),
 * with gq_test_attention.h's bounds; outputs start NaN; deterministic. */
static void case_tc(shape s0) {
    (void)s0;
    if (GPU == CPU) return; /* a CUDA-only entry point */
    const char *small_env = getenv("GQ_TEST_SMALL");
    const int small = small_env && *small_env == '1';
    const shape shapes[] = {{2, 7, 48, 3, 0, 0, 0},   {1, 64, 128, 2, 0, 0, 0},  {2, 100, 256, 2, 0, 0, 0},
                            {3, 130, 192, 4, 0, 0, 0}, {1, 65, 160, 2, 0, 0, 0},  {2, 256, 768, 12, 0, 0, 0},
                            {1, 1024, 768, 12, 0, 0, 0}};
    const int n_shapes = small ? 5 : 7;
    CHECK(!gq_cuda_attention_tc_supported(72, 4) && !gq_cuda_attention_tc_supported(2304, 9));
    CHECK(gq_cuda_attention_forward_tc(NULL, NULL, NULL, 1, 8, 72, 4) == GQ_EUNSUPPORTED);
    CHECK(gq_cuda_attention_backward_tc(NULL, NULL, NULL, NULL, NULL, 1, 8, 72, 4) == GQ_EUNSUPPORTED);
    for (int k = 0; k < n_shapes; k++) {
        const int B = shapes[k].B, T = shapes[k].T, C = shapes[k].C, NH = shapes[k].NH;
        CHECK(gq_cuda_attention_tc_supported(C, NH));
        const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
        float *qkv = hrand(nqkv, -1, 1), *dy = hrand(nout, -1, 1), *out = malloc(nout * 4), *att = malloc(natt * 4);
        float *dqkv = malloc(nqkv * 4), *scr = malloc(natt * 4);
        float *d_qkv = dev(qkv, nqkv * 4), *d_dy = dev(dy, nout * 4), *d_out = dev_poison(nout * 4);
        float *d_lse = dev_poison((size_t)B * NH * T * 4), *d_dqkv = dev_poison(nqkv * 4);
        CPU->attention_forward(out, att, qkv, B, T, C, NH);
        CPU->attention_backward(dqkv, scr, dy, qkv, out, att, B, T, C, NH);
        float *g_out = NULL, *g_lse = NULL, *g_dqkv = NULL, *m_out = NULL, *m_lse = NULL, *m_dqkv = NULL;
        /* the WMMA form, session 8's mma.sync kernels, then session 19's pipelined ones (the
         * default; head sizes up to 64): each within the bounds, and the last two the same bits */
        const int forms[3] = {GQ_TC_WMMA, GQ_TC_MMA, GQ_TC_PIPE};
        const char *fname[3] = {"attention tc (WMMA fwd)", "attention tc", "attention tc (pipelined)"};
        for (int f = 0; f < 3; f++) {
            free(g_out), free(g_lse), free(g_dqkv);
            gq_cuda_set_attention_tc_form(forms[f]);
            CHECK_OK(gq_cuda_attention_forward_tc(d_out, d_lse, d_qkv, B, T, C, NH));
            CHECK_OK(gq_cuda_attention_backward_tc(d_dqkv, d_dy, d_qkv, d_out, d_lse, B, T, C, NH));
            g_out = fetch(d_out, nout), g_lse = fetch(d_lse, (size_t)B * NH * T), g_dqkv = fetch(d_dqkv, nqkv);
            CHECKF(gq_attn_tc_verdict(fname[f], g_out, g_lse, g_dqkv, out, dqkv, qkv, B, T, C, NH),
                   "%s B=%d T=%d C=%d NH=%d beyond its bounds", fname[f], B, T, C, NH);
            if (forms[f] == GQ_TC_MMA)
                m_out = fetch(d_out, nout), m_lse = fetch(d_lse, (size_t)B * NH * T), m_dqkv = fetch(d_dqkv, nqkv);
        }
        CHECKF(!memcmp(m_out, g_out, nout * 4) && !memcmp(m_lse, g_lse, (size_t)B * NH * T * 4) &&
                   !memcmp(m_dqkv, g_dqkv, nqkv * 4),
               "attention tc B=%d T=%d C=%d NH=%d: the pipelined kernels' bits differ from the mma kernels'", B, T, C, NH);
        free(m_out), free(m_lse), free(m_dqkv);
        /* the bf16 form (the bf16 mode's op with bf16 operands): qkv as a bf16 array gives the same
         * tiles, so the outputs rounded to bf16, and the same gradients from them (D = dO . O from
         * the bf16 output) within the bounds; in both mma.sync forms (the pipelined one copies bf16
         * tiles with cp.async: only this form of the op reaches that path), the same bits */
        {
            void *d_o16 = dev_poison(nout * 2), *d_qkv16 = dev_bf16(qkv, nqkv);
            float *g16[2] = {NULL, NULL};
            for (int f = 0; f < 2; f++) {
                gq_cuda_set_attention_tc_form(f ? GQ_TC_PIPE : GQ_TC_MMA);
                CHECK_OK(gq_cuda_attention_forward_tc16(d_o16, d_lse, d_qkv16, B, T, C, NH));
                compare_dev_bf16(f ? "attention tc16 out == bf16(tc out), pipelined" : "attention tc16 out == bf16(tc out)",
                                 d_o16, g_out, nout);
                CHECK_OK(gq_cuda_attention_backward_tc16(d_dqkv, d_dy, d_qkv16, d_o16, d_lse, B, T, C, NH));
                g16[f] = fetch_bf16(d_dqkv, nqkv); /* (dqkv in bf16 too: what the qkv product reads) */
                const double er = gq_attn_norm_err(g16[f], dqkv, (size_t)B * T, 3 * C, 1, 0);
                printf("  attention tc16 dqkv (bf16 out in D)%s max|err| / max|ref| %.3g (bound 2e-2)\n",
                       f ? ", pipelined" : "", er);
                CHECK(er <= 2e-2);
            }
            CHECKF(!memcmp(g16[0], g16[1], nqkv * sizeof *g16[0]),
                   "attention tc16 B=%d T=%d C=%d NH=%d: the pipelined backward's bits differ", B, T, C, NH);
            gq_cuda_set_attention_tc_form(GQ_TC_PIPE); /* the default again for what follows */
            free(g16[0]), free(g16[1]);
            GPU->free(d_o16), GPU->free(d_qkv16);
        }
        /* deterministic: the same inputs give the same bits */
        CHECK_OK(gq_cuda_attention_forward_tc(d_out, d_lse, d_qkv, B, T, C, NH));
        CHECK_OK(gq_cuda_attention_backward_tc(d_dqkv, d_dy, d_qkv, d_out, d_lse, B, T, C, NH));
        float *g2_out = fetch(d_out, nout), *g2_dqkv = fetch(d_dqkv, nqkv);
        CHECK(!memcmp(g_out, g2_out, nout * 4) && !memcmp(g_dqkv, g2_dqkv, nqkv * 4));
        void *bufs[] = {d_qkv, d_dy, d_out, d_lse, d_dqkv};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
        free(qkv), free(dy), free(out), free(att), free(dqkv), free(scr);
        free(g_out), free(g_lse), free(g_dqkv), free(g2_out), free(g2_dqkv);
    }
}

static void case_pointwise(shape s) {
    size_t n = (size_t)s.B * s.T * s.C * 4 + 3;
    float *x = hrand(n, -8, 8), *y = hrand(n, -1, 1), *o = malloc(n * 4), *dx = malloc(n * 4);
    float *d_x = dev(x, n * 4), *d_y = dev(y, n * 4), *d_o = dev_poison(n * 4), *d_dx = dev_poison(n * 4);
    CPU->gelu_forward(o, x, n);
    CHECK_OK(GPU->gelu_forward(d_o, d_x, n));
    compare_dev("gelu_forward", d_o, o, n, 1e-7, 1e-6);
    CPU->gelu_backward(dx, x, y, n);
    CHECK_OK(GPU->gelu_backward(d_dx, d_x, d_y, n));
    compare_dev("gelu_backward", d_dx, dx, n, 1e-7, 1e-6);
    CPU->residual_forward(o, x, y, n);
    CHECK_OK(GPU->residual_forward(d_o, d_x, d_y, n));
    compare_dev("residual_forward", d_o, o, n, 0, 0);
    GPU->free(d_x), GPU->free(d_y), GPU->free(d_o), GPU->free(d_dx);
    free(x), free(y), free(o), free(dx);
}

/* The trainer's fused step (crossentropy_forward_backward): losses and lse as the forward's
 * (its sum in another order: within the forward's tolerance), and each gradient exactly the CPU
 * backward's given the lse the fused op computed; fp32 and bf16 logits, rows padded (Vp) and not
 * (Vp = V: rows not 16-byte aligned take the scalar loads). */
static void *dev_vals(const float *h, size_t n, int b16);

static void crossentropy_fused(shape s) {
    if (!GPU->crossentropy_forward_backward) return;
    const int N = s.B * s.T, V = s.V;
    const int Vps[2] = {s.Vp, s.V};
    for (int b16 = 0; b16 < 2; b16++) {
        if (b16 && GPU->set_matmul(GQ_MATMUL_BF16) != GQ_OK) break;
        for (int k = 0; k < 2; k++) {
            const int Vp = Vps[k];
            const size_t n = (size_t)N * Vp;
            float *x = hrand(n, -6, 6), *losses = malloc(N * 4), *lse = malloc(N * 4), *glse = malloc(N * 4);
            int32_t *tg = malloc(N * 4);
            for (int i = 0; i < N; i++) tg[i] = i % 5 == 3 ? -1 : (int32_t)gq_rng_below(&R, (uint64_t)V);
            tg[0] = V - 1; /* the last real column */
            if (b16)
                for (size_t i = 0; i < n; i++) x[i] = gq_bf16_to_f32(gq_f32_to_bf16(x[i]));
            void *d_x = dev_vals(x, n, b16);
            float *d_losses = dev_poison(N * 4), *d_lse = dev_poison(N * 4);
            int32_t *d_tg = dev(tg, N * 4);
            CHECK_OK(GPU->crossentropy_forward_backward(d_losses, d_lse, d_x, d_tg, 0.37f, N, V, Vp));
            CPU->crossentropy_forward(losses, lse, x, tg, N, V, Vp);
            char what[96];
            snprintf(what, sizeof what, "crossentropy fused %s Vp %d losses", b16 ? "bf16" : "fp32", Vp);
            compare_dev(what, d_losses, losses, N, 1e-5, 1e-6);
            snprintf(what, sizeof what, "crossentropy fused %s Vp %d lse", b16 ? "bf16" : "fp32", Vp);
            compare_dev(what, d_lse, lse, N, 1e-5, 1e-6);
            CHECK_OK(GPU->download(glse, d_lse, N * 4));
            CPU->crossentropy_backward(x, glse, tg, 0.37f, N, V, Vp); /* given the fused op's lse */
            snprintf(what, sizeof what, "crossentropy fused %s Vp %d dlogits", b16 ? "bf16" : "fp32", Vp);
            if (b16) compare_dev_bf16(what, d_x, x, n);
            else compare_dev(what, d_x, x, n, 0, 0);
            GPU->free(d_x), GPU->free(d_losses), GPU->free(d_lse), GPU->free(d_tg);
            free(x), free(losses), free(lse), free(glse), free(tg);
        }
    }
    CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
}

static void case_crossentropy(shape s) {
    int N = s.B * s.T, V = s.V, Vp = s.Vp;
    size_t n = (size_t)N * Vp;
    float *logits = hrand(n, -6, 6), *losses = malloc(N * 4), *lse = malloc(N * 4);
    int32_t *tg = malloc(N * 4);
    for (int i = 0; i < N; i++) tg[i] = i % 5 == 4 ? -1 : (int32_t)gq_rng_below(&R, (uint64_t)V);
    float *d_logits = dev(logits, n * 4), *d_losses = dev_poison(N * 4), *d_lse = dev_poison(N * 4);
    int32_t *d_tg = dev(tg, N * 4);
    CPU->crossentropy_forward(losses, lse, logits, tg, N, V, Vp);
    CHECK_OK(GPU->crossentropy_forward(d_losses, d_lse, d_logits, d_tg, N, V, Vp));
    compare_dev("crossentropy_forward losses", d_losses, losses, N, 1e-5, 1e-6);
    compare_dev("crossentropy_forward lse", d_lse, lse, N, 1e-5, 1e-6);
    CHECK_OK(GPU->upload(d_lse, lse, N * 4));
    float *logits0 = malloc(n * 4);
    memcpy(logits0, logits, n * 4);
    CPU->crossentropy_backward(logits, lse, tg, 0.37f, N, V, Vp);
    CHECK_OK(GPU->crossentropy_backward(d_logits, d_lse, d_tg, 0.37f, N, V, Vp));
    compare_dev("crossentropy_backward dlogits", d_logits, logits, n, 1e-8, 1e-6);
    if (GPU->set_matmul(GQ_MATMUL_BF16) == GQ_OK) {
        /* bf16 operands: the logits are a bf16 array (the LM head's output); the forward reads
         * them, the backward overwrites them with their gradients in bf16: the CPU's arithmetic
         * on the same (bf16) values, rounded, bit for bit given the same lse. Then the LM head's
         * backward reads that gradient in place. */
        float *l16 = malloc(n * 4);
        for (size_t i = 0; i < n; i++) l16[i] = gq_bf16_to_f32(gq_f32_to_bf16(logits0[i]));
        void *d_l16 = dev_bf16(l16, n);
        CPU->crossentropy_forward(losses, lse, l16, tg, N, V, Vp);
        CHECK_OK(GPU->crossentropy_forward(d_losses, d_lse, d_l16, d_tg, N, V, Vp));
        compare_dev("crossentropy_forward bf16 losses", d_losses, losses, N, 1e-5, 1e-6);
        compare_dev("crossentropy_forward bf16 lse", d_lse, lse, N, 1e-5, 1e-6);
        CHECK_OK(GPU->upload(d_lse, lse, N * 4));
        CPU->crossentropy_backward(l16, lse, tg, 0.37f, N, V, Vp);
        CHECK_OK(GPU->crossentropy_backward(d_l16, d_lse, d_tg, 0.37f, N, V, Vp));
        compare_dev_bf16("crossentropy_backward bf16 in place", d_l16, l16, n);
        const int C = s.C;
        float *a = hrand((size_t)N * C, -1, 1), *w = hrand((size_t)Vp * C, -0.1f, 0.1f), *da = malloc((size_t)N * C * 4);
        float *dw = calloc((size_t)Vp * C, 4), *d_da = dev_poison((size_t)N * C * 4), *d_dw = dev(dw, (size_t)Vp * C * 4);
        void *d_a16 = dev_bf16(a, (size_t)N * C), *d_w16 = dev_bf16(w, (size_t)Vp * C);
        for (size_t i = 0; i < n; i++) l16[i] = gq_bf16_to_f32(gq_f32_to_bf16(l16[i])); /* as stored */
        CPU->matmul_backward(da, dw, NULL, l16, a, w, N, C, Vp, 0);
        CHECK_OK(GPU->matmul_backward(d_da, d_dw, NULL, d_l16, d_a16, d_w16, N, C, Vp, 1));
        const float *ref[2] = {da, dw};
        const float *dptr[2] = {d_da, d_dw};
        const size_t cnt[2] = {(size_t)N * C, (size_t)Vp * C};
        for (int j = 0; j < 2; j++) {
            float *g = fetch(dptr[j], cnt[j]);
            const double er = gq_attn_norm_err(g, ref[j], cnt[j], 1, 1, 0);
            printf("  matmul_backward bf16 dout %-8s max|err| / max|ref| %.3g (bound 1.5e-2)\n", j ? "dweight" : "dinp", er);
            CHECK(er <= 1.5e-2);
            free(g);
        }
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
        GPU->free(d_da), GPU->free(d_dw), GPU->free(d_a16), GPU->free(d_w16), GPU->free(d_l16);
        free(a), free(w), free(da), free(dw), free(l16);
    }
    free(logits0);
    crossentropy_fused(s);
    /* distillation against a teacher's logits (same lse on both sides) */
    float *student = hrand(n, -6, 6), *teacher = hrand(n, -6, 6), *tlse = malloc(N * 4), *tloss = malloc(N * 4);
    CPU->crossentropy_forward(losses, lse, student, tg, N, V, Vp);
    CPU->crossentropy_forward(tloss, tlse, teacher, tg, N, V, Vp);
    float *d_teacher = dev(teacher, n * 4), *d_tlse = dev(tlse, N * 4);
    CHECK_OK(GPU->upload(d_logits, student, n * 4));
    CHECK_OK(GPU->upload(d_lse, lse, N * 4));
    float *student0 = malloc(n * 4);
    memcpy(student0, student, n * 4);
    CPU->crossentropy_distill_backward(student, lse, teacher, tlse, tg, 0.6f, 0.37f, N, V, Vp);
    CHECK_OK(GPU->crossentropy_distill_backward(d_logits, d_lse, d_teacher, d_tlse, d_tg, 0.6f, 0.37f, N, V, Vp));
    compare_dev("crossentropy_distill_backward", d_logits, student, n, 1e-8, 1e-6);
    if (GPU->set_matmul(GQ_MATMUL_BF16) == GQ_OK) { /* the same on bf16 logits, student's and teacher's */
        float *s16 = malloc(n * 4), *t16 = malloc(n * 4);
        for (size_t i = 0; i < n; i++)
            s16[i] = gq_bf16_to_f32(gq_f32_to_bf16(student0[i])), t16[i] = gq_bf16_to_f32(gq_f32_to_bf16(teacher[i]));
        CPU->crossentropy_forward(losses, lse, s16, tg, N, V, Vp);
        CPU->crossentropy_forward(tloss, tlse, t16, tg, N, V, Vp);
        void *d_s16 = dev_bf16(s16, n), *d_t16 = dev_bf16(t16, n);
        CHECK_OK(GPU->upload(d_lse, lse, N * 4));
        CHECK_OK(GPU->upload(d_tlse, tlse, N * 4));
        CPU->crossentropy_distill_backward(s16, lse, t16, tlse, tg, 0.6f, 0.37f, N, V, Vp);
        CHECK_OK(GPU->crossentropy_distill_backward(d_s16, d_lse, d_t16, d_tlse, d_tg, 0.6f, 0.37f, N, V, Vp));
        compare_dev_bf16("crossentropy_distill_backward bf16", d_s16, s16, n);
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
        GPU->free(d_s16), GPU->free(d_t16);
        free(s16), free(t16);
    }
    free(student0);
    GPU->free(d_teacher), GPU->free(d_tlse);
    free(student), free(teacher), free(tlse), free(tloss);
    GPU->free(d_logits), GPU->free(d_losses), GPU->free(d_lse), GPU->free(d_tg);
    free(logits), free(losses), free(lse), free(tg);
}

static void case_optimizer(shape s) {
    size_t n = (size_t)s.OC * s.C + 17;
    float *p = hrand(n, -1, 1), *g = hrand(n, -0.1f, 0.1f), *m = hrand(n, -0.01f, 0.01f), *v = hrand(n, 0, 1e-4f);
    float *d_p = dev(p, n * 4), *d_g = dev(g, n * 4), *d_m = dev(m, n * 4), *d_v = dev(v, n * 4);
    double ss_cpu = 0, ss_gpu = -1;
    CPU->sum_squares(&ss_cpu, g, n);
    CHECK_OK(GPU->sum_squares(&ss_gpu, d_g, n));
    printf("  %-34s n=%-9zu rel err %.3g\n", "sum_squares", n, fabs(ss_gpu - ss_cpu) / ss_cpu);
    CHECK(fabs(ss_gpu - ss_cpu) <= 1e-12 * ss_cpu);
    for (int t = 1; t <= 3; t++) {
        CPU->adamw_update(p, g, m, v, n, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.8f);
        CHECK_OK(GPU->adamw_update(d_p, d_g, d_m, d_v, n, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.8f));
    }
    compare_dev("adamw_update p (3 steps)", d_p, p, n, 1e-7, 1e-6);
    compare_dev("adamw_update m", d_m, m, n, 1e-9, 1e-6);
    compare_dev("adamw_update v", d_v, v, n, 1e-12, 1e-6);
    GPU->free(d_p), GPU->free(d_g), GPU->free(d_m), GPU->free(d_v);
    free(p), free(g), free(m), free(v);
}

static void fakequant_one(const char *name, gq_qspec spec, int rows, int cols) {
    size_t n = (size_t)rows * cols;
    float *w = malloc(n * 4);
    for (size_t i = 0; i < n; i++) { /* roughly normal weights, a zero group, an outlier, ties */
        float u = gq_rng_float(&R) + gq_rng_float(&R) + gq_rng_float(&R) - 1.5f;
        w[i] = 0.04f * u;
    }
    for (int i = 0; i < 64 && i < cols; i++) w[i] = 0.0f;
    w[n / 2] = 1.5f;
    for (int i = 0; i < 32 && n > 300; i++) w[200 + i] = 0.25f * (float)(i % 9 - 4); /* exact multiples */
    float *y = malloc(n * 4), *gr = hrand(n, -1, 1);
    uint8_t *mask = malloc(n);
    void *work_h = malloc(CPU->fakequant_workspace(rows, cols, &spec));
    float *d_w = dev(w, n * 4), *d_y = dev_poison(n * 4), *d_gr = dev(gr, n * 4);
    uint8_t *d_mask = dev_poison(n);
    void *d_work = dev(NULL, GPU->fakequant_workspace(rows, cols, &spec));
    CHECK_OK(CPU->fakequant_forward(y, mask, w, rows, cols, &spec, work_h, 0, NULL));
    CHECK(CPU->fakequant_forward(y, mask, w, rows, cols, &spec, work_h, 1, NULL) == GQ_EUNSUPPORTED);
    uint8_t *gm = malloc(n);
    char what[96];
    if (strcmp(GPU->name, "cpu")) { /* bf16 output (a bf16 working copy): the values rounded to nearest */
        void *d_y16 = dev_poison(n * 2);
        CHECK_OK(GPU->fakequant_forward(d_y16, d_mask, d_w, rows, cols, &spec, d_work, 1, NULL));
        snprintf(what, sizeof what, "fakequant %s [%d,%d] bf16 out", name, rows, cols);
        compare_dev_bf16(what, d_y16, y, n);
        CHECK_OK(GPU->download(gm, d_mask, n));
        CHECKF(!memcmp(gm, mask, n), "%s: STE masks differ", what);
        GPU->free(d_y16);
    }
    /* with a status word (the trainer's form: nothing waits): the same values, the word says all finite */
    uint64_t *d_status = dev(NULL, 2 * sizeof(uint64_t)), status[2] = {0, 0};
    CHECK_OK(GPU->fakequant_forward(d_y, d_mask, d_w, rows, cols, &spec, d_work, 0, d_status + 1));
    snprintf(what, sizeof what, "fakequant %s [%d,%d] (status word)", name, rows, cols);
    compare_dev(what, d_y, y, n, 0, 0);
    CHECK_OK(GPU->download(status, d_status, sizeof status));
    CHECKF(status[0] == 0 && status[1] == UINT64_MAX, "%s: status words %llx %llx", what,
           (unsigned long long)status[0], (unsigned long long)status[1]);
    GPU->upload(d_y, gr, n * 4); /* (not the answer) */
    CHECK_OK(GPU->fakequant_forward(d_y, d_mask, d_w, rows, cols, &spec, d_work, 0, NULL));
    snprintf(what, sizeof what, "fakequant %s [%d,%d]", name, rows, cols);
    compare_dev(what, d_y, y, n, 0, 0);
    CHECK_OK(GPU->download(gm, d_mask, n));
    size_t clipped = 0;
    for (size_t i = 0; i < n; i++) clipped += !mask[i];
    CHECKF(!memcmp(gm, mask, n), "%s: STE masks differ", what);
    CPU->fakequant_backward(gr, mask, n);
    CHECK_OK(GPU->fakequant_backward(d_gr, d_mask, n));
    snprintf(what, sizeof what, "fakequant_backward %s (%zu clipped)", name, clipped);
    compare_dev(what, d_gr, gr, n, 0, 0);
    /* a non-finite weight is refused with the lowest such index: at once without a status word,
     * in the word with one (and the next call's word is its own) */
    const size_t first = n / 3 + 1;
    w[n - 3] = NAN, w[first] = -INFINITY;
    CHECK_OK(GPU->upload(d_w, w, n * 4));
    char want[64];
    snprintf(want, sizeof want, "value %zu is not finite", first);
    int rc = GPU->fakequant_forward(d_y, d_mask, d_w, rows, cols, &spec, d_work, 0, NULL);
    CHECKF(rc == GQ_ENAN && strstr(gq_errmsg(rc), want), "%s: NaN weight: rc %d (%s)", name, rc, gq_errmsg(rc));
    rc = CPU->fakequant_forward(y, mask, w, rows, cols, &spec, work_h, 0, NULL);
    CHECKF(rc == GQ_ENAN && strstr(gq_errmsg(rc), want), "%s: NaN weight on the CPU: rc %d", name, rc);
    CHECK_OK(GPU->fakequant_forward(d_y, d_mask, d_w, rows, cols, &spec, d_work, 0, d_status));
    uint64_t cpu_status = 0;
    CHECK_OK(CPU->fakequant_forward(y, mask, w, rows, cols, &spec, work_h, 0, &cpu_status));
    CHECK_OK(GPU->download(status, d_status, sizeof status));
    CHECKF(status[0] == first && cpu_status == first && status[1] == UINT64_MAX,
           "%s: status words after a NaN: %llu / CPU %llu (want %zu), the other %llx", name,
           (unsigned long long)status[0], (unsigned long long)cpu_status, first, (unsigned long long)status[1]);
    w[n - 3] = 0.01f, w[first] = 0.02f;
    CHECK_OK(GPU->upload(d_w, w, n * 4));
    CHECK_OK(GPU->fakequant_forward(d_y, d_mask, d_w, rows, cols, &spec, d_work, 0, d_status));
    CHECK_OK(GPU->download(status, d_status, sizeof status));
    CHECKF(status[0] == UINT64_MAX, "%s: the status word kept an earlier call's refusal", name);
    GPU->free(d_w), GPU->free(d_y), GPU->free(d_gr), GPU->free(d_mask), GPU->free(d_work), GPU->free(d_status);
    free(w), free(y), free(gr), free(mask), free(work_h), free(gm);
}

static void case_precision(shape s) {
    /* stochastic bf16 rounding: the same bits on both backends; on the CPU side, every output
     * is one of the two bf16 neighbours of its input and the mean over many streams is unbiased */
    size_t n = (size_t)s.OC * s.C + 5;
    float *x = hrand(n, -3, 3), *y = malloc(n * 4);
    x[0] = INFINITY, x[1] = -0.0f, x[2] = 1.0f; /* special values pass through / stay exact */
    float *d_x = dev(x, n * 4), *d_y = dev_poison(n * 4);
    CPU->round_bf16_sr(y, x, n, 42, 1001, 0); /* an unaligned start: Philox blocks of four */
    CHECK_OK(GPU->round_bf16_sr(d_y, d_x, n, 42, 1001, 0));
    compare_dev("round_bf16_sr", d_y, y, n, 0, 0);
    CHECK(CPU->round_bf16_sr(y, x, n, 42, 1001, 1) == GQ_EUNSUPPORTED);
    if (strcmp(GPU->name, "cpu")) { /* into a bf16 array: the same values */
        void *d_y16 = dev_poison(n * 2);
        CHECK_OK(GPU->round_bf16_sr(d_y16, d_x, n, 42, 1001, 1));
        compare_dev_bf16("round_bf16_sr bf16 out", d_y16, y, n);
        GPU->free(d_y16);
    }
    CHECK(isinf(y[0]) && y[1] == 0.0f && y[2] == 1.0f);
    size_t bad = 0;
    for (size_t i = 3; i < n; i++) {
        uint32_t b, lo, hi;
        memcpy(&b, &x[i], 4);
        lo = b & 0xffff0000u, hi = lo + 0x10000u;
        uint32_t got;
        memcpy(&got, &y[i], 4);
        bad += got != lo && got != hi;
    }
    CHECKF(bad == 0, "%zu values not rounded to a bf16 neighbour", bad);
    double worst_bias = 0;
    for (int k = 3; k < 8; k++) { /* E[sr(x)] = x: 4096 streams, the bias within 5 standard errors */
        double sum = 0;
        for (uint64_t seed = 0; seed < 4096; seed++) {
            float one;
            CPU->round_bf16_sr(&one, &x[k], 1, seed, (uint64_t)k, 0);
            sum += one;
        }
        uint32_t lo_bits, hi_bits;
        memcpy(&lo_bits, &x[k], 4);
        lo_bits &= 0xffff0000u, hi_bits = lo_bits + 0x10000u;
        float lo, hi;
        memcpy(&lo, &lo_bits, 4), memcpy(&hi, &hi_bits, 4);
        double bias = fabs(sum / 4096 - x[k]) / fabs((double)hi - lo); /* in bf16 steps */
        worst_bias = bias > worst_bias ? bias : worst_bias;
    }
    printf("  %-34s worst |mean - x| over 4096 streams: %.4f bf16 steps\n", "round_bf16_sr bias", worst_bias);
    CHECK(worst_bias < 5 * 0.5 / 64); /* 5 standard errors, each at most step/2 / sqrt(4096) */
    GPU->free(d_x), GPU->free(d_y);
    free(x), free(y);
    /* matrix products with tensor-core rounding: normalized error against the fp32 reference */
    if (GPU->set_matmul(GQ_MATMUL_TF32) == GQ_EUNSUPPORTED) return; /* the harness on the CPU */
    int N = s.B * s.T, C = s.C, OC = s.OC;
    float *a = hrand((size_t)N * C, -1, 1), *w = hrand((size_t)OC * C, -0.1f, 0.1f), *o = malloc((size_t)N * OC * 4);
    float *dy = hrand((size_t)N * OC, -1, 1), *da = malloc((size_t)N * C * 4), *dw = hrand((size_t)OC * C, -1, 1);
    float *db = hrand(OC, -1, 1);
    float *d_a = dev(a, (size_t)N * C * 4), *d_w = dev(w, (size_t)OC * C * 4), *d_o = dev_poison((size_t)N * OC * 4);
    void *d_a16 = dev_bf16(a, (size_t)N * C); /* bf16 mode: the input as its producer stores it */
    void *d_w16 = dev_bf16(w, (size_t)OC * C); /* and the weight as the model's bf16 working copy */
    float *d_dy = dev(dy, (size_t)N * OC * 4), *d_da = dev_poison((size_t)N * C * 4);
    float *d_dw = dev(dw, (size_t)OC * C * 4), *d_db = dev(db, (size_t)OC * 4);
    CPU->matmul_forward(o, a, w, NULL, N, C, OC, 0);
    CPU->matmul_backward(da, dw, db, dy, a, w, N, C, OC, 0);
    const int modes[2] = {GQ_MATMUL_TF32, GQ_MATMUL_BF16};
    const double tol[2] = {2e-3, 1.5e-2};
    for (int k = 0; k < 2; k++) {
        CHECK_OK(GPU->set_matmul(modes[k]));
        CHECK(GPU->bf16_operands() == (modes[k] == GQ_MATMUL_BF16));
        CHECK_OK(GPU->matmul_forward(d_o, k ? d_a16 : d_a, k ? d_w16 : d_w, NULL, N, C, OC, 0));
        float *g = fetch(d_o, (size_t)N * OC);
        /* (a NaN output counts as infinite error: fmax alone would pass over it) */
        const double er = gq_attn_norm_err(g, o, (size_t)N * OC, 1, 1, 0);
        printf("  matmul_forward %-19s max|err| / max|ref| %.3g (bound %.3g)\n", k ? "bf16" : "tf32", er, tol[k]);
        CHECK(er <= tol[k] && er > 0); /* > 0: the mode did change the arithmetic */
        if (k) { /* and a bf16 output (qkv, the MLP's pre-activation) with a bias: the fp32 output
                  * with that bias rounded, within one bf16 step and the bias's own rounding
                  * (cuBLASLt's epilogue takes the bias in bf16, D's type, and may sum in another
                  * order for a bf16 D) */
            float *gb = NULL;
            void *d_o16 = dev_poison((size_t)N * OC * 2);
            CHECK_OK(GPU->matmul_forward(d_o, d_a16, d_w16, d_db, N, C, OC, 0));
            gb = fetch(d_o, (size_t)N * OC);
            CHECK_OK(GPU->matmul_forward(d_o16, d_a16, d_w16, d_db, N, C, OC, 1));
            {
                float *gb16 = fetch_bf16(d_o16, (size_t)N * OC);
                for (size_t i = 0; i < (size_t)N * OC; i++) gb[i] = gq_bf16_to_f32(gq_f32_to_bf16(gb[i]));
                /* (plus half a bf16 step of the bias, |bias| < 1: the rounding of the bias itself) */
                compare("matmul_forward bf16 out (bf16 mode)", gb16, gb, (size_t)N * OC, 1.0 / 256, 1.0 / 128);
                free(gb16);
            }
            /* without a bias (the LM head's logits) cuBLAS stores bf16 itself: the fp32 output
             * rounded, within one bf16 step (the library may sum in another order for it) */
            CHECK_OK(GPU->matmul_forward(d_o16, d_a16, d_w16, NULL, N, C, OC, 1));
            float *g16 = fetch_bf16(d_o16, (size_t)N * OC), *r16 = malloc((size_t)N * OC * sizeof *r16);
            for (size_t i = 0; i < (size_t)N * OC; i++) r16[i] = gq_bf16_to_f32(gq_f32_to_bf16(g[i]));
            compare("matmul_forward bf16 out (no bias)", g16, r16, (size_t)N * OC, 1e-30, 1.0 / 128);
            GPU->free(d_o16);
            free(gb), free(g16), free(r16);
        }
        free(g);
    }
    {   /* bf16 mode's backward: input gradient and accumulated weight and bias gradients */
        CHECK_OK(GPU->matmul_backward(d_da, d_dw, d_db, d_dy, d_a16, d_w16, N, C, OC, 0));
        const float *ref[3] = {da, dw, db};
        const float *dptr[3] = {d_da, d_dw, d_db};
        const size_t cnt[3] = {(size_t)N * C, (size_t)OC * C, (size_t)OC};
        const char *nm[3] = {"dinp", "dweight (+=)", "dbias (+=)"};
        for (int j = 0; j < 3; j++) {
            float *g = fetch(dptr[j], cnt[j]);
            const double er = gq_attn_norm_err(g, ref[j], cnt[j], 1, 1, 0);
            printf("  matmul_backward bf16 %-13s max|err| / max|ref| %.3g (bound %.3g)\n", nm[j], er, tol[1]);
            CHECK(er <= tol[1] && (j == 2 || er > 0)); /* (dbias: fp32 column sums in any mode) */
            free(g);
        }
        /* the output gradient as a bf16 array (GELU's backward writes it so): the products the
         * same bits as from the fp32 gradient (which they round to the same bf16 values), the
         * bias gradient the column sums of those values */
        float *dy16 = malloc((size_t)N * OC * 4), *db16 = calloc(OC, 4);
        for (size_t i = 0; i < (size_t)N * OC; i++) dy16[i] = gq_bf16_to_f32(gq_f32_to_bf16(dy[i]));
        for (int r = 0; r < N; r++)
            for (int o = 0; o < OC; o++) db16[o] += dy16[(size_t)r * OC + o];
        void *d_dy16 = dev_bf16(dy, (size_t)N * OC);
        CHECK_OK(GPU->zero(d_dw, (size_t)OC * C * 4));
        CHECK_OK(GPU->zero(d_db, (size_t)OC * 4));
        CHECK_OK(GPU->matmul_backward(d_da, d_dw, d_db, d_dy, d_a16, d_w16, N, C, OC, 0));
        float *ga = fetch(d_da, (size_t)N * C), *gw = fetch(d_dw, (size_t)OC * C);
        CHECK_OK(GPU->zero(d_dw, (size_t)OC * C * 4));
        CHECK_OK(GPU->zero(d_db, (size_t)OC * 4));
        CHECK_OK(GPU->matmul_backward(d_da, d_dw, d_db, d_dy16, d_a16, d_w16, N, C, OC, 1));
        compare_dev("matmul_backward bf16 dout: dinp == fp32 dout's", d_da, ga, (size_t)N * C, 0, 0);
        compare_dev("matmul_backward bf16 dout: dweight == fp32 dout's", d_dw, gw, (size_t)OC * C, 0, 0);
        compare_dev("matmul_backward bf16 dout: dbias", d_db, db16, OC, 1e-5, 1e-5);
        free(ga), free(gw), free(dy16), free(db16);
        GPU->free(d_dy16);
    }
    {   /* bf16 mode's layernorm and GELU outputs: the fp32 mode's values rounded to bf16, bit for bit */
        const int NL = 70; /* rows: more than the few-row kernel takes (64) */
        const size_t n = (size_t)NL * C;
        float *lx = hrand(n, -2, 3), *lw = hrand(C, 0.5f, 1.5f), *lb = hrand(C, -0.5f, 0.5f);
        float *d_lx = dev(lx, n * 4), *d_lw = dev(lw, C * 4), *d_lb = dev(lb, C * 4), *d_y = dev_poison(n * 4);
        float *d_m = dev_poison(NL * 4), *d_r = dev_poison(NL * 4);
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
        for (int few = 0; few < 2; few++) { /* the warp-per-row kernel's 70 rows, the few-row kernel's 5 */
            const int rows = few ? 5 : NL;
            CHECK_OK(GPU->layernorm_forward(d_y, d_m, d_r, d_lx, d_lw, d_lb, rows, C));
            float *y = fetch(d_y, (size_t)rows * C), *mm = fetch(d_m, rows);
            CHECK_OK(GPU->set_matmul(GQ_MATMUL_BF16));
            CHECK_OK(GPU->layernorm_forward(d_y, d_m, d_r, d_lx, d_lw, d_lb, rows, C));
            compare_dev_bf16(few ? "layernorm_forward bf16 out (5 rows)" : "layernorm_forward bf16 out", d_y, y,
                             (size_t)rows * C);
            compare_dev("layernorm_forward bf16 mode: mean", d_m, mm, rows, 0, 0);
            CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
            free(y), free(mm);
        }
        /* GELU reads a bf16 pre-activation there: the fp32 op on the same values, rounded; its
         * backward the fp32 op's bits */
        float *lr = malloc(n * 4), *gd = hrand(n, -1, 1);
        for (size_t i = 0; i < n; i++) lr[i] = gq_bf16_to_f32(gq_f32_to_bf16(lx[i]));
        float *d_lr = dev(lr, n * 4), *d_gd = dev(gd, n * 4), *d_gx = dev_poison(n * 4);
        void *d_l16 = dev_bf16(lx, n);
        CHECK_OK(GPU->gelu_forward(d_y, d_lr, n));
        float *gl = fetch(d_y, n);
        CHECK_OK(GPU->gelu_backward(d_gx, d_lr, d_gd, n));
        float *gb = fetch(d_gx, n);
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_BF16));
        CHECK_OK(GPU->gelu_forward(d_y, d_l16, n));
        compare_dev_bf16("gelu_forward bf16 in and out", d_y, gl, n);
        CHECK_OK(GPU->gelu_backward(d_gx, d_l16, d_gd, n)); /* (its gradient bf16 too: what the product reads) */
        compare_dev_bf16("gelu_backward bf16 in and out", d_gx, gb, n);
        free(gl), free(gb), free(lr), free(gd), free(lx), free(lw), free(lb);
        GPU->free(d_lr), GPU->free(d_gd), GPU->free(d_gx), GPU->free(d_l16);
        void *lbufs[] = {d_lx, d_lw, d_lb, d_y, d_m, d_r};
        for (size_t i = 0; i < sizeof lbufs / sizeof *lbufs; i++) GPU->free(lbufs[i]);
    }
    /* the attention op in bf16 mode, forward and backward (from what the GPU's own forward saved)
     * against the fp32 CPU op: the tensor-core flash kernels (head sizes 16 and 64), and the bf16
     * cuBLAS form with (T, T) matrices in bf16 for a head size they do not take (18) */
    {   /* what a model plans for the attention in each mode and form */
        size_t sv = 0, sc = 0;
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_BF16));
        gq_cuda_set_attention_tc(1);
        GPU->attention_floats(2, 64, 128, 2, &sv, &sc);
        CHECK(sv == 2 * 2 * 64 && sc == 0); /* a log-sum-exp per row, no scratch */
        GPU->attention_floats(2, 64, 72, 4, &sv, &sc);
        CHECK(sv == 2 * 4 * 64 * 64 && sc == sv); /* head size 18: the cuBLAS form */
        gq_cuda_set_attention_tc(0);
        GPU->attention_floats(2, 64, 128, 2, &sv, &sc);
        CHECK(sv == 2 * 2 * 64 * 64 && sc == sv);
        gq_cuda_set_attention_tc(1);
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
        GPU->attention_floats(2, 64, 128, 2, &sv, &sc);
        CHECK(sv == 2 * 2 * 64 * 64 && sc == sv);
    }
    const shape as[3] = {s, {1, 64, 128, 2, 0, 0, 0}, {3, 33, 72, 4, 0, 0, 0}};
    for (int k = 0; k < 3; k++) {
        const int B = as[k].B, T = as[k].T, Ca = as[k].C, NH = as[k].NH;
        const size_t nqkv = (size_t)B * T * 3 * Ca, nout = (size_t)B * T * Ca, natt = (size_t)B * NH * T * T;
        float *qkv = hrand(nqkv, -1, 1), *dy = hrand(nout, -1, 1), *out = malloc(nout * 4), *att = malloc(natt * 4);
        float *dqkv = malloc(nqkv * 4), *scr = malloc(natt * 4);
        float *d_qkv = dev(qkv, nqkv * 4), *d_dy = dev(dy, nout * 4), *d_out = dev_poison(nout * 4);
        float *d_att = dev_poison(natt * 4), *d_dqkv = dev_poison(nqkv * 4), *d_scr = dev_poison(natt * 4);
        CPU->attention_forward(out, att, qkv, B, T, Ca, NH);
        CPU->attention_backward(dqkv, scr, dy, qkv, out, att, B, T, Ca, NH);
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_BF16));
        float *d_qkv16 = dev_bf16(qkv, nqkv); /* qkv and out: bf16 in this mode */
        CHECK_OK(GPU->attention_forward(d_out, d_att, d_qkv16, B, T, Ca, NH));
        CHECK_OK(GPU->attention_backward(d_dqkv, d_scr, d_dy, d_qkv16, d_out, d_att, B, T, Ca, NH));
        GPU->free(d_qkv16);
        CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
        const float *ref[2] = {out, dqkv};
        const float *dptr[2] = {d_out, d_dqkv};
        const size_t cnt[2] = {nout, nqkv};
        const double bound[2] = {3e-2, 6e-2};
        for (int j = 0; j < 2; j++) {
            float *g = fetch_bf16(dptr[j], cnt[j]); /* (out and dqkv: bf16 arrays in this mode) */
            const double er = gq_attn_norm_err(g, ref[j], cnt[j], 1, 1, 0);
            printf("  attention %-8s bf16 T=%-3d max|err| / max|ref| %.3g (bound %.3g)\n", j ? "backward" : "forward",
                   T, er, bound[j]);
            CHECK(er <= bound[j] && er > 0);
            free(g);
        }
        void *bufs[] = {d_qkv, d_dy, d_out, d_att, d_dqkv, d_scr};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
        free(qkv), free(dy), free(out), free(att), free(dqkv), free(scr);
    }
    CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
    void *bufs[] = {d_a, d_w, d_o, d_a16, d_w16, d_dy, d_da, d_dw, d_db};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
    free(a), free(w), free(o), free(dy), free(da), free(dw), free(db);
}

/* Learned step sizes: the forward bit for bit (fp32 and bf16 out), the weights' gradients bit
 * for bit, the scales' gradients to rounding (a warp sums a group in another order), a NaN
 * weight refused with its index in the status word. Scales from the absmax rule times factors
 * 0.3 .. 1.7, so that some groups clip many values and some none. */
static void lsq_one(const char *name, gq_qspec spec, int rows, int cols) {
    const size_t n = (size_t)rows * cols, ng = n / (size_t)spec.group;
    float *w = hrand(n, -0.05f, 0.05f), *sc = malloc(ng * 4), *y = malloc(n * 4), *gr = hrand(n, -1, 1);
    float *ds = malloc(ng * 4), *ds0 = hrand(ng, -0.1f, 0.1f);
    const float top = gq_lsq_qp(spec.format);
    for (size_t k = 0; k < ng; k++) {
        float amax = 0;
        for (int i = 0; i < spec.group; i++) amax = fmaxf(amax, fabsf(w[k * spec.group + i]));
        sc[k] = amax / top * (0.3f + 1.4f * (float)(k % 7) / 6.0f);
    }
    memcpy(ds, ds0, ng * 4);
    float *d_w = dev(w, n * 4), *d_sc = dev(sc, ng * 4), *d_y = dev_poison(n * 4), *d_gr = dev(gr, n * 4);
    float *d_ds = dev(ds0, ng * 4);
    uint64_t *d_status = dev(NULL, sizeof(uint64_t)), status = 0;
    char what[96];
    CHECK_OK(CPU->fakequant_lsq_forward(y, w, sc, rows, cols, &spec, 0, NULL));
    CHECK_OK(GPU->fakequant_lsq_forward(d_y, d_w, d_sc, rows, cols, &spec, 0, d_status));
    snprintf(what, sizeof what, "fakequant_lsq %s [%d,%d]", name, rows, cols);
    compare_dev(what, d_y, y, n, 0, 0);
    CHECK_OK(GPU->download(&status, d_status, sizeof status));
    CHECKF(status == UINT64_MAX, "%s: status %llx", what, (unsigned long long)status);
    if (strcmp(GPU->name, "cpu")) {
        void *d_y16 = dev_poison(n * 2);
        CHECK_OK(GPU->fakequant_lsq_forward(d_y16, d_w, d_sc, rows, cols, &spec, 1, NULL));
        snprintf(what, sizeof what, "fakequant_lsq %s [%d,%d] bf16 out", name, rows, cols);
        compare_dev_bf16(what, d_y16, y, n);
        GPU->free(d_y16);
    }
    CHECK_OK(CPU->fakequant_lsq_backward(gr, ds, w, sc, rows, cols, &spec));
    CHECK_OK(GPU->fakequant_lsq_backward(d_gr, d_ds, d_w, d_sc, rows, cols, &spec));
    size_t clipped = 0;
    for (size_t i = 0; i < n; i++) clipped += gr[i] == 0.0f;
    snprintf(what, sizeof what, "fakequant_lsq_backward %s dw (%zu clipped)", name, clipped);
    compare_dev(what, d_gr, gr, n, 0, 0);
    CHECKF(clipped > 0 && clipped < n / 2, "%s: %zu of %zu values clipped", what, clipped, n);
    snprintf(what, sizeof what, "fakequant_lsq_backward %s dscales", name);
    compare_dev(what, d_ds, ds, ng, 1e-6, 1e-5);
    w[n / 3] = NAN;
    CHECK_OK(GPU->upload(d_w, w, n * 4));
    CHECK_OK(GPU->fakequant_lsq_forward(d_y, d_w, d_sc, rows, cols, &spec, 0, d_status));
    CHECK_OK(GPU->download(&status, d_status, sizeof status));
    CHECKF(status == n / 3, "%s: NaN weight: status %llu (want %zu)", name, (unsigned long long)status, n / 3);
    const int rc = GPU->fakequant_lsq_forward(d_y, d_w, d_sc, rows, cols, &spec, 0, NULL);
    CHECKF(rc == GQ_ENAN, "%s: NaN weight without a status word: rc %d", name, rc);
    GPU->free(d_w), GPU->free(d_sc), GPU->free(d_y), GPU->free(d_gr), GPU->free(d_ds), GPU->free(d_status);
    free(w), free(sc), free(y), free(gr), free(ds), free(ds0);
}

static void case_fakequant(shape s) {
    (void)s;
    /* learned step sizes: every format that takes them, groups within a warp, of a warp, of several */
    const struct {
        const char *name;
        gq_qspec spec;
        int cols;
    } l[] = {{"int4-g32-lsq", {GQ_QF_INT4, 32, 0, 0, 1, 0}, 256}, {"int3-g64-lsq", {GQ_QF_INT3, 64, 0, 0, 1, 0}, 384},
             {"int2-g16-lsq", {GQ_QF_INT2, 16, 0, 0, 1, 0}, 256}, {"nf4-g64-lsq", {GQ_QF_NF4, 64, 0, 0, 1, 0}, 256},
             {"fp4-g128-lsq", {GQ_QF_FP4, 128, 0, 0, 1, 0}, 384}};
    for (size_t i = 0; i < sizeof l / sizeof *l; i++) {
        lsq_one(l[i].name, l[i].spec, 37, l[i].cols);
        lsq_one(l[i].name, l[i].spec, 301, l[i].cols);
    }
    struct {
        const char *name;
        gq_qspec spec;
    } f[] = {
        {"int8", {GQ_QF_INT8, 0, 0, 0, 0, 0}},      {"q8_0", {GQ_QF_Q8_0, 32, 0, 0, 0, 0}},    {"int4-g32", {GQ_QF_INT4, 32, 0, 0, 0, 0}},
        {"int4-g64", {GQ_QF_INT4, 64, 0, 0, 0, 0}}, {"int4-g128", {GQ_QF_INT4, 128, 0, 0, 0, 0}}, {"int4a-g64", {GQ_QF_INT4A, 64, 0, 0, 0, 0}},
        {"int3-g64", {GQ_QF_INT3, 64, 0, 0, 0, 0}}, {"int2-g64", {GQ_QF_INT2, 64, 0, 0, 0, 0}},  {"nf4-g64", {GQ_QF_NF4, 64, 0, 0, 0, 0}},
        {"nf4-g64-dq", {GQ_QF_NF4, 64, 1, 0, 0, 0}}, {"fp4-g64", {GQ_QF_FP4, 64, 0, 0, 0, 0}},
        /* searched scales (-mse): the same group function on the device */
        {"int4-g32-mse", {GQ_QF_INT4, 32, 0, 1, 0, 0}}, {"int4a-g64-mse", {GQ_QF_INT4A, 64, 0, 1, 0, 0}},
        {"int3-g64-mse", {GQ_QF_INT3, 64, 0, 1, 0, 0}}, {"int2-g64-mse", {GQ_QF_INT2, 64, 0, 1, 0, 0}},
        {"nf4-g64-dq-mse", {GQ_QF_NF4, 64, 1, 1, 0, 0}}, {"fp4-g64-mse", {GQ_QF_FP4, 64, 0, 1, 0, 0}},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        fakequant_one(f[i].name, f[i].spec, 37, 256);
        fakequant_one(f[i].name, f[i].spec, 301, 384); /* > 256 groups: several double-quant blocks */
    }
    /* the CUDA kernel's lane layouts: groups of 8 and 16 (several a warp), 96 and 256 (3 and 8
     * values a lane); 24 takes the thread-per-group kernel; and, with the warp form off, that
     * kernel for the common sizes too */
    struct {
        const char *name;
        gq_qspec spec;
        int cols;
    } g[] = {{"int4-g8", {GQ_QF_INT4, 8, 0, 0, 0, 0}, 256},  {"nf4-g16", {GQ_QF_NF4, 16, 0, 0, 0, 0}, 256},
             {"int3-g96", {GQ_QF_INT3, 96, 0, 0, 0, 0}, 384}, {"int4a-g256", {GQ_QF_INT4A, 256, 0, 0, 0, 0}, 512},
             {"fp4-g256", {GQ_QF_FP4, 256, 0, 0, 0, 0}, 512}, {"q8_0", {GQ_QF_Q8_0, 32, 0, 0, 0, 0}, 96},
             {"int4-g24", {GQ_QF_INT4, 24, 0, 0, 0, 0}, 384}, {"nf4-g16-dq", {GQ_QF_NF4, 16, 1, 0, 0, 0}, 384}};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
        fakequant_one(g[i].name, g[i].spec, 37, g[i].cols);
        fakequant_one(g[i].name, g[i].spec, 301, g[i].cols);
    }
    if (strcmp(GPU->name, "cpu")) {
        const int was = gq_cuda_set_fakequant_warp(0);
        fakequant_one("int4-g32 (thread per group)", f[2].spec, 301, 384);
        fakequant_one("int4a-g64 (thread per group)", f[5].spec, 301, 384);
        fakequant_one("nf4-g64-dq (thread per group)", f[9].spec, 301, 384);
        gq_cuda_set_fakequant_warp(was);
    }
}

/* W8A8 activation fake-quant (in place, blocks of 32) against the CPU op, bit for bit: random
 * rows of several scales, a zero block, a block holding a NaN (passed over by the absmax, coded
 * 0) and a block of exact rounding midpoints (amax 127: d = 1); bf16: the widened bf16 values,
 * the results rounded to nearest. */
static void case_act_fakequant(shape s) {
    (void)s;
    const size_t n = 37 * 256;
    float *x = hrand(n, -3, 3);
    for (size_t i = 0; i < n; i++) x[i] *= (float)(1 + (i / 256) % 5) * 0.37f; /* scales vary by row */
    memset(x + 64, 0, 32 * sizeof *x);
    x[130] = NAN;
    for (int i = 0; i < 32; i++) x[256 + i] = i == 7 ? 127.0f : (float)(i - 16) + 0.5f;
    float *y = malloc(n * 4);
    memcpy(y, x, n * 4);
    CHECK_OK(CPU->act_fakequant(y, n, 0));
    CHECK(CPU->act_fakequant(y, n, 1) == GQ_EUNSUPPORTED);
    CHECK(CPU->act_fakequant(y, n - 1, 0) == GQ_ESHAPE);
    float *d_x = dev(x, n * 4);
    CHECK_OK(GPU->act_fakequant(d_x, n, 0));
    compare_dev("act_fakequant fp32", d_x, y, n, 0, 0);
    CHECK(GPU->act_fakequant(d_x, n - 1, 0) == GQ_ESHAPE);
    GPU->free(d_x);
    if (GPU == CPU) { /* (bf16 arrays: CUDA only) */
        free(x), free(y);
        return;
    }
    float *xb = malloc(n * 4);
    for (size_t i = 0; i < n; i++) xb[i] = gq_bf16_to_f32(gq_f32_to_bf16(x[i]));
    CHECK_OK(CPU->act_fakequant(xb, n, 0));
    void *d_x16 = dev_bf16(x, n);
    CHECK_OK(GPU->act_fakequant(d_x16, n, 1));
    compare_dev_bf16("act_fakequant bf16", d_x16, xb, n);
    GPU->free(d_x16);
    free(x), free(y), free(xb);
}

/* ---- the fused forms (backend.h; cuBLASLt epilogues, kernels/cuda/cublaslt.cu) ---- */

/* h as the mode's operand array: bf16 (rounded to nearest) or fp32; and back */
static void *dev_vals(const float *h, size_t n, int b16) { return b16 ? dev_bf16(h, n) : dev(h, n * 4); }
static float *fetch_vals(const void *d, size_t n, int b16) { return b16 ? fetch_bf16(d, n) : fetch(d, n); }
/* a copy of h holding the values the device array of dev_vals holds */
static float *vals(const float *h, size_t n, int b16) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = b16 ? gq_bf16_to_f32(gq_f32_to_bf16(h[i])) : h[i];
    return v;
}
static int bounded(const char *what, const float *got, const float *ref, size_t n, double bound) {
    const double er = gq_attn_norm_err(got, ref, n, 1, 1, 0);
    const int ok = er <= bound;
    printf("  %-44s max|err| / max|ref| %.3g (bound %.3g)%s\n", what, er, bound, ok ? "" : "  <-- FAIL");
    CHECKF(ok, "%s: %.3g > %.3g", what, er, bound);
    return ok;
}

/* The three fused forms in each precision, with cuBLASLt's epilogues on and off, against the
 * CPU's separate ops on the operands' values (bf16 mode: their bf16 values; the output
 * gradient's bf16 value in the products, as the CUDA op rounds it, its fp32 value in the bias
 * gradient). Bounds on max error / max |reference|: fp32 1e-5 (another summation order), tf32
 * 4e-3 (the operands rounded to 10 bits), bf16 1.5e-2 (bf16 outputs rounded once; the gradients
 * of bf16 operands). With the epilogues off, every output is bit for bit the table's separate
 * ops (matmul_forward + residual_forward / gelu_forward; matmul_backward + gelu_backward), the
 * path a model takes without the fused forms. In the emulator build every product here must go
 * through cuBLASLt (its counter) and rows that are not 16-byte multiples must fall back. */
static void case_fused(shape s) {
    if (!GPU->matmul_residual_forward || !GPU->matmul_gelu_forward || !GPU->matmul_backward_dgelu) {
        printf("  (this table has no fused forms)\n");
        return;
    }
    const int N = s.B * s.T, C = s.C, OC = s.OC;
    const size_t nx = (size_t)N * C, ny = (size_t)N * OC, nw = (size_t)OC * C;
    float *x = hrand(nx, -1, 1), *w = hrand(nw, -0.2f, 0.2f), *b = hrand(OC, -0.5f, 0.5f), *res = hrand(ny, -2, 2);
    float *dy = hrand(nx, -1, 1), *dw0 = hrand(nw, -1, 1), *db0 = hrand(C, -1, 1); /* the dgelu product's (N, C) side */
    float *hres = malloc(ny * 4), *hpre = malloc(ny * 4), *hout = malloc(ny * 4);
    float *hdin = malloc(ny * 4), *hdw = malloc(nw * 4), *hdb = malloc(C * 4), *tmp = malloc(ny * 4);
    const int modes[3] = {GQ_MATMUL_FP32, GQ_MATMUL_TF32, GQ_MATMUL_BF16};
    const double bound[3] = {1e-5, 4e-3, 1.5e-2};
    /* cuBLASLt's DGELU epilogue evaluates GELU's derivative its own way: in fp32 the H200 gave
     * 1.09e-5 at the 124M shape (session 25; our gelu_backward after the product: 1.2e-6). The
     * emulator's epilogue (GELU's tanh form in double) keeps the products' bound */
#ifdef GQ_TEST_EMU
    const double dgelu_bound[3] = {1e-5, 4e-3, 1.5e-2};
#else
    const double dgelu_bound[3] = {3e-5, 4e-3, 1.5e-2};
#endif
    const char *mname[3] = {"fp32", "tf32", "bf16"};
    for (int mi = 0; mi < 3; mi++) {
        if (GPU->set_matmul(modes[mi]) != GQ_OK) continue;
        const int b16 = GPU->bf16_operands();
        /* operands as the mode stores them, and the CPU's references on their values (the
         * tf32 mode's references on the fp32 values: its rounding is the error measured) */
        float *xv = vals(x, nx, b16), *wv = vals(w, nw, b16), *dyv = vals(dy, nx, b16);
        CPU->matmul_forward(hpre, xv, wv, b, N, C, OC, 0);
        for (size_t i = 0; i < ny; i++) hres[i] = res[i] + hpre[i];
        CPU->gelu_forward(hout, hpre, ny);
        /* dgelu: the product after the GELU takes the GELU's output (N, OC) to (N, C): its weight
         * is (C, OC) (w's values read as such), pre its input's pre-activation */
        float *gv = vals(hout, ny, b16), *pv = vals(hpre, ny, b16);
        memcpy(hdw, dw0, nw * 4);
        CPU->matmul_backward(tmp, hdw, NULL, dyv, gv, wv, N, OC, C, 0);
        CPU->gelu_backward(hdin, pv, tmp, ny);
        for (int c = 0; c < C; c++) {
            double acc = db0[c];
            for (int r = 0; r < N; r++) acc += dy[(size_t)r * C + c];
            hdb[c] = (float)acc;
        }
        void *d_x = dev_vals(x, nx, b16), *d_w = dev_vals(w, nw, b16), *d_g = dev_vals(hout, ny, b16);
        void *d_p = dev_vals(hpre, ny, b16);
        float *d_b = dev(b, OC * 4), *d_res = dev(res, ny * 4), *d_dy = dev(dy, nx * 4);
        float *d_o = dev_poison(ny * 4), *d_pre = dev_poison(ny * 4), *d_out = dev_poison(ny * 4);
        float *d_din = dev_poison(ny * 4), *d_dw = dev(dw0, nw * 4), *d_db = dev(db0, C * 4);
        float *lt_o = NULL, *lt_pre = NULL, *lt_out = NULL, *lt_din = NULL, *lt_dw = NULL, *lt_db = NULL;
        for (int lt = 1; lt >= 0; lt--) {
            char what[96];
            gq_cuda_lt_enable(lt);
            long long f0, r0, f1, r1;
            gq_cuda_lt_counts(&f0, &r0);
            CHECK_OK(GPU->upload(d_dw, dw0, nw * 4));
            CHECK_OK(GPU->upload(d_db, db0, C * 4));
            CHECK_OK(GPU->matmul_residual_forward(d_o, d_res, d_x, d_w, d_b, N, C, OC));
            CHECK_OK(GPU->matmul_gelu_forward(d_out, d_pre, d_x, d_w, d_b, N, C, OC));
            CHECK_OK(GPU->matmul_backward_dgelu(d_din, d_dw, d_db, d_dy, d_g, d_w, d_p, N, OC, C));
            gq_cuda_lt_counts(&f1, &r1);
            printf("  fused forms, %s, epilogues %-3s: %lld products in cuBLASLt, %lld requests refused\n", mname[mi],
                   lt ? "on" : "off", f1 - f0, r1 - r0);
#ifdef GQ_TEST_EMU
            CHECK(f1 - f0 == (lt ? 3 : 0) && r1 == r0);
#endif
            float *o = fetch(d_o, ny), *pre = fetch_vals(d_pre, ny, b16), *out = fetch_vals(d_out, ny, b16);
            float *din = fetch_vals(d_din, ny, b16), *dwg = fetch(d_dw, nw), *dbg = fetch(d_db, C);
            const char *tag = lt ? "" : " (separate kernels)";
            snprintf(what, sizeof what, "matmul_residual_forward %s%s", mname[mi], tag);
            bounded(what, o, hres, ny, bound[mi]);
            snprintf(what, sizeof what, "matmul_gelu_forward pre %s%s", mname[mi], tag);
            bounded(what, pre, hpre, ny, bound[mi]);
            snprintf(what, sizeof what, "matmul_gelu_forward out %s%s", mname[mi], tag);
            bounded(what, out, hout, ny, bound[mi]);
            snprintf(what, sizeof what, "matmul_backward_dgelu dinp %s%s", mname[mi], tag);
            bounded(what, din, hdin, ny, lt ? dgelu_bound[mi] : bound[mi]);
            snprintf(what, sizeof what, "matmul_backward_dgelu dweight (+=) %s%s", mname[mi], tag);
            bounded(what, dwg, hdw, nw, bound[mi]);
            snprintf(what, sizeof what, "matmul_backward_dgelu dbias (+=) %s%s", mname[mi], tag);
            bounded(what, dbg, hdb, C, 1e-5); /* fp32 column sums of the fp32 gradient in every mode */
            if (lt) {
                lt_o = o, lt_pre = pre, lt_out = out, lt_din = din, lt_dw = dwg, lt_db = dbg;
                continue;
            }
            /* off: the separate ops' bits */
            float *d_o2 = dev_poison(ny * 4), *d_pre2 = dev_poison(ny * 4), *d_out2 = dev_poison(ny * 4);
            float *d_tmp = dev_poison(ny * 4), *d_din2 = dev_poison(ny * 4);
            CHECK_OK(GPU->matmul_forward(d_o2, d_x, d_w, d_b, N, C, OC, 0));
            CHECK_OK(GPU->residual_forward(d_o2, d_res, d_o2, ny));
            compare_dev("  = matmul_forward + residual_forward", d_o2, o, ny, 0, 0);
            CHECK_OK(GPU->matmul_forward(d_pre2, d_x, d_w, d_b, N, C, OC, b16));
            CHECK_OK(GPU->gelu_forward(d_out2, d_pre2, ny));
            float *pre2 = fetch_vals(d_pre2, ny, b16), *out2 = fetch_vals(d_out2, ny, b16);
            compare("  = matmul_forward (pre)", pre2, pre, ny, 0, 0);
            compare("  = + gelu_forward (out)", out2, out, ny, 0, 0);
            CHECK_OK(GPU->upload(d_dw, dw0, nw * 4));
            CHECK_OK(GPU->upload(d_db, db0, C * 4));
            CHECK_OK(GPU->matmul_backward(d_tmp, d_dw, d_db, d_dy, d_g, d_w, N, OC, C, 0));
            CHECK_OK(GPU->gelu_backward(d_din2, d_p, d_tmp, ny));
            float *din2 = fetch_vals(d_din2, ny, b16);
            compare("  = matmul_backward + gelu_backward", din2, din, ny, 0, 0);
            compare_dev("  = matmul_backward dweight", d_dw, dwg, nw, 0, 0);
            compare_dev("  = matmul_backward dbias", d_db, dbg, C, 0, 0);
            /* and the two paths agree with each other as closely as with the reference */
            snprintf(what, sizeof what, "epilogues vs separate kernels, %s", mname[mi]);
            CHECKF(gq_attn_norm_err(lt_o, o, ny, 1, 1, 0) <= bound[mi] && gq_attn_norm_err(lt_out, out, ny, 1, 1, 0) <= bound[mi] &&
                       gq_attn_norm_err(lt_din, din, ny, 1, 1, 0) <= dgelu_bound[mi] && gq_attn_norm_err(lt_pre, pre, ny, 1, 1, 0) <= bound[mi] &&
                       gq_attn_norm_err(lt_dw, dwg, nw, 1, 1, 0) <= bound[mi] && gq_attn_norm_err(lt_db, dbg, C, 1, 1, 0) <= 1e-5,
                   "%s", what);
            void *tb[] = {d_o2, d_pre2, d_out2, d_tmp, d_din2};
            for (size_t i = 0; i < sizeof tb / sizeof *tb; i++) GPU->free(tb[i]);
            free(pre2), free(out2), free(din2);
            free(o), free(pre), free(out), free(din), free(dwg), free(dbg);
            free(lt_o), free(lt_pre), free(lt_out), free(lt_din), free(lt_dw), free(lt_db);
        }
        gq_cuda_lt_enable(1);
        {   /* rows that are not whole 16-byte steps (C + 1 inputs): cuBLASLt refuses them (here,
             * before the library is asked), the separate kernels answer */
            const int C1 = C + 1;
            float *x1 = hrand((size_t)N * C1, -1, 1), *w1 = hrand((size_t)OC * C1, -0.2f, 0.2f);
            float *x1v = vals(x1, (size_t)N * C1, b16), *w1v = vals(w1, (size_t)OC * C1, b16);
            CPU->matmul_forward(hpre, x1v, w1v, b, N, C1, OC, 0);
            for (size_t i = 0; i < ny; i++) hres[i] = res[i] + hpre[i];
            void *d_x1 = dev_vals(x1, (size_t)N * C1, b16), *d_w1 = dev_vals(w1, (size_t)OC * C1, b16);
            long long f0, r0, f1, r1;
            gq_cuda_lt_counts(&f0, &r0);
            CHECK_OK(GPU->matmul_residual_forward(d_o, d_res, d_x1, d_w1, d_b, N, C1, OC));
            gq_cuda_lt_counts(&f1, &r1);
#ifdef GQ_TEST_EMU
            CHECK(f1 == f0 && r1 == r0 + 2); /* the fused product, then the plain one with its bias */
#endif
            float *o = fetch(d_o, ny);
            char what[96];
            snprintf(what, sizeof what, "matmul_residual_forward %s, C=%d (unaligned rows)", mname[mi], C1);
            bounded(what, o, hres, ny, bound[mi]);
            GPU->free(d_x1), GPU->free(d_w1);
            free(x1), free(w1), free(x1v), free(w1v), free(o);
        }
        void *bufs[] = {d_x, d_w, d_g, d_p, d_b, d_res, d_dy, d_o, d_pre, d_out, d_din, d_dw, d_db};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
        free(xv), free(wv), free(dyv), free(gv), free(pv);
    }
    CHECK_OK(GPU->set_matmul(GQ_MATMUL_FP32));
    free(x), free(w), free(b), free(res), free(dy), free(dw0), free(db0);
    free(hres), free(hpre), free(hout), free(hdin), free(hdw), free(hdb), free(tmp);
}

/* the runner's fused x += r; layernorm(x) against the CPU's residual then layernorm */
static void case_residual_layernorm(shape s) {
    const int N = s.B * s.T, C = s.C;
    const size_t n = (size_t)N * C;
    float *x = hrand(n, -2, 3), *r = hrand(n, -1, 1), *w = hrand(C, 0.5f, 1.5f), *b = hrand(C, -0.5f, 0.5f);
    float *xs = malloc(n * 4), *y = malloc(n * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4);
    float *d_x = dev(x, n * 4), *d_r = dev(r, n * 4), *d_w = dev(w, C * 4), *d_b = dev(b, C * 4);
    float *d_y = dev_poison(n * 4), *d_mean = dev_poison(N * 4), *d_rstd = dev_poison(N * 4);
    CPU->residual_forward(xs, x, r, n);
    CPU->layernorm_forward(y, mean, rstd, xs, w, b, N, C);
    CHECK_OK(gq_cuda_residual_layernorm(d_x, d_r, d_y, d_mean, d_rstd, d_w, d_b, N, C));
    compare_dev("residual_layernorm x", d_x, xs, n, 0, 0);
    compare_dev("residual_layernorm out", d_y, y, n, 1e-5, 1e-5);
    compare_dev("residual_layernorm mean", d_mean, mean, N, 1e-6, 1e-5);
    compare_dev("residual_layernorm rstd", d_rstd, rstd, N, 1e-6, 1e-5);
    void *bufs[] = {d_x, d_r, d_w, d_b, d_y, d_mean, d_rstd};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) GPU->free(bufs[i]);
    free(x), free(r), free(w), free(b), free(xs), free(y), free(mean), free(rstd);
}

int main(void) {
    const char *self_env = getenv("GQ_TEST_SELF");
    int self = self_env && *self_env == '1';
    if (!self && gq_cuda_device_count() <= 0) SKIP("no CUDA device");
    CPU = gq_backend_cpu();
    GPU = self ? gq_backend_cpu() : gq_backend_cuda();
    gq_rng_seed(&R, 20261128);
    const char *small_env = getenv("GQ_TEST_SMALL");
    int small = small_env && *small_env == '1';
    /* GQ_TEST_ONLY=name: only the cases named so (e.g. "tensor-core attention", for a sanitizer) */
    const char *only = getenv("GQ_TEST_ONLY");
    /* B, T, C, NH, OC, V, Vp: odd sizes, then GPT-2 124M's widths */
    /* head sizes 16, 18, 64, 100 (the flash kernel's 1-, 2- and 4-lane-dimension variants) */
    shape shapes[] = {{2, 7, 48, 3, 40, 61, 64}, {3, 33, 72, 4, 136, 301, 320}, {2, 70, 200, 2, 96, 61, 64},
                      {2, 256, 768, 12, 3072, 50257, 50304}};
    int n_shapes = small ? 3 : 4;
    struct {
        const char *name;
        void (*fn)(shape);
    } cases[] = {{"encoder", case_encoder},     {"layernorm", case_layernorm},       {"matmul", case_matmul},
                 {"attention", case_attention}, {"flash attention", case_flash}, {"tensor-core attention", case_tc},
                 {"gelu/residual", case_pointwise}, {"crossentropy", case_crossentropy},
                 {"adamw/sum_squares", case_optimizer}, {"precision", case_precision}, {"fakequant", case_fakequant},
                 {"act_fakequant", case_act_fakequant}, {"fused", case_fused}};
    for (int k = 0; k < n_shapes; k++) {
        shape s = shapes[k];
        printf("shape B=%d T=%d C=%d NH=%d OC=%d V=%d Vp=%d\n", s.B, s.T, s.C, s.NH, s.OC, s.V, s.Vp);
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            if ((cases[c].fn == case_fakequant || cases[c].fn == case_precision || cases[c].fn == case_tc ||
                 cases[c].fn == case_act_fakequant) &&
                k != 0)
                continue; /* own shapes */
            if (only && strcmp(only, cases[c].name)) continue;
            cases[c].fn(s);
        }
    }
    /* the runner's few-row layernorm (a block per row, N <= 64): one row of GPT-2 small, and 64
     * rows of GPT-2 XL's width */
    const shape few[] = {{1, 1, 768, 12, 64, 61, 64}, {1, 64, 1600, 25, 64, 61, 64}, {1, 65, 1600, 25, 64, 61, 64}};
    for (size_t k = 0; k < sizeof few / sizeof *few && !only; k++) {
        printf("layernorm N=%d C=%d\n", few[k].B * few[k].T, few[k].C);
        case_layernorm(few[k]);
        if (!self) case_residual_layernorm(few[k]);
    }
    if (!self) CHECK_OK(gq_cuda_sync());
    return gq_test_finish("test_cuda_ops");
}
