/* The packed quantized matmul kernels (kernels/qmatmul.h) on every format and odd shapes:
 *   - the row dequantizer (every variant) equals quant.h's gq_dequantize bit for bit;
 *   - the scalar row kernel equals a double-precision dot of the dequantized weights with the
 *     activations it uses (float, or the int8 blocks dequantized for the integer path), and
 *     stays within the activation-rounding bound of the float result;
 *   - every SIMD variant this CPU runs equals the scalar kernel up to fp32 summation order, and
 *     every VNNI variant equals the AVX2 one bit for bit (the same integer sums); the VNNI
 *     kernels also run here through SIMDe's portable versions of their instructions
 *     ("vnni_emu", tests/qdot_emu.c) when SIMDe's headers are installed, so they are checked
 *     on CPUs without VNNI too;
 *   - the driver (row path with bias, panel path with several panels and with one) equals the
 *     dequantize-to-fp32 matmul;
 *   - fp16 row conversions and the decode attention op: every variant gives the scalar bits.
 * int4, int4a, nf4, fp4, int3 and int2 matrices are checked again after gq_qmat_to_x8 (the CPU
 * runner's 8-row layout), including row ranges that cut an 8-row block. */
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "act_math.h"
#include "qmatmul.h"
#include "qplan.h"
#include "gq_test_qmat.h"

#include <math.h>
#include <string.h>

#ifdef GQ_TEST_VNNI_EMU
extern const gq_qdot_ops gq_qdot_vnni_emu;
#endif
/* The variants to check: scalar first, then every one this CPU runs. */
static const gq_qdot_ops *vars[8];
static int nvars;
static void find_variants(void) {
    for (int i = 0; gq_qdot_names[i]; i++)
        if (gq_qdot_variant(gq_qdot_names[i]) && gq_qdot_supported(gq_qdot_names[i]))
            vars[nvars++] = gq_qdot_variant(gq_qdot_names[i]);
#ifdef GQ_TEST_VNNI_EMU
    if (gq_qdot_supported("avx2")) vars[nvars++] = &gq_qdot_vnni_emu; /* built with AVX2 underneath */
#endif
    printf("variants checked:");
    for (int v = 0; v < nvars; v++)
        printf(" %s", vars[v]->name);
    printf("\n");
}

