/* qmatmul: see qmatmul.h. This file holds the drivers (row path, panel path), the activation
 * quantizer, the exact row dequantizer and the scalar reference row kernel; qdot_avx2.c holds
 * the AVX2 row kernel. */
#include "qmatmul.h"
#include "act_math.h"

#include "simd.h"

#include <cblas.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

int gq_qmat_int_path(const gq_qmat *w) { return gq_act8_applies(w->spec.format, w->cols, w->group); }

size_t gq_qmat_bytes(const gq_qmat *w) {
    if (w->spec.format == GQ_QF_F32) return (size_t)w->rows * w->cols * 4;
    size_t groups = gq_qn_groups(&w->spec, w->rows, w->cols), b = gq_qpacked_bytes(&w->spec, w->rows, w->cols);
    if (w->spec.format == GQ_QF_NF4 && w->spec.double_quant)
        b += groups + 4 * ((groups + GQ_DQ_BLOCK - 1) / GQ_DQ_BLOCK) + 4;
    else
        b += groups * (w->s16 ? 2 : 4);
    if (w->zeros) b += groups;
    return b;
}

/* The 32 codes of block blk (columns 32 blk ..) of row r of an x8 matrix (r < gq_qmat_x8_rows). */
static void x8_block_codes(const gq_qmat *w, int r, int blk, uint8_t *c) {
    for (int i = 0; i < 32; i++)
        c[i] = (uint8_t)gq_qmat_code(w, r, 32 * blk + i);
}

void gq_qmat_dequant_rows(const gq_qmat *w, int r0, int r1, float *dst) { gq_qdot()->dequant(w, r0, r1, dst); }

static void dequant_scalar(const gq_qmat *w, int r0, int r1, float *dst) {
    const int K = w->cols;
    if (w->spec.format == GQ_QF_F32) {
        memcpy(dst, w->f32 + (size_t)r0 * K, (size_t)(r1 - r0) * K * sizeof *dst);
        return;
    }
    const gq_qformat f = w->spec.format;
    const int G = w->group, bits = gq_qbits(f), ng = K / G;
    const size_t gbytes = (size_t)G * bits / 8;
    float lut[16];
    for (int c = 0; c < 16; c++)
        lut[c] = gq_qvalue(f, c, 1.0f, 0); /* value / scale for 4-bit codes */
    for (int r = r0; r < r1; r++)
        for (int g = 0; g < ng; g++) {
            const size_t gi = (size_t)r * ng + g, si = gq_qmat_gidx(w, r, g);
            const uint8_t *in = w->q + gi * gbytes;
            const float sc = gq_qmat_scale(w, r, g);
            float *o = dst + (size_t)(r - r0) * K + (size_t)g * G;
            if (r < gq_qmat_x8_rows(w)) { /* the 8-row layout */
                const int z = w->zeros ? w->zeros[si] : 0;
                for (int b = 0; b < G / 32; b++) {
                    uint8_t c[32];
                    x8_block_codes(w, r, g * (G / 32) + b, c);
                    for (int i = 0; i < 32; i++)
                        o[32 * b + i] = f == GQ_QF_INT4A || bits != 4 ? gq_qvalue(f, c[i], sc, z) : lut[c[i]] * sc;
                }
            } else if (bits == 8) {
                for (int i = 0; i < G; i++)
                    o[i] = (float)(int8_t)in[i] * sc;
            } else if (bits == 4 && f != GQ_QF_INT4A) {
                /* lut[c] * sc == gq_qvalue(f, c, sc, 0): the same product of the same floats */
                for (int j = 0; j < G / 2; j++)
                    o[j] = lut[in[j] & 15] * sc, o[j + G / 2] = lut[in[j] >> 4] * sc;
            } else {
                const int z = w->zeros ? w->zeros[si] : 0;
                for (int i = 0; i < G; i++)
                    o[i] = gq_qvalue(f, gq_unpack_code(in, G, bits, i), sc, z);
            }
        }
}

int gq_qmat_x8_able(const gq_qmat *w) {
    const gq_qformat f = w->spec.format;
    const int s16 =
        (f == GQ_QF_INT4 || f == GQ_QF_INT4A || f == GQ_QF_INT3 || f == GQ_QF_INT2 || f == GQ_QF_Q8_0) && w->s16;
    const int s32 = (f == GQ_QF_FP4 || f == GQ_QF_INT8) && w->s32;
    return (s16 || s32 || f == GQ_QF_NF4) && w->group % 32 == 0 && w->cols % w->group == 0 && w->rows >= GQ_X8_ROWS;
}

