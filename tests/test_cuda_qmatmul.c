/* The CUDA decode products on packed weights (gq_cuda_qmatmul) against quant.h: for every
 * format and odd shapes, y = x W^T + bias with W uploaded exactly as packed on the host, compared
 * with a double-precision product of gq_dequantize's weights. Bound: |gpu - ref| <= 1e-5 *
 * sum_k |w x| + 1e-7 (fp32 accumulation of at most a few thousand terms). Token counts 1, 3 and
 * 11 (two passes of at most 8) in registers, and 20 (the tiled GEMM that dequantizes its weight
 * tiles; a 4200 x 1024 matrix spans many tiles). The runner's fused forms against the launches
 * they replace, bit for bit: the GELU epilogue (every M), and on one token the layernorm
 * prologue (+ GELU) and the residual epilogue (check_ep). Exits 77 without a GPU.
 * The same source builds test_qmatmul_emu (GQ_TEST_EMU): the CUDA backend's sources run on the
 * CPU emulator (gq_kernels_emu, docs/GPU.md), on fewer groups and shapes. */
#include "act_math.h"
#include "cuda_ops.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "gq_test_qmat.h"
#include <stdlib.h>

static void *up(const void *h, size_t bytes) {
    void *d = NULL;
    if (!h) return NULL;
    CHECK_OK(gq_cuda_alloc(&d, bytes));
    CHECK_OK(gq_cuda_upload(d, h, bytes));
    return d;
}

/* gq_cuda_qmatmul_ep on one token against the separate launches it replaces, bit for bit: the
 * layernorm prologue (vs gq_cuda_layernorm_forward, then the product), with GELU, and the
 * residual epilogue (vs y0 + the product); int8 activations in the prologue (--act int8's
 * decode step: vs gq_cuda_act_fakequant of the row, then the product), after the layernorm and
 * alone; more than 2048 columns for a layernorm, rows not of whole blocks of 32 for int8, or
 * more tokens, refused. y: the plain product of dx (downloaded). */
static void check_ep(const char *fmt, const gq_qmat *d, int cols, const float *dx, const float *db, const float *y,
                     gq_rng *rng) {
    const int rows = d->rows;
    float *w = malloc((size_t)cols * 4), *b = malloc((size_t)cols * 4), *y0 = malloc((size_t)rows * 4);
    float *ref = malloc((size_t)rows * 4), *got = malloc((size_t)rows * 4);
    for (int c = 0; c < cols; c++)
        w[c] = 0.5f + gq_rng_float(rng), b[c] = gq_rng_float(rng) - 0.5f;
    for (int r = 0; r < rows; r++)
        y0[r] = 4.0f * gq_rng_float(rng) - 2.0f;
    float *dw = up(w, (size_t)cols * 4), *dbn = up(b, (size_t)cols * 4), *dy = NULL, *dln = NULL, *dstat = NULL;
    CHECK_OK(gq_cuda_alloc((void **)&dy, (size_t)rows * 4));
    CHECK_OK(gq_cuda_alloc((void **)&dln, (size_t)cols * 4));
    CHECK_OK(gq_cuda_alloc((void **)&dstat, 8));
    /* residual: y = y0 + product */
    const gq_qmm_ep res = {NULL, NULL, 0, 1, 0};
    CHECK_OK(gq_cuda_upload(dy, y0, (size_t)rows * 4));
    CHECK_OK(gq_cuda_qmatmul_ep(dy, dx, 1, d, db, &res));
    CHECK_OK(gq_cuda_download(got, dy, (size_t)rows * 4));
    long bad = 0;
    for (int r = 0; r < rows; r++)
        bad += memcmp(&got[r], &(float){y0[r] + y[r]}, 4) != 0;
    CHECKF(bad == 0, "%s [%d,%d]: %ld residual outputs differ from y0 + product", fmt, rows, cols, bad);
    /* the layernorm prologue, without and with GELU */
    for (int k = 0; k < 3; k++) { /* k: GELU; 2: int8 activations after the layernorm, with GELU */
        const int gelu = k > 0, a8 = k == 2;
        const gq_qmm_ep ln = {dw, dbn, gelu, 0, a8};
        const int rc = gq_cuda_qmatmul_ep(dy, dx, 1, d, db, &ln);
        if (cols > 2048 || (a8 && cols % 32)) {
            CHECKF(rc == GQ_EUNSUPPORTED, "%s [%d,%d]: a layernorm prologue%s over %d columns was not refused", fmt,
                   rows, cols, a8 ? " with int8 activations" : "", cols);
            continue;
        }
        CHECK_OK(rc);
        CHECK_OK(gq_cuda_download(got, dy, (size_t)rows * 4));
        CHECK_OK(gq_cuda_layernorm_forward(dln, dstat, dstat + 1, dx, dw, dbn, 1, cols));
        if (a8) CHECK_OK(gq_cuda_act_fakequant(dln, (size_t)cols, 0));
        CHECK_OK(gq_cuda_qmatmul(dy, dln, 1, d, db));
        CHECK_OK(gq_cuda_download(ref, dy, (size_t)rows * 4));
        bad = 0;
        for (int r = 0; r < rows; r++)
            bad += memcmp(&got[r], &(float){gelu ? gq_gelu(ref[r]) : ref[r]}, 4) != 0;
        CHECKF(bad == 0, "%s [%d,%d] gelu %d int8 act. %d: %ld outputs of the layernorm prologue differ from layernorm + product",
               fmt, rows, cols, gelu, a8, bad);
    }
    { /* int8 activations alone, with the residual epilogue (the projections' decode step) */
        const gq_qmm_ep ra = {NULL, NULL, 0, 1, 1};
        CHECK_OK(gq_cuda_upload(dy, y0, (size_t)rows * 4));
        const int rc = gq_cuda_qmatmul_ep(dy, dx, 1, d, db, &ra);
        if (cols % 32) {
            CHECKF(rc == GQ_EUNSUPPORTED, "%s [%d,%d]: int8 activations over %d columns were not refused", fmt, rows,
                   cols, cols);
        } else {
            CHECK_OK(rc);
            CHECK_OK(gq_cuda_download(got, dy, (size_t)rows * 4));
            CHECK_OK(gq_cuda_copy(dln, dx, (size_t)cols * 4));
            CHECK_OK(gq_cuda_act_fakequant(dln, (size_t)cols, 0));
            CHECK_OK(gq_cuda_qmatmul(dy, dln, 1, d, db));
            CHECK_OK(gq_cuda_download(ref, dy, (size_t)rows * 4));
            bad = 0;
            for (int r = 0; r < rows; r++)
                bad += memcmp(&got[r], &(float){y0[r] + ref[r]}, 4) != 0;
            CHECKF(bad == 0, "%s [%d,%d]: %ld outputs with int8 activations in the prologue differ from act. "
                   "fake-quant + product", fmt, rows, cols, bad);
        }
    }
    CHECKF(gq_cuda_qmatmul_ep(dy, dx, 3, d, db, &res) == GQ_EUNSUPPORTED, "%s: a residual epilogue on 3 tokens", fmt);
    gq_cuda_free(dw), gq_cuda_free(dbn), gq_cuda_free(dy), gq_cuda_free(dln), gq_cuda_free(dstat);
    free(w), free(b), free(y0), free(ref), free(got);
}

