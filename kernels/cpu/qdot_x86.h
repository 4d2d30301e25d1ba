/* qdot_x86.h: the x86 row kernels of qmatmul.h, one source for several variants. A file
 * defines GQ_QDOT_VAR (the variant's name, a bare word), GQ_QDOT_VNNI (0: AVX2 + FMA + F16C;
 * 1: the same with AVX-VNNI's VEX dot products; 2: with AVX512-VNNI's on 256-bit registers
 * (AVX512VL); 3: as 2, compiled against SIMDe's portable versions of those instructions: the
 * tests' way to run the VNNI kernels on a CPU without VNNI) and includes this file, compiled with
 * the matching -m flags (CMakeLists.txt).
 *
 * Integer-path formats multiply int8 weight values with the int8 activation blocks by
 * maddubs (|w| times x with w's sign, llama.cpp's trick; every pair sum fits int16 because codes
 * are in [-127, 127]) and sum the blocks in fp32; 4-bit codes become int8 values through a
 * 16-entry byte shuffle (int4: c - 8, fp4: twice E2M1; int4a uses the codes and subtracts
 * zero * block sum); int3 and int2 codes are unpacked by byte shuffles and multiplies (exported
 * layout) or one shift and mask per bit plane (8-row layout); nf4
 * codes become int16 codebook values (units of 2^-14) through two byte shuffles and multiply the
 * sign-extended activations by madd. With VNNI, vpdpbusd does maddubs + madd + add in one
 * instruction and vpdpwssd madd + add: the integer sums are the same (no sum here ever
 * saturates int16), so a VNNI variant gives the AVX2 variant's bits exactly. Groups that are
 * not a multiple of 32 use the scalar kernel. Results differ from the scalar reference only by
 * fp32 summation order. */
#if defined(__x86_64__)
#include "qmatmul.h"

#if GQ_QDOT_VNNI == 3
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif
#include <string.h>

#if GQ_QDOT_VNNI == 1
#define GQ_DPBUSD _mm256_dpbusd_avx_epi32
#define GQ_DPWSSD _mm256_dpwssd_avx_epi32
#elif GQ_QDOT_VNNI >= 2
#define GQ_DPBUSD _mm256_dpbusd_epi32
#define GQ_DPWSSD _mm256_dpwssd_epi32
#endif
#if GQ_QDOT_VNNI
/* sum over each 4 lanes of u (unsigned bytes) * s (signed bytes), as 8 int32 lanes */
#define DOT_US(u, s) GQ_DPBUSD(_mm256_setzero_si256(), (u), (s))
/* acc + pairwise sums of int16 products */
#define DPWSSD(acc, a, b) GQ_DPWSSD((acc), (a), (b))
/* rows8_q4's per-block sums: int32 lanes straight away */
#define Q4_ACC(sm, c, x) ((sm) = GQ_DPBUSD((sm), (c), (x)))
#define Q4_FIN(sm) (sm)
/* fp4's larger values (up to 24) in int32 too */
#define Q4_ACC_W(sm, c, x) Q4_ACC(sm, c, x)
#define Q4_FIN_W(sm) (sm)
#else
#define DOT_US(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define DPWSSD(acc, a, b) _mm256_add_epi32((acc), _mm256_madd_epi16((a), (b)))
/* int16 sums of 8 maddubs products (|sum| <= 30480), one madd to int32 per block */
#define Q4_ACC(sm, c, x) ((sm) = _mm256_add_epi16((sm), _mm256_maddubs_epi16((c), (x))))
#define Q4_FIN(sm) _mm256_madd_epi16((sm), _mm256_set1_epi16(1))
/* fp4's codes map to up to 24: 8 products of 2 x 24 x 127 overflow int16, so each maddubs
 * result is widened to int32 at once */
#define Q4_ACC_W(sm, c, x) ((sm) = _mm256_add_epi32((sm), DOT_US((c), (x))))
#define Q4_FIN_W(sm) (sm)
#endif
#define GQ_QDOT_CAT2(a, b) a##b
#define GQ_QDOT_CAT(a, b) GQ_QDOT_CAT2(a, b)
#define GQ_QDOT_STR2(a) #a
#define GQ_QDOT_STR(a) GQ_QDOT_STR2(a)

/* Software prefetch of the weights PF_ROWS rows ahead: decode streams the whole model from DRAM
 * once per token, and the hardware prefetchers alone left the kernels at 55-70 % of the read
 * bandwidth (measured in a 124M decode: the LM head and MLP matrices ran 20-40 % faster with
 * it; 2-4 rows ahead were best, 8+ no better). Prefetches never fault past the end. */
enum { PF_ROWS = 4 };
static inline void pf(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float scale_of(const gq_qmat *w, size_t g) {
    if (w->spec.format == GQ_QF_NF4 && w->spec.double_quant)
        return (float)w->absmax_q[g] * w->absmax2[g / GQ_DQ_BLOCK] + w->absmax_offset;
    return w->s16 ? _cvtsh_ss(w->s16[g]) : w->s32[g];
}

/* sum over 32 lanes of w * x as 8 int32 lanes (w signed int8 values, x int8 codes) */
static inline __m256i dot32_signed(__m256i wv, __m256i x) {
    return DOT_US(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(x, wv));
}

static float row_f32(const float *wr, const float *x, int K) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= K; i += 32) {
        pf(wr + (size_t)PF_ROWS * K + i), pf(wr + (size_t)PF_ROWS * K + i + 16);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= K; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < K; i++)
        s += wr[i] * x[i];
    return s;
}

/* (not inlined, as rows8_nf4 below: inlined into rows_x86, the AVX-512 build ran q8_0 9 % slower,
 * 50.5 vs 46.1 us in bench_qmatmul; separate, 46.8-47.9 in both builds) */
static __attribute__((noinline)) float row_int8(const gq_qmat *w, int r, const int8_t *xq, const float *xd) {
    const int K = w->cols, nb = K / GQ_QMM_ABLOCK;
    const uint8_t *in = w->q + (size_t)r * K;
    __m256 acc = _mm256_setzero_ps();
    if (w->spec.format == GQ_QF_Q8_0) {
        for (int b = 0; b < nb; b++) {
            pf(in + (size_t)PF_ROWS * K + 32 * b);
            const __m256i p = dot32_signed(_mm256_loadu_si256((const __m256i *)(in + 32 * b)),
                                           _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(xd[b] * scale_of(w, (size_t)r * nb + b)), acc);
        }
        return hsum8(acc);
    }
    for (int b = 0; b < nb; b++) {
        pf(in + (size_t)PF_ROWS * K + 32 * b);
        const __m256i p = dot32_signed(_mm256_loadu_si256((const __m256i *)(in + 32 * b)),
                                       _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(xd[b]), acc);
    }
    return hsum8(acc) * w->s32[r];
}

/* fp4 codes to 2 x E2M1 value + 12 (in [0, 24]), by a byte shuffle */
static inline __m256i fp4_lut(void) {
    return _mm256_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0, 12, 13, 14, 15, 16, 18, 20, 24,
                            12, 11, 10, 9, 8, 6, 4, 0);
}

/* int4 / fp4 / int4a (integer path), G a multiple of 32. The codes enter maddubs as unsigned
 * values u = v + off (int4: the code itself, off 8; int4a: the code, off = its zero point;
 * fp4: twice the E2M1 value plus 12 through a byte shuffle), so no sign juggling is needed:
 * sum v x = sum u x - off * sum x, and sum x of a group is gs[g] (per token, shared by all
 * rows). */
static float row_q4(const gq_qmat *w, int r, const int8_t *xq, const float *xd, const float *gs) {
    const int K = w->cols, G = w->group, ng = K / G, bpg = G / GQ_QMM_ABLOCK;
    const gq_qformat f = w->spec.format;
    const int fp4 = f == GQ_QF_FP4;
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i lut = fp4_lut();
    const float off_c = fp4 ? 12.0f : 8.0f;
    const uint8_t *in = w->q + (size_t)r * K / 2;
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int g = 0; g < ng; g++) {
        const size_t gi = (size_t)r * ng + g;
        float sc = scale_of(w, gi);
        if (fp4) sc *= 0.5f;
        const uint8_t *p = in + (size_t)g * G / 2;
        const int8_t *x = xq + (size_t)g * G;
        const float *d = xd + (size_t)g * bpg;
        for (int j = 0; j < G / 2; j += 64)
            pf(p + (size_t)PF_ROWS * K / 2 + j);
        __m256 gacc = _mm256_setzero_ps();
#define GQ_Q4_BLOCK(codes, xoff, b)                                                                                    \
    do {                                                                                                               \
        const __m256i u = fp4 ? _mm256_shuffle_epi8(lut, (codes)) : (codes);                                           \
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + (xoff)));                                          \
        const __m256i pr = DOT_US(u, xv);                                                                              \
        gacc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pr), _mm256_broadcast_ss(d + (b)), gacc);                            \
    } while (0)
        if (G == 32) {
            const __m128i v = _mm_loadu_si128((const __m128i *)p);
            const __m256i c = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), m4);
            GQ_Q4_BLOCK(c, 0, 0);
        } else {
            for (int j = 0; j < G / 2; j += 32) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(p + j));
                const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                GQ_Q4_BLOCK(lo, j, j / 32);
                GQ_Q4_BLOCK(hi, G / 2 + j, (G / 2 + j) / 32);
            }
        }
#undef GQ_Q4_BLOCK
        corr += sc * (w->zeros ? (float)w->zeros[gi] : off_c) * gs[g];
        acc = _mm256_fmadd_ps(gacc, _mm256_set1_ps(sc), acc);
    }
    return hsum8(acc) - corr;
}

/* The same for two rows at once with a compile-time group size (32, 64, 128): the activation
 * loads and block scales are shared and the two rows' chains run side by side. int4 and int4a
 * only (fp4 takes row_q4). */
