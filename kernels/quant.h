/* quant: the ONE definition of every quantization format's math (DESIGN.md decision 1).
 * Fake-quant in training, PTQ/QAT export and the inference runner's dequantization all call
 * these functions, so a fake-quant weight and the exported-then-dequantized weight are the
 * same bits. Group-level functions are GQ_HD (host and CUDA device); the tensor-level loops
 * at the end are host code. No fast-math options near this file: rounding is exact as written.
 *
 * Formats (docs/FORMAT.md has layouts and bits per weight):
 *   int8     per output row, symmetric: s = amax / 127 (fp32), q = rint(x / s) in [-127, 127]
 *   q8_0     int8 in groups of 32 with an fp16 scale: llama.cpp's Q8_0, byte for byte
 *   int4     symmetric groups (32/64/128...), fp16 scale: llama.cpp's Q4_0 rule (the signed
 *            value of largest magnitude maps to -8); byte-identical to Q4_0 at group 32
 *   int4a    asymmetric groups: fp16 scale + uint8 zero point, q in [0, 15]
 *   int3/int2  symmetric groups, the int4 rule with 8 / 4 levels (stress settings)
 *   nf4      blocks of 64, bitsandbytes' 16-value NormalFloat codebook, fp32 absmax per block,
 *            optionally double-quantized (int8 absmax in blocks of 256 + fp32 scale + offset)
 *   fp4      blocks of 64, E2M1 values {0, .5, 1, 1.5, 2, 3, 4, 6} x sign, scale absmax / 6
 * With search (suffix -mse; not int8 / q8_0) the stored layout and the dequantization are the
 * same; only each group's scale (and int4a's zero point) is chosen differently: the one of least
 * squared error over the group, found by gq_qsearch_group below. With learned step sizes (suffix
 * -lsq) the scales are parameters that QAT trains (gq_lsq_* below): again the same layout. */
#ifndef GQ_QUANT_H
#define GQ_QUANT_H

#include "gq_hd.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    GQ_QF_F32 = 0, /* not quantized */
    GQ_QF_INT8,
    GQ_QF_Q8_0,
    GQ_QF_INT4,
    GQ_QF_INT4A,
    GQ_QF_INT3,
    GQ_QF_INT2,
    GQ_QF_NF4,
    GQ_QF_FP4,
    GQ_QF_COUNT
} gq_qformat;

typedef struct {
    gq_qformat format;
    int group;        /* values per group/block along a row (int8: the whole row) */
    int double_quant; /* nf4: quantize the absmax values too */
    int search;       /* GQ_QSEARCH_MSE: each group's scale searched for the least squared error
                         (int4, int4a, int3, int2, nf4, fp4; suffix -mse); 0: the absmax rules */
    int lsq;          /* learned step sizes (suffix -lsq; int4, int3, int2, nf4, fp4): QAT trains
                         each group's scale (gq_lsq_* below), starting from the rule above; an
                         export takes the trained scales from the checkpoint */
    int gptq;         /* post-training quantization by GPTQ (suffix -gptq; kernels/gptq.h): the
                         codes chosen with second-order error compensation on calibration data
                         (gpt2q-export --calib); the layout and dequantization are the format's */
} gq_qspec;

#define GQ_QSEARCH_MSE 1

/* ---- fp16 (IEEE binary16), round to nearest even ---- */