/* Every check on one matrix in its present layout (fmt names the format and the layout). */
static void check(const char *fmt, const gq_qspec *sp, mat *mp, gq_rng *rng) {
    const gq_qspec s = *sp;
    mat m = *mp;
    const int rows = m.w.rows, cols = m.w.cols;
    const int K = cols, N = rows, M = 3, nb = K / 32 ? K / 32 : 1;
    /* 1. exact row dequantization */
    float *d = malloc(sizeof(float) * N * K);
    gq_qmat_dequant_rows(&m.w, 0, N, d);
    CHECKF(!memcmp(d, m.deq, sizeof(float) * N * K), "%s %dx%d: row dequantizer != gq_dequantize", fmt, rows, cols);
    for (int v = 0; v < nvars && N >= 2; v++) { /* every variant, and a range that starts past row 0 */
        const gq_qdot_ops *ops = vars[v];
        memset(d, 0, sizeof(float) * N * K);
        ops->dequant(&m.w, 1, N, d);
        CHECKF(!memcmp(d, m.deq + K, sizeof(float) * (N - 1) * K), "%s %dx%d: %s dequant of rows 1.. != gq_dequantize",
               fmt, rows, cols, ops->name);
    }
    /* 2. activations */
    float *x = malloc(sizeof(float) * M * K);
    for (int i = 0; i < M * K; i++)
        x[i] = randn(rng);
    x[5] = 9.0f;
    gq_qact a = {x, malloc(M * K), malloc(sizeof(float) * M * nb), malloc(sizeof(int32_t) * M * nb), M, K, 0};
    const int ip = gq_qmat_int_path(&m.w);
    if (ip) gq_qact_quantize(&a);
    for (int v = 0; v < nvars && ip; v++) { /* every variant's activation quantizer: the same bytes */
        const gq_qdot_ops *ops = vars[v];
        gq_qact b = a;
        b.q = malloc(M * K), b.d = malloc(sizeof(float) * M * nb), b.bsum = malloc(sizeof(int32_t) * M * nb);
        ops->quantize(&b, 0, (size_t)M * nb);
        CHECKF(!memcmp(b.q, a.q, (size_t)M * K) && !memcmp(b.d, a.d, sizeof(float) * M * nb) &&
                   !memcmp(b.bsum, a.bsum, sizeof(int32_t) * M * nb),
               "%s %dx%d: %s activation quantizer differs", fmt, rows, cols, ops->name);
        free(b.q), free(b.d), free(b.bsum);
    }
    float *ys = malloc(sizeof(float) * M * N), *yv = malloc(sizeof(float) * M * N);
    gq_qdot_variant("scalar")->rows(&m.w, 0, N, &a, ys, N);
    double worst_ref = 0, worst_bound = 0;
    for (int t = 0; t < M; t++)
        for (int r = 0; r < N; r++) {
            double ref = 0, exact = 0, mag = 0, bound = 0;
            for (int i = 0; i < K; i++) {
                double w = m.deq[(size_t)r * K + i], xv = x[t * K + i], wk = w;
                double xa = ip ? (double)a.q[t * K + i] * a.d[t * nb + i / 32] : xv;
                if (ip && s.format == GQ_QF_NF4) { /* the kernel's codebook: gq_nf4_i16 * 2^-14 * scale */
                    const double sc = m.q.scales[((size_t)r * K + i) / m.w.group];
                    int c = 0;
                    while (c < 15 && gq_nf4_value(c) * (float)sc != (float)w)
                        c++;
                    wk = gq_nf4_i16(c) / 16384.0 * sc;
                    bound += fabs(xv) * fabs(sc) / 32768.0; /* codebook rounding: half a unit of 2^-14 */
                }
                ref += wk * xa, exact += w * xv, mag += fabs(wk * xa);
                if (ip) bound += fabs(wk) * a.d[t * nb + i / 32] * 0.5;
            }
            double e1 = fabs(ys[t * N + r] - ref) / (mag + 1e-30), e2 = fabs(ys[t * N + r] - exact) - bound;
            worst_ref = e1 > worst_ref ? e1 : worst_ref;
            worst_bound = e2 > worst_bound ? e2 : worst_bound;
        }
    CHECKF(worst_ref < 2e-6, "%s %dx%d: scalar kernel vs double reference: %.3g (relative to sum |w x|)", fmt, rows,
           cols, worst_ref);
    CHECKF(worst_bound < 1e-5, "%s %dx%d: int8 activations off by %.3g beyond their rounding bound", fmt, rows, cols,
           worst_bound);
    /* 3. SIMD variants vs scalar */
    float *y2 = NULL; /* the AVX2 variant's results */
    for (int v = 1; v < nvars; v++) {
        const gq_qdot_ops *ops = vars[v];
        ops->rows(&m.w, 0, N, &a, yv, N);
        if (!strcmp(ops->name, "avx2")) {
            y2 = malloc(sizeof(float) * M * N);
            memcpy(y2, yv, sizeof(float) * M * N);
        } else if (y2) { /* VNNI: the same integer sums in the same order */
            CHECKF(!memcmp(y2, yv, sizeof(float) * M * N), "%s %dx%d: %s differs from avx2", fmt, rows, cols,
                   ops->name);
        }
        /* the SIMD kernel sums unsigned codes and subtracts offset * sum(x): its round-off is
         * relative to sum |x| (|w| + 16 scale), not to sum |w x| */
        double worst = 0;
        for (int t = 0; t < M; t++)
            for (int r = 0; r < N; r++) {
                double mag = 0;
                for (int i = 0; i < K; i++) {
                    double sc = s.format == GQ_QF_F32 ? 0 : m.q.scales[((size_t)r * K + i) / m.w.group];
                    mag += fabs(x[t * K + i]) *
                           (fabs(m.deq[(size_t)r * K + i]) + (ip ? 16 * fabs(sc) : 0)); /* (int4 scales carry a sign) */
                }
                double e = fabs(yv[t * N + r] - ys[t * N + r]) / (mag + 1e-30);
                worst = e > worst ? e : worst;
            }
        CHECKF(worst < 1e-5, "%s %dx%d: %s vs scalar: %.3g", fmt, rows, cols, ops->name, worst);
        /* one token alone (decode; some kernels take a one-token path): token 0's results, bit for bit */
        {
            gq_qact a1 = a;
            a1.M = 1;
            float *y1 = malloc(sizeof(float) * N);
            ops->rows(&m.w, 0, N, &a1, y1, N);
            CHECKF(!memcmp(y1, yv, sizeof(float) * N), "%s %dx%d: %s, one token differs from token 0 of three", fmt,
                   rows, cols, ops->name);
            free(y1);
        }
        /* five tokens (the 8-row kernels take 4 at a time, then 1): each token's results are the
         * bits it gets alone */
        if (ip) {
            enum { M5 = 5 };
            float *x5 = malloc(sizeof(float) * M5 * K), *y5 = malloc(sizeof(float) * M5 * N),
                  *y1 = malloc(sizeof(float) * N);
            for (int i = 0; i < M5 * K; i++)
                x5[i] = randn(rng);
            gq_qact a5 = {
                x5, malloc((size_t)M5 * K), malloc(sizeof(float) * M5 * nb), malloc(sizeof(int32_t) * M5 * nb), M5, K,
                0};
            gq_qact_quantize(&a5);
            ops->rows(&m.w, 0, N, &a5, y5, N);
            int same = 1;
            for (int t = 0; t < M5; t++) {
                gq_qact a1 = {
                    x5 + (size_t)t * K, a5.q + (size_t)t * K, a5.d + (size_t)t * nb, a5.bsum + (size_t)t * nb, 1, K, 0};
                ops->rows(&m.w, 0, N, &a1, y1, N);
                same &= !memcmp(y1, y5 + (size_t)t * N, sizeof(float) * N);
            }
            CHECKF(same, "%s %dx%d: %s, five tokens differ from one at a time", fmt, rows, cols, ops->name);
            free(x5), free(y5), free(y1), free(a5.q), free(a5.d), free(a5.bsum);
        }
        /* a row range in the middle writes only its rows */
        if (N > 3) {
            float *yr = malloc(sizeof(float) * M * N);
            for (int i = 0; i < M * N; i++)
                yr[i] = -7.0f;
            ops->rows(&m.w, 1, N - 1, &a, yr + 1, N);
            int ok = 1;
            for (int t = 0; t < M; t++) {
                ok &= yr[t * N] == -7.0f && yr[t * N + N - 1] == -7.0f;
                for (int r = 1; r < N - 1; r++)
                    ok &= yr[t * N + r] == yv[t * N + r];
            }
            CHECKF(ok, "%s %dx%d: %s row range", fmt, rows, cols, ops->name);
            free(yr);
        }
    }
    /* 4. the driver: row path with bias (M = 3), panel path (M = 20) vs the fp32 matmul */
    float *bias = malloc(sizeof(float) * N);
    for (int r = 0; r < N; r++)
        bias[r] = randn(rng);
    float *yd = malloc(sizeof(float) * M * N);
    gq_qdot()->rows(&m.w, 0, N, &a, yv, N); /* the variant the driver uses */
    gq_qmatmul(yd, &a, 0, &m.w, bias, 0, NULL, 0);
    int ok = 1;
    for (int t = 0; t < M; t++)
        for (int r = 0; r < N; r++)
            ok &= fabsf(yd[t * N + r] - bias[r] - yv[t * N + r]) <= 1e-5f * (1 + fabsf(yv[t * N + r]));
    CHECKF(ok, "%s %dx%d: driver row path + bias", fmt, rows, cols);
    /* the GELU epilogue: the same as GELU applied afterwards, on both paths */
    {
        float *yg = malloc(sizeof(float) * M * N);
        gq_qmatmul(yg, &a, 1, &m.w, bias, 1, NULL, 0);
        int same = 1;
        for (int i = 0; i < M * N; i++)
            same &= yg[i] == gq_gelu(yd[i]);
        CHECKF(same, "%s %dx%d: GELU epilogue (row path)", fmt, rows, cols);
        free(yg);
    }
    const int MP = 20;
    float *xp = malloc(sizeof(float) * MP * K), *yp = malloc(sizeof(float) * MP * N),
          *panel = malloc(sizeof(float) * 3 * K);
    for (int i = 0; i < MP * K; i++)
        xp[i] = randn(rng);
    gq_qact ap = {xp, NULL, NULL, NULL, MP, K, 0};
    for (int pass = 0; pass < 2; pass++) {
        size_t pf = pass ? (size_t)3 * K : (size_t)N * K; /* several panels, then one */
        float *pb = pass ? panel : malloc(sizeof(float) * pf);
        gq_qmatmul(yp, &ap, 0, &m.w, bias, 0, pb, pf);
        double worst = 0;
        for (int t = 0; t < MP; t++)
            for (int r = 0; r < N; r++) {
                double ref = bias[r], mag = fabs(bias[r]);
                for (int i = 0; i < K; i++)
                    ref += (double)m.deq[(size_t)r * K + i] * xp[t * K + i],
                        mag += fabs((double)m.deq[(size_t)r * K + i] * xp[t * K + i]);
                double e = fabs(yp[t * N + r] - ref) / (mag + 1e-30);
                worst = e > worst ? e : worst;
            }
        CHECKF(worst < 2e-6, "%s %dx%d: panel path (%s) vs double: %.3g", fmt, rows, cols,
               pass ? "3-row panels" : "one panel", worst);
        if (pass) {
            float *yg = malloc(sizeof(float) * MP * N);
            gq_qmatmul(yg, &ap, 0, &m.w, bias, 1, pb, pf);
            int same = 1;
            for (int i = 0; i < MP * N; i++)
                same &= yg[i] == gq_gelu(yp[i]);
            CHECKF(same, "%s %dx%d: GELU epilogue (panel path)", fmt, rows, cols);
            free(yg);
        }
        if (!pass) free(pb);
    }
    /* 8-row layout, prompts (int_rows): 20 tokens and, on a small matrix, more tokens than the
     * kernel's 16384-float buffer of group sums holds at once, through the row path: every
     * token's results are the bits it gets alone (the one-token kernel) plus the bias */
    if (m.w.x8 && ip && s.format != GQ_QF_NF4) { /* the driver's rows_anyway */
        const int ngs = K / m.w.group, MC = rows <= 64 ? 16384 / ngs + 5 : MP;
        float *xc = malloc(sizeof(float) * MC * K), *yc = malloc(sizeof(float) * MC * N),
              *y1 = malloc(sizeof(float) * N);
        for (int i = 0; i < MC * K; i++)
            xc[i] = randn(rng);
        gq_qact ai = {
            xc, malloc((size_t)MC * K), malloc(sizeof(float) * MC * nb), malloc(sizeof(int32_t) * MC * nb), MC, K, 1};
        gq_qmatmul(yc, &ai, 0, &m.w, bias, 0, panel, (size_t)3 * K);
        int same = 1;
        for (int t = 0; t < MC; t++) {
            gq_qact a1 = {
                xc + (size_t)t * K, ai.q + (size_t)t * K, ai.d + (size_t)t * nb, ai.bsum + (size_t)t * nb, 1, K, 0};
            gq_qdot()->rows(&m.w, 0, N, &a1, y1, N);
            for (int r = 0; r < N; r++)
                same &= yc[(size_t)t * N + r] == y1[r] + bias[r];
        }
        CHECKF(same, "%s %dx%d: %d tokens on the 8-row integer path differ from one token at a time", fmt, rows, cols,
               MC);
        free(xc), free(yc), free(y1), free(ai.q), free(ai.d), free(ai.bsum);
    }
    free(xp), free(yp), free(panel), free(bias), free(yd);
    free(d), free(x), free(a.q), free(a.d), free(a.bsum), free(ys), free(yv), free(y2);
}

