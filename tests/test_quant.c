/* kernels/quant.h against independent references and known values:
 *   fp16: every one of the 65536 halves round-trips; 2M floats convert as GCC's _Float16;
 *   Q4_0 / Q8_0 blocks byte-identical to the gguf Python package's reference quantizer;
 *   NF4 codebook = bitsandbytes' table; FP4 = E2M1; all-zero groups; one large outlier;
 *   ties half to even (int8); NaN / inf rejected with the index; reconstruction error within
 *   half a step for every format; pack/unpack round trips; bits per weight arithmetic; the CPU
 *   fake-quant op (threaded over row chunks) equal to one whole-tensor quantize + dequantize;
 *   W8A8's int8 activation blocks against a double reference (test_act8); the searched scales
 *   (-mse, with and without channel importances) never worse than absmax on any group under
 *   their objective, within 3 % of a brute-force double-precision optimum, their codes the
 *   nearest ones (test_qsearch).
 * usage: test_quant FIXTURE_DIR(tests/fixtures/quant) */
#include "cpu_ops.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "quant.h"

#include <stdlib.h>

static uint8_t *read_all(const char *dir, const char *name, size_t *n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

typedef struct {
    gq_qtensor q;
    uint8_t *qw, *zeros;
    float *scales, *absmax2;
    int8_t *aq;
} holder;

static void alloc_q(holder *h, const gq_qspec *s, int rows, int cols) {
    size_t groups = gq_qn_groups(s, rows, cols);
    h->qw = calloc(gq_qpacked_bytes(s, rows, cols) + 1, 1);
    h->scales = calloc(groups, 4);
    h->zeros = calloc(groups, 1);
    h->aq = calloc(groups, 1);
    h->absmax2 = calloc(groups / GQ_DQ_BLOCK + 1, 4);
    h->q = (gq_qtensor){h->qw, h->scales, h->zeros, h->aq, h->absmax2, 0};
}

static void free_q(holder *h) { free(h->qw), free(h->scales), free(h->zeros), free(h->aq), free(h->absmax2); }

static void test_fp16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = gq_f16_to_f32((uint16_t)h);
        uint16_t back = gq_f32_to_f16(f);
        int is_nan = ((h >> 10) & 31) == 31 && (h & 0x3ff);
        bad += is_nan ? !(back & 0x3ff) || ((back >> 10) & 31) != 31 : back != h;
#ifdef __FLT16_MAX__ /* the compiler's own conversion as the independent reference */
        _Float16 ref;
        memcpy(&ref, &h, 2);
        bad += !is_nan && (float)ref != f;
#endif
    }
    CHECKF(bad == 0, "%d fp16 values do not round-trip", bad);
#ifndef __FLT16_MAX__
    printf("fp16: this compiler has no _Float16; float->half checked by round trips only\n");
#else
    gq_rng r;
    gq_rng_seed(&r, 3);
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)gq_rng_u64(&r);
        /* bias toward the interesting exponents: subnormal, normal range, overflow */
        bits = (bits & 0x807fffffu) | ((uint32_t)(96 + gq_rng_below(&r, 50)) << 23);
        float f;
        memcpy(&f, &bits, 4);
        _Float16 ref = (_Float16)f;
        uint16_t want;
        memcpy(&want, &ref, 2);
        bad += gq_f32_to_f16(f) != want;
    }
    CHECKF(bad == 0, "%d floats convert differently from _Float16", bad);
#endif
}