/* Interleave one per-group array of 8 rows (groups values of esz bytes per row, row after row)
 * into the x8 order: group g of row j at g * 8 + j. */
static void x8_interleave(uint8_t *a, uint8_t *tmp, int ng, size_t esz) {
    memcpy(tmp, a, (size_t)ng * GQ_X8_ROWS * esz);
    for (int j = 0; j < GQ_X8_ROWS; j++)
        for (int g = 0; g < ng; g++)
            memcpy(a + ((size_t)g * GQ_X8_ROWS + j) * esz, tmp + ((size_t)j * ng + g) * esz, esz);
}

/* One 32-column block of 8 rows (codes: the 8 rows' codes, a row every K bytes) in the x8 order
 * (qmatmul.h) into out (32 * bits bytes). */
static void x8_pack_block(const uint8_t *codes, size_t K, int bits, uint8_t *out) {
    memset(out, 0, (size_t)32 * bits);
    for (int j = 0; j < GQ_X8_ROWS; j++)
        for (int e = 0; e < 32; e++) {
            const int c = codes[(size_t)j * K + e];
            if (bits == 8) {
                out[32 * (e / 4) + 4 * j + e % 4] = (uint8_t)c;
            } else if (bits == 4) {
                out[32 * ((e % 16) / 4) + 4 * j + e % 4] |= (uint8_t)(e < 16 ? c : c << 4);
            } else {
                const int k = e / 4;
                out[32 * (k / 4) + 4 * j + e % 4] |= (uint8_t)((c & 3) << (2 * (k % 4)));
                if (bits == 3) out[64 + 4 * j + e % 4] |= (uint8_t)((c >> 2 & 1) << k);
            }
        }
}

int gq_qmat_to_x8(gq_qmat *w) {
    if (w->x8 || !gq_qmat_x8_able(w)) return 0;
    const int K = w->cols, G = w->group, ng = K / G, n8 = w->rows / GQ_X8_ROWS, nt = omp_get_max_threads();
    const int bits = gq_qbits(w->spec.format);
    const size_t bytes = (size_t)K * (size_t)bits, groups = (size_t)ng * GQ_X8_ROWS, gbytes = (size_t)G * bits / 8;
    const size_t per = (size_t)GQ_X8_ROWS * K + bytes + groups * 4; /* codes, packed copy, one per-group array */
    uint8_t *tmp = malloc(per * (size_t)nt);
    if (!tmp) return -1;
    /* the arrays are writable: see the header. Per group: fp16 or fp32 scales or nf4's int8
     * absmax codes, and int4a's zero points */
    uint8_t *q = (uint8_t *)(uintptr_t)w->q, *z = (uint8_t *)(uintptr_t)w->zeros;
    uint8_t *sc = w->s16                                ? (uint8_t *)(uintptr_t)w->s16
                  : w->absmax_q && w->spec.double_quant ? (uint8_t *)(uintptr_t)w->absmax_q
                                                        : (uint8_t *)(uintptr_t)w->s32;
    const size_t ssz = w->s16 ? 2 : w->absmax_q && w->spec.double_quant ? 1 : 4;
#pragma omp parallel for schedule(static)
    for (int R = 0; R < n8; R++) {
        uint8_t *c = tmp + per * (size_t)omp_get_thread_num(), *t = c + (size_t)GQ_X8_ROWS * K;
        uint8_t *blk = q + (size_t)R * bytes;
        memcpy(t, blk, bytes);
        for (int j = 0; j < GQ_X8_ROWS; j++) /* the 8 rows' codes, as exported (quant.h's packing) */
            for (int g = 0; g < ng; g++)
                gq_unpack_group(t + ((size_t)j * ng + g) * gbytes, G, bits, c + (size_t)j * K + (size_t)g * G);
        for (int b = 0; b < K / 32; b++)
            x8_pack_block(c + (size_t)32 * b, (size_t)K, bits, blk + (size_t)b * 32 * bits);
        x8_interleave(sc + (size_t)R * groups * ssz, t, ng, ssz);
        if (z) x8_interleave(z + (size_t)R * groups, t, ng, 1);
    }
    free(tmp);
    w->x8 = 1;
    return 0;
}