static void one(const char *fmt, int rows, int cols, gq_rng *rng) {
    gq_qspec s = {GQ_QF_F32, 0, 0, 0, 0, 0};
    if (strcmp(fmt, "f32") && gq_qformat_parse(fmt, 0, &s)) {
        CHECKF(0, "format %s", fmt);
        return;
    }
    mat m;
    make(&m, &s, rows, cols, rng);
    check(fmt, &s, &m, rng);
    /* the CPU runner's 8-row layout (int4, int4a): the same checks on the rearranged matrix */
    if (gq_qmat_x8_able(&m.w)) {
        char label[64];
        snprintf(label, sizeof label, "%s (x8)", fmt);
        CHECKF(gq_qmat_to_x8(&m.w) == 0 && m.w.x8, "%s %dx%d: to_x8", fmt, rows, cols);
        check(label, &s, &m, rng);
    }
    drop(&m);
}

/* The integer kernels' sums at their largest: every weight at its format's largest code (rows
 * alternately positive and negative) times activations all at +-127, so that an int16 partial
 * sum that could overflow would (e.g. 8 products of fp4's 24 x 127 pairs): every variant,
 * both layouts, against the scalar kernel (exact int32 sums) within fp32 round-off. */
static void check_extremes(void) {
    const char *fmts[] = {"int8", "q8_0",    "int4-g32", "int4-g64", "int4a-g64", "nf4",
                          "fp4",  "fp4-g32", "int3-g64", "int3-g32", "int2-g32",  "int2-g64"};
    enum { R = 32, K = 256, M = 5 };
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++) {
        gq_qspec s;
        CHECKF(gq_qformat_parse(fmts[f], 0, &s) == 0, "format %s", fmts[f]);
        for (int sign = 0; sign < 2; sign++)
            for (int x8 = 0; x8 < 2; x8++) {
                float *wt = malloc(sizeof(float) * R * K), x[M * K], ys[M * R], yv[M * R];
                for (int r = 0; r < R; r++)
                    for (int i = 0; i < K; i++)
                        wt[r * K + i] = r % 2 ? -1.0f : 1.0f;
                for (int i = 0; i < M * K; i++)
                    x[i] = sign ? -1.0f : 1.0f;
                mat m;
                make_from(&m, &s, R, K, wt);
                if (x8 && (!gq_qmat_x8_able(&m.w) || gq_qmat_to_x8(&m.w))) {
                    drop(&m);
                    continue;
                }
                int8_t q[M * K];
                float d[M * K / 32];
                int32_t bs[M * K / 32];
                gq_qact a = {x, q, d, bs, M, K, 0};
                gq_qact_quantize(&a);
                gq_qdot_variant("scalar")->rows(&m.w, 0, R, &a, ys, R);
                for (int v = 1; v < nvars; v++) {
                    vars[v]->rows(&m.w, 0, R, &a, yv, R);
                    double worst = 0;
                    for (int i = 0; i < M * R; i++)
                        worst = fmax(worst, fabs(yv[i] - ys[i]) / (fabs(ys[i]) + 1e-30));
                    CHECKF(worst < 1e-5, "%s%s extremes (x %s): %s vs scalar: %.3g", fmts[f], x8 ? " (x8)" : "",
                           sign ? "-127" : "+127", vars[v]->name, worst);
                }
                drop(&m);
            }
    }
}