static void test_ggml_blocks(const char *dir) {
    size_t nx, n4, n8;
    float *x = (float *)read_all(dir, "input.f32", &nx);
    uint8_t *q4 = read_all(dir, "q4_0.bin", &n4), *q8 = read_all(dir, "q8_0.bin", &n8);
    CHECK(x && q4 && q8);
    if (!x || !q4 || !q8) return;
    const int cols = 256, rows = (int)(nx / 4 / cols), blocks = rows * cols / 32;
    CHECK(n4 == (size_t)blocks * 18 && n8 == (size_t)blocks * 34);
    gq_qspec s4 = {GQ_QF_INT4, 32, 0, 0, 0, 0}, s8 = {GQ_QF_Q8_0, 32, 0, 0, 0, 0};
    holder h4, h8;
    alloc_q(&h4, &s4, rows, cols);
    alloc_q(&h8, &s8, rows, cols);
    CHECK(gq_quantize(&s4, x, rows, cols, &h4.q, NULL) == 0);
    CHECK(gq_quantize(&s8, x, rows, cols, &h8.q, NULL) == 0);
    int diff4 = 0, diff8 = 0;
    for (int b = 0; b < blocks; b++) {
        uint8_t blk[34];
        uint16_t d = gq_f32_to_f16(h4.scales[b]);
        memcpy(blk, &d, 2);
        memcpy(blk + 2, h4.qw + 16 * b, 16);
        diff4 += memcmp(blk, q4 + 18 * b, 18) != 0;
        d = gq_f32_to_f16(h8.scales[b]);
        memcpy(blk, &d, 2);
        memcpy(blk + 2, h8.qw + 32 * b, 32);
        diff8 += memcmp(blk, q8 + 34 * b, 34) != 0;
    }
    printf("ggml blocks: %d/%d Q4_0 and %d/%d Q8_0 blocks differ from gguf-py\n", diff4, blocks, diff8, blocks);
    CHECK(diff4 == 0 && diff8 == 0);
    free_q(&h4), free_q(&h8), free(x), free(q4), free(q8);
}

static void test_codebooks(void) {
    const float nf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                           -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                           0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                           0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
    for (int k = 0; k < 16; k++) {
        CHECK(gq_nf4_value(k) == nf4[k]);
        CHECK(gq_nf4_code(nf4[k]) == k);
        if (k) CHECK(gq_nf4_code(0.5f * (nf4[k - 1] + nf4[k])) == k - 1); /* a midpoint goes down */
    }
    const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int k = 0; k < 8; k++) {
        CHECK(gq_fp4_value(k) == e2m1[k] && gq_fp4_value(k | 8) == -e2m1[k]);
        CHECK(gq_fp4_code(e2m1[k]) == k);
        if (k) CHECK(gq_fp4_code(-e2m1[k]) == (k | 8));
    }
    CHECK(gq_fp4_code(2.5f) == 4);  /* tie between 2 (code 4) and 3 (code 5): even code */
    CHECK(gq_fp4_code(1.75f) == 4); /* tie between 1.5 (3) and 2 (4): even */
    CHECK(gq_fp4_code(5.0f) == 6);  /* tie between 4 (6) and 6 (7) */
    CHECK(gq_fp4_code(9.0f) == 7);
}