#define GQ_Q4X2(G)                                                                                                     \
    static void row2_q4_g##G(const gq_qmat *w, int r, const int8_t *xq, const float *xd, const float *gs, float *o0,   \
                             float *o1) {                                                                              \
        const int K = w->cols, ng = K / (G);                                                                           \
        const __m256i m4 = _mm256_set1_epi8(15);                                                                       \
        const uint8_t *p0 = w->q + (size_t)r * K / 2, *p1 = p0 + K / 2;                                                \
        const size_t g0 = (size_t)r * ng, g1 = g0 + ng;                                                                \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                                 \
        float corr0 = 0.0f, corr1 = 0.0f;                                                                              \
        for (int g = 0; g < ng; g++) {                                                                                 \
            const int8_t *x = xq + (size_t)g * (G);                                                                    \
            pf(p0 + (size_t)PF_ROWS * K / 2 + (size_t)g * (G) / 2);                                                    \
            pf(p1 + (size_t)PF_ROWS * K / 2 + (size_t)g * (G) / 2);                                                    \
            const float *d = xd + (size_t)g * ((G) / 32);                                                              \
            __m256 ga0 = _mm256_setzero_ps(), ga1 = _mm256_setzero_ps();                                               \
            if ((G) == 32) {                                                                                           \
                const __m128i v0 = _mm_loadu_si128((const __m128i *)(p0 + g * 16)),                                    \
                              v1 = _mm_loadu_si128((const __m128i *)(p1 + g * 16));                                    \
                const __m256i c0 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v0, 4), v0), m4);                  \
                const __m256i c1 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v1, 4), v1), m4);                  \
                const __m256i xv = _mm256_loadu_si256((const __m256i *)x);                                             \
                const __m256 db = _mm256_broadcast_ss(d);                                                              \
                ga0 = _mm256_mul_ps(_mm256_cvtepi32_ps(DOT_US(c0, xv)), db);                                           \
                ga1 = _mm256_mul_ps(_mm256_cvtepi32_ps(DOT_US(c1, xv)), db);                                           \
            } else {                                                                                                   \
                for (int j = 0; j < (G) / 2; j += 32) {                                                                \
                    const __m256i v0 = _mm256_loadu_si256((const __m256i *)(p0 + (size_t)g * (G) / 2 + j));            \
                    const __m256i v1 = _mm256_loadu_si256((const __m256i *)(p1 + (size_t)g * (G) / 2 + j));            \
                    const __m256i xl = _mm256_loadu_si256((const __m256i *)(x + j));                                   \
                    const __m256i xh = _mm256_loadu_si256((const __m256i *)(x + (G) / 2 + j));                         \
                    const __m256 dl = _mm256_broadcast_ss(d + j / 32),                                                 \
                                 dh = _mm256_broadcast_ss(d + ((G) / 2 + j) / 32);                                     \
                    const __m256i l0 = _mm256_and_si256(v0, m4), h0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);  \
                    const __m256i l1 = _mm256_and_si256(v1, m4), h1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);  \
                    ga0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT_US(l0, xl)), dl, ga0);                                \
                    ga1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT_US(l1, xl)), dl, ga1);                                \
                    ga0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT_US(h0, xh)), dh, ga0);                                \
                    ga1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT_US(h1, xh)), dh, ga1);                                \
                }                                                                                                      \
            }                                                                                                          \
            const float s0 = _cvtsh_ss(w->s16[g0 + g]), s1 = _cvtsh_ss(w->s16[g1 + g]);                                \
            corr0 += s0 * (w->zeros ? (float)w->zeros[g0 + g] : 8.0f) * gs[g];                                         \
            corr1 += s1 * (w->zeros ? (float)w->zeros[g1 + g] : 8.0f) * gs[g];                                         \
            acc0 = _mm256_fmadd_ps(ga0, _mm256_set1_ps(s0), acc0);                                                     \
            acc1 = _mm256_fmadd_ps(ga1, _mm256_set1_ps(s1), acc1);                                                     \
        }                                                                                                              \
        *o0 = hsum8(acc0) - corr0;                                                                                     \
        *o1 = hsum8(acc1) - corr1;                                                                                     \
    }
GQ_Q4X2(32)
GQ_Q4X2(64)
GQ_Q4X2(128)
#undef GQ_Q4X2

/* int4 / int4a / fp4 in the 8-row layout (qmatmul.h): rows 8R..8R+7 for TT tokens at once (the
 * weights unpacked once, used by every token), the results in out + t * ldo. Per block of 32
 * columns: four 32-byte loads, each giving two code vectors (low and high nibbles: 8 rows x 4
 * columns each), multiplied by maddubs with a token's 4 activation codes broadcast to every lane
 * and summed in int16 (8 products of at most 2 x 15 x 127 each: |sum| <= 30480, no saturation);
 * one madd to int32, one conversion and one FMA by the block's activation scale per block and
 * token; per group, the offset (8, or int4a's zero points) times the group's activation sum is
 * taken off and the 8 rows' scales applied in one FMA. fp4 (FP4 = 1): the codes go through
 * fp4_lut to 2 x value + 12 (at most 24, so the sums are widened to int32 at every step: 8
 * products of 2 x 24 x 127 would overflow int16), the offset is 12 and the fp32 scales are
 * halved. Every token's arithmetic is the same whatever TT is (so one token
 * alone gives the bits it gets among others). */
enum { X8_PF = 4096 }; /* prefetch distance in bytes (the 8-row blocks are one sequential stream) */
#define GQ_ROWS8_Q4(TT, FP4, NAME)                                                                                     \
    static void NAME(const gq_qmat *w, int R, const int8_t *xq, const float *xd, const float *gs, const int32_t *bs,   \
                     int ldq, int ldd, int ldg, float *out, int ldo) {                                                 \
        (void)bs;                                                                                                      \
        const int K = w->cols, G = w->group, ng = K / G, bpg = G / 32;                                                 \
        const __m256i m4 = _mm256_set1_epi8(15);                                                                       \
        const uint8_t *p = w->q + (size_t)R * K * (GQ_X8_ROWS / 2);                                                    \
        const uint16_t *s16 = FP4 ? NULL : w->s16 + (size_t)R * ng * GQ_X8_ROWS; /* fp4: fp32 scales */                \
        const float *s32 = FP4 ? w->s32 + (size_t)R * ng * GQ_X8_ROWS : NULL;                                          \
        const uint8_t *z = w->zeros ? w->zeros + (size_t)R * ng * GQ_X8_ROWS : NULL;                                   \
        const __m256i lut = fp4_lut();                                                                                 \
        __m256 acc[TT];                                                                                                \
        for (int t = 0; t < (TT); t++)                                                                                 \
            acc[t] = _mm256_setzero_ps();                                                                              \
        for (int g = 0; g < ng; g++) {                                                                                 \
            __m256 ga[TT];                                                                                             \
            for (int t = 0; t < (TT); t++)                                                                             \
                ga[t] = _mm256_setzero_ps();                                                                           \
            for (int b = 0; b < bpg; b++) {                                                                            \
                const int blk = g * bpg + b;                                                                           \
                const uint8_t *pb = p + (size_t)blk * 128;                                                             \
                pf(pb + X8_PF), pf(pb + X8_PF + 64);                                                                   \
                __m256i sm[TT];                                                                                        \
                for (int t = 0; t < (TT); t++)                                                                         \
                    sm[t] = _mm256_setzero_si256();                                                                    \
                for (int k = 0; k < 4; k++) {                                                                          \
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(pb + 32 * k));                              \
                    __m256i c0 = _mm256_and_si256(v, m4), c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);          \
                    if (FP4) c0 = _mm256_shuffle_epi8(lut, c0), c1 = _mm256_shuffle_epi8(lut, c1);                     \
                    for (int t = 0; t < (TT); t++) {                                                                   \
                        const int8_t *x = xq + (size_t)t * ldq + 32 * blk;                                             \
                        int32_t a0, a1;                                                                                \
                        memcpy(&a0, x + 4 * k, 4), memcpy(&a1, x + 16 + 4 * k, 4);                                     \
                        if (FP4)                                                                                       \
                            Q4_ACC_W(sm[t], c0, _mm256_set1_epi32(a0)), Q4_ACC_W(sm[t], c1, _mm256_set1_epi32(a1));    \
                        else                                                                                           \
                            Q4_ACC(sm[t], c0, _mm256_set1_epi32(a0)), Q4_ACC(sm[t], c1, _mm256_set1_epi32(a1));        \
                    }                                                                                                  \
                }                                                                                                      \
                for (int t = 0; t < (TT); t++)                                                                         \
                    ga[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(FP4 ? Q4_FIN_W(sm[t]) : Q4_FIN(sm[t])),                 \
                                            _mm256_broadcast_ss(xd + (size_t)t * ldd + blk), ga[t]);                   \
            }                                                                                                          \
            const __m256 sc = FP4 ? _mm256_mul_ps(_mm256_loadu_ps(s32 + (size_t)g * GQ_X8_ROWS), _mm256_set1_ps(0.5f)) \
                                  : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s16 + (size_t)g * GQ_X8_ROWS))); \
            const __m256 off = FP4 ? _mm256_set1_ps(12.0f)                                                             \
                               : z ? _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(                                          \
                                         _mm_loadl_epi64((const __m128i *)(z + (size_t)g * GQ_X8_ROWS))))              \
                                   : _mm256_set1_ps(8.0f);                                                             \
            for (int t = 0; t < (TT); t++)                                                                             \
                acc[t] = _mm256_fmadd_ps(_mm256_fnmadd_ps(off, _mm256_set1_ps(gs[(size_t)t * ldg + g]), ga[t]), sc,    \
                                         acc[t]);                                                                      \
        }                                                                                                              \
        for (int t = 0; t < (TT); t++)                                                                                 \
            _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);                                                           \
    }
GQ_ROWS8_Q4(1, 0, rows8_q4_1)
GQ_ROWS8_Q4(4, 0, rows8_q4_4)
GQ_ROWS8_Q4(1, 1, rows8_fp4_1)
GQ_ROWS8_Q4(4, 1, rows8_fp4_4)
#undef GQ_ROWS8_Q4

#if GQ_QDOT_VNNI >= 2
/* two 256-bit halves as one 512-bit float register */
static inline __m512 join_ps(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}
#if GQ_QDOT_VNNI == 3 /* SIMDe 0.7 has no portable version of these two: built from their halves */
static inline __m512 cvt512_i32_ps(__m512i v) {
    return join_ps(_mm256_cvtepi32_ps(_mm512_castsi512_si256(v)), _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(v, 1)));
}
static inline __m512i cvt512_u8_i32(__m128i v) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_cvtepu8_epi32(v)),
                              _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)), 1);
}
#else
#define cvt512_i32_ps _mm512_cvtepi32_ps
#define cvt512_u8_i32 _mm512_cvtepu8_epi32
#endif
/* AVX-512: two 8-row blocks (R and R + 1: 16 rows) at once in 512-bit registers, lanes 0-7
 * block R's rows, lanes 8-15 block R + 1's; each step joins the two blocks' 32-byte loads into
 * one register, so the 4 activation codes still go to every lane by one broadcast and one
 * vpdpbusd serves 16 rows. Every lane's arithmetic is rows8_q4's, in the same order: the same
 * bits. */