/* fp16 row conversions: every variant gives quant.h's bits (normal, subnormal, overflow,
 * ties, odd lengths) */
static void check_f16(gq_rng *rng) {
    enum { N = 1003 };
    float x[N], back[N];
    uint16_t h[N];
    for (int i = 0; i < N; i++) {
        float u = gq_rng_float(rng) - 0.5f;
        x[i] = i % 5 == 0 ? u * 1e-6f : i % 5 == 1 ? u * 1.5e5f : u * 8.0f; /* subnormal, overflow, normal */
    }
    x[3] = 1.0f + 1.0f / 2048; /* a tie: rounds to even (1.0) */
    x[4] = -0.0f;
    for (int v = 0; v < nvars; v++) {
        const gq_qdot_ops *ops = vars[v];
        ops->to_f16(h, x, N);
        ops->from_f16(back, h, N);
        size_t bad = 0;
        for (int i = 0; i < N; i++) {
            uint16_t want = gq_f32_to_f16(x[i]);
            float wb = gq_f16_to_f32(want);
            bad += h[i] != want || memcmp(&back[i], &wb, 4) != 0;
        }
        printf("fp16 rows (%s): %zu of %d differ from quant.h\n", ops->name, bad, N);
        CHECK(bad == 0);
    }
}

/* The decode attention op: for fp16 and fp32 caches and several head sizes (SIMD path, odd
 * sizes, sizes past the register budget), every variant equals the scalar one bit for bit and
 * the scalar one equals a double-precision softmax attention over the same (fp16-rounded)
 * values to 1e-5. */