GQ_HD uint16_t gq_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
    if (absx < 0x38800000u) {                                   /* fp16 subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;          /* below half the smallest subnormal */
        uint32_t man = (absx & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(absx >> 23); /* value = man * 2^(e - 150) = q * 2^-24 */
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = (absx >> 23) - 112, man = absx & 0x7fffffu;
    uint32_t q = (e << 10) | (man >> 13), rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++; /* carries into the exponent correctly */
    return (uint16_t)(sign | q);
}

GQ_HD float gq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (e == 0) {
        if (!man) {
            bits = sign;
        } else { /* subnormal */
            int k = 0;
            while (!(man & 0x400u)) man <<= 1, k++;
            bits = sign | (uint32_t)(113 - k) << 23 | (man & 0x3ffu) << 13;
        }
    } else if (e == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (e + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- bf16: the top 16 bits of an fp32; round to nearest even (NaN stays NaN) ---- */

GQ_HD uint16_t gq_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

GQ_HD float gq_bf16_to_f32(uint16_t h) {
    const uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---- codebooks ---- */

/* bitsandbytes' NF4 values (functional.py, get_4bit_type("nf4")), ascending */
#define GQ_NF4_CODEBOOK                                                                                          \
    {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,          \
     -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,           \
     0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,                   \
     0.7229568362236023f, 1.0f}

/* E2M1 magnitudes by code 0..7; code bit 3 is the sign */
#define GQ_FP4_VALUES {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f}

GQ_HD float gq_nf4_value(int code) {
    const float cb[16] = GQ_NF4_CODEBOOK;
    return cb[code & 15];
}

GQ_HD float gq_fp4_value(int code) {
    const float v[8] = GQ_FP4_VALUES;
    return (code & 8) ? -v[code & 7] : v[code & 7];
}

/* Nearest codebook entry to y in [-1, 1] (ties to the lower index, as bitsandbytes' midpoint tree):
 * the number of midpoints below y (they ascend; a count has no branches to mispredict). */
GQ_HD int gq_nf4_code(float y) {
    const float cb[16] = GQ_NF4_CODEBOOK;
    int best = 0;
    for (int k = 1; k < 16; k++) best += y > 0.5f * (cb[k - 1] + cb[k]);
    return best;
}

/* Nearest E2M1 code to y (in units of the scale, |y| <= 6); ties to the even code: the number
 * of midpoints below |y|, a midpoint itself counted when the code above it is even. */
GQ_HD int gq_fp4_code(float y) {
    const float v[8] = GQ_FP4_VALUES;
    float a = y < 0 ? -y : y;
    int best = 0;
    for (int k = 1; k < 8; k++) {
        float mid = 0.5f * (v[k - 1] + v[k]);
        best += a > mid || (a == mid && (k & 1) == 0);
    }
    return (y < 0 && best) ? (best | 8) : best;
}

/* ---- group-level primitives (codes are unpacked: one uint8 per value) ----
 * A group's quantization is three steps: the statistics of its values (gq_qstats: which the
 * format needs of them), the group's parameters from those (gq_qgroup_params: the stored scale,
 * the factor codes use, int4a's zero point), and each value's code alone (gq_qgroup_code). The
 * group functions below run them in sequence; the CUDA fake-quant runs the statistics as a
 * reduction across a warp's lanes (gq_qstats_merge) and the codes in parallel
 * (kernels/cuda/fakequant.cu): the same definitions, so the same bits. For q8_0 (Q8_0's
 * arithmetic), int4 / int3 / int2, int4a, nf4 and fp4 (int8 per row: gq_q8_group). */
typedef struct {
    float amax;   /* largest |x| (0 for an empty or zero group) */
    float m;      /* the first value (lowest index) with |x| == amax; 0 for a zero group */
    float lo, hi; /* min(0, min x), max(0, max x) */
} gq_qstats;

GQ_HD gq_qstats gq_qstats_zero(void) {
    gq_qstats z = {0.0f, 0.0f, 0.0f, 0.0f};
    return z;
}
/* the statistics of a run of values, a value appended (in index order) */
GQ_HD void gq_qstats_add(gq_qstats *s, float x) {
    if (s->amax < fabsf(x)) s->amax = fabsf(x), s->m = x;
    s->lo = x < s->lo ? x : s->lo;
    s->hi = x > s->hi ? x : s->hi;
}
/* the statistics of run a followed by run b (b's values all after a's) */
GQ_HD gq_qstats gq_qstats_merge(gq_qstats a, gq_qstats b) {
    if (a.amax < b.amax) a.amax = b.amax, a.m = b.m;
    a.lo = b.lo < a.lo ? b.lo : a.lo;
    a.hi = b.hi > a.hi ? b.hi : a.hi;
    return a;
}

typedef struct {
    float sc; /* the stored scale: a value is gq_qvalue(f, code, sc, zero) */
    float k;  /* what codes multiply by (q8_0, int4 / int3 / int2: the reciprocal of the unrounded
               * scale) or divide by (int4a, nf4, fp4: the scale) */
    int zero; /* int4a's zero point */
} gq_qparams;

GQ_HD gq_qparams gq_qgroup_params(gq_qformat f, gq_qstats s) {
    gq_qparams p = {1.0f, 1.0f, 0};
    switch (f) {
    case GQ_QF_Q8_0: { /* Q8_0: d = amax / 127, codes round(x * (1 / d)), fp16 scale */
        const float d = s.amax / 127.0f;
        p.k = d != 0.0f ? 1.0f / d : 0.0f;
        p.sc = gq_f16_to_f32(gq_f32_to_f16(d));
        break;
    }
    case GQ_QF_INT4:
    case GQ_QF_INT3:
    case GQ_QF_INT2: { /* d = m / -2^(k-1), the reciprocal in fp32, fp16 scale */
        const float half = (float)(1 << ((f == GQ_QF_INT4 ? 4 : f == GQ_QF_INT3 ? 3 : 2) - 1));
        const float d = s.m / -half;
        p.k = d != 0.0f ? 1.0f / d : 0.0f;
        p.sc = gq_f16_to_f32(gq_f32_to_f16(d));
        break;
    }
    case GQ_QF_INT4A: { /* s = fp16((max - min) / 15) (1 for a zero group), z = clamp(rint(-min / s)) */
        float sc = gq_f16_to_f32(gq_f32_to_f16((s.hi - s.lo) / 15.0f));
        if (sc == 0.0f) sc = 1.0f;
        float z = rintf(-s.lo / sc);
        z = z > 15.0f ? 15.0f : z < 0.0f ? 0.0f : z;
        p.sc = p.k = sc, p.zero = (int)z;
        break;
    }
    default: { /* nf4: absmax; fp4: absmax / 6 (1 for a zero group) */
        float sc = f == GQ_QF_FP4 ? s.amax / 6.0f : s.amax;
        if (sc == 0.0f) sc = 1.0f;
        p.sc = p.k = sc;
        break;
    }
    }
    return p;
}

GQ_HD int gq_qgroup_code(gq_qformat f, float x, gq_qparams p) {
    switch (f) {
    case GQ_QF_Q8_0: return (uint8_t)(int8_t)roundf(x * p.k); /* int8, stored as uint8 */
    case GQ_QF_INT4:
    case GQ_QF_INT3:
    case GQ_QF_INT2: {
        const int bits = f == GQ_QF_INT4 ? 4 : f == GQ_QF_INT3 ? 3 : 2;
        const float half = (float)(1 << (bits - 1)), top = (float)((1 << bits) - 1);
        float q = truncf(x * p.k + (half + 0.5f));
        return (int)(q > top ? top : q < 0.0f ? 0.0f : q);
    }
    case GQ_QF_INT4A: {
        float q = rintf(x / p.k) + (float)p.zero;
        return (int)(q > 15.0f ? 15.0f : q < 0.0f ? 0.0f : q);
    }
    case GQ_QF_NF4: return gq_nf4_code(x / p.k);
    default: return gq_fp4_code(x / p.k);
    }
}

/* a group's codes from its statistics; returns the stored scale */
GQ_HD float gq_qgroup_codes(gq_qformat f, const float *x, int n, gq_qstats s, uint8_t *codes, uint8_t *zero) {
    const gq_qparams p = gq_qgroup_params(f, s);
    for (int i = 0; i < n; i++) codes[i] = (uint8_t)gq_qgroup_code(f, x[i], p);
    if (zero) *zero = (uint8_t)p.zero;
    return p.sc;
}

/* int8 per row in two steps: the row's scale from its largest |x| (a zero row gets scale 1), and
 * a value's code (int8, stored as uint8) */
GQ_HD float gq_q8_row_scale(float amax) {
    const float d = amax / 127.0f;
    return d == 0.0f ? 1.0f : d;
}
GQ_HD int gq_q8_row_code(float x, float d) {
    float q = rintf(x / d);
    q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
    return (int)(int8_t)q;
}

/* int8 per row / q8_0 style symmetric: scale = amax / 127. ggml_q8 selects Q8_0's exact
 * arithmetic (reciprocal, round half away from zero, fp16 scale); otherwise the division and
 * round-half-to-even of the int8 per-row format. Codes are int8 stored as uint8. */
GQ_HD float gq_q8_group(const float *x, int n, uint8_t *codes, int ggml_q8) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    if (ggml_q8) {
        gq_qstats s = gq_qstats_zero();
        s.amax = amax;
        return gq_qgroup_codes(GQ_QF_Q8_0, x, n, s, codes, NULL);
    }
    const float d = gq_q8_row_scale(amax);
    for (int i = 0; i < n; i++) codes[i] = (uint8_t)gq_q8_row_code(x[i], d);
    return d;
}

/* Symmetric k-bit group (k = 2, 3, 4), llama.cpp's Q4_0 rule generalised: d = m / -2^(k-1)
 * where m is the signed value of largest magnitude, q = min(2^k - 1, trunc(x / d + 2^(k-1) + 0.5))
 * computed with the reciprocal in fp32, value = (q - 2^(k-1)) * fp16(d). Returns fp16(d). */
GQ_HD float gq_qsym_group(const float *x, int n, int bits, uint8_t *codes) {
    gq_qstats s = gq_qstats_zero();
    for (int i = 0; i < n; i++)
        if (s.amax < fabsf(x[i])) s.amax = fabsf(x[i]), s.m = x[i];
    return gq_qgroup_codes(bits == 4 ? GQ_QF_INT4 : bits == 3 ? GQ_QF_INT3 : GQ_QF_INT2, x, n, s, codes, NULL);
}

/* Asymmetric 4-bit group: s = (max - min) / 15 (fp16), z = clamp(rint(-min / s), 0, 15),
 * q = clamp(rint(x / s) + z, 0, 15), value = (q - z) * s. The range always includes 0. */
GQ_HD float gq_qasym_group(const float *x, int n, uint8_t *codes, uint8_t *zero) {
    gq_qstats s = gq_qstats_zero();
    for (int i = 0; i < n; i++) {
        s.lo = x[i] < s.lo ? x[i] : s.lo;
        s.hi = x[i] > s.hi ? x[i] : s.hi;
    }
    return gq_qgroup_codes(GQ_QF_INT4A, x, n, s, codes, zero);
}

/* NF4 / FP4 block: absmax scale (fp32); returns absmax (nf4) or absmax / 6 (fp4). */
GQ_HD float gq_q4code_group(const float *x, int n, int fp4, uint8_t *codes) {
    gq_qstats s = gq_qstats_zero();
    for (int i = 0; i < n; i++) s.amax = fabsf(x[i]) > s.amax ? fabsf(x[i]) : s.amax;
    return gq_qgroup_codes(fp4 ? GQ_QF_FP4 : GQ_QF_NF4, x, n, s, codes, NULL);
}

/* ---- activations: int8 in blocks of 32 (W8A8) ----
 * The inference runner's integer path (kernels/qmatmul.h) multiplies weight codes with
 * activations quantized per block of GQ_ACT_BLOCK values: d = amax / 127 (fp32),
 * q = rint(x * (1 / d)) in [-127, 127] (round half to even; all 0 for a zero block); the value
 * is q * d. QAT with int8 activations (the trainer's act_fakequant) computes the same values,
 * so a model trained that way is scored as it runs. amax passes over a NaN. */
#define GQ_ACT_BLOCK 32
GQ_HD float gq_act8_inv(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }
GQ_HD int gq_act8_code(float x, float inv) {
    float v = rintf(x * inv);
    v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
    return v == v ? (int)v : 0; /* (a NaN: 0, not an undefined conversion) */
}
/* 1 if a product on a weight of this format, row length and group takes int8 activations (the
 * runner's integer path, and so the trainer's W8A8): a quantized format whose rows and groups
 * are made of whole blocks. */
GQ_HD int gq_act8_applies(gq_qformat f, int cols, int group) {
    return f != GQ_QF_F32 && f < GQ_QF_COUNT && cols % GQ_ACT_BLOCK == 0 && group % GQ_ACT_BLOCK == 0;
}
/* One block: codes to q, their sum to *sum; returns d. */
GQ_HD float gq_act8_block(const float *x, int8_t *q, int32_t *sum) {
    float amax = 0.0f;
    for (int i = 0; i < GQ_ACT_BLOCK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    const float d = amax / 127.0f, inv = gq_act8_inv(d);
    int32_t s = 0;
    for (int i = 0; i < GQ_ACT_BLOCK; i++) {
        q[i] = (int8_t)gq_act8_code(x[i], inv);
        s += q[i];
    }
    *sum = s;
    return d;
}
/* One block in place: x[i] = q[i] * d (fake-quant; the straight-through estimator passes the
 * gradient unchanged: absmax scaling clips nothing). */
GQ_HD void gq_act8_fake_block(float *x) {
    int8_t q[GQ_ACT_BLOCK];
    int32_t s;
    const float d = gq_act8_block(x, q, &s);
    for (int i = 0; i < GQ_ACT_BLOCK; i++) x[i] = (float)q[i] * d;
}

/* Value of one code of a group, given the group's scale (and zero point for int4a). */
GQ_HD float gq_qvalue(gq_qformat f, int code, float scale, int zero) {
    switch (f) {
    case GQ_QF_INT8:
    case GQ_QF_Q8_0: return (float)(int8_t)(uint8_t)code * scale;
    case GQ_QF_INT4: return (float)(code - 8) * scale;
    case GQ_QF_INT3: return (float)(code - 4) * scale;
    case GQ_QF_INT2: return (float)(code - 2) * scale;
    case GQ_QF_INT4A: return (float)(code - zero) * scale;
    case GQ_QF_NF4: return gq_nf4_value(code) * scale;
    case GQ_QF_FP4: return gq_fp4_value(code) * scale;
    default: return 0.0f;
    }
}

GQ_HD int gq_qbits(gq_qformat f) {
    switch (f) {
    case GQ_QF_INT8:
    case GQ_QF_Q8_0: return 8;
    case GQ_QF_INT3: return 3;
    case GQ_QF_INT2: return 2;
    case GQ_QF_F32: return 32;
    default: return 4;
    }
}

/* ---- scale search (-mse) ----
 * The absmax rules above never clip, so one outlier stretches the whole group's grid. The
 * search tries GQ_QSEARCH_STEPS candidate scales, the absmax scale times 1.50, 1.46, ..., 0.30
 * (int4a: its range [min, max] times the same factors; int4 / int3 / int2 also the opposite
 * sign at 1.50, 1.42, ..., 0.30, their grid being lopsided), gives each value its nearest level
 * under the candidate, refits the scale to those codes by least squares (s = sum x v / sum v^2,
 * the optimum for fixed codes; rounded to fp16 where the format stores fp16) and scores it by
 * the closed form sum x^2 - 2 s sum x v + s^2 sum v^2 (every sum weighted per value by
 * gq_qsearch_weight: "squared error" below is that weighted one); then GQ_QSEARCH_REFINE rounds of nearest
 * codes + refit from the best (a fixed point of the two is a local optimum). The winner's true
 * error (every value at its nearest level under the stored scale) is compared with the absmax
 * result's, which is kept unless beaten: no group's squared error is larger than absmax's.
 * Where a candidate wins, the codes are the nearest levels under the stored scale. Sums run in
 * 8 fixed lanes combined in a fixed order (vectorizable, and the same bits on the host and
 * the device: fp32, FMA contraction off). */
#define GQ_QSEARCH_STEPS 31
#define GQ_QSEARCH_TOP 1.5f
#define GQ_QSEARCH_STEP 0.04f
#define GQ_QSEARCH_MIRROR 16
#define GQ_QSEARCH_REFINE 2

GQ_HD int gq_qsearchable(gq_qformat f) {
    return f == GQ_QF_INT4 || f == GQ_QF_INT4A || f == GQ_QF_INT3 || f == GQ_QF_INT2 || f == GQ_QF_NF4 ||
           f == GQ_QF_FP4;
}

/* The code of x under the reciprocal scale id and zero point z: the nearest level, clamped to
 * the format's range (the symmetric formats: gq_qgroup_code's rule, which multiplies by the
 * reciprocal too; int4a, nf4 and fp4 here multiply where the absmax groups divide). */
GQ_HD int gq_qcode_at(gq_qformat f, float x, float id, int z) {
    switch (f) {
    case GQ_QF_INT4:
    case GQ_QF_INT3:
    case GQ_QF_INT2: {
        const gq_qparams p = {1.0f, id, 0};
        return gq_qgroup_code(f, x, p);
    }
    case GQ_QF_INT4A: {
        float q = rintf(x * id) + (float)z;
        return (int)(q > 15.0f ? 15.0f : q < 0.0f ? 0.0f : q);
    }
    case GQ_QF_NF4: return gq_nf4_code(x * id);
    default: return gq_fp4_code(x * id);
    }
}

/* The unit value v of x's nearest code under (id, z) (its value is v s): gq_qcode_at's decision
 * written with few branches (the fastest forms measured with GCC 12). */
GQ_HD float gq_qunit_at(gq_qformat f, float x, float id, float zf) {
    switch (f) {
    case GQ_QF_INT4:
    case GQ_QF_INT3:
    case GQ_QF_INT2: { /* trunc(y) clamped to [0, top]: y clamped first, so the int conversion is trunc */
        const int bits = f == GQ_QF_INT4 ? 4 : f == GQ_QF_INT3 ? 3 : 2;
        const float half = (float)(1 << (bits - 1)), top = (float)((1 << bits) - 1);
        float y = x * id + (half + 0.5f);
        y = y < 0.0f ? 0.0f : y > top ? top : y;
        return (float)(int)y - half;
    }
    case GQ_QF_INT4A: { /* rint(y) for |y| < 2^22 by adding and taking away 1.5 * 2^23 */
        float y = x * id;
        y = y < -32.0f ? -32.0f : y > 32.0f ? 32.0f : y;
        float q = ((y + 12582912.0f) - 12582912.0f) + zf;
        q = q < 0.0f ? 0.0f : q > 15.0f ? 15.0f : q;
        return q - zf;
    }
    case GQ_QF_NF4: return gq_nf4_value(gq_nf4_code(x * id));
    default: {
        const float t[8] = GQ_FP4_VALUES;
        const float y = x * id, a = y < 0.0f ? -y : y;
        float v = 0.0f;
        for (int k = 1; k < 8; k++) {
            const float mid = 0.5f * (t[k - 1] + t[k]);
            v = (a > mid || (a == mid && (k & 1) == 0)) ? t[k] : v;
        }
        return y < 0.0f ? -v : v;
    }
    }
}

/* The weight of value i's squared error: its magnitude plus the group's rms (av), as
 * llama.cpp's k-quants weigh theirs (the large weights, which matter most to a model, keep
 * more of their precision: a plain squared error gave higher losses in our measurements),
 * times the importance of its input channel where calibration gave one (imp: the mean square
 * of the activation it multiplies; NULL: 1). */
GQ_HD float gq_qsearch_weight(float x, const float *imp, int i, float av) {
    const float m = av + fabsf(x);
    return imp ? imp[i] * m : m;
}

/* One pass at (id, z) in 8 lanes: sum x v and sum v^2 over the nearest codes' unit values v, or
 * (err) the squared error sum (x - v s)^2 into *sxv. */
GQ_HD void gq_qsearch_pass_f(gq_qformat f, int err, const float *x, const float *imp, int n, float id, int z, float s,
                             float av, float *sxv, float *svv) {
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const float zf = (float)z;
    for (int i = 0; i < n; i++) { /* value i in lane i % 8 */
        const float xi = x[i], v = gq_qunit_at(f, xi, id, zf), w = gq_qsearch_weight(xi, imp, i, av);
        if (err) {
            const float e = xi - v * s;
            a[i & 7] += w * (e * e);
        } else {
            a[i & 7] += w * (xi * v);
            b[i & 7] += w * (v * v);
        }
    }
    *sxv = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *svv = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

/* (the format and the mode made constants in each copy, so that their switches fold away) */
GQ_HD void gq_qsearch_pass(gq_qformat f, int err, const float *x, const float *imp, int n, float id, int z, float s,
                           float av, float *sxv, float *svv) {
#define GQ_QSEARCH_PASS_(F)                                                                                          \
    case F:                                                                                                           \
        if (err) gq_qsearch_pass_f(F, 1, x, imp, n, id, z, s, av, sxv, svv);                                                   \
        else gq_qsearch_pass_f(F, 0, x, imp, n, id, z, s, av, sxv, svv);                                                       \
        break;
    switch (f) {
        GQ_QSEARCH_PASS_(GQ_QF_INT4)
        GQ_QSEARCH_PASS_(GQ_QF_INT3)
        GQ_QSEARCH_PASS_(GQ_QF_INT2)
        GQ_QSEARCH_PASS_(GQ_QF_INT4A)
        GQ_QSEARCH_PASS_(GQ_QF_NF4)
    default: GQ_QSEARCH_PASS_(GQ_QF_FP4)
    }
#undef GQ_QSEARCH_PASS_
}

/* Squared error of the group at its nearest codes under (s, z). */
GQ_HD float gq_qgroup_error(gq_qformat f, const float *x, const float *imp, int n, float s, int z, float av) {
    float err, unused;
    gq_qsearch_pass(f, 1, x, imp, n, 1.0f / s, z, s, av, &err, &unused);
    return err;
}

/* The searched group: codes (n of them, as the absmax functions), *zero (int4a; may be NULL);
 * returns the scale as stored (fp16-rounded for the fp16 formats, as the absmax functions). */
GQ_HD float gq_qsearch_group(gq_qformat f, const float *x, const float *imp, int n, uint8_t *codes, uint8_t *zero) {
    float lo = 0.0f, hi = 0.0f, xx[8] = {0, 0, 0, 0, 0, 0, 0, 0}, wx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; i++) { /* (the passes' lanes: value i in lane i % 8) */
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        xx[i & 7] += x[i] * x[i];
    }
    const float av = sqrtf((((xx[0] + xx[1]) + (xx[2] + xx[3])) + ((xx[4] + xx[5]) + (xx[6] + xx[7]))) / (float)n);
    for (int i = 0; i < n; i++) wx[i & 7] += gq_qsearch_weight(x[i], imp, i, av) * (x[i] * x[i]);
    const double sxx = ((wx[0] + wx[1]) + (wx[2] + wx[3])) + ((wx[4] + wx[5]) + (wx[6] + wx[7]));
    /* the absmax result and its error */
    uint8_t z0 = 0;
    float s0;
    switch (f) {
    case GQ_QF_INT4:
    case GQ_QF_INT3:
    case GQ_QF_INT2: s0 = gq_qsym_group(x, n, gq_qbits(f), codes); break;
    case GQ_QF_INT4A: s0 = gq_qasym_group(x, n, codes, &z0); break;
    default: s0 = gq_q4code_group(x, n, f == GQ_QF_FP4, codes); break;
    }
    float e0 = 0.0f;
    for (int i = 0; i < n; i++) {
        const float e = x[i] - gq_qvalue(f, codes[i], s0, z0);
        e0 += gq_qsearch_weight(x[i], imp, i, av) * (e * e);
    }
    if (zero) *zero = z0;
    if (!(e0 > 0.0f)) return s0;
    const int f16 = f != GQ_QF_NF4 && f != GQ_QF_FP4;
    double best = INFINITY;
    float bs = 0.0f;
    uint8_t bz = 0;
    const int sym = f == GQ_QF_INT4 || f == GQ_QF_INT3 || f == GQ_QF_INT2;
    for (int j = 0; j < GQ_QSEARCH_STEPS + GQ_QSEARCH_MIRROR + GQ_QSEARCH_REFINE; j++) {
        float sc = bs;
        uint8_t zc = bz;
        if (j >= GQ_QSEARCH_STEPS && j < GQ_QSEARCH_STEPS + GQ_QSEARCH_MIRROR) {
            /* the symmetric formats' grid is lopsided (-2^(k-1) .. 2^(k-1) - 1): the other
             * orientation, every other factor */
            if (!sym) continue;
            sc = -s0 * (GQ_QSEARCH_TOP - GQ_QSEARCH_STEP * (float)(2 * (j - GQ_QSEARCH_STEPS))), zc = 0;
        } else if (j < GQ_QSEARCH_STEPS) {
            const float t = GQ_QSEARCH_TOP - GQ_QSEARCH_STEP * (float)j;
            sc = s0 * t, zc = 0;
            if (f == GQ_QF_INT4A) { /* the range scaled by t, the zero point as gq_qasym_group */
                sc = gq_f16_to_f32(gq_f32_to_f16((hi - lo) * t / 15.0f));
                if (sc == 0.0f) continue;
                float z = rintf(-(lo * t) / sc);
                zc = (uint8_t)(z > 15.0f ? 15.0f : z < 0.0f ? 0.0f : z);
            }
        }
        if (sc == 0.0f || !isfinite(sc)) continue;
        float sxv, svv;
        gq_qsearch_pass(f, 0, x, imp, n, 1.0f / sc, zc, 0.0f, av, &sxv, &svv);
        if (!(svv > 0.0f)) continue;
        float s = sxv / svv;
        if (f16) s = gq_f16_to_f32(gq_f32_to_f16(s));
        if (!(s != 0.0f) || !isfinite(s) || (f == GQ_QF_INT4A && s < 0.0f)) continue;
        const double err = sxx - 2.0 * (double)s * sxv + (double)s * s * svv;
        if (err < best) best = err, bs = s, bz = zc;
    }
    if (bs == 0.0f || !(gq_qgroup_error(f, x, imp, n, bs, bz, av) < e0)) return s0;
    const float id = 1.0f / bs;
    for (int i = 0; i < n; i++) codes[i] = (uint8_t)gq_qcode_at(f, x[i], id, bz);
    if (zero) *zero = bz;
    return bs;
}

/* QAT's straight-through estimator passes no gradient to a clipped weight: on the uniform grids
 * one whose value is off by more than half a step (0.51: the fp16 scale's rounding moves a step
 * by up to 0.05 %) -- int4 / int3 / int2 always (their Q4_0 rule clips the positive end),
 * int4a when searched -- and on nf4 / fp4 when searched, one beyond the top level. (The absmax
 * scales of int4a, nf4 and fp4 clip nothing.) */
GQ_HD int gq_qclipped(gq_qformat f, int search, float x, float y, float s) {
    switch (f) {
    case GQ_QF_INT4:
    case GQ_QF_INT3:
    case GQ_QF_INT2: return fabsf(y - x) > 0.51f * fabsf(s);
    case GQ_QF_INT4A: return search && fabsf(y - x) > 0.51f * fabsf(s);
    case GQ_QF_NF4: return search && fabsf(x) > fabsf(s);
    case GQ_QF_FP4: return search && fabsf(x) > 6.0f * fabsf(s);
    default: return 0;
    }
}

/* ---- learned step sizes (LSQ: Esser et al., "Learned Step Size Quantization", ICLR 2020) ----
 * QAT with -lsq trains each group's scale s as a parameter. A value x has the unit value
 * v = Q(clamp(x / s, Qn, Qp)), Q the format's nearest level (int4 / int3 / int2: round half up
 * on the grid Qn .. Qp = -2^(k-1) .. 2^(k-1) - 1; nf4: the codebook on [-1, 1]; fp4: E2M1 on
 * [-6, 6]), and the weight is v s', s' the scale as stored (fp16 for the int formats, as their
 * exports; never 0). The gradients are LSQ's straight-through ones: dL/dx = dL/dy where
 * Qn <= x / s <= Qp (else 0), and dL/ds = g sum dL/dy (v - x / s) over the group's values in
 * that range plus dL/dy v over the clipped ones, with LSQ's gradient scale g = 1 / sqrt(n Qp)
 * (n: the group's values). The starting scales are the format's rule (absmax, or -mse's
 * search); int4a (a zero point), int8 / q8_0 and nf4's double quantization are not learned. */
GQ_HD int gq_lsq_applies(gq_qformat f) {
    return f == GQ_QF_INT4 || f == GQ_QF_INT3 || f == GQ_QF_INT2 || f == GQ_QF_NF4 || f == GQ_QF_FP4;
}
/* the unit range [Qn, Qp] */
GQ_HD float gq_lsq_qn(gq_qformat f) {
    return f == GQ_QF_INT4 ? -8.0f : f == GQ_QF_INT3 ? -4.0f : f == GQ_QF_INT2 ? -2.0f : f == GQ_QF_NF4 ? -1.0f : -6.0f;
}
GQ_HD float gq_lsq_qp(gq_qformat f) {
    return f == GQ_QF_INT4 ? 7.0f : f == GQ_QF_INT3 ? 3.0f : f == GQ_QF_INT2 ? 1.0f : f == GQ_QF_NF4 ? 1.0f : 6.0f;
}
/* The scale as stored and used: fp16 for the int formats, and never 0 (at least 2^-24, fp16's
 * smallest, with s's sign); a NaN stays NaN. */
GQ_HD float gq_lsq_stored(gq_qformat f, float s) {
    const float r = (f == GQ_QF_NF4 || f == GQ_QF_FP4) ? s : gq_f16_to_f32(gq_f32_to_f16(s));
    const float tiny = 5.9604644775390625e-8f; /* 2^-24 */
    return fabsf(r) < tiny ? (s < 0.0f ? -tiny : tiny) : r;
}
/* The code of the unit value u = x / ss (clamped here to the unit range; a NaN: code 0 on the
 * int grids) */
GQ_HD int gq_lsq_code_u(gq_qformat f, float u) {
    const float qn = gq_lsq_qn(f), qp = gq_lsq_qp(f);
    u = u < qn ? qn : u > qp ? qp : u;
    switch (f) {
    case GQ_QF_INT4:
    case GQ_QF_INT3:
    case GQ_QF_INT2: return u == u ? (int)floorf(u + 0.5f) - (int)qn : 0;
    case GQ_QF_NF4: return gq_nf4_code(u);
    default: return gq_fp4_code(u);
    }
}
/* The code of x under the stored scale ss */
GQ_HD int gq_lsq_code(gq_qformat f, float x, float ss) { return gq_lsq_code_u(f, x / ss); }
GQ_HD float gq_lsq_gradscale(gq_qformat f, int n) { return 1.0f / sqrtf((float)n * gq_lsq_qp(f)); }
/* One value's backward: returns dL/dx, and *ds (unscaled: times gq_lsq_gradscale per group)
 * gets this value's term of dL/ds. The fake-quant weight is gq_qvalue(f, code, ss, 0). */
GQ_HD float gq_lsq_backward_value(gq_qformat f, float x, float ss, float dy, float *ds) {
    const float u = x / ss; /* (one division: the code's and the range test's) */
    const int in = u >= gq_lsq_qn(f) && u <= gq_lsq_qp(f);
    const float v = gq_qvalue(f, gq_lsq_code_u(f, u), 1.0f, 0);
    *ds = dy * (in ? v - u : v);
    return in ? dy : 0.0f;
}

/* ---- packing: codes of one group into bytes ----
 * 8-bit: one byte per code. 4-bit: byte j of a group holds code j (low nibble) and code
 * j + n/2 (high nibble), as Q4_0. 3-bit: every 8 codes make 3 bytes, code k at bits 3k..3k+2
 * (little-endian). 2-bit: byte j holds codes 4j..4j+3 at bits 0, 2, 4, 6. */

GQ_HD void gq_pack_group(const uint8_t *codes, int n, int bits, uint8_t *out) {
    if (bits == 8) {
        for (int i = 0; i < n; i++) out[i] = codes[i];
    } else if (bits == 4) {
        for (int j = 0; j < n / 2; j++) out[j] = (uint8_t)(codes[j] | codes[j + n / 2] << 4);
    } else if (bits == 3) {
        for (int b = 0; b < n / 8; b++) {
            uint32_t w = 0;
            for (int k = 0; k < 8; k++) w |= (uint32_t)(codes[8 * b + k] & 7u) << (3 * k);
            out[3 * b] = (uint8_t)w, out[3 * b + 1] = (uint8_t)(w >> 8), out[3 * b + 2] = (uint8_t)(w >> 16);
        }
    } else { /* 2 */
        for (int j = 0; j < n / 4; j++)
            out[j] = (uint8_t)(codes[4 * j] | codes[4 * j + 1] << 2 | codes[4 * j + 2] << 4 | codes[4 * j + 3] << 6);
    }
}

/* Code i of a packed group of n codes. */
GQ_HD int gq_unpack_code(const uint8_t *in, int n, int bits, int i) {
    if (bits == 8) return in[i];
    if (bits == 4) return i < n / 2 ? (in[i] & 15) : (in[i - n / 2] >> 4);
    if (bits == 3) {
        int b = i / 8, k = i % 8;
        uint32_t w = (uint32_t)in[3 * b] | (uint32_t)in[3 * b + 1] << 8 | (uint32_t)in[3 * b + 2] << 16;
        return (int)((w >> (3 * k)) & 7u);
    }
    return (in[i / 4] >> (2 * (i % 4))) & 3;
}

/* ---- tensor level (host) ---- */

/* A quantized (rows, cols) tensor in memory. scales hold each group's effective scale as fp32
 * (already rounded to fp16 where the format stores fp16). */
typedef struct {
    uint8_t *qweight;      /* packed codes, rows * cols * bits / 8 bytes */
    float *scales;         /* one per group */
    uint8_t *zeros;        /* int4a: one per group */
    int8_t *absmax_q;      /* nf4 double quant: one per group */
    float *absmax2;        /* nf4 double quant: one per 256 groups */
    float absmax_offset;   /* nf4 double quant: mean absmax */
} gq_qtensor;

#define GQ_DQ_BLOCK 256 /* absmax values per second-level block */

static inline int gq_qgroup(const gq_qspec *s, int cols) {
    return s->format == GQ_QF_INT8 ? cols : s->format == GQ_QF_Q8_0 ? 32 : s->group;
}
static inline size_t gq_qn_groups(const gq_qspec *s, int rows, int cols) {
    return (size_t)rows * (size_t)(cols / gq_qgroup(s, cols));
}
static inline size_t gq_qpacked_bytes(const gq_qspec *s, int rows, int cols) {
    return (size_t)rows * (size_t)cols * (size_t)gq_qbits(s->format) / 8;
}
/* q with zeroed room for a (rows, cols) tensor under s (every array, whatever the format needs);
 * 0, or -1 when out of memory (then nothing is left allocated). Free with gq_qtensor_free. */
static inline int gq_qtensor_alloc(gq_qtensor *q, const gq_qspec *s, int rows, int cols) {
    const size_t groups = gq_qn_groups(s, rows, cols);
    q->qweight = (uint8_t *)calloc(gq_qpacked_bytes(s, rows, cols) + 1, 1);
    q->scales = (float *)calloc(groups, sizeof(float));
    q->zeros = (uint8_t *)calloc(groups, 1);
    q->absmax_q = (int8_t *)calloc(groups, 1);
    q->absmax2 = (float *)calloc(groups / GQ_DQ_BLOCK + 1, sizeof(float));
    q->absmax_offset = 0.0f;
    if (q->qweight && q->scales && q->zeros && q->absmax_q && q->absmax2) return 0;
    free(q->qweight), free(q->scales), free(q->zeros), free(q->absmax_q), free(q->absmax2);
    memset(q, 0, sizeof *q);
    return -1;
}
static inline void gq_qtensor_free(gq_qtensor *q) {
    free(q->qweight), free(q->scales), free(q->zeros), free(q->absmax_q), free(q->absmax2);
    memset(q, 0, sizeof *q);
}
/* 1 if the format stores its scales as fp16 (else fp32) */
static inline int gq_qscale_f16(gq_qformat f) {
    return f == GQ_QF_Q8_0 || f == GQ_QF_INT4 || f == GQ_QF_INT4A || f == GQ_QF_INT3 || f == GQ_QF_INT2;
}
/* Bits per weight of the stored tensor, scales and zero points included. */
static inline double gq_qbits_per_weight(const gq_qspec *s, int rows, int cols) {
    double n = (double)rows * cols, groups = (double)gq_qn_groups(s, rows, cols);
    double bits = gq_qbits(s->format) * n;
    if (s->format == GQ_QF_NF4 && s->double_quant)
        bits += 8 * groups + 32 * ceil(groups / GQ_DQ_BLOCK) + 32;
    else
        bits += (gq_qscale_f16(s->format) ? 16 : 32) * groups;
    if (s->format == GQ_QF_INT4A) bits += 8 * groups;
    return bits / n;
}

/* Why a spec cannot apply to a (rows, cols) tensor, or NULL if it can. */
static inline const char *gq_qspec_problem(const gq_qspec *s, int rows, int cols) {
    if (s->format <= GQ_QF_F32 || s->format >= GQ_QF_COUNT) return "unknown format";
    if (rows < 1 || cols < 1) return "empty tensor";
    int g = gq_qgroup(s, cols);
    if (g < 1 || cols % g) return "group size does not divide the row";
    if (g > 16384) return "group larger than 16384";
    if (gq_qbits(s->format) == 4 && g % 2) return "4-bit groups must be even";
    if (gq_qbits(s->format) == 3 && g % 8) return "3-bit groups must be a multiple of 8";
    if (gq_qbits(s->format) == 2 && g % 4) return "2-bit groups must be a multiple of 4";
    if (s->lsq && !gq_lsq_applies(s->format)) return "learned scales (-lsq) apply to int4, int3, int2, nf4 and fp4";
    if (s->lsq && s->double_quant) return "learned scales (-lsq) do not take nf4's double quantization (-dq)";
    return NULL;
}

/* The mean of the nf4 absmax values in double, summed per second-level block and then over
 * blocks (an order a GPU reproduces exactly: one thread per block, then one over the blocks). */
static inline float gq_nf4_absmax_mean(const float *absmax, size_t groups) {
    double mean = 0;
    for (size_t b = 0; b * GQ_DQ_BLOCK < groups; b++) {
        double part = 0;
        for (size_t k = b * GQ_DQ_BLOCK; k < groups && k < (b + 1) * GQ_DQ_BLOCK; k++) part += absmax[k];
        mean += part;
    }
    return (float)(mean / (double)groups);
}

/* nf4 double quantization: the exact absmax values in q->scales -> offset + int8 * absmax2 per
 * block of 256 (the codes were made with the exact absmax; the stored scale is the
 * double-quantized one, as bitsandbytes does). q->scales then hold the effective scales. */
static inline void gq_nf4_double_quant(gq_qtensor *q, size_t groups) {
    q->absmax_offset = gq_nf4_absmax_mean(q->scales, groups);
    for (size_t b = 0; b * GQ_DQ_BLOCK < groups; b++) {
        size_t lo = b * GQ_DQ_BLOCK, hi = lo + GQ_DQ_BLOCK < groups ? lo + GQ_DQ_BLOCK : groups;
        float amax = 0.0f;
        for (size_t k = lo; k < hi; k++) {
            float d = fabsf(q->scales[k] - q->absmax_offset);
            amax = d > amax ? d : amax;
        }
        float s2 = amax / 127.0f;
        if (s2 == 0.0f) s2 = 1.0f;
        q->absmax2[b] = s2;
        for (size_t k = lo; k < hi; k++) {
            float c = rintf((q->scales[k] - q->absmax_offset) / s2);
            q->absmax_q[k] = (int8_t)(c > 127.0f ? 127.0f : c < -127.0f ? -127.0f : c);
            q->scales[k] = (float)q->absmax_q[k] * s2 + q->absmax_offset;
        }
    }
}

/* 1 if the n values are all finite, else 0 with *bad (may be NULL) = the first other's index */
static inline int gq_all_finite(const float *w, size_t n, size_t *bad) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(w[i])) {
            if (bad) *bad = i;
            return 0;
        }
    return 1;
}

/* Quantize w (rows, cols). Returns 0, or -1 if a value is not finite (*bad = its index).
 * imp (searched scales only; may be NULL): one importance per input channel (cols of them),
 * weighting each value's squared error in the search (gq_qsearch_weight). */
static inline int gq_quantize_imp(const gq_qspec *s, const float *w, int rows, int cols, gq_qtensor *q, size_t *bad,
                                  const float *imp) {
    const size_t n = (size_t)rows * cols;
    if (!gq_all_finite(w, n, bad)) return -1;
    const int g = gq_qgroup(s, cols), bits = gq_qbits(s->format);
    const size_t groups = gq_qn_groups(s, rows, cols), gbytes = (size_t)g * bits / 8;
    const int search = s->search && gq_qsearchable(s->format);
    uint8_t codes[16384];
    for (size_t k = 0; k < groups; k++) {
        const float *x = w + k * g;
        float sc;
        if (search) {
            sc = gq_qsearch_group(s->format, x, imp ? imp + (k % (size_t)(cols / g)) * g : NULL, g, codes,
                                  s->format == GQ_QF_INT4A ? &q->zeros[k] : NULL);
        } else {
            switch (s->format) {
            case GQ_QF_INT8: sc = gq_q8_group(x, g, codes, 0); break;
            case GQ_QF_Q8_0: sc = gq_q8_group(x, g, codes, 1); break;
            case GQ_QF_INT4:
            case GQ_QF_INT3:
            case GQ_QF_INT2: sc = gq_qsym_group(x, g, bits, codes); break;
            case GQ_QF_INT4A: sc = gq_qasym_group(x, g, codes, &q->zeros[k]); break;
            default: sc = gq_q4code_group(x, g, s->format == GQ_QF_FP4, codes); break;
            }
        }
        q->scales[k] = sc;
        gq_pack_group(codes, g, bits, q->qweight + k * gbytes);
    }
    if (s->format == GQ_QF_NF4 && s->double_quant) gq_nf4_double_quant(q, groups);
    return 0;
}

static inline int gq_quantize(const gq_qspec *s, const float *w, int rows, int cols, gq_qtensor *q, size_t *bad) {
    return gq_quantize_imp(s, w, rows, cols, q, bad, NULL);
}

/* Why learned-scale fake-quant cannot take this spec for a (rows, cols) tensor, or NULL */
static inline const char *gq_lsq_problem(const gq_qspec *s, int rows, int cols) {
    const char *why = gq_qspec_problem(s, rows, cols);
    return why ? why : s->lsq ? NULL : "the spec has no learned scales";
}

/* Quantize w (rows, cols) with given scales (learned step sizes: one per group, as trained;
 * the stored scale is gq_lsq_stored of each). Returns 0, or -1 if a value or scale is not
 * finite (*bad = the value's index, or rows * cols + the group's). */
static inline int gq_quantize_lsq(const gq_qspec *s, const float *w, int rows, int cols, const float *scales,
                                  gq_qtensor *q, size_t *bad) {
    const size_t n = (size_t)rows * cols;
    if (!gq_all_finite(w, n, bad)) return -1;
    const int g = gq_qgroup(s, cols), bits = gq_qbits(s->format);
    const size_t groups = gq_qn_groups(s, rows, cols), gbytes = (size_t)g * bits / 8;
    uint8_t codes[16384];
    for (size_t k = 0; k < groups; k++) {
        const float ss = gq_lsq_stored(s->format, scales[k]);
        if (!isfinite(ss)) {
            if (bad) *bad = n + k;
            return -1;
        }
        for (int i = 0; i < g; i++) codes[i] = (uint8_t)gq_lsq_code(s->format, w[k * g + i], ss);
        q->scales[k] = ss;
        gq_pack_group(codes, g, bits, q->qweight + k * gbytes);
    }
    return 0;
}

/* The n codes of a packed group (gq_unpack_code of each, a width at a time). */
static inline void gq_unpack_group(const uint8_t *in, int n, int bits, uint8_t *codes) {
    if (bits == 8) {
        memcpy(codes, in, (size_t)n);
    } else if (bits == 4) {
        for (int j = 0; j < n / 2; j++) codes[j] = in[j] & 15, codes[j + n / 2] = in[j] >> 4;
    } else if (bits == 3) {
        for (int b = 0; b < n / 8; b++) {
            const uint32_t w = (uint32_t)in[3 * b] | (uint32_t)in[3 * b + 1] << 8 | (uint32_t)in[3 * b + 2] << 16;
            for (int k = 0; k < 8; k++) codes[8 * b + k] = (uint8_t)((w >> (3 * k)) & 7u);
        }
    } else {
        for (int j = 0; j < n; j++) codes[j] = (uint8_t)((in[j / 4] >> (2 * (j % 4))) & 3);
    }
}

/* a group's values from its codes, the format a constant in each copy (gq_dequantize) */
static inline __attribute__((always_inline)) void gq_dequant_codes(gq_qformat f, const uint8_t *codes, int n,
                                                                    float scale, int zero, float *w) {
    for (int i = 0; i < n; i++) w[i] = gq_qvalue(f, codes[i], scale, zero);
}

static inline void gq_dequantize(const gq_qspec *s, const gq_qtensor *q, int rows, int cols, float *w) {
    const int g = gq_qgroup(s, cols), bits = gq_qbits(s->format);
    const size_t groups = gq_qn_groups(s, rows, cols), gbytes = (size_t)g * bits / 8;
    uint8_t codes[16384];
    for (size_t k = 0; k < groups; k++) {
        gq_unpack_group(q->qweight + k * gbytes, g, bits, codes);
        const float sc = q->scales[k];
        float *out = w + k * g;
        switch (s->format) {
        case GQ_QF_INT8: gq_dequant_codes(GQ_QF_INT8, codes, g, sc, 0, out); break;
        case GQ_QF_Q8_0: gq_dequant_codes(GQ_QF_Q8_0, codes, g, sc, 0, out); break;
        case GQ_QF_INT4: gq_dequant_codes(GQ_QF_INT4, codes, g, sc, 0, out); break;
        case GQ_QF_INT3: gq_dequant_codes(GQ_QF_INT3, codes, g, sc, 0, out); break;
        case GQ_QF_INT2: gq_dequant_codes(GQ_QF_INT2, codes, g, sc, 0, out); break;
        case GQ_QF_INT4A: gq_dequant_codes(GQ_QF_INT4A, codes, g, sc, q->zeros[k], out); break;
        case GQ_QF_NF4: gq_dequant_codes(GQ_QF_NF4, codes, g, sc, 0, out); break;
        case GQ_QF_FP4: gq_dequant_codes(GQ_QF_FP4, codes, g, sc, 0, out); break;
        default: gq_dequant_codes(s->format, codes, g, sc, 0, out); break;
        }
    }
}

#endif