#define GQ_ROWS16_Q4(TT, FP4, NAME)                                                                                    \
    static void NAME(const gq_qmat *w, int R, const int8_t *xq, const float *xd, const float *gs, const int32_t *bs,   \
                     int ldq, int ldd, int ldg, float *out, int ldo) {                                                 \
        (void)bs;                                                                                                      \
        const int K = w->cols, G = w->group, ng = K / G, bpg = G / 32;                                                 \
        const __m512i m4 = _mm512_set1_epi8(15);                                                                       \
        const uint8_t *p0 = w->q + (size_t)R * K * (GQ_X8_ROWS / 2), *p1 = p0 + (size_t)K * (GQ_X8_ROWS / 2);          \
        const uint16_t *s0 = FP4 ? NULL : w->s16 + (size_t)R * ng * GQ_X8_ROWS;                                        \
        const float *f0 = FP4 ? w->s32 + (size_t)R * ng * GQ_X8_ROWS : NULL;                                           \
        const __m512i lut = _mm512_broadcast_i64x4(fp4_lut());                                                         \
        const uint8_t *z0 = w->zeros ? w->zeros + (size_t)R * ng * GQ_X8_ROWS : NULL;                                  \
        __m512 acc[TT];                                                                                                \
        for (int t = 0; t < (TT); t++)                                                                                 \
            acc[t] = _mm512_setzero_ps();                                                                              \
        for (int g = 0; g < ng; g++) {                                                                                 \
            __m512 ga[TT];                                                                                             \
            for (int t = 0; t < (TT); t++)                                                                             \
                ga[t] = _mm512_setzero_ps();                                                                           \
            for (int b = 0; b < bpg; b++) {                                                                            \
                const int blk = g * bpg + b;                                                                           \
                const uint8_t *pb0 = p0 + (size_t)blk * 128, *pb1 = p1 + (size_t)blk * 128;                            \
                pf(pb0 + X8_PF), pf(pb0 + X8_PF + 64), pf(pb1 + X8_PF), pf(pb1 + X8_PF + 64);                          \
                __m512i sm[TT];                                                                                        \
                for (int t = 0; t < (TT); t++)                                                                         \
                    sm[t] = _mm512_setzero_si512();                                                                    \
                for (int k = 0; k < 4; k++) {                                                                          \
                    const __m512i v = _mm512_inserti64x4(                                                              \
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pb0 + 32 * k))),                   \
                        _mm256_loadu_si256((const __m256i *)(pb1 + 32 * k)), 1);                                       \
                    __m512i c0 = _mm512_and_si512(v, m4), c1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);          \
                    if (FP4) c0 = _mm512_shuffle_epi8(lut, c0), c1 = _mm512_shuffle_epi8(lut, c1);                     \
                    for (int t = 0; t < (TT); t++) {                                                                   \
                        const int8_t *x = xq + (size_t)t * ldq + 32 * blk;                                             \
                        int32_t a0, a1;                                                                                \
                        memcpy(&a0, x + 4 * k, 4), memcpy(&a1, x + 16 + 4 * k, 4);                                     \
                        sm[t] = _mm512_dpbusd_epi32(sm[t], c0, _mm512_set1_epi32(a0));                                 \
                        sm[t] = _mm512_dpbusd_epi32(sm[t], c1, _mm512_set1_epi32(a1));                                 \
                    }                                                                                                  \
                }                                                                                                      \
                for (int t = 0; t < (TT); t++)                                                                         \
                    ga[t] = _mm512_fmadd_ps(cvt512_i32_ps(sm[t]), _mm512_set1_ps(xd[(size_t)t * ldd + blk]), ga[t]);   \
            }                                                                                                          \
            const __m512 sc =                                                                                          \
                FP4 ? _mm512_mul_ps(join_ps(_mm256_loadu_ps(f0 + (size_t)g * GQ_X8_ROWS),                              \
                                            _mm256_loadu_ps(f0 + (size_t)ng * GQ_X8_ROWS + (size_t)g * GQ_X8_ROWS)),   \
                                    _mm512_set1_ps(0.5f))                                                              \
                    : join_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s0 + (size_t)g * GQ_X8_ROWS))),        \
                              _mm256_cvtph_ps(_mm_loadu_si128(                                                         \
                                  (const __m128i *)(s0 + (size_t)ng * GQ_X8_ROWS + (size_t)g * GQ_X8_ROWS))));         \
            __m512 off = _mm512_set1_ps(FP4 ? 12.0f : 8.0f);                                                           \
            if (z0) {                                                                                                  \
                const uint8_t *za = z0 + (size_t)g * GQ_X8_ROWS, *zb = za + (size_t)ng * GQ_X8_ROWS;                   \
                const __m128i zz =                                                                                     \
                    _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)za), _mm_loadl_epi64((const __m128i *)zb));    \
                off = cvt512_i32_ps(cvt512_u8_i32(zz));                                                                \
            }                                                                                                          \
            for (int t = 0; t < (TT); t++)                                                                             \
                acc[t] = _mm512_fmadd_ps(_mm512_fnmadd_ps(off, _mm512_set1_ps(gs[(size_t)t * ldg + g]), ga[t]), sc,    \
                                         acc[t]);                                                                      \
        }                                                                                                              \
        for (int t = 0; t < (TT); t++)                                                                                 \
            _mm512_storeu_ps(out + (size_t)t * ldo, acc[t]);                                                           \
    }
GQ_ROWS16_Q4(1, 0, rows16_q4_1)
GQ_ROWS16_Q4(4, 0, rows16_q4_4)
GQ_ROWS16_Q4(1, 1, rows16_fp4_1)
GQ_ROWS16_Q4(4, 1, rows16_fp4_4)
#undef GQ_ROWS16_Q4
#endif

/* The scales of group g of rows 8R..8R+7 of an nf4 matrix in the 8-row layout, times 2^-14:
 * fp32, or the int8 absmax codes times the second-level scales (gathered: they go by the
 * exported group order) plus the offset. */
static inline __m256 nf4_scales8(const gq_qmat *w, int R, int g) {
    const int ng = w->cols / w->group;
    const size_t si = ((size_t)R * ng + (size_t)g) * GQ_X8_ROWS;
    __m256 sc;
    if (w->spec.double_quant) {
        const __m256i rowg = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(ng));
        const __m256i gi = _mm256_add_epi32(_mm256_set1_epi32((int)((size_t)R * GQ_X8_ROWS * ng + g)), rowg);
        const __m256 a2 = _mm256_i32gather_ps(w->absmax2, _mm256_srli_epi32(gi, 8), 4); /* GQ_DQ_BLOCK 256 */
        const __m256 aq =
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w->absmax_q + si))));
        sc = _mm256_fmadd_ps(aq, a2, _mm256_set1_ps(w->absmax_offset));
    } else {
        sc = _mm256_loadu_ps(w->s32 + si);
    }
    return _mm256_mul_ps(sc, _mm256_set1_ps(1.0f / (float)(1 << GQ_NF4_I16_SHIFT)));
}

/* nf4 in the 8-row layout: rows 8R..8R+7 for one token; scales per group for 8 rows as
 * nf4_scales8, applied per block with the activation scale (one FMA: a per-group accumulator
 * spilled to the stack inside the dependency chain). Per block of 32 columns and 8 rows, the
 * exact integer sums of codebook value (units of 2^-14) x activation code:
 *   - AVX2 (x: the activation codes as int16): each code vector (8 rows x 4 codes) becomes int16
 *     codebook values through two byte shuffles and two unpacks (rows 0, 1, 4, 5 and 2, 3, 6, 7),
 *     multiplied by madd with the 4 activations broadcast; int32 sums (|sum| < 2^26), then one
 *     hadd puts the 8 rows in order in the 8 lanes.
 *   - VNNI (x: the int8 codes themselves, no int16 copy): each codebook value + 16384 (in
 *     [0, 32768]) is split into bytes H * 256 + L, looked up by two byte shuffles, and vpdpbusd
 *     multiplies both with the 4 broadcast activation codes into int32 lanes, one lane per row
 *     (vpdpbusd has no int16 step to saturate); 256 * sum(H x) + sum(L x) - 16384 * sum(x)
 *     (bsum: the block's code sum) is the same sum, so the results are the AVX2 bits.
 * t0, t1: the two byte tables (AVX2: low and high bytes of the values; VNNI: H and L). */
_Static_assert(GQ_DQ_BLOCK == 256, "nf4_scales8 divides by shifting");
_Static_assert(GQ_NF4_I16_SHIFT == 14, "rows8_nf4's VNNI offset is 2^14");
#if GQ_QDOT_VNNI
typedef int8_t nf4_x;
#else
typedef int16_t nf4_x;
#endif
/* (not inlined: inlined into rows_x86, GCC 12 with AVX-512 kept the two tables on the stack and
 * reloaded them ten times a block, 15 % slower: 32.0 vs 27.5 us in bench_qmatmul, 3072 x 768) */
static __attribute__((noinline)) void rows8_nf4(const gq_qmat *w, int R, const nf4_x *xs, const int32_t *bsum,
                                                const float *xd, __m256i t0, __m256i t1, float *out) {
    const int K = w->cols, G = w->group, ng = K / G, bpg = G / 32;
    const __m256i m4 = _mm256_set1_epi8(15);
    const uint8_t *p = w->q + (size_t)R * K * (GQ_X8_ROWS / 2);
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < ng; g++) {
        const __m256 sc = nf4_scales8(w, R, g);
        for (int b = 0; b < bpg; b++) {
            const int blk = g * bpg + b;
            const uint8_t *pb = p + (size_t)blk * 128;
            const nf4_x *x = xs + 32 * blk;
            pf(pb + X8_PF), pf(pb + X8_PF + 64);
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256(), sum;
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(pb + 32 * k));
                const __m256i c0 = _mm256_and_si256(v, m4), c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
#if GQ_QDOT_VNNI
                int32_t a0, a1;
                memcpy(&a0, x + 4 * k, 4), memcpy(&a1, x + 16 + 4 * k, 4);
                const __m256i x0 = _mm256_set1_epi32(a0), x1 = _mm256_set1_epi32(a1);
                s0 = GQ_DPBUSD(s0, _mm256_shuffle_epi8(t0, c0), x0);
                s1 = GQ_DPBUSD(s1, _mm256_shuffle_epi8(t1, c0), x0);
                s0 = GQ_DPBUSD(s0, _mm256_shuffle_epi8(t0, c1), x1);
                s1 = GQ_DPBUSD(s1, _mm256_shuffle_epi8(t1, c1), x1);
#else
                int64_t a0, a1;
                memcpy(&a0, x + 4 * k, 8), memcpy(&a1, x + 16 + 4 * k, 8);
                const __m256i x0 = _mm256_set1_epi64x(a0), x1 = _mm256_set1_epi64x(a1);
                __m256i lo = _mm256_shuffle_epi8(t0, c0), hi = _mm256_shuffle_epi8(t1, c0);
                s0 = DPWSSD(s0, _mm256_unpacklo_epi8(lo, hi), x0);
                s1 = DPWSSD(s1, _mm256_unpackhi_epi8(lo, hi), x0);
                lo = _mm256_shuffle_epi8(t0, c1), hi = _mm256_shuffle_epi8(t1, c1);
                s0 = DPWSSD(s0, _mm256_unpacklo_epi8(lo, hi), x1);
                s1 = DPWSSD(s1, _mm256_unpackhi_epi8(lo, hi), x1);
#endif
            }