static void check_attend(gq_rng *rng) {
    enum { N = 77, LD = 300 };
    static float q[256], k32[N * LD], v32[N * LD], s[N], out[256], want[256];
    static uint16_t k16[N * LD], v16[N * LD];
    const int sizes[] = {64, 16, 24, 80, 128, 256};
    for (int i = 0; i < N * LD; i++) {
        k32[i] = (gq_rng_float(rng) - 0.5f) * 4.0f, v32[i] = gq_rng_float(rng) - 0.5f;
        k16[i] = gq_f32_to_f16(k32[i]), v16[i] = gq_f32_to_f16(v32[i]);
    }
    for (int i = 0; i < 256; i++)
        q[i] = gq_rng_float(rng) - 0.5f;
    for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++)
        for (int f16 = 0; f16 < 2; f16++)
            for (int n = 1; n <= N; n += 19) {
                const int hs = sizes[z];
                const size_t ld = hs <= LD / 2 ? LD / 2 : LD; /* rows at a stride, as in the cache */
                const float scale = 1.0f / sqrtf((float)hs);
                double sc[N], mx = -1e300, sum = 0, worst = 0;
                for (int u = 0; u < n; u++) {
                    double d = 0;
                    for (int e = 0; e < hs; e++)
                        d += (double)q[e] * (f16 ? gq_f16_to_f32(k16[u * ld + e]) : k32[u * ld + e]);
                    sc[u] = d * scale;
                    mx = fmax(mx, sc[u]);
                }
                for (int u = 0; u < n; u++)
                    sum += sc[u] = exp(sc[u] - mx);
                gq_qdot_variant("scalar")->attend(want, q, f16 ? k16 : NULL, f16 ? v16 : NULL, k32, v32, ld, n, hs,
                                                  scale, s);
                for (int e = 0; e < hs; e++) {
                    double o = 0;
                    for (int u = 0; u < n; u++)
                        o += sc[u] / sum * (f16 ? gq_f16_to_f32(v16[u * ld + e]) : v32[u * ld + e]);
                    worst = fmax(worst, fabs(o - want[e]));
                }
                CHECKF(worst <= 1e-5, "attend hs %d n %d fp16 %d: %g from the double reference", hs, n, f16, worst);
                for (int v = 1; v < nvars; v++) {
                    const gq_qdot_ops *ops = vars[v];
                    ops->attend(out, q, f16 ? k16 : NULL, f16 ? v16 : NULL, k32, v32, ld, n, hs, scale, s);
                    CHECKF(!memcmp(out, want, (size_t)hs * 4), "attend (%s) hs %d n %d fp16 %d differs from scalar",
                           ops->name, hs, n, f16);
                }
            }
}