void gq_qact_quantize_range(gq_qact *a, size_t b0, size_t b1) { gq_qdot()->quantize(a, b0, b1); }

static void quantize_scalar(gq_qact *a, size_t b0, size_t b1) { /* quant.h's gq_act8_block */
    const size_t nb = (size_t)a->K / GQ_QMM_ABLOCK;
    for (size_t blk = b0; blk < b1; blk++) {
        const size_t off = blk / nb * a->K + blk % nb * GQ_QMM_ABLOCK;
        a->d[blk] = gq_act8_block(a->x + off, a->q + off, &a->bsum[blk]);
    }
}

void gq_qact_quantize(gq_qact *a) { gq_qact_quantize_range(a, 0, (size_t)a->M * (size_t)(a->K / GQ_QMM_ABLOCK)); }

/* ---- the scalar reference row kernel ---- */

/* Integer value of a code in the integer path (fp4: twice the E2M1 value, its scale halved;
 * nf4: the value in units of 2^-14, its scale times 2^-14). */
static inline int ival(gq_qformat f, int c, int z) {
    static const int fp4x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    switch (f) {
    case GQ_QF_NF4: return gq_nf4_i16(c & 15);
    case GQ_QF_INT8:
    case GQ_QF_Q8_0: return (int8_t)(uint8_t)c;
    case GQ_QF_INT4: return c - 8;
    case GQ_QF_INT3: return c - 4;
    case GQ_QF_INT2: return c - 2;
    case GQ_QF_INT4A: return c - z;
    default: return fp4x2[c & 15];
    }
}

static void rows_scalar(const gq_qmat *w, int r0, int r1, const gq_qact *a, float *y, int ldy) {
    const int K = w->cols, M = a->M;
    const gq_qformat f = w->spec.format;
    if (f == GQ_QF_F32) {
        for (int r = r0; r < r1; r++)
            for (int m = 0; m < M; m++) {
                const float *wr = w->f32 + (size_t)r * K, *x = a->x + (size_t)m * K;
                float acc = 0.0f;
                for (int i = 0; i < K; i++)
                    acc += wr[i] * x[i];
                y[(size_t)m * ldy + (r - r0)] = acc;
            }
        return;
    }
    const int G = w->group, bits = gq_qbits(f), ng = K / G, nb = K / GQ_QMM_ABLOCK;
    const size_t gbytes = (size_t)G * bits / 8;
    const int ipath = gq_qmat_int_path(w);
    for (int r = r0; r < r1; r++)
        for (int m = 0; m < M; m++) {
            float acc = 0.0f;
            for (int g = 0; g < ng; g++) {
                const size_t gi = (size_t)r * ng + g, si = gq_qmat_gidx(w, r, g);
                const uint8_t *in = w->q + gi * gbytes;
                const int z = w->zeros ? w->zeros[si] : 0, x8 = r < gq_qmat_x8_rows(w);
                float sc = gq_qmat_scale(w, r, g), gsum = 0.0f;
                if (ipath) {
                    if (f == GQ_QF_FP4) sc *= 0.5f;
                    if (f == GQ_QF_NF4) sc *= 1.0f / (float)(1 << GQ_NF4_I16_SHIFT);
                    const int8_t *xq = a->q + (size_t)m * K + (size_t)g * G;
                    const float *xd = a->d + (size_t)m * nb + (size_t)g * (G / GQ_QMM_ABLOCK);
                    for (int b = 0; b < G / GQ_QMM_ABLOCK; b++) {
                        int32_t s = 0;
                        for (int i = b * GQ_QMM_ABLOCK; i < (b + 1) * GQ_QMM_ABLOCK; i++)
                            s +=
                                ival(f, x8 ? gq_qmat_code(w, r, g * G + i) : gq_unpack_code(in, G, bits, i), z) * xq[i];
                        gsum += xd[b] * (float)s;
                    }
                } else {
                    const float *x = a->x + (size_t)m * K + (size_t)g * G;
                    for (int i = 0; i < G; i++)
                        gsum +=
                            gq_qvalue(f, x8 ? gq_qmat_code(w, r, g * G + i) : gq_unpack_code(in, G, bits, i), 1.0f, z) *
                            x[i];
                }
                acc += sc * gsum;
            }
            y[(size_t)m * ldy + (r - r0)] = acc;
        }
}