#if GQ_QDOT_VNNI
            sum =
                _mm256_add_epi32(_mm256_slli_epi32(s0, 8), _mm256_sub_epi32(s1, _mm256_set1_epi32(16384 * bsum[blk])));
#else
            (void)bsum;
            sum = _mm256_hadd_epi32(s0, s1);
#endif
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(sc, _mm256_broadcast_ss(xd + blk)), acc);
        }
    }
    _mm256_storeu_ps(out, acc);
}

/* int3 / int2 (integer path), G a multiple of 32: codes e..e+31 of a group unpacked to bytes,
 * lane 0 holding codes 0..15 and lane 1 codes 16..31. Each 16-bit element j takes by a byte
 * shuffle the byte(s) holding its code (int3: code k at bits 3k, so two bytes; int2: byte j holds
 * codes 4j..4j+3 at bits 0, 2, 4, 6), a multiplication by 2^(8 - its bit offset) moves the code
 * to bits 8..10 (mullo keeps the product's low 16 bits), a shift by 8 brings it down, one pack
 * makes bytes of the two shuffles' elements (codes 0..7 and 8..15 of each lane), and a mask
 * clears the bits above the code. int3 reads bytes 0..13 of its 12-byte block (2 past its end),
 * int2 bytes 0..7 (the callers' buffers have 4 bytes of slack). */
static inline __m256i codes3(const uint8_t *p) {
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)p)),
                                              _mm_loadl_epi64((const __m128i *)(p + 6)), 1);
    /* codes 0..7 of a lane: bits 3j of bytes 0..3 (lane 1: the block's bytes 6..); 8..15: 3 bytes on */
    const __m256i ia = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 2, 3, 2, 3, 0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1,
                                        2, 2, 3, 2, 3);
    const __m256i ib = _mm256_add_epi8(ia, _mm256_set1_epi8(3));
    const __m256i mul = _mm256_setr_epi16(256, 32, 4, 128, 16, 2, 64, 8, 256, 32, 4, 128, 16, 2, 64, 8);
    const __m256i a = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(v, ia), mul), 8);
    const __m256i b = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(v, ib), mul), 8);
    return _mm256_and_si256(_mm256_packus_epi16(a, b), _mm256_set1_epi8(7));
}

static inline __m256i codes2(const uint8_t *p) {
    const __m128i raw = _mm_loadl_epi64((const __m128i *)p);
    const __m256i v = _mm256_set_m128i(raw, raw);
    /* codes 0..7 of a lane: bytes 0..1 (lane 1: bytes 4..5), the high byte of each element zero
     * (index -1); codes 8..15: two bytes on */
    const __m256i ia = _mm256_setr_epi8(0, -1, 0, -1, 0, -1, 0, -1, 1, -1, 1, -1, 1, -1, 1, -1, 4, -1, 4, -1, 4, -1, 4,
                                        -1, 5, -1, 5, -1, 5, -1, 5, -1);
    const __m256i ib = _mm256_add_epi8(ia, _mm256_set1_epi16(2));
    const __m256i mul = _mm256_setr_epi16(256, 64, 16, 4, 256, 64, 16, 4, 256, 64, 16, 4, 256, 64, 16, 4);
    const __m256i a = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(v, ia), mul), 8);
    const __m256i b = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(v, ib), mul), 8);
    return _mm256_and_si256(_mm256_packus_epi16(a, b), _mm256_set1_epi8(3));
}

static float row_q32(const gq_qmat *w, int r, const int8_t *xq, const float *xd, const float *gs) {
    const int K = w->cols, G = w->group, ng = K / G, bpg = G / GQ_QMM_ABLOCK;
    const int bits = gq_qbits(w->spec.format);
    const float off = w->spec.format == GQ_QF_INT3 ? 4.0f : 2.0f;
    const size_t gbytes = (size_t)G * bits / 8, bbytes = (size_t)32 * bits / 8;
    const uint8_t *in = w->q + (size_t)r * ng * gbytes;
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int g = 0; g < ng; g++) {
        const float sc = _cvtsh_ss(w->s16[(size_t)r * ng + g]);
        __m256 gacc = _mm256_setzero_ps();
        pf(in + (size_t)PF_ROWS * ng * gbytes + (size_t)g * gbytes);
        for (int b = 0; b < bpg; b++) {
            const uint8_t *p = in + (size_t)g * gbytes + b * bbytes;
            const __m256i u = bits == 3 ? codes3(p) : codes2(p);
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + (size_t)g * G + 32 * b));
            const __m256i pr = DOT_US(u, xv);
            gacc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pr), _mm256_broadcast_ss(xd + (size_t)g * bpg + b), gacc);
        }
        corr += sc * off * gs[g];
        acc = _mm256_fmadd_ps(gacc, _mm256_set1_ps(sc), acc);
    }
    return hsum8(acc) - corr;
}

/* int8 / q8_0 in the 8-row layout (qmatmul.h): rows 8R..8R+7 for TT tokens at once. Per block of
 * 32 columns, eight 32-byte code vectors (8 rows x 4 columns), each multiplied with a token's 4
 * activation codes broadcast to every lane: with VNNI, vpdpbusd on the codes + 128 (a sign-bit
 * flip: unsigned), and 128 times the block's activation sum taken off once per block; without,
 * maddubs on |code| and the activations with the code's sign (pair sums <= 2 x 127 x 127) and one
 * madd to int32. Either way the block's int32 sum is exactly sum w x (the same bits in every
 * variant); one conversion and one FMA by the block's activation scale, per group one FMA by
 * the 8 rows' scales (int8: one group, its fp32 row scales; q8_0: fp16 per 32). */
#define GQ_ROWS8_Q8(TT, NAME)                                                                                          \
    static void NAME(const gq_qmat *w, int R, const int8_t *xq, const float *xd, const float *gs, const int32_t *bs,   \
                     int ldq, int ldd, int ldg, float *out, int ldo) {                                                 \
        (void)gs, (void)ldg, (void)bs;                                                                                 \
        const int K = w->cols, G = w->group, ng = K / G, bpg = G / 32;                                                 \
        const uint8_t *p = w->q + (size_t)R * K * 8;                                                                   \
        __m256 acc[TT];                                                                                                \
        for (int t = 0; t < (TT); t++)                                                                                 \
            acc[t] = _mm256_setzero_ps();                                                                              \
        for (int g = 0; g < ng; g++) {                                                                                 \
            __m256 ga[TT];                                                                                             \
            for (int t = 0; t < (TT); t++)                                                                             \
                ga[t] = _mm256_setzero_ps();                                                                           \
            for (int b = 0; b < bpg; b++) {                                                                            \
                const int blk = g * bpg + b;                                                                           \
                const uint8_t *pb = p + (size_t)blk * 256;                                                             \
                pf(pb + X8_PF), pf(pb + X8_PF + 64), pf(pb + X8_PF + 128), pf(pb + X8_PF + 192);                       \
                __m256i sm[TT];                                                                                        \
                for (int t = 0; t < (TT); t++)                                                                         \
                    sm[t] = _mm256_setzero_si256();                                                                    \
                for (int k = 0; k < 8; k++) {                                                                          \
                    __m256i v = _mm256_loadu_si256((const __m256i *)(pb + 32 * k));                                    \
                    Q8_PREP(v);                                                                                        \
                    for (int t = 0; t < (TT); t++) {                                                                   \
                        int32_t a;                                                                                     \
                        memcpy(&a, xq + (size_t)t * ldq + 32 * blk + 4 * k, 4);                                        \
                        Q8_ACC(sm[t], v, _mm256_set1_epi32(a));                                                        \
                    }                                                                                                  \
                }                                                                                                      \
                for (int t = 0; t < (TT); t++)                                                                         \
                    ga[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(Q8_FIN(sm[t], bs[(size_t)t * ldd + blk])),              \
                                            _mm256_broadcast_ss(xd + (size_t)t * ldd + blk), ga[t]);                   \
            }                                                                                                          \
            const __m256 sc = w->s16 ? _mm256_cvtph_ps(_mm_loadu_si128(                                                \
                                           (const __m128i *)(w->s16 + ((size_t)R * ng + (size_t)g) * GQ_X8_ROWS)))     \
                                     : _mm256_loadu_ps(w->s32 + ((size_t)R * ng + (size_t)g) * GQ_X8_ROWS);            \
            for (int t = 0; t < (TT); t++)                                                                             \
                acc[t] = _mm256_fmadd_ps(ga[t], sc, acc[t]);                                                           \
        }                                                                                                              \
        for (int t = 0; t < (TT); t++)                                                                                 \
            _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);                                                           \
    }