static void test_known_values(void) {
    holder h;
    /* int8 per row: amax 127 -> scale 1; ties to even */
    float x[8] = {127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.5f, -127.0f};
    gq_qspec s8 = {GQ_QF_INT8, 0, 0, 0, 0, 0};
    alloc_q(&h, &s8, 1, 8);
    CHECK(gq_quantize(&s8, x, 1, 8, &h.q, NULL) == 0);
    int8_t want[8] = {127, 2, 4, -2, 0, 0, 2, -127};
    CHECK(h.scales[0] == 1.0f && !memcmp(h.qw, want, 8));
    free_q(&h);
    /* all-zero groups: scale 1 (int8, nf4, fp4, int4a) or 0 (the Q4_0 rule), values exactly 0 */
    float z[64] = {0}, back[64];
    gq_qformat fmts[] = {GQ_QF_INT8, GQ_QF_Q8_0, GQ_QF_INT4, GQ_QF_INT4A, GQ_QF_INT3, GQ_QF_INT2, GQ_QF_NF4, GQ_QF_FP4};
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++) {
        gq_qspec s = {fmts[f], 32, 0, 0, 0, 0};
        alloc_q(&h, &s, 2, 32);
        CHECK(gq_quantize(&s, z, 2, 32, &h.q, NULL) == 0);
        gq_dequantize(&s, &h.q, 2, 32, back);
        int nonzero = 0;
        for (int i = 0; i < 64; i++) nonzero += back[i] != 0.0f;
        CHECKF(nonzero == 0, "format %d: zero group reconstructs %d non-zeros", fmts[f], nonzero);
        CHECK(isfinite(h.scales[0]));
        free_q(&h);
    }
    /* one large outlier: it is reconstructed to within its format's scale rounding, the small
     * values of its group collapse to zero for int4 */
    float o[32];
    for (int i = 0; i < 32; i++) o[i] = 0.001f * (i - 16);
    o[5] = -10.0f;
    gq_qspec s4 = {GQ_QF_INT4, 32, 0, 0, 0, 0};
    alloc_q(&h, &s4, 1, 32);
    gq_quantize(&s4, o, 1, 32, &h.q, NULL);
    gq_dequantize(&s4, &h.q, 1, 32, back);
    CHECK(fabsf(back[5] + 10.0f) <= 10.0f * 1e-3f); /* fp16 scale: 11-bit mantissa */
    CHECK(back[0] == 0.0f && back[31] == 0.0f);
    free_q(&h);
    /* non-finite input is refused, naming the index */
    float bad[32] = {0};
    bad[17] = NAN;
    size_t where = 0;
    alloc_q(&h, &s4, 1, 32);
    CHECK(gq_quantize(&s4, bad, 1, 32, &h.q, &where) == -1 && where == 17);
    bad[17] = INFINITY;
    CHECK(gq_quantize(&s4, bad, 1, 32, &h.q, &where) == -1 && where == 17);
    free_q(&h);
}

