/* qmatmul: linear layers on packed quantized weights, for the inference runner. The weights
 * stay as exported (codes, scales, zero points, second-level scales: docs/FORMAT.md); the
 * kernels dequantize in registers.
 *
 * Two paths, chosen by the number of tokens M:
 *   - M < GQ_QMM_PANEL_MIN (decode, short prompts): one weight row at a time, its dot products
 *     with the M activation rows, OpenMP across rows. int8, q8_0, int4 (sym and asym), int3,
 *     int2 and fp4 multiply integer codes with int8 activations quantized in blocks of 32
 *     (llama.cpp's Q8_0 rule: d = amax / 127, nearest code), summing exactly in integers (nf4
 *     through its codebook in units of 2^-14: gq_nf4_i16); fp32 uses float activations.
 *   - M >= GQ_QMM_PANEL_MIN (prefill, eval): a panel of rows is dequantized exactly (quant.h's
 *     values, as the trainer's fake-quant) into a small scratch buffer and multiplied with
 *     float activations by sgemm; eval loss therefore equals the fake-quant loss up to matmul
 *     round-off. With a->int_rows (the runner's prompts, not its scoring), matrices in the 8-row
 *     layout other than nf4 take the row path at any M instead: 4 tokens per pass over each 8
 *     rows.
 * Variants: a scalar reference, AVX2 (+FMA, F16C), and the same with VNNI dot products (AVX-VNNI,
 * AVX512-VNNI, the latter also with 16-row int8 / q8_0 / int4 / fp4 / int3 / int2 kernels in
 * 512-bit registers; qdot_x86.h), chosen at run time: the best the CPU runs, or GQ_CPU_SIMD's.
 * The VNNI variants give the AVX2 bits. */
#ifndef GQ_QMATMUL_H
#define GQ_QMATMUL_H

#include "quant.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define GQ_QMM_PANEL_MIN 16
#define GQ_QMM_ABLOCK GQ_ACT_BLOCK /* activation quantization block (quant.h's gq_act8_block) */

/* One weight matrix, rows = output features, cols = input features (nn.Linear layout). */
typedef struct {
    gq_qspec spec; /* format GQ_QF_F32: f32 holds the matrix */
    int rows, cols, group;
    const float *f32;
    const uint8_t *q;       /* packed codes, rows * cols * bits / 8 bytes */
    const uint16_t *s16;    /* fp16 scales per group (int4, int4a, int3, int2, q8_0) */
    const float *s32;       /* fp32 scales per group (int8 per row, nf4, fp4) */
    const uint8_t *zeros;   /* int4a zero points per group */
    const int8_t *absmax_q; /* nf4 double quant: per group ... */
    const float *absmax2;   /* ... times a per-256-group scale ... */
    float absmax_offset;    /* ... plus this offset */
    int x8;                 /* rows [0, rows & ~7) are in the 8-row layout (below) */
    const uint16_t *h16;    /* GPU runner: format GQ_QF_F32 held as fp16 (h16_bf16 0) or bf16 (1) */
    int h16_bf16;
} gq_qmat;

/* The 8-row layout ("x8") of the CPU runner, for int8 / q8_0 / int4 / int4a / nf4 / fp4 / int3 / int2
 * matrices whose groups are a multiple of 32 (gq_qmat_to_x8 rearranges an exported matrix in place, at load; the
 * last rows % 8 rows stay as exported). Rows are taken 8 at a time; the 8 rows keep the same
 * 8 * cols * bits / 8 bytes, now in blocks of 32 columns of 32 * bits bytes each. 8-bit: byte
 * 32k + 4j + e (k < 8, j < 8, e < 4) holds row j's code of column 4k + e. 4-bit: byte
 * 32k + 4j + e (k < 4, j < 8, e < 4) of a block holds row j's codes of columns 4k + e (low
 * nibble) and 16 + 4k + e (high nibble). 3-bit and 2-bit, in bit planes: byte 32h + 4j + e
 * (h < 2) holds the low two bits of row j's codes of columns 4(4h + s) + e at bits 2s, 2s + 1
 * (s < 4); 3-bit blocks then have 32 more bytes, byte 64 + 4j + e holding bit 2 of row j's code
 * of column 4k + e at bit k (k < 8). Scales (fp16, fp32 (nf4, fp4), or nf4's int8 absmax codes;
 * nf4's second-level scales stay as they are) and int4a zero points of the 8 rows are
 * interleaved: group g of row 8R + j is entry (R * groups_per_row + g) * 8 + j. A kernel
 * multiplies a 32-byte vector of codes (8 rows x 4 columns) by 4 activation codes broadcast to
 * every lane, so the 8 rows' sums build up in 8 lanes with no horizontal sums (the layout of
 * llama.cpp's repacked Q4_0 "x8" kernels; the 3-bit and 2-bit planes make such a vector out of
 * one shift and one mask per plane). */