#if GQ_QDOT_VNNI
#define Q8_PREP(v) ((v) = _mm256_xor_si256((v), _mm256_set1_epi8(-128)))
#define Q8_ACC(sm, v, x) ((sm) = GQ_DPBUSD((sm), (v), (x)))
#define Q8_FIN(sm, bsum) _mm256_sub_epi32((sm), _mm256_set1_epi32(128 * (bsum)))
#else
#define Q8_PREP(v) const __m256i v##_abs = _mm256_sign_epi8((v), (v))
#define Q8_ACC(sm, v, x)                                                                                               \
    ((sm) = _mm256_add_epi32(                                                                                          \
         (sm), _mm256_madd_epi16(_mm256_maddubs_epi16(v##_abs, _mm256_sign_epi8((x), (v))), _mm256_set1_epi16(1))))
#define Q8_FIN(sm, bsum) (sm)
#endif
GQ_ROWS8_Q8(1, rows8_q8_1)
GQ_ROWS8_Q8(4, rows8_q8_4)
#undef GQ_ROWS8_Q8
#undef Q8_PREP
#undef Q8_ACC
#undef Q8_FIN

#if GQ_QDOT_VNNI >= 2
/* a 512-bit register from 32 bytes at a (lanes 0-7) and 32 at b (lanes 8-15) */
static inline __m512i join_si(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}
/* The same for two 8-row blocks at once in 512-bit registers (as rows16_q4): the same bits. */
#define GQ_ROWS16_Q8(TT, NAME)                                                                                         \
    static void NAME(const gq_qmat *w, int R, const int8_t *xq, const float *xd, const float *gs, const int32_t *bs,   \
                     int ldq, int ldd, int ldg, float *out, int ldo) {                                                 \
        (void)gs, (void)ldg, (void)bs;                                                                                 \
        const int K = w->cols, G = w->group, ng = K / G, bpg = G / 32;                                                 \
        const uint8_t *p0 = w->q + (size_t)R * K * 8, *p1 = p0 + (size_t)K * 8;                                        \
        const __m512i flip = _mm512_set1_epi8(-128);                                                                   \
        __m512 acc[TT];                                                                                                \
        for (int t = 0; t < (TT); t++)                                                                                 \
            acc[t] = _mm512_setzero_ps();                                                                              \
        for (int g = 0; g < ng; g++) {                                                                                 \
            __m512 ga[TT];                                                                                             \
            for (int t = 0; t < (TT); t++)                                                                             \
                ga[t] = _mm512_setzero_ps();                                                                           \
            for (int b = 0; b < bpg; b++) {                                                                            \
                const int blk = g * bpg + b;                                                                           \
                const uint8_t *pb0 = p0 + (size_t)blk * 256, *pb1 = p1 + (size_t)blk * 256;                            \
                for (int c = 0; c < 256; c += 64)                                                                      \
                    pf(pb0 + X8_PF + c), pf(pb1 + X8_PF + c);                                                          \
                __m512i sm[TT];                                                                                        \
                for (int t = 0; t < (TT); t++)                                                                         \
                    sm[t] = _mm512_setzero_si512();                                                                    \
                for (int k = 0; k < 8; k++) {                                                                          \
                    const __m512i v = _mm512_xor_si512(join_si(pb0 + 32 * k, pb1 + 32 * k), flip);                     \
                    for (int t = 0; t < (TT); t++) {                                                                   \
                        int32_t a;                                                                                     \
                        memcpy(&a, xq + (size_t)t * ldq + 32 * blk + 4 * k, 4);                                        \
                        sm[t] = _mm512_dpbusd_epi32(sm[t], v, _mm512_set1_epi32(a));                                   \
                    }                                                                                                  \
                }                                                                                                      \
                for (int t = 0; t < (TT); t++)                                                                         \
                    ga[t] = _mm512_fmadd_ps(                                                                           \
                        cvt512_i32_ps(_mm512_sub_epi32(sm[t], _mm512_set1_epi32(128 * bs[(size_t)t * ldd + blk]))),    \
                        _mm512_set1_ps(xd[(size_t)t * ldd + blk]), ga[t]);                                             \
            }                                                                                                          \
            const size_t s0 = ((size_t)R * ng + (size_t)g) * GQ_X8_ROWS, s1 = s0 + (size_t)ng * GQ_X8_ROWS;            \
            const __m512 sc = w->s16 ? join_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w->s16 + s0))),       \
                                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w->s16 + s1))))       \
                                     : join_ps(_mm256_loadu_ps(w->s32 + s0), _mm256_loadu_ps(w->s32 + s1));            \
            for (int t = 0; t < (TT); t++)                                                                             \
                acc[t] = _mm512_fmadd_ps(ga[t], sc, acc[t]);                                                           \
        }                                                                                                              \
        for (int t = 0; t < (TT); t++)                                                                                 \
            _mm512_storeu_ps(out + (size_t)t * ldo, acc[t]);                                                           \
    }
GQ_ROWS16_Q8(1, rows16_q8_1)
GQ_ROWS16_Q8(4, rows16_q8_4)
#undef GQ_ROWS16_Q8
#endif

/* int3 / int2 in the 8-row layout (qmatmul.h's bit planes): rows 8R..8R+7 for TT tokens at
 * once, as rows8_q4. Per block of 32 columns: the two low-bit planes (and int3's high-bit plane)
 * are loaded once; code vector k (8 rows x columns 4k..4k+3) is one shift and one mask of a low
 * plane (int3: or'd with one shift and one mask of the high plane), multiplied by maddubs with a
 * token's 4 activation codes broadcast to every lane and summed in int16 (8 products of at most
 * 2 x 7 x 127: |sum| <= 14224); one madd to int32, one conversion and one FMA by the block's
 * activation scale per block and token; per group the offset (4, 2) times the group's activation
 * sum is taken off and the 8 rows' fp16 scales applied in one FMA. The 16-bit shifts move no bit
 * across a byte boundary into the bits the masks keep. */
static inline __m256i x8_lo2(__m256i L, int s) {
    return _mm256_and_si256(_mm256_srli_epi16(L, 2 * s), _mm256_set1_epi8(3));
}
static inline __m256i x8_hi1(__m256i H, int k) { /* bit k of each byte to bit 2 */
    return _mm256_and_si256(k < 2 ? _mm256_slli_epi16(H, 2 - k) : _mm256_srli_epi16(H, k - 2), _mm256_set1_epi8(4));
}
#define GQ_ROWS8_Q32(TT, BITS, NAME)                                                                                   \
    static void NAME(const gq_qmat *w, int R, const int8_t *xq, const float *xd, const float *gs, const int32_t *bs,   \
                     int ldq, int ldd, int ldg, float *out, int ldo) {                                                 \
        (void)bs;                                                                                                      \
        const int K = w->cols, G = w->group, ng = K / G, bpg = G / 32;                                                 \
        const uint8_t *p = w->q + (size_t)R * K * (BITS);                                                              \
        const uint16_t *s16 = w->s16 + (size_t)R * ng * GQ_X8_ROWS;                                                    \
        __m256 acc[TT];                                                                                                \
        for (int t = 0; t < (TT); t++)                                                                                 \
            acc[t] = _mm256_setzero_ps();                                                                              \
        for (int g = 0; g < ng; g++) {                                                                                 \
            __m256 ga[TT];                                                                                             \
            for (int t = 0; t < (TT); t++)                                                                             \
                ga[t] = _mm256_setzero_ps();                                                                           \
            for (int b = 0; b < bpg; b++) {                                                                            \
                const int blk = g * bpg + b;                                                                           \
                const uint8_t *pb = p + (size_t)blk * 32 * (BITS);                                                     \
                pf(pb + X8_PF), pf(pb + X8_PF + 64);                                                                   \
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)pb),                                            \
                              l1 = _mm256_loadu_si256((const __m256i *)(pb + 32));                                     \
                const __m256i hb = (BITS) == 3 ? _mm256_loadu_si256((const __m256i *)(pb + 64)) : l0;                  \
                __m256i sm[TT];                                                                                        \
                for (int t = 0; t < (TT); t++)                                                                         \
                    sm[t] = _mm256_setzero_si256();                                                                    \
                _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {                                                  \
                    __m256i c = x8_lo2(k < 4 ? l0 : l1, k % 4);                                                        \
                    if ((BITS) == 3) c = _mm256_or_si256(c, x8_hi1(hb, k));                                            \
                    for (int t = 0; t < (TT); t++) {                                                                   \
                        int32_t a;                                                                                     \
                        memcpy(&a, xq + (size_t)t * ldq + 32 * blk + 4 * k, 4);                                        \
                        Q4_ACC(sm[t], c, _mm256_set1_epi32(a));                                                        \
                    }                                                                                                  \
                }                                                                                                      \
                for (int t = 0; t < (TT); t++)                                                                         \
                    ga[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(Q4_FIN(sm[t])),                                         \
                                            _mm256_broadcast_ss(xd + (size_t)t * ldd + blk), ga[t]);                   \
            }                                                                                                          \
            const __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s16 + (size_t)g * GQ_X8_ROWS)));       \
            const __m256 off = _mm256_set1_ps((BITS) == 3 ? 4.0f : 2.0f);                                              \
            for (int t = 0; t < (TT); t++)                                                                             \
                acc[t] = _mm256_fmadd_ps(_mm256_fnmadd_ps(off, _mm256_set1_ps(gs[(size_t)t * ldg + g]), ga[t]), sc,    \
                                         acc[t]);                                                                      \
        }                                                                                                              \
        for (int t = 0; t < (TT); t++)                                                                                 \
            _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);                                                           \
    }
GQ_ROWS8_Q32(1, 3, rows8_q3_1)
GQ_ROWS8_Q32(4, 3, rows8_q3_4)
GQ_ROWS8_Q32(1, 2, rows8_q2_1)
GQ_ROWS8_Q32(4, 2, rows8_q2_4)
#undef GQ_ROWS8_Q32

#if GQ_QDOT_VNNI >= 2
/* The same for two 8-row blocks at once in 512-bit registers (as rows16_q4): the same bits. */
static inline __m512i x8_lo2_512(__m512i L, int s) {
    return _mm512_and_si512(_mm512_srli_epi16(L, 2 * s), _mm512_set1_epi8(3));
}
static inline __m512i x8_hi1_512(__m512i H, int k) {
    return _mm512_and_si512(k < 2 ? _mm512_slli_epi16(H, 2 - k) : _mm512_srli_epi16(H, k - 2), _mm512_set1_epi8(4));
}
#define GQ_ROWS16_Q32(TT, BITS, NAME)                                                                                  \
    static void NAME(const gq_qmat *w, int R, const int8_t *xq, const float *xd, const float *gs, const int32_t *bs,   \
                     int ldq, int ldd, int ldg, float *out, int ldo) {                                                 \
        (void)bs;                                                                                                      \
        const int K = w->cols, G = w->group, ng = K / G, bpg = G / 32;                                                 \
        const uint8_t *p0 = w->q + (size_t)R * K * (BITS), *p1 = p0 + (size_t)K * (BITS);                              \
        const uint16_t *s0 = w->s16 + (size_t)R * ng * GQ_X8_ROWS;                                                     \
        __m512 acc[TT];                                                                                                \
        for (int t = 0; t < (TT); t++)                                                                                 \
            acc[t] = _mm512_setzero_ps();                                                                              \
        for (int g = 0; g < ng; g++) {                                                                                 \
            __m512 ga[TT];                                                                                             \
            for (int t = 0; t < (TT); t++)                                                                             \
                ga[t] = _mm512_setzero_ps();                                                                           \
            for (int b = 0; b < bpg; b++) {                                                                            \
                const int blk = g * bpg + b;                                                                           \
                const uint8_t *pb0 = p0 + (size_t)blk * 32 * (BITS), *pb1 = p1 + (size_t)blk * 32 * (BITS);            \
                pf(pb0 + X8_PF), pf(pb0 + X8_PF + 64), pf(pb1 + X8_PF), pf(pb1 + X8_PF + 64);                          \
                const __m512i l0 = join_si(pb0, pb1), l1 = join_si(pb0 + 32, pb1 + 32);                                \
                const __m512i hb = (BITS) == 3 ? join_si(pb0 + 64, pb1 + 64) : l0;                                     \
                __m512i sm[TT];                                                                                        \
                for (int t = 0; t < (TT); t++)                                                                         \
                    sm[t] = _mm512_setzero_si512();                                                                    \
                _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {                                                  \
                    __m512i c = x8_lo2_512(k < 4 ? l0 : l1, k % 4);                                                    \
                    if ((BITS) == 3) c = _mm512_or_si512(c, x8_hi1_512(hb, k));                                        \
                    for (int t = 0; t < (TT); t++) {                                                                   \
                        int32_t a;                                                                                     \
                        memcpy(&a, xq + (size_t)t * ldq + 32 * blk + 4 * k, 4);                                        \
                        sm[t] = _mm512_dpbusd_epi32(sm[t], c, _mm512_set1_epi32(a));                                   \
                    }                                                                                                  \
                }                                                                                                      \
                for (int t = 0; t < (TT); t++)                                                                         \
                    ga[t] = _mm512_fmadd_ps(cvt512_i32_ps(sm[t]), _mm512_set1_ps(xd[(size_t)t * ldd + blk]), ga[t]);   \
            }                                                                                                          \
            const __m512 sc =                                                                                          \
                join_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s0 + (size_t)g * GQ_X8_ROWS))),              \
                        _mm256_cvtph_ps(_mm_loadu_si128(                                                               \
                            (const __m128i *)(s0 + (size_t)ng * GQ_X8_ROWS + (size_t)g * GQ_X8_ROWS))));               \
            const __m512 off = _mm512_set1_ps((BITS) == 3 ? 4.0f : 2.0f);                                              \
            for (int t = 0; t < (TT); t++)                                                                             \
                acc[t] = _mm512_fmadd_ps(_mm512_fnmadd_ps(off, _mm512_set1_ps(gs[(size_t)t * ldg + g]), ga[t]), sc,    \
                                         acc[t]);                                                                      \
        }                                                                                                              \
        for (int t = 0; t < (TT); t++)                                                                                 \
            _mm512_storeu_ps(out + (size_t)t * ldo, acc[t]);                                                           \
    }