static void test_error_bounds(void) {
    gq_rng r;
    gq_rng_seed(&r, 11);
    enum { ROWS = 16, COLS = 512 };
    static float x[ROWS * COLS], y[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) x[i] = (gq_rng_float(&r) - 0.5f) * (i % 97 == 0 ? 8.0f : 1.0f);
    struct {
        gq_qspec s;
        double max_step_frac; /* max |y - x| / (group scale), bound by the format's half step */
    } cases[] = {
        {{GQ_QF_INT8, 0, 0, 0, 0, 0}, 0.5},   {{GQ_QF_Q8_0, 32, 0, 0, 0, 0}, 0.6}, /* codes use fp32 d, values fp16 d */   {{GQ_QF_INT4, 64, 0, 0, 0, 0}, 1.0},
        {{GQ_QF_INT4, 128, 0, 0, 0, 0}, 1.0}, {{GQ_QF_INT4A, 64, 0, 0, 0, 0}, 0.5},  {{GQ_QF_INT3, 64, 0, 0, 0, 0}, 1.0},
        {{GQ_QF_INT2, 64, 0, 0, 0, 0}, 1.0},  {{GQ_QF_NF4, 64, 0, 0, 0, 0}, 0.1},    {{GQ_QF_NF4, 64, 1, 0, 0, 0}, 0.11},
        {{GQ_QF_FP4, 64, 0, 0, 0, 0}, 1.0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const gq_qspec *s = &cases[c].s;
        CHECK(gq_qspec_problem(s, ROWS, COLS) == NULL);
        holder h;
        alloc_q(&h, s, ROWS, COLS);
        CHECK(gq_quantize(s, x, ROWS, COLS, &h.q, NULL) == 0);
        gq_dequantize(s, &h.q, ROWS, COLS, y);
        int g = gq_qgroup(s, COLS);
        double worst = 0, mse = 0;
        for (int i = 0; i < ROWS * COLS; i++) {
            double sc = fabs(h.scales[i / g]) + 1e-30;
            /* int4/3/2 (Q4_0 rule): the top code is clipped, so up to one whole step there;
             * nf4 / fp4: the widest codebook gap */
            worst = fmax(worst, fabs(y[i] - x[i]) / sc);
            mse += (y[i] - x[i]) * (y[i] - x[i]);
        }
        printf("format %d group %d dq %d: max error %.3f scales, rms %.4g, %.3f bits/weight\n", s->format, g,
               s->double_quant, worst, sqrt(mse / (ROWS * COLS)), gq_qbits_per_weight(s, ROWS, COLS));
        double bound = cases[c].max_step_frac * (s->format == GQ_QF_NF4 ? 1.7 : 1.0) + 1e-3;
        CHECKF(worst <= bound, "format %d: error %.3f scales > %.3f", s->format, worst, bound);
        free_q(&h);
    }
    gq_qspec i4 = {GQ_QF_INT4, 64, 0, 0, 0, 0}, q8 = {GQ_QF_Q8_0, 32, 0, 0, 0, 0}, n4 = {GQ_QF_NF4, 64, 0, 0, 0, 0}, n4dq = {GQ_QF_NF4, 64, 1, 0, 0, 0};
    CHECK(gq_qbits_per_weight(&i4, 768, 768) == 4.25);
    CHECK(gq_qbits_per_weight(&q8, 768, 768) == 8.5);
    CHECK(gq_qbits_per_weight(&n4, 768, 768) == 4.5);
    CHECK(gq_qbits_per_weight(&n4dq, 768, 768) < 4.13);
    gq_qspec odd = {GQ_QF_INT4, 48, 0, 0, 0, 0}, three = {GQ_QF_INT3, 12, 0, 0, 0, 0};
    CHECK(gq_qspec_problem(&odd, 4, 100) != NULL);
    CHECK(gq_qspec_problem(&three, 4, 96) != NULL);
}

static void test_packing(void) {
    gq_rng r;
    gq_rng_seed(&r, 4);
    int bits[4] = {8, 4, 3, 2};
    for (int b = 0; b < 4; b++) {
        uint8_t codes[64], packed[64];
        for (int i = 0; i < 64; i++) codes[i] = (uint8_t)gq_rng_below(&r, 1u << bits[b]);
        gq_pack_group(codes, 64, bits[b], packed);
        int bad = 0;
        for (int i = 0; i < 64; i++) bad += gq_unpack_code(packed, 64, bits[b], i) != codes[i];
        CHECKF(bad == 0, "%d-bit packing: %d codes differ", bits[b], bad);
        uint8_t group[64]; /* the whole group at once (gq_dequantize's unpacking) */
        gq_unpack_group(packed, 64, bits[b], group);
        CHECKF(memcmp(group, codes, 64) == 0, "%d-bit group unpacking differs from the packed codes", bits[b]);
    }
}

/* gq_cpu_fakequant_forward splits a tensor into row chunks across threads and double-quantizes
 * nf4 scales after: its output must be the whole-tensor reference's, bit for bit, and its STE
 * mask must clear exactly the values whose error exceeds 0.51 of their group's step. */
static void test_fakequant_chunks(void) {
    enum { ROWS = 301, COLS = 768 }; /* 231k values: several chunks of 85 rows, a short last one */
    static float w[ROWS * COLS], out[ROWS * COLS], ref[ROWS * COLS];
    static uint8_t mask[ROWS * COLS];
    gq_rng r;
    gq_rng_seed(&r, 9);
    for (int i = 0; i < ROWS * COLS; i++) w[i] = (gq_rng_float(&r) - 0.5f) * (i % 977 == 0 ? 9.0f : 0.1f);
    const gq_qspec specs[] = {{GQ_QF_INT8, 0, 0, 0, 0, 0}, {GQ_QF_Q8_0, 32, 0, 0, 0, 0}, {GQ_QF_INT4, 64, 0, 0, 0, 0}, {GQ_QF_INT4A, 128, 0, 0, 0, 0},
                              {GQ_QF_INT3, 64, 0, 0, 0, 0}, {GQ_QF_INT2, 32, 0, 0, 0, 0},  {GQ_QF_NF4, 64, 0, 0, 0, 0},  {GQ_QF_NF4, 64, 1, 0, 0, 0},
                              {GQ_QF_FP4, 64, 0, 0, 0, 0},  {GQ_QF_INT4, 64, 0, 1, 0, 0},  {GQ_QF_INT4A, 128, 0, 1, 0, 0},
                              {GQ_QF_INT3, 32, 0, 1, 0, 0}, {GQ_QF_NF4, 64, 1, 1, 0, 0},  {GQ_QF_FP4, 64, 0, 1, 0, 0}};
    for (size_t c = 0; c < sizeof specs / sizeof *specs; c++) {
        const gq_qspec *s = &specs[c];
        void *work = malloc(gq_cpu_fakequant_workspace(ROWS, COLS, s));
        CHECK(gq_cpu_fakequant_forward(out, mask, w, ROWS, COLS, s, work, NULL) == 0);
        holder h;
        alloc_q(&h, s, ROWS, COLS);
        CHECK(gq_quantize(s, w, ROWS, COLS, &h.q, NULL) == 0);
        gq_dequantize(s, &h.q, ROWS, COLS, ref);
        const gq_qformat f = s->format;
        /* clipped: off by more than half a step on the uniform grids (the Q4_0 rule's int4/3/2
         * always, searched int4a), beyond the top level on searched nf4 / fp4 */
        const int g = gq_qgroup(s, COLS), uniform = f == GQ_QF_INT4 || f == GQ_QF_INT3 || f == GQ_QF_INT2 ||
                                                    (s->search && f == GQ_QF_INT4A);
        const float top = !s->search ? 0.0f : f == GQ_QF_NF4 ? 1.0f : f == GQ_QF_FP4 ? 6.0f : 0.0f;
        const int clips = uniform || top > 0.0f;
        size_t masked = 0, wrong = 0;
        for (int i = 0; i < ROWS * COLS; i++) {
            const float sc = fabsf(h.scales[i / g]);
            int want = !(uniform ? fabsf(ref[i] - w[i]) > 0.51f * sc : top > 0.0f && fabsf(w[i]) > top * sc);
            wrong += mask[i] != want;
            masked += !mask[i];
        }
        CHECKF(!memcmp(out, ref, sizeof out), "format %d group %d dq %d search %d: chunked fake-quant differs", s->format,
               g, s->double_quant, s->search);
        if (s->search) printf("fake-quant format %d search: %zu of %d weights clipped\n", f, masked, ROWS * COLS);
        CHECKF(wrong == 0, "format %d: %zu mask entries wrong (%zu masked)", s->format, wrong, masked);
        if (clips) CHECKF(masked > 0, "format %d: the outliers clip nothing", s->format);
        free_q(&h);
        free(work);
    }
    w[ROWS * COLS - 5] = NAN;
    void *work = malloc(gq_cpu_fakequant_workspace(ROWS, COLS, &specs[2]));
    CHECK(gq_cpu_fakequant_forward(out, mask, w, ROWS, COLS, &specs[2], work, NULL) == GQ_ENAN);
    uint64_t status = 0; /* with a status word: answered there, the call itself succeeds */
    CHECK(gq_cpu_fakequant_forward(out, mask, w, ROWS, COLS, &specs[2], work, &status) == 0);
    CHECK(status == ROWS * COLS - 5);
    w[ROWS * COLS - 5] = 0.0f;
    CHECK(gq_cpu_fakequant_forward(out, mask, w, ROWS, COLS, &specs[2], work, &status) == 0);
    CHECK(status == UINT64_MAX);
    free(work);
}

/* W8A8 activation blocks (gq_act8_block / gq_act8_fake_block and the CPU op) against a double
 * reference: d = amax / 127; each code is the nearest integer to x / d (checked in double,
 * exact ties aside: there the even one), |code| <= 127, the largest |x| codes to +-127, the
 * value error within half a step; the sum is the codes' sum; a zero block codes to zeros; a
 * block of exact midpoints (d = 1) rounds half to even; the CPU op over many blocks (threaded)
 * equals the block function. */
static void test_act8(void) {
    gq_rng r;
    gq_rng_seed(&r, 17);
    size_t bad = 0, checked = 0;
    for (int blk = 0; blk < 4000; blk++) {
        float x[GQ_ACT_BLOCK], y[GQ_ACT_BLOCK];
        const float scale = powf(10.0f, (float)(blk % 9) - 4.0f); /* 1e-4 .. 1e4 */
        for (int i = 0; i < GQ_ACT_BLOCK; i++) x[i] = (gq_rng_float(&r) - 0.5f) * scale * (i == blk % 32 ? 8 : 1);
        int8_t q[GQ_ACT_BLOCK];
        int32_t sum;
        const float d = gq_act8_block(x, q, &sum);
        double amax = 0;
        for (int i = 0; i < GQ_ACT_BLOCK; i++) amax = fmax(amax, fabs(x[i]));
        CHECK(d == (float)((float)amax / 127.0f));
        int32_t want_sum = 0;
        for (int i = 0; i < GQ_ACT_BLOCK; i++) {
            const double u = x[i] / (double)d, near = nearbyint(u);
            checked++;
            if (fabs(u - near) < 0.5 - 1e-5 && q[i] != (int)near) bad++; /* (not within round-off of a tie) */
            if (q[i] == -128) bad++; /* (the int8 range minus -128) */
            if (fabs(x[i]) == amax && abs(q[i]) != 127) bad++;
            if (fabs(x[i] - q[i] * (double)d) > 0.5 * d * (1 + 1e-5)) bad++;
            want_sum += q[i];
            y[i] = x[i];
        }
        CHECK(sum == want_sum);
        gq_act8_fake_block(y);
        for (int i = 0; i < GQ_ACT_BLOCK; i++) bad += y[i] != (float)q[i] * d;
    }
    CHECKF(bad == 0, "%zu of %zu activation codes wrong", bad, checked);
    float z[GQ_ACT_BLOCK] = {0}, t[GQ_ACT_BLOCK];
    int8_t q[GQ_ACT_BLOCK];
    int32_t sum;
    CHECK(gq_act8_block(z, q, &sum) == 0.0f && sum == 0);
    for (int i = 0; i < GQ_ACT_BLOCK; i++) CHECK(q[i] == 0);
    for (int i = 0; i < GQ_ACT_BLOCK; i++) t[i] = i == 0 ? -127.0f : (float)(i - 16) + 0.5f; /* d = 1 */
    CHECK(gq_act8_block(t, q, &sum) == 1.0f);
    for (int i = 1; i < GQ_ACT_BLOCK; i++) {
        const int lo = (int)floorf(t[i]), even = lo % 2 == 0 ? lo : lo + 1;
        CHECKF(q[i] == even, "midpoint %.1f coded %d, want %d", t[i], q[i], even);
    }
    enum { N = 32 * 5000 };
    static float a[N], b[N];
    for (int i = 0; i < N; i++) a[i] = b[i] = (gq_rng_float(&r) - 0.5f) * (float)(1 + i % 7);
    CHECK(gq_cpu_act_fakequant(a, N) == 0);
    for (int k = 0; k < N / GQ_ACT_BLOCK; k++) gq_act8_fake_block(b + k * GQ_ACT_BLOCK);
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(gq_cpu_act_fakequant(a, 33) == GQ_ESHAPE);
}

/* ---- scale search (-mse) against a brute-force reference ----
 * The objective (FORMAT.md): sum_i w_i (x_i - value_i)^2 with w_i = imp_i (|x_i| + rms(x)),
 * imp_i = 1 without calibration. The reference, in double: the least such error over a grid of
 * 1151 scales (0.30 to 2.025 times the absmax scale, both signs for the Q4_0 rule's asymmetric
 * grid; for int4a every zero point 0..15 at each scale), every value at its nearest level. */
static double unit_value(gq_qformat f, int c) { return gq_qvalue(f, c, 1.0f, 0); }

static void objective_weights(const float *x, const float *imp, int n, double *w) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const double av = sqrt(ss / n);
    for (int i = 0; i < n; i++) w[i] = (imp ? imp[i] : 1.0) * (av + fabs(x[i]));
}