static void to_f16_scalar(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i++)
        dst[i] = gq_f32_to_f16(src[i]);
}

static void from_f16_scalar(float *dst, const uint16_t *src, int n) {
    for (int i = 0; i < n; i++)
        dst[i] = gq_f16_to_f32(src[i]);
}

static inline float kv_at(const uint16_t *c16, const float *c32, size_t i) {
    return c16 ? gq_f16_to_f32(c16[i]) : c32[i];
}

void gq_qdot_attend_softmax(float *s, int n, float *inv) {
    float mx = -3.0e38f;
    for (int u = 0; u < n; u++)
        mx = s[u] > mx ? s[u] : mx;
    float sum = 0.0f;
    for (int u = 0; u < n; u++) {
        s[u] = gq_exp(s[u] - mx);
        sum += s[u];
    }
    *inv = 1.0f / sum;
}

static float attend_dot(const float *q, const uint16_t *k16, const float *k32, size_t off, int hs) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= hs; i += 16)
        for (int l = 0; l < 16; l++)
            acc[l] = acc[l] + q[i + l] * kv_at(k16, k32, off + i + l);
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            acc[l] = acc[l] + acc[l + w];
    float d = acc[0];
    for (; i < hs; i++)
        d = d + q[i] * kv_at(k16, k32, off + i);
    return d;
}

static void attend_scalar(float *out, const float *q, const uint16_t *k16, const uint16_t *v16, const float *k32,
                          const float *v32, size_t ld, int n, int hs, float scale, float *s) {
    for (int u = 0; u < n; u++)
        s[u] = attend_dot(q, k16, k32, (size_t)u * ld, hs) * scale;
    float inv;
    gq_qdot_attend_softmax(s, n, &inv);
    for (int e = 0; e < hs; e++)
        out[e] = 0.0f;
    for (int u = 0; u < n; u++) {
        const float p = s[u] * inv;
        for (int e = 0; e < hs; e++)
            out[e] = out[e] + p * kv_at(v16, v32, (size_t)u * ld + e);
    }
}

static const gq_qdot_ops qdot_scalar = {"scalar",      rows_scalar,    to_f16_scalar,  from_f16_scalar,
                                        attend_scalar, dequant_scalar, quantize_scalar};
#if defined(__x86_64__)
extern const gq_qdot_ops gq_qdot_avx2, gq_qdot_avxvnni, gq_qdot_avx512vnni;
#endif

const gq_qdot_ops *gq_qdot_variant(const char *name) {
    if (!strcmp(name, "scalar")) return &qdot_scalar;
#if defined(__x86_64__)
    if (!strcmp(name, "avx2")) return &gq_qdot_avx2;
    if (!strcmp(name, "avxvnni")) return &gq_qdot_avxvnni;
    if (!strcmp(name, "avx512vnni")) return &gq_qdot_avx512vnni;
#endif
    return NULL;
}

#if defined(__x86_64__)
/* CPUID.1:ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c") */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
/* CPUID.(7,1):EAX bit 4 (clang 14 does not know "avxvnni"); the OS's AVX state is checked by
 * the avx2 test it goes with */
static int has_avxvnni(void) {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}
#endif

int gq_qdot_supported(const char *name) {
    if (!strcmp(name, "scalar")) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    if (!strcmp(name, "avx2")) return avx2;
    if (!strcmp(name, "avxvnni")) return avx2 && has_avxvnni();
    if (!strcmp(name, "avx512vnni"))
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#endif
    return 0;
}

const char *const gq_qdot_names[] = {"scalar", "avx2", "avxvnni", "avx512vnni", NULL};