GQ_ROWS16_Q32(1, 3, rows16_q3_1)
GQ_ROWS16_Q32(4, 3, rows16_q3_4)
GQ_ROWS16_Q32(1, 2, rows16_q2_1)
GQ_ROWS16_Q32(4, 2, rows16_q2_4)
#undef GQ_ROWS16_Q32
#endif

/* nf4 (integer path), G a multiple of 32: the codes index two 16-byte tables (low and high
 * bytes of gq_nf4_i16), interleaved into int16 values and multiplied with the sign-extended
 * activation codes by madd; per block of 32 the int32 sum is exact (|sum| < 2^27). */
static float row_nf4i(const gq_qmat *w, int r, const int8_t *xq, const float *xd, __m256i tlo, __m256i thi) {
    const int K = w->cols, G = w->group, ng = K / G, bpg = G / GQ_QMM_ABLOCK;
    const __m256i m4 = _mm256_set1_epi8(15), zero = _mm256_setzero_si256();
    const uint8_t *in = w->q + (size_t)r * K / 2;
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < ng; g++) {
        const uint8_t *p = in + (size_t)g * G / 2;
        const int8_t *x = xq + (size_t)g * G;
        const float *d = xd + (size_t)g * bpg;
        for (int j = 0; j < G / 2; j += 64)
            pf(p + (size_t)PF_ROWS * K / 2 + j);
        __m256 gacc = _mm256_setzero_ps();
#define GQ_NF4I_BLOCK(codes, xoff, b)                                                                                  \
    do {                                                                                                               \
        const __m256i lo_ = _mm256_shuffle_epi8(tlo, (codes)), hi_ = _mm256_shuffle_epi8(thi, (codes));                \
        const __m256i xv_ = _mm256_loadu_si256((const __m256i *)(x + (xoff)));                                         \
        const __m256i xs_ = _mm256_cmpgt_epi8(zero, xv_);                                                              \
        const __m256i pr_ = DPWSSD(_mm256_madd_epi16(_mm256_unpacklo_epi8(lo_, hi_), _mm256_unpacklo_epi8(xv_, xs_)),  \
                                   _mm256_unpackhi_epi8(lo_, hi_), _mm256_unpackhi_epi8(xv_, xs_));                    \
        gacc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pr_), _mm256_broadcast_ss(d + (b)), gacc);                           \
    } while (0)
        if (G == 32) {
            const __m128i v = _mm_loadu_si128((const __m128i *)p);
            const __m256i c = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), m4);
            GQ_NF4I_BLOCK(c, 0, 0);
        } else {
            for (int j = 0; j < G / 2; j += 32) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(p + j));
                GQ_NF4I_BLOCK(_mm256_and_si256(v, m4), j, j / 32);
                GQ_NF4I_BLOCK(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), G / 2 + j, (G / 2 + j) / 32);
            }
        }
#undef GQ_NF4I_BLOCK
        const float sc = scale_of(w, (size_t)r * ng + g) * (1.0f / (float)(1 << GQ_NF4_I16_SHIFT));
        acc = _mm256_fmadd_ps(gacc, _mm256_set1_ps(sc), acc);
    }
    return hsum8(acc);
}

/* The same for two rows and one token, with the activations already sign-extended to int16 in
 * the unpack order (xw: two vectors per block of 32, shared by every row): per row and block,
 * two shuffles, two unpacks, two madd, one add, one conversion and one FMA. */
static void row2_nf4i(const gq_qmat *w, int r, const __m256i *xw, const float *xd, __m256i tlo, __m256i thi, float *o0,
                      float *o1) {
    const int K = w->cols, G = w->group, ng = K / G, bpg = G / GQ_QMM_ABLOCK;
    const __m256i m4 = _mm256_set1_epi8(15);
    const uint8_t *p0 = w->q + (size_t)r * K / 2, *p1 = p0 + K / 2;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int g = 0; g < ng; g++) {
        const uint8_t *q0 = p0 + (size_t)g * G / 2, *q1 = p1 + (size_t)g * G / 2;
        const float *d = xd + (size_t)g * bpg;
        const __m256i *xg = xw + (size_t)2 * g * bpg;
        for (int j = 0; j < G / 2; j += 64)
            pf(q0 + (size_t)PF_ROWS * K / 2 + j), pf(q1 + (size_t)PF_ROWS * K / 2 + j);
        __m256 ga0 = _mm256_setzero_ps(), ga1 = _mm256_setzero_ps();
#define GQ_NF4I_ROW(codes, xa, xb, db, ga)                                                                             \
    do {                                                                                                               \
        const __m256i lo_ = _mm256_shuffle_epi8(tlo, (codes)), hi_ = _mm256_shuffle_epi8(thi, (codes));                \
        const __m256i pr_ =                                                                                            \
            DPWSSD(_mm256_madd_epi16(_mm256_unpacklo_epi8(lo_, hi_), xa), _mm256_unpackhi_epi8(lo_, hi_), xb);         \
        ga = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pr_), db, ga);                                                         \
    } while (0)
#define GQ_NF4I_BLOCK2(c0, c1, b)                                                                                      \
    do {                                                                                                               \
        const __m256i xa_ = _mm256_loadu_si256(xg + 2 * (b)), xb_ = _mm256_loadu_si256(xg + 2 * (b) + 1);              \
        const __m256 db_ = _mm256_broadcast_ss(d + (b));                                                               \
        GQ_NF4I_ROW(c0, xa_, xb_, db_, ga0);                                                                           \
        GQ_NF4I_ROW(c1, xa_, xb_, db_, ga1);                                                                           \
    } while (0)
        if (G == 32) {
            const __m128i v0 = _mm_loadu_si128((const __m128i *)q0), v1 = _mm_loadu_si128((const __m128i *)q1);
            GQ_NF4I_BLOCK2(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v0, 4), v0), m4),
                           _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v1, 4), v1), m4), 0);
        } else {
            for (int j = 0; j < G / 2; j += 32) {
                const __m256i v0 = _mm256_loadu_si256((const __m256i *)(q0 + j)),
                              v1 = _mm256_loadu_si256((const __m256i *)(q1 + j));
                GQ_NF4I_BLOCK2(_mm256_and_si256(v0, m4), _mm256_and_si256(v1, m4), j / 32);
                GQ_NF4I_BLOCK2(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4), (G / 2 + j) / 32);
            }
        }
#undef GQ_NF4I_BLOCK2
#undef GQ_NF4I_ROW
        const float k = 1.0f / (float)(1 << GQ_NF4_I16_SHIFT);
        acc0 = _mm256_fmadd_ps(ga0, _mm256_set1_ps(scale_of(w, (size_t)r * ng + g) * k), acc0);
        acc1 = _mm256_fmadd_ps(ga1, _mm256_set1_ps(scale_of(w, (size_t)(r + 1) * ng + g) * k), acc1);
    }
    *o0 = hsum8(acc0);
    *o1 = hsum8(acc1);
}

/* Results of rows b0 .. b0 + nb - 1 for tt tokens (o: nb per token) into y, only the rows in
 * [r0, r1): a block of the 8-row layout that the thread's range cuts (blocks inside the range
 * are stored straight into y by the kernels). */
static void put_cut_rows(float *y, int ldy, int r0, int r1, int b0, int nb, const float *o, int tt) {
    for (int t = 0; t < tt; t++)
        for (int j = 0; j < nb; j++)
            if (b0 + j >= r0 && b0 + j < r1) y[(size_t)t * ldy + (b0 + j - r0)] = o[t * nb + j];
}