int main(void) {
    gq_rng rng;
    gq_rng_seed(&rng, 42);
    printf("row kernel in use: %s\n", gq_qdot()->name);
    find_variants();
    const char *fmts[] = {"f32",       "int8",     "q8_0",     "int4-g32", "int4-g64", "int4-g128", "int4a-g64",
                          "int4a-g32", "int3-g64", "int2-g32", "int3-g32", "int2-g64", "nf4",       "nf4-dq",
                          "nf4-g32",   "fp4",      "fp4-g32",  "int4-g16", "nf4-g16"};
    const int shapes[][2] = {{1, 128}, {7, 256}, {37, 384}, {130, 768}, {300, 64 * 3}};
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++)
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            int rows = shapes[k][0], cols = shapes[k][1];
            if (strstr(fmts[f], "g128") && cols % 128) continue;
            one(fmts[f], rows, cols, &rng);
        }
    /* a nf4-dq matrix with more than 256 groups per second-level block boundary */
    one("nf4-dq", 520, 64, &rng);
    /* nf4 with more columns than the AVX2 kernels' int16 activation buffers (16384) */
    one("nf4", 9, 16448, &rng);
    check_extremes();
    check_f16(&rng);
    check_attend(&rng);
    return gq_test_finish("qmatmul");
}