#define GQ_X8_ROWS 8
static inline int gq_qmat_x8_rows(const gq_qmat *w) { return w->x8 ? w->rows & ~(GQ_X8_ROWS - 1) : 0; }

/* Where the scale (and zero point) of group g of row r is stored. */
GQ_HD size_t gq_qmat_gidx(const gq_qmat *w, int r, int g) {
    const size_t ng = (size_t)(w->cols / w->group);
    if (w->x8 && r < (w->rows & ~(GQ_X8_ROWS - 1)))
        return ((size_t)(r / GQ_X8_ROWS) * ng + (size_t)g) * GQ_X8_ROWS + (size_t)(r % GQ_X8_ROWS);
    return (size_t)r * ng + (size_t)g;
}

/* Row r's pieces of block blk (columns 32 blk ..) in the 8-row layout (r < gq_qmat_x8_rows): 4 bytes
 * at the returned pointer, then every 32 bytes on (the block's vectors). */
GQ_HD const uint8_t *gq_qmat_x8_piece(const gq_qmat *w, int r, int blk) {
    const size_t bits = (size_t)gq_qbits(w->spec.format);
    return w->q + (size_t)(r / GQ_X8_ROWS) * (size_t)w->cols * bits + (size_t)blk * 32 * bits +
           4 * (size_t)(r % GQ_X8_ROWS);
}

/* Code of element i of row r, in either layout. */
GQ_HD int gq_qmat_code(const gq_qmat *w, int r, int i) {
    const int G = w->group, bits = gq_qbits(w->spec.format);
    if (w->x8 && r < (w->rows & ~(GQ_X8_ROWS - 1))) {
        const int e = i % 32;
        const uint8_t *p = gq_qmat_x8_piece(w, r, i / 32);
        if (bits == 8) return p[32 * (e / 4) + e % 4];
        if (bits == 4) {
            const uint8_t b = p[32 * ((e % 16) / 4) + e % 4];
            return e < 16 ? b & 15 : b >> 4;
        }
        const int k = e / 4, lo = (p[32 * (k / 4) + e % 4] >> (2 * (k % 4))) & 3;
        return bits == 3 ? lo | ((p[64 + e % 4] >> k) & 1) << 2 : lo;
    }
    const size_t gi = (size_t)r * (size_t)(w->cols / G) + (size_t)(i / G);
    return gq_unpack_code(w->q + gi * (size_t)G * bits / 8, G, bits, i % G);
}

/* M activation rows of K values and, for the integer path, their int8 blocks. */
typedef struct {
    const float *x; /* (M, K) */
    int8_t *q;      /* (M, K) */
    float *d;       /* (M, K / 32) block scales */
    int32_t *bsum;  /* (M, K / 32) sums of each block's codes */
    int M, K;
    int int_rows; /* 1: M >= GQ_QMM_PANEL_MIN also takes the row path (int8 activations) on
                     matrices in the 8-row layout other than nf4, whose row kernel beats
                     dequantizing + sgemm */
} gq_qact;

/* The effective fp32 scale of group g of row r (as gq_dequantize uses it; either layout; nf4's
 * second-level scales go by the exported group order); host and CUDA device. */
GQ_HD float gq_qmat_scale(const gq_qmat *w, int r, int g) {
    const size_t si = gq_qmat_gidx(w, r, g);
    if (w->spec.format == GQ_QF_NF4 && w->spec.double_quant)
        return (float)w->absmax_q[si] *
                   w->absmax2[((size_t)r * (size_t)(w->cols / w->group) + (size_t)g) / GQ_DQ_BLOCK] +
               w->absmax_offset;
    return w->s16 ? gq_f16_to_f32(w->s16[si]) : w->s32[si];
}

/* Element i of row r, dequantized (quant.h's value; fp32 matrices: the value itself). */
GQ_HD float gq_qmat_value(const gq_qmat *w, int r, int i) {
    if (w->spec.format == GQ_QF_F32 && w->h16) {
        const uint16_t h = w->h16[(size_t)r * w->cols + i];
        return w->h16_bf16 ? gq_bf16_to_f32(h) : gq_f16_to_f32(h);
    }
    if (w->spec.format == GQ_QF_F32) return w->f32[(size_t)r * w->cols + i];
    return gq_qvalue(w->spec.format, gq_qmat_code(w, r, i), gq_qmat_scale(w, r, i / w->group),
                     w->spec.format == GQ_QF_INT4A ? w->zeros[gq_qmat_gidx(w, r, i / w->group)] : 0);
}

/* 1 if gq_qmat_to_x8 applies to w (int4 / int4a / int3 / int2 / q8_0 with fp16 scales, int8 with
 * fp32 ones, nf4, fp4; groups (int8: the row) a multiple of 32; at least 8 rows). */
int gq_qmat_x8_able(const gq_qmat *w);
/* Rearrange w's codes, scales and zero points into the 8-row layout, in place (w's arrays must
 * be writable: the runner's own copy); nothing happens unless gq_qmat_x8_able and not yet done.
 * Returns 0, or -1 if a 8-row scratch buffer could not be allocated (w unchanged). */