static void rows_x86(const gq_qmat *w, int r0, int r1, const gq_qact *a, float *y, int ldy) {
    const gq_qformat f = w->spec.format;
    const int K = w->cols, nb = K / GQ_QMM_ABLOCK;
    const int q4 = (f == GQ_QF_INT4 || f == GQ_QF_FP4 || f == GQ_QF_INT4A) && gq_qmat_int_path(w);
    const int fp4 = f == GQ_QF_FP4;
    const int q32 = (f == GQ_QF_INT3 || f == GQ_QF_INT2) && gq_qmat_int_path(w);
    const int i8 = (f == GQ_QF_INT8 || f == GQ_QF_Q8_0) && gq_qmat_int_path(w);
    const int nf = f == GQ_QF_NF4 && gq_qmat_int_path(w);
    enum { NF_MAXK = 16384 }; /* nf4: the int16 activation buffers hold this many columns */
    /* no kernel here for these; nf4 in the 8-row layout with more columns than the buffers hold
     * has none either (its row kernels read the exported layout): the scalar kernel reads both */
    if ((f != GQ_QF_F32 && !q4 && !q32 && !i8 && !nf) || (nf && w->x8 && K > NF_MAXK)) {
        gq_qdot_variant("scalar")->rows(w, r0, r1, a, y, ldy);
        return;
    }
    /* 4-bit integer path: per token, the sum of the (dequantized) activations of each group, for
     * as many tokens as GS_MAX floats hold (more tokens: taken that many at a time) */
    enum { GS_MAX = 16384 };
    float gs_buf[GS_MAX];
    const int ngs = q4 || q32 ? K / w->group : 0;
    if (ngs > GS_MAX) {
        gq_qdot_variant("scalar")->rows(w, r0, r1, a, y, ldy);
        return;
    }
    if (ngs && a->M * ngs > GS_MAX) {
        const int per = GS_MAX / ngs;
        for (int m0 = 0; m0 < a->M; m0 += per) {
            gq_qact c = *a;
            c.M = a->M - m0 < per ? a->M - m0 : per;
            c.q += (size_t)m0 * K, c.d += (size_t)m0 * nb, c.bsum += (size_t)m0 * nb;
            if (c.x) c.x += (size_t)m0 * K;
            rows_x86(w, r0, r1, &c, y + (size_t)m0 * ldy, ldy);
        }
        return;
    }
    if (ngs) {
        const int bpg = w->group / GQ_QMM_ABLOCK;
        for (int m = 0; m < a->M; m++)
            for (int g = 0; g < ngs; g++) {
                float s = 0.0f;
                for (int b = 0; b < bpg; b++)
                    s += a->d[(size_t)m * nb + g * bpg + b] * (float)a->bsum[(size_t)m * nb + g * bpg + b];
                gs_buf[m * ngs + g] = s;
            }
    }
#define GS(m) (gs_buf + (size_t)(m)*ngs)
    void (*q4x2)(const gq_qmat *, int, const int8_t *, const float *, const float *, float *, float *) = NULL;
    if (q4 && f != GQ_QF_FP4 && w->s16)
        q4x2 = w->group == 32 ? row2_q4_g32 : w->group == 64 ? row2_q4_g64 : w->group == 128 ? row2_q4_g128 : NULL;
    __m256i tlo = _mm256_setzero_si256(), thi = tlo; /* nf4: the int16 codebook's low and high bytes */
    if (nf) {
        uint8_t lo[32], hi[32];
        for (int c = 0; c < 32; c++) {
            const int v = gq_nf4_i16(c & 15);
            lo[c] = (uint8_t)(v & 0xff), hi[c] = (uint8_t)((v >> 8) & 0xff);
        }
        tlo = _mm256_loadu_si256((const __m256i *)lo), thi = _mm256_loadu_si256((const __m256i *)hi);
    }
    int r = r0;
    if ((q4 || q32 || i8) && w->x8) { /* rows in the 8-row layout, 4 tokens at a time; a block cut by
                                       * the range is computed whole and copied */
        typedef void (*x8_fn)(const gq_qmat *, int, const int8_t *, const float *, const float *, const int32_t *, int,
                              int, int, float *, int);
        const int i3 = f == GQ_QF_INT3, i2 = f == GQ_QF_INT2;
        const x8_fn k1 = fp4 ? rows8_fp4_1 : i3 ? rows8_q3_1 : i2 ? rows8_q2_1 : i8 ? rows8_q8_1 : rows8_q4_1;
        const x8_fn k4 = fp4 ? rows8_fp4_4 : i3 ? rows8_q3_4 : i2 ? rows8_q2_4 : i8 ? rows8_q8_4 : rows8_q4_4;
        const int n8 = gq_qmat_x8_rows(w);
        int R = r0 / GQ_X8_ROWS;
#if GQ_QDOT_VNNI >= 2
        const x8_fn j1 = fp4 ? rows16_fp4_1 : i3 ? rows16_q3_1 : i2 ? rows16_q2_1 : i8 ? rows16_q8_1 : rows16_q4_1;
        const x8_fn j4 = fp4 ? rows16_fp4_4 : i3 ? rows16_q3_4 : i2 ? rows16_q2_4 : i8 ? rows16_q8_4 : rows16_q4_4;
        for (; (R + 2) * GQ_X8_ROWS <= n8 && (R + 1) * GQ_X8_ROWS < r1; R += 2) /* two blocks, both in range */
            for (int m = 0; m < a->M;) {
                float o[4 * 2 * GQ_X8_ROWS];
                const int tt = a->M - m >= 4 ? 4 : 1, inside = R * GQ_X8_ROWS >= r0 && (R + 2) * GQ_X8_ROWS <= r1;
                (tt == 4 ? j4 : j1)(w, R, a->q + (size_t)m * K, a->d + (size_t)m * nb, GS(m), a->bsum + (size_t)m * nb,
                                    K, nb, ngs, inside ? y + (size_t)m * ldy + (R * GQ_X8_ROWS - r0) : o,
                                    inside ? ldy : 2 * GQ_X8_ROWS);
                if (!inside) put_cut_rows(y + (size_t)m * ldy, ldy, r0, r1, R * GQ_X8_ROWS, 2 * GQ_X8_ROWS, o, tt);
                m += tt;
            }
#endif
        for (; R * GQ_X8_ROWS < (r1 < n8 ? r1 : n8); R++)
            for (int m = 0; m < a->M;) {
                float o[4 * GQ_X8_ROWS];
                const int tt = a->M - m >= 4 ? 4 : 1, inside = R * GQ_X8_ROWS >= r0 && (R + 1) * GQ_X8_ROWS <= r1;
                (tt == 4 ? k4 : k1)(w, R, a->q + (size_t)m * K, a->d + (size_t)m * nb, GS(m), a->bsum + (size_t)m * nb,
                                    K, nb, ngs, inside ? y + (size_t)m * ldy + (R * GQ_X8_ROWS - r0) : o,
                                    inside ? ldy : GQ_X8_ROWS);
                if (!inside) put_cut_rows(y + (size_t)m * ldy, ldy, r0, r1, R * GQ_X8_ROWS, GQ_X8_ROWS, o, tt);
                m += tt;
            }
        r = r0 > n8 ? r0 : n8;
    }
    if (nf && w->x8) { /* nf4, 8-row layout (AVX2: int16 activations of as many tokens as fit) */
        const int n8 = gq_qmat_x8_rows(w);
        __m256i t0 = tlo, t1 = thi;
#if GQ_QDOT_VNNI
        const int per = a->M;
        const int8_t *xs = a->q;
        uint8_t hb[32], lb[32]; /* the tables: codebook value + 2^14 as H * 256 + L */
        for (int c = 0; c < 32; c++) {
            const int v = gq_nf4_i16(c & 15) + 16384;
            hb[c] = (uint8_t)(v >> 8), lb[c] = (uint8_t)(v & 0xff);
        }
        t0 = _mm256_loadu_si256((const __m256i *)hb), t1 = _mm256_loadu_si256((const __m256i *)lb);
#else
        const int per = NF_MAXK / K;
        int16_t xs[NF_MAXK];
#endif
        for (int m0 = 0; m0 < a->M; m0 += per) {
            const int m1 = m0 + per < a->M ? m0 + per : a->M;
#if !GQ_QDOT_VNNI
            for (int i = 0; i < (m1 - m0) * K; i++)
                xs[i] = a->q[(size_t)m0 * K + i];
#endif
            for (int R = r0 / GQ_X8_ROWS; R * GQ_X8_ROWS < (r1 < n8 ? r1 : n8); R++)
                for (int m = m0; m < m1; m++) {
                    float o[GQ_X8_ROWS];
                    const int inside = R * GQ_X8_ROWS >= r0 && (R + 1) * GQ_X8_ROWS <= r1;
                    rows8_nf4(w, R, xs + (size_t)(m - m0) * K, a->bsum + (size_t)m * nb, a->d + (size_t)m * nb, t0, t1,
                              inside ? y + (size_t)m * ldy + (R * GQ_X8_ROWS - r0) : o);
                    if (!inside) put_cut_rows(y + (size_t)m * ldy, ldy, r0, r1, R * GQ_X8_ROWS, GQ_X8_ROWS, o, 1);
                }
        }
        r = r0 > n8 ? r0 : n8;
    }
    if (nf && a->M == 1 && K <= NF_MAXK) { /* one token: its int16 activations once, two rows at a time */
        __m256i xw[2 * NF_MAXK / 32];
        const __m256i zero = _mm256_setzero_si256();
        for (int b = 0; b < K / 32; b++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(a->q + 32 * b)), xs = _mm256_cmpgt_epi8(zero, xv);
            xw[2 * b] = _mm256_unpacklo_epi8(xv, xs), xw[2 * b + 1] = _mm256_unpackhi_epi8(xv, xs);
        }
        for (; r + 2 <= r1; r += 2)
            row2_nf4i(w, r, xw, a->d, tlo, thi, &y[r - r0], &y[r + 1 - r0]);
    }
    if (q4x2)
        for (; r + 2 <= r1; r += 2)
            for (int m = 0; m < a->M; m++)
                q4x2(w, r, a->q + (size_t)m * K, a->d + (size_t)m * nb, GS(m), &y[(size_t)m * ldy + (r - r0)],
                     &y[(size_t)m * ldy + (r + 1 - r0)]);
    for (; r < r1; r++)
        for (int m = 0; m < a->M; m++) {
            const int8_t *xq = a->q + (size_t)m * K;
            const float *xd = a->d + (size_t)m * nb;
            float v;
            if (f == GQ_QF_F32)
                v = row_f32(w->f32 + (size_t)r * K, a->x + (size_t)m * K, K);
            else if (i8)
                v = row_int8(w, r, xq, xd);
            else if (q4)
                v = row_q4(w, r, xq, xd, GS(m));
            else if (q32)
                v = row_q32(w, r, xq, xd, GS(m));
            else
                v = row_nf4i(w, r, xq, xd, tlo, thi);
            y[(size_t)m * ldy + (r - r0)] = v;
        }
#undef GS
}

static void to_f16_x86(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        dst[i] = gq_f32_to_f16(src[i]);
}

static void from_f16_x86(float *dst, const uint16_t *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = gq_f16_to_f32(src[i]);
}

/* 8 cached values as fp32 */
static inline __m256 kv8(const uint16_t *c16, const float *c32, size_t i) {
    return c16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(c16 + i))) : _mm256_loadu_ps(c32 + i);
}

/* hs a multiple of 16 and at most 128: the value accumulator stays in registers; otherwise the
 * scalar reference. Multiply then add (no FMA): the scalar variant's bits. */