static double ref_best_error(gq_qformat f, const float *x, const double *w, int n) {
    double amax = 0, lo = 0, hi = 0;
    for (int i = 0; i < n; i++) amax = fmax(amax, fabs(x[i])), lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
    const int levels = f == GQ_QF_INT3 ? 8 : f == GQ_QF_INT2 ? 4 : 16;
    const double base = f == GQ_QF_INT4A  ? (hi - lo) / 15
                        : f == GQ_QF_NF4  ? amax
                        : f == GQ_QF_FP4  ? amax / 6
                                          : amax / (levels / 2);
    double best = INFINITY;
    for (int k = 0; k <= 1150; k++) {
        const double s = base * (0.30 + 0.0015 * k);
        for (int sign = -1; sign <= 1; sign += 2) {
            if (sign < 0 && (f == GQ_QF_INT4A || f == GQ_QF_NF4 || f == GQ_QF_FP4)) continue;
            for (int z = 0; z < (f == GQ_QF_INT4A ? 16 : 1); z++) {
                double err = 0;
                for (int i = 0; i < n && err < best; i++) {
                    double e = INFINITY;
                    for (int c = 0; c < levels; c++) {
                        double v = (f == GQ_QF_INT4A ? (double)(c - z) : unit_value(f, c)) * s * sign;
                        e = fmin(e, (x[i] - v) * (x[i] - v));
                    }
                    err += w[i] * e;
                }
                best = fmin(best, err);
            }
        }
    }
    return best;
}