const gq_qdot_ops *gq_qdot(void) {
    static const gq_qdot_ops *chosen; /* a race would store the same pointer twice */
    if (chosen) return chosen;
    const char *want = getenv("GQ_CPU_SIMD");
    const gq_qdot_ops *ops = NULL;
    /* GQ_CPU_SIMD names a variant (the training ops' "avx512" means avx512vnni here); when it
     * is not supported, or not set, the best one this CPU runs */
    if (want && !strcmp(want, "avx512")) want = "avx512vnni";
    if (want && gq_qdot_variant(want) && gq_qdot_supported(want)) ops = gq_qdot_variant(want);
    for (int i = 3; i >= 0 && !ops; i--)
        if (gq_qdot_supported(gq_qdot_names[i])) ops = gq_qdot_variant(gq_qdot_names[i]);
    chosen = ops;
    return ops;
}

/* ---- drivers ---- */

static void gelu_rows(float *out, int M, int N, int r0, int r1) {
    const gq_simd_ops *simd = gq_simd();
    for (int m = 0; m < M; m++)
        simd->gelu_forward(out + (size_t)m * N + r0, out + (size_t)m * N + r0, (size_t)(r1 - r0));
}

int gq_qmatmul_panel_path(const gq_qact *a, const gq_qmat *w, const float *panel, size_t panel_floats) {
    /* every format in the 8-row layout but nf4: the row kernel (4 tokens per pass) beats
     * dequantizing + sgemm (124M prefill, 128 tokens: int3 / int2 796-836 -> 1340-1864
     * tok/s; int8 628-630 -> 1465-1541, q8_0 636-694 -> 1053-1164, fp4 577-631 -> 968-1036); nf4's
     * codebook lookups do not (513-605 -> 282-335 tok/s) */
    const int rows_anyway = a->int_rows && w->x8 && gq_qmat_int_path(w) && w->spec.format != GQ_QF_NF4;
    return a->M >= GQ_QMM_PANEL_MIN && !rows_anyway &&
           (w->spec.format == GQ_QF_F32 || (panel && panel_floats >= (size_t)w->cols));
}

void gq_qmatmul(float *out, gq_qact *a, int a_ready, const gq_qmat *w, const float *bias, int gelu, float *panel,
                size_t panel_floats) {
    const int M = a->M, K = w->cols, N = w->rows;
    if (gq_qmatmul_panel_path(a, w, panel, panel_floats)) {
        if (bias) {
#pragma omp parallel for schedule(static)
            for (int m = 0; m < M; m++)
                memcpy(out + (size_t)m * N, bias, (size_t)N * sizeof *out);
        }
        const float beta = bias ? 1.0f : 0.0f;
        if (w->spec.format == GQ_QF_F32) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a->x, K, w->f32, K, beta, out, N);
        } else {
            const int step = (int)(panel_floats / (size_t)K);
            for (int r0 = 0; r0 < N; r0 += step) {
                const int r1 = r0 + step < N ? r0 + step : N;
#pragma omp parallel for schedule(static)
                for (int r = r0; r < r1; r++)
                    gq_qmat_dequant_rows(w, r, r + 1, panel + (size_t)(r - r0) * K);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, r1 - r0, K, 1.0f, a->x, K, panel, K, beta,
                            out + r0, N);
            }
        }
        if (gelu) {
#pragma omp parallel for schedule(static)
            for (int m = 0; m < M; m++)
                gelu_rows(out + (size_t)m * N, 1, N, 0, N);
        }
        return;
    }
    const int quant = !a_ready && gq_qmat_int_path(w);
    const size_t blocks = quant ? (size_t)M * (size_t)(K / GQ_QMM_ABLOCK) : 0;
    const gq_qdot_ops *ops = gq_qdot();
#pragma omp parallel
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (quant) { /* each thread quantizes a share of the activation blocks */
            gq_qact_quantize_range(a, blocks * t / nt, blocks * (t + 1) / nt);
#pragma omp barrier
        }
        /* contiguous row ranges, multiples of 8 rows, one per thread (each thread streams one
         * contiguous stretch of the weights; dynamic chunks measured slower) */
        const int per = ((N + nt - 1) / nt + 7) / 8 * 8;
        const int r0 = t * per < N ? t * per : N, r1 = r0 + per < N ? r0 + per : N;
        if (r0 < r1) {
            ops->rows(w, r0, r1, a, out + r0, N);
            if (bias)
                for (int m = 0; m < M; m++)
                    for (int r = r0; r < r1; r++)
                        out[(size_t)m * N + r] += bias[r];
            if (gelu) gelu_rows(out, M, N, r0, r1);
        }
    }
}