static void attend_x86(float *out, const float *q, const uint16_t *k16, const uint16_t *v16, const float *k32,
                       const float *v32, size_t ld, int n, int hs, float scale, float *s) {
    if (hs % 16 || hs > 128) {
        gq_qdot_variant("scalar")->attend(out, q, k16, v16, k32, v32, ld, n, hs, scale, s);
        return;
    }
    const int nv = hs / 8;
    __m256 qv[16];
    for (int j = 0; j < nv; j++)
        qv[j] = _mm256_loadu_ps(q + 8 * j);
    for (int u = 0; u < n; u++) {
        const size_t off = (size_t)u * ld;
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
        for (int j = 0; j < nv; j += 2) {
            lo = _mm256_add_ps(lo, _mm256_mul_ps(qv[j], kv8(k16, k32, off + 8 * j)));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(qv[j + 1], kv8(k16, k32, off + 8 * j + 8)));
        }
        const __m256 t8 = _mm256_add_ps(lo, hi);
        const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
        const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
        const __m128 t1 = _mm_add_ss(t2, _mm_movehdup_ps(t2));
        s[u] = _mm_cvtss_f32(t1) * scale;
    }
    float inv;
    gq_qdot_attend_softmax(s, n, &inv);
    __m256 o[16];
    for (int j = 0; j < nv; j++)
        o[j] = _mm256_setzero_ps();
    for (int u = 0; u < n; u++) {
        const __m256 p = _mm256_set1_ps(s[u] * inv);
        const size_t off = (size_t)u * ld;
        for (int j = 0; j < nv; j++)
            o[j] = _mm256_add_ps(o[j], _mm256_mul_ps(p, kv8(v16, v32, off + 8 * j)));
    }
    for (int j = 0; j < nv; j++)
        _mm256_storeu_ps(out + 8 * j, o[j]);
}

/* ---- exact dequantization (the panel path of prefill and eval, embedding rows) ---- */

/* 16 4-bit codes (one per byte) to 16 floats: the value table (16 entries in two vectors,
 * picked by permutes and a blend on bit 3) or, for int4a, code - zero; times the scale. The
 * products are quant.h's: table entries are its values at scale 1, exact. */
static inline void put16(float *o, __m128i c16, __m256 lo8, __m256 hi8, int za, int z, __m256 sc) {
    for (int h = 0; h < 2; h++) {
        const __m256i ci = _mm256_cvtepu8_epi32(h ? _mm_srli_si128(c16, 8) : c16);
        __m256 v;
        if (za) {
            v = _mm256_cvtepi32_ps(_mm256_sub_epi32(ci, _mm256_set1_epi32(z)));
        } else {
            const __m256 a = _mm256_permutevar8x32_ps(lo8, ci), b = _mm256_permutevar8x32_ps(hi8, ci);
            v = _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(ci, 28)));
        }
        _mm256_storeu_ps(o + 8 * h, _mm256_mul_ps(v, sc));
    }
}

/* int3 / int2 rows in the 8-row layout (rows past it: the scalar code): per block of 32 columns, the
 * row's 4-byte pieces of the low-bit planes (and of int3's high-bit plane); 8 values at a time
 * (columns 4k + e, k = 2m, 2m + 1) come out of one piece by per-lane shifts: code - offset, times
 * the scale, as quant.h's gq_qvalue. */
static void dequant_planes(const gq_qmat *w, int r0, int r1, float *dst) {
    const int K = w->cols, G = w->group, ng = K / G, bits = gq_qbits(w->spec.format), n8 = gq_qmat_x8_rows(w);
    /* lane l: column 4k + e of the 8, e = l % 4, k = 2m + l / 4 */
    const __m256i lsh = _mm256_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26); /* 8e + 2 (k % 4), less 4 (m % 2) */
    const __m256i hsh = _mm256_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25);  /* 8e + k, less 2m */
    const __m256i m3 = _mm256_set1_epi32(3), m1 = _mm256_set1_epi32(1);
    const __m256 off = _mm256_set1_ps(bits == 3 ? 4.0f : 2.0f);
    for (int r = r0; r < r1; r++) {
        float *o = dst + (size_t)(r - r0) * K;
        if (r >= n8) {
            gq_qdot_variant("scalar")->dequant(w, r, r + 1, o);
            continue;
        }
        for (int g = 0; g < ng; g++) {
            const __m256 sc = _mm256_set1_ps(gq_qmat_scale(w, r, g));
            for (int b = 0; b < G / 32; b++) {
                const uint8_t *pb = gq_qmat_x8_piece(w, r, g * (G / 32) + b);
                uint32_t lo[2], hb = 0;
                memcpy(lo, pb, 4), memcpy(lo + 1, pb + 32, 4);
                if (bits == 3) memcpy(&hb, pb + 64, 4);
                for (int m = 0; m < 4; m++) { /* low bits at 8e + 2 (k % 4), high bit at 8e + k */
                    const __m256i sl = _mm256_add_epi32(lsh, _mm256_set1_epi32(4 * (m % 2)));
                    __m256i c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)lo[m / 2]), sl), m3);
                    if (bits == 3) {
                        const __m256i sh = _mm256_add_epi32(hsh, _mm256_set1_epi32(2 * m));
                        c = _mm256_or_si256(
                            c, _mm256_slli_epi32(
                                   _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)hb), sh), m1), 2));
                    }
                    _mm256_storeu_ps(o + (size_t)g * G + 32 * b + 8 * m,
                                     _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(c), off), sc));
                }
            }
        }
    }
}

static void dequant_x86(const gq_qmat *w, int r0, int r1, float *dst) {
    const gq_qformat f = w->spec.format;
    const int K = w->cols, G = w->group;
    const int four = (f == GQ_QF_INT4 || f == GQ_QF_INT4A || f == GQ_QF_NF4 || f == GQ_QF_FP4) && G % 32 == 0;
    const int eight = (f == GQ_QF_INT8 || f == GQ_QF_Q8_0) && G % 8 == 0;
    const int planes = (f == GQ_QF_INT3 || f == GQ_QF_INT2) && G % 32 == 0 && w->x8;
    if (planes) {
        dequant_planes(w, r0, r1, dst);
        return;
    }
    if (!four && !eight) {
        gq_qdot_variant("scalar")->dequant(w, r0, r1, dst);
        return;
    }
    float lut[16];
    for (int c = 0; c < 16; c++)
        lut[c] = four ? gq_qvalue(f, c, 1.0f, 0) : 0.0f;
    const __m256 lo8 = _mm256_loadu_ps(lut), hi8 = _mm256_loadu_ps(lut + 8);
    const __m128i m4 = _mm_set1_epi8(15);
    const int ng = K / G, za = f == GQ_QF_INT4A, n8 = gq_qmat_x8_rows(w);
    for (int r = r0; r < r1; r++) {
        float *o = dst + (size_t)(r - r0) * K;
        for (int g = 0; g < ng; g++) {
            const __m256 sc = _mm256_set1_ps(gq_qmat_scale(w, r, g));
            const int z = za ? w->zeros[gq_qmat_gidx(w, r, g)] : 0;
            float *og = o + (size_t)g * G;
            if (eight && r < n8) { /* 8-row layout: a block's 4-byte pieces of this row, 32 bytes apart */
                for (int b = 0; b < G / 32; b++) {
                    const uint8_t *p = gq_qmat_x8_piece(w, r, g * (G / 32) + b);
                    int32_t e[8];
                    for (int k = 0; k < 8; k++)
                        memcpy(&e[k], p + 32 * k, 4);
                    for (int h = 0; h < 4; h++)
                        _mm256_storeu_ps(og + 32 * b + 8 * h,
                                         _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                           _mm_set_epi32(0, 0, e[2 * h + 1], e[2 * h]))),
                                                       sc));
                }
            } else if (eight) {
                const int8_t *in = (const int8_t *)w->q + (size_t)r * K + (size_t)g * G;
                for (int i = 0; i < G; i += 8)
                    _mm256_storeu_ps(og + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                               _mm_loadl_epi64((const __m128i *)(in + i)))),
                                                           sc));
            } else if (r < n8) { /* 8-row layout: a block's 4-byte pieces of this row, 32 bytes apart */
                for (int b = 0; b < G / 32; b++) {
                    const uint8_t *p = gq_qmat_x8_piece(w, r, g * (G / 32) + b);
                    int32_t e[4];
                    for (int k = 0; k < 4; k++)
                        memcpy(&e[k], p + 32 * k, 4);
                    const __m128i v = _mm_setr_epi32(e[0], e[1], e[2], e[3]);
                    put16(og + 32 * b, _mm_and_si128(v, m4), lo8, hi8, za, z, sc);
                    put16(og + 32 * b + 16, _mm_and_si128(_mm_srli_epi16(v, 4), m4), lo8, hi8, za, z, sc);
                }
            } else { /* byte j of a group: codes j (low nibble) and j + G/2 (high) */
                const uint8_t *in = w->q + ((size_t)r * ng + g) * (size_t)(G / 2);
                for (int j = 0; j < G / 2; j += 16) {
                    const __m128i v = _mm_loadu_si128((const __m128i *)(in + j));
                    put16(og + j, _mm_and_si128(v, m4), lo8, hi8, za, z, sc);
                    put16(og + G / 2 + j, _mm_and_si128(_mm_srli_epi16(v, 4), m4), lo8, hi8, za, z, sc);
                }
            }
        }
    }
}

/* Activation blocks of 32 to int8 (qmatmul.h's rule: d = amax / 127, codes rint(x / d) in
 * [-127, 127], their sum): the scalar variant's bits (|x| max is exact, the same reciprocal and
 * product, round-half-even). */
static void quantize_x86(gq_qact *a, size_t b0, size_t b1) {
    const size_t nb = (size_t)a->K / GQ_QMM_ABLOCK;
    const __m256 sign = _mm256_set1_ps(-0.0f), lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f);
    for (size_t blk = b0; blk < b1; blk++) {
        const size_t m = blk / nb, b = blk % nb;
        const float *x = a->x + m * a->K + b * GQ_QMM_ABLOCK;
        int8_t *q = a->q + m * a->K + b * GQ_QMM_ABLOCK;
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            mx = _mm256_max_ps(_mm256_andnot_ps(sign, v[i]), mx); /* a NaN is passed over, as in the scalar code */
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h), d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256i c[4];
        for (int i = 0; i < 4; i++) {
            const __m256 r =
                _mm256_round_ps(_mm256_mul_ps(v[i], _mm256_set1_ps(id)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            c[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, nlim), lim));
        }
        /* int32 -> int8 in order: pack pairs to int16 and to int8, then undo the lane interleave */
        const __m256i p16a = _mm256_packs_epi32(c[0], c[1]), p16b = _mm256_packs_epi32(c[2], c[3]);
        const __m256i p8 =
            _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)q, p8);
        const __m256i s32 = _mm256_add_epi32(_mm256_add_epi32(c[0], c[1]), _mm256_add_epi32(c[2], c[3]));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
        a->d[blk] = d;
        a->bsum[blk] = _mm_cvtsi128_si32(t);
    }
}

const gq_qdot_ops GQ_QDOT_CAT(gq_qdot_, GQ_QDOT_VAR) = {
    GQ_QDOT_STR(GQ_QDOT_VAR), rows_x86, to_f16_x86, from_f16_x86, attend_x86, dequant_x86, quantize_x86};
#endif