static void one(const char *fmt, gq_qspec spec, int rows, int cols, gq_rng *rng) {
    if (spec.format != GQ_QF_F32 && gq_qspec_problem(&spec, rows, cols)) return;
    mat m;
    make(&m, &spec, rows, cols, rng);
    gq_qmat d = m.w; /* the same layout with device pointers */
    size_t groups = spec.format == GQ_QF_F32 ? 0 : gq_qn_groups(&spec, rows, cols);
    d.f32 = up(m.w.f32, (size_t)rows * cols * 4);
    d.q = up(m.w.q, gq_qpacked_bytes(&spec, rows, cols));
    d.s16 = up(m.w.s16, groups * 2);
    d.s32 = up(m.w.s32, groups * 4);
    d.zeros = up(m.w.zeros, groups);
    d.absmax_q = up(m.w.absmax_q, groups);
    d.absmax2 = up(m.w.absmax2, (groups / GQ_DQ_BLOCK + 1) * 4);
    const int Ms[4] = {1, 3, 11, 20};
    for (int t = 0; t < 4; t++) {
        int M = Ms[t];
        float *x = malloc((size_t)M * cols * 4), *bias = malloc((size_t)rows * 4), *y = malloc((size_t)M * rows * 4);
        for (int i = 0; i < M * cols; i++)
            x[i] = 2.0f * gq_rng_float(rng) - 1.0f;
        for (int r = 0; r < rows; r++)
            bias[r] = gq_rng_float(rng) - 0.5f;
        float *dx = up(x, (size_t)M * cols * 4), *db = up(bias, (size_t)rows * 4), *dy = NULL;
        CHECK_OK(gq_cuda_alloc((void **)&dy, (size_t)M * rows * 4));
        CHECK_OK(gq_cuda_qmatmul(dy, dx, M, &d, t == 1 ? NULL : db));
        CHECK_OK(gq_cuda_download(y, dy, (size_t)M * rows * 4));
        double worst = 0;
        for (int mm = 0; mm < M; mm++)
            for (int r = 0; r < rows; r++) {
                double ref = t == 1 ? 0 : bias[r], mag = 0;
                for (int k = 0; k < cols; k++) {
                    double p = (double)m.deq[(size_t)r * cols + k] * x[(size_t)mm * cols + k];
                    ref += p, mag += fabs(p);
                }
                double e = fabs(y[(size_t)mm * rows + r] - ref) / (1e-5 * mag + 1e-7);
                worst = e > worst ? e : worst;
            }
        CHECKF(worst <= 1.0, "%s g%d [%d,%d] M=%d: error %.3g of the bound", fmt, m.w.group, rows, cols, M, worst);
        if (t == 0)
            printf("%-8s g%-5d [%4d,%4d] M=1,3,11,20: worst error %.3f of the bound\n", fmt, m.w.group, rows, cols,
                   worst);
        /* the GELU epilogue: act_math.h's GELU of the same products, bit for bit (the runner's
         * MLP, one launch instead of product + gelu kernel) */
        float *y2 = malloc((size_t)M * rows * 4);
        const gq_qmm_ep gelu = {NULL, NULL, 1, 0, 0};
        CHECK_OK(gq_cuda_qmatmul_ep(dy, dx, M, &d, t == 1 ? NULL : db, &gelu));
        CHECK_OK(gq_cuda_download(y2, dy, (size_t)M * rows * 4));
        long bad = 0;
        for (long i = 0; i < (long)M * rows; i++)
            bad += memcmp(&y2[i], &(float){gq_gelu(y[i])}, 4) != 0;
        CHECKF(bad == 0, "%s g%d [%d,%d] M=%d: %ld GELU outputs differ from gelu(product)", fmt, m.w.group, rows, cols,
               M, bad);
        free(y2);
        if (M == 1) check_ep(fmt, &d, cols, dx, t == 1 ? NULL : db, y, rng);
        gq_cuda_free(dx), gq_cuda_free(db), gq_cuda_free(dy);
        free(x), free(bias), free(y);
    }
    const void *bufs[] = {d.f32, d.q, d.s16, d.s32, d.zeros, d.absmax_q, d.absmax2};
    for (int i = 0; i < 7; i++)
        if (bufs[i]) gq_cuda_free((void *)bufs[i]);
    drop(&m);
}