int gq_qmat_to_x8(gq_qmat *w);

/* 1 if the row kernels use int8 activations for this matrix. */
int gq_qmat_int_path(const gq_qmat *w);

/* nf4 in the integer path: each codebook value as an integer in units of 2^-14 (|v| <= 16384),
 * multiplied exactly with the int8 activation codes; the group scale carries the 2^-14. The
 * codebook is thereby rounded by at most 2^-15 of the scale (0.003 % of the largest value), far
 * below the int8 activations' own rounding. */
#define GQ_NF4_I16_SHIFT 14
static inline int gq_nf4_i16(int code) { return (int)lrintf(gq_nf4_value(code) * (float)(1 << GQ_NF4_I16_SHIFT)); }
/* Bytes of the packed weights, scales and zero points (what a decode step reads). */
size_t gq_qmat_bytes(const gq_qmat *w);
/* Dequantize rows [r0, r1) into dst ((r1 - r0) * cols), exactly as gq_dequantize (the variant
 * in use: gq_qdot()->dequant). */
void gq_qmat_dequant_rows(const gq_qmat *w, int r0, int r1, float *dst);

/* Quantize a->x into a->q, a->d, a->bsum (K must be a multiple of 32); the _range form does
 * blocks [b0, b1) of the M * K / 32 blocks. */
void gq_qact_quantize(gq_qact *a);
void gq_qact_quantize_range(gq_qact *a, size_t b0, size_t b1);

/* out (M, rows) = x (M, cols) @ W^T + bias (bias may be NULL), then GELU if gelu (the epilogue
 * runs on each thread's own rows). `a` holds x and, when the row path is taken with an
 * integer-path matrix, buffers for its quantization (filled here, split across the threads,
 * unless a_ready). panel: scratch of panel_floats floats for the M >= GQ_QMM_PANEL_MIN path
 * (at least cols floats). Allocates nothing. */
void gq_qmatmul(float *out, gq_qact *a, int a_ready, const gq_qmat *w, const float *bias, int gelu, float *panel,
                size_t panel_floats);

/* 1 if gq_qmatmul takes the M >= GQ_QMM_PANEL_MIN path (dequantized weights, float
 * activations) for these activations and weights. */
int gq_qmatmul_panel_path(const gq_qact *a, const gq_qmat *w, const float *panel, size_t panel_floats);

/* Row kernels of one variant: y[m * ldy + r - r0] for rows [r0, r1) and tokens m < a->M.
 * Exposed for the tests (scalar vs SIMD vs the dequantize path). */
typedef struct {
    const char *name;
    void (*rows)(const gq_qmat *w, int r0, int r1, const gq_qact *a, float *y, int ldy);
    /* fp16 rows (the runner's KV cache): IEEE round-to-nearest-even, the same bits in every
     * variant (quant.h's gq_f32_to_f16 / gq_f16_to_f32 in the scalar one, F16C in AVX2) */
    void (*to_f16)(uint16_t *dst, const float *src, int n);
    void (*from_f16)(float *dst, const uint16_t *src, int n);
    /* One query's attention over n cached positions of one head (the decode step): keys and
     * values are rows of hs values at a stride of ld elements, fp16 (k16/v16) or fp32 (k32/v32,
     * when k16 is NULL); s: n floats of scratch; out: hs floats. The arithmetic, the same bits
     * in every variant: score u = (q . k_u in 16 lanes, lane i % 16, lanes summed as a tree
     * 8+8, 4+4, 2+2, 1+1, then the tail in order) * scale; p_u = exp(score - max) / sum, with
     * gq_exp and the sum in position order; out = sum over u in order of p_u * v_u (multiply,
     * then add). */
    void (*attend)(float *out, const float *q, const uint16_t *k16, const uint16_t *v16, const float *k32,
                   const float *v32, size_t ld, int n, int hs, float scale, float *s);
    /* gq_qmat_dequant_rows: rows [r0, r1) as quant.h's values, bit for bit in every variant */
    void (*dequant)(const gq_qmat *w, int r0, int r1, float *dst);
    /* gq_qact_quantize_range: the same codes, scales and sums in every variant */
    void (*quantize)(gq_qact *a, size_t b0, size_t b1);
} gq_qdot_ops;
/* The attend op's softmax of n scores in place (*inv = 1 / sum), shared by its variants. */
void gq_qdot_attend_softmax(float *s, int n, float *inv);
const gq_qdot_ops *gq_qdot_variant(const char *name); /* a name of gq_qdot_names; NULL if not built */
extern const char *const gq_qdot_names[];             /* "scalar", "avx2", "avxvnni", "avx512vnni", NULL */
int gq_qdot_supported(const char *name);
const gq_qdot_ops *gq_qdot(void); /* GQ_CPU_SIMD if set and supported, else the best */

#endif