/* one group through gq_quantize_imp + gq_dequantize: its weighted and plain squared errors */
static double group_error(const gq_qspec *s, const float *x, const float *imp, const double *w, int n, float *scale,
                          uint8_t *codes, uint8_t *zero, double *plain) {
    uint8_t packed[256];
    float y[256];
    int8_t aq[1];
    float a2[1];
    gq_qtensor q = {packed, scale, zero, aq, a2, 0};
    gq_quantize_imp(s, x, 1, n, &q, NULL, imp);
    gq_dequantize(s, &q, 1, n, y);
    double err = 0, p = 0;
    for (int i = 0; i < n; i++) {
        const double e = ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        err += w[i] * e, p += e;
        codes[i] = (uint8_t)gq_unpack_code(packed, n, gq_qbits(s->format), i);
    }
    if (plain) *plain = p;
    return err;
}

static void test_qsearch(void) {
    static const gq_qformat fmts[] = {GQ_QF_INT4, GQ_QF_INT3, GQ_QF_INT2, GQ_QF_INT4A, GQ_QF_NF4, GQ_QF_FP4};
    static const char *fname[] = {"int4", "int3", "int2", "int4a", "nf4", "fp4"};
    static const char *dist[] = {"uniform", "normal", "normal+outlier", "laplace", "normal, imp"};
    gq_rng r;
    gq_rng_seed(&r, 21);
    for (size_t fi = 0; fi < sizeof fmts / sizeof *fmts; fi++) {
        const int g = fmts[fi] == GQ_QF_INT3 ? 32 : 64;
        for (int d = 0; d < 5; d++) {
            enum { GROUPS = 24 };
            double e_abs = 0, e_mse = 0, e_ref = 0, p_abs = 0, p_mse = 0;
            size_t worse = 0, not_nearest = 0, changed = 0;
            for (int k = 0; k < GROUPS; k++) {
                float x[256], imp[256];
                double w[256];
                for (int i = 0; i < g; i++) {
                    double u1 = gq_rng_float(&r) + 1e-7, u2 = gq_rng_float(&r);
                    double nrm = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
                    x[i] = (float)(d == 0 ? u2 - 0.5 : d == 3 ? (u2 < 0.5 ? log(u1) : -log(u1)) * 0.7 : nrm) * 0.02f;
                    imp[i] = 0.05f + 3.0f * gq_rng_float(&r) * gq_rng_float(&r); /* channel importances */
                }
                if (d == 2) x[gq_rng_below(&r, (uint64_t)g)] *= 6.0f;
                if (d == 3 && k % 2)
                    for (int i = 0; i < g; i++) x[i] = x[i] + 0.01f; /* off-centre groups */
                const float *ip = d == 4 ? imp : NULL;
                objective_weights(x, ip, g, w);
                gq_qspec a = {fmts[fi], g, 0, 0, 0, 0}, m = {fmts[fi], g, 0, GQ_QSEARCH_MSE, 0, 0};
                float sa, sm;
                uint8_t ca[256], cm[256], za = 0, zm = 0;
                double pa, pm;
                const double ea = group_error(&a, x, ip, w, g, &sa, ca, &za, &pa);
                const double em = group_error(&m, x, ip, w, g, &sm, cm, &zm, &pm);
                worse += em > ea * (1 + 1e-6);
                e_abs += ea, e_mse += em, e_ref += ref_best_error(fmts[fi], x, w, g), p_abs += pa, p_mse += pm;
                if (sa == sm && za == zm && !memcmp(ca, cm, (size_t)g)) continue;
                changed++;
                /* a searched group's codes: the nearest levels under its stored scale */
                const int levels = 1 << gq_qbits(fmts[fi]);
                for (int i = 0; i < g; i++) {
                    const double e = fabs(x[i] - (double)gq_qvalue(fmts[fi], cm[i], sm, zm));
                    for (int c = 0; c < levels; c++)
                        not_nearest += fabs(x[i] - (double)gq_qvalue(fmts[fi], c, sm, zm)) < e * (1 - 1e-6) - 1e-12;
                }
            }
            printf("search %-5s g%d %-15s: weighted error absmax %.4g, mse %.4g (%.1f %% less; plain %.1f %% less), "
                   "brute-force optimum %.4g (mse %.2f %% above it); %zu of %d groups changed\n",
                   fname[fi], g, dist[d], e_abs, e_mse, 100 * (1 - e_mse / e_abs), 100 * (1 - p_mse / p_abs), e_ref,
                   100 * (e_mse / e_ref - 1), changed, GROUPS);
            CHECKF(worse == 0, "%s %s: %zu groups worse than absmax", fname[fi], dist[d], worse);
            CHECKF(not_nearest == 0, "%s %s: %zu codes not the nearest level", fname[fi], dist[d], not_nearest);
            CHECKF(e_mse <= 1.03 * e_ref, "%s %s: searched error %.4g, %.2f %% above the optimum %.4g", fname[fi],
                   dist[d], e_mse, 100 * (e_mse / e_ref - 1), e_ref);
            /* (the reference's grid has steps of 0.15 % of the scale: the search may land between) */
            CHECKF(e_ref <= e_mse * 1.005, "%s %s: the reference %.4g is not the optimum (search %.4g)", fname[fi],
                   dist[d], e_ref, e_mse);
            if (d == 1) /* normal weights: the search must find a clearly better scale than absmax */
                CHECKF(e_mse < 0.95 * e_abs, "%s: normal groups only %.1f %% better", fname[fi], 100 * (1 - e_mse / e_abs));
        }
    }
    /* a zero group and a constant group */
    gq_qspec m = {GQ_QF_INT4, 32, 0, GQ_QSEARCH_MSE, 0, 0};
    float z[32] = {0}, c[32], sc;
    double w[32];
    uint8_t codes[32], zz;
    objective_weights(z, NULL, 32, w);
    CHECK(group_error(&m, z, NULL, w, 32, &sc, codes, &zz, NULL) == 0);
    for (int i = 0; i < 32; i++) c[i] = 0.25f;
    objective_weights(c, NULL, 32, w);
    CHECK(group_error(&m, c, NULL, w, 32, &sc, codes, &zz, NULL) == 0);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    test_act8();
    test_fp16();
    test_ggml_blocks(argv[1]);
    test_codebooks();
    test_known_values();
    test_error_bounds();
    test_packing();
    test_fakequant_chunks();
    test_qsearch();
    return gq_test_finish("test_quant");
}