int main(void) {
    if (gq_cuda_device_count() <= 0) SKIP("no CUDA device");
    gq_rng rng;
    gq_rng_seed(&rng, 2026);
    const struct {
        const char *name;
        gq_qformat f;
        int dq;
    } fmts[] = {{"f32", GQ_QF_F32, 0},     {"int8", GQ_QF_INT8, 0}, {"q8_0", GQ_QF_Q8_0, 0}, {"int4", GQ_QF_INT4, 0},
                {"int4a", GQ_QF_INT4A, 0}, {"int3", GQ_QF_INT3, 0}, {"int2", GQ_QF_INT2, 0}, {"nf4", GQ_QF_NF4, 0},
                {"nf4-dq", GQ_QF_NF4, 1},  {"fp4", GQ_QF_FP4, 0}};
    /* on the CPU emulator (test_qmatmul_emu), and with GQ_TEST_SMALL set (the sanitizers' runs:
     * racecheck did not finish the full set in 100 s on the H200): every path, fewer repeats of it */
    static const int groups_small[] = {32, 64, 8}; /* 8: the generic path */
    static const int shapes_small[][2] = {{37, 256}, {3, 1024}, {65, 96}, {11, 1600}, {9, 2304}};
    static const int groups_full[] = {32, 64, 128, 8, 16}; /* 8 and 16: the generic path */
    /* 4200 x 1024: many GEMM tiles (int4 g64 and fp32 only) */
    static const int shapes_full[][2] = {{37, 256}, {130, 768}, {3, 1024}, {65, 96}, {11, 1600}, {9, 2304}, {4200, 1024}};
#ifdef GQ_TEST_EMU
    const int small = 1;
#else
    const int small = getenv("GQ_TEST_SMALL") != NULL;
#endif
    const int *groups = small ? groups_small : groups_full;
    const int(*shapes)[2] = small ? shapes_small : shapes_full;
    const size_t ng = small ? sizeof groups_small / sizeof *groups_small : sizeof groups_full / sizeof *groups_full;
    const size_t ns = small ? sizeof shapes_small / sizeof *shapes_small : sizeof shapes_full / sizeof *shapes_full;
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++)
        for (size_t g = 0; g < ng; g++)
            for (size_t s = 0; s < ns; s++) {
                if (f < 3 && g) continue; /* f32, int8 per row, q8_0: fixed groups */
                if (shapes[s][0] > 1000 && f != 0 && !(fmts[f].f == GQ_QF_INT4 && groups[g] == 64)) continue;
                gq_qspec spec = {fmts[f].f, fmts[f].f == GQ_QF_Q8_0 ? 32 : groups[g], fmts[f].dq, 0, 0, 0};
                one(fmts[f].name, spec, shapes[s][0], shapes[s][1], &rng);
            }
    return gq_test_finish("test_cuda_qmatmul");
}
