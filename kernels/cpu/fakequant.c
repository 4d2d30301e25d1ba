/* fakequant (CPU): QAT's quantize-dequantize through quant.h (the reference for every backend),
 * the straight-through estimator's gradient mask, and the stochastic bf16 rounding of the
 * mixed-precision weight copy (sround.h). */
#include "cpu_ops.h"
#include "gq_error.h"
#include "quant.h"
#include "simd.h"
#include "sround.h"

#include <math.h>
#include <string.h>

/* work: packed codes, then fp32 scales, uint8 zeros, int8 absmax codes, fp32 absmax2 */
static gq_qtensor carve_work(void *work, int rows, int cols, const gq_qspec *spec) {
    size_t groups = gq_qn_groups(spec, rows, cols), packed = (gq_qpacked_bytes(spec, rows, cols) + 15) / 16 * 16;
    uint8_t *p = work;
    gq_qtensor q = {0};
    q.qweight = p;
    q.scales = (float *)(p + packed);
    q.zeros = (uint8_t *)(q.scales + groups);
    q.absmax_q = (int8_t *)(q.zeros + groups);
    q.absmax2 = (float *)(p + packed + groups * 4 + (groups * 2 + 15) / 16 * 16);
    return q;
}

size_t gq_cpu_fakequant_workspace(int rows, int cols, const gq_qspec *spec) {
    size_t groups = gq_qn_groups(spec, rows, cols), packed = (gq_qpacked_bytes(spec, rows, cols) + 15) / 16 * 16;
    return packed + groups * 4 + (groups * 2 + 15) / 16 * 16 + (groups / GQ_DQ_BLOCK + 1) * 4;
}

/* The rows [r0, r1) of q as a tensor of their own (level-one fields only). */
static gq_qtensor row_slice(const gq_qtensor *q, const gq_qspec *spec, int r0, int cols) {
    size_t gpr = gq_qn_groups(spec, 1, cols);
    gq_qtensor s = *q;
    s.qweight = q->qweight + gq_qpacked_bytes(spec, r0, cols);
    s.scales = q->scales + (size_t)r0 * gpr;
    s.zeros = q->zeros + (size_t)r0 * gpr;
    return s;
}

/* Row chunks for the threads: independent groups, so the result does not depend on the split. */
enum { FQ_CHUNK_VALUES = 1 << 16 };

int gq_cpu_fakequant_forward(float *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec,
                             void *work, uint64_t *status) {
    const char *why = gq_qspec_problem(spec, rows, cols);
    if (why) return gq_errf(GQ_ESHAPE, "fake-quant of a [%d, %d] tensor: %s", rows, cols, why);
    gq_qtensor q = carve_work(work, rows, cols, spec);
    gq_qspec level1 = *spec; /* nf4's double quantization spans the whole tensor: done after */
    level1.double_quant = 0;
    const int chunk = cols >= FQ_CHUNK_VALUES ? 1 : FQ_CHUNK_VALUES / cols, nchunks = (rows + chunk - 1) / chunk;
    const int g = gq_qgroup(spec, cols);
    const gq_qformat f = spec->format;
    const int clips = f == GQ_QF_INT4 || f == GQ_QF_INT3 || f == GQ_QF_INT2 || (spec->search && gq_qsearchable(f));
    size_t bad = (size_t)-1;
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int c = 0; c < nchunks; c++) {
        int r0 = c * chunk, nr = r0 + chunk <= rows ? chunk : rows - r0;
        gq_qtensor sub = row_slice(&q, spec, r0, cols);
        size_t at;
        if (simd->quantize(&level1, w + (size_t)r0 * cols, nr, cols, &sub, &at)) {
#pragma omp critical(gq_fq_bad)
            bad = at + (size_t)r0 * cols < bad ? at + (size_t)r0 * cols : bad;
        }
    }
    if (status) *status = bad == (size_t)-1 ? UINT64_MAX : (uint64_t)bad;
    if (bad != (size_t)-1) return status ? GQ_OK : gq_errf(GQ_ENAN, "value %zu is not finite", bad);
    if (f == GQ_QF_NF4 && spec->double_quant) gq_nf4_double_quant(&q, gq_qn_groups(spec, rows, cols));
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int c = 0; c < nchunks; c++) {
        int r0 = c * chunk, nr = r0 + chunk <= rows ? chunk : rows - r0;
        gq_qtensor sub = row_slice(&q, spec, r0, cols);
        size_t o = (size_t)r0 * cols, n = (size_t)nr * cols;
        simd->dequantize(&level1, &sub, nr, cols, out + o);
        memset(mask + o, 1, n);
        /* clipped values get no gradient (quant.h's gq_qclipped) */
        if (clips)
            for (size_t k = 0; k < n / g; k++)
                for (int i = 0; i < g; i++) {
                    const size_t at = o + k * g + i;
                    if (gq_qclipped(f, spec->search, w[at], out[at], sub.scales[k])) mask[at] = 0;
                }
    }
    return GQ_OK;
}

static int lsq_check(const gq_qspec *spec, int rows, int cols) {
    const char *why = gq_lsq_problem(spec, rows, cols);
    return why ? gq_errf(GQ_ESHAPE, "learned-scale fake-quant of a [%d, %d] tensor: %s", rows, cols, why) : GQ_OK;
}

/* Group chunks for the threads (each group's work its own: the result does not depend on the split) */
enum { LSQ_CHUNK_GROUPS = 1024 };
static size_t lsq_chunks(size_t groups, int g) {
    return groups * (size_t)g > 65536 ? (groups + LSQ_CHUNK_GROUPS - 1) / LSQ_CHUNK_GROUPS : 1;
}

int gq_cpu_fakequant_lsq_forward(float *out, const float *w, const float *scales, int rows, int cols,
                                 const gq_qspec *spec, uint64_t *status) {
    GQ_TRY(lsq_check(spec, rows, cols));
    const int g = gq_qgroup(spec, cols);
    const gq_qformat f = spec->format;
    const size_t n = (size_t)rows * cols, groups = n / (size_t)g;
    size_t bad = (size_t)-1;
    gq_all_finite(w, n, &bad);
    if (status) *status = bad == (size_t)-1 ? UINT64_MAX : (uint64_t)bad;
    if (bad != (size_t)-1) return status ? GQ_OK : gq_errf(GQ_ENAN, "value %zu is not finite", bad);
    const gq_simd_ops *simd = gq_simd();
    const size_t nc = lsq_chunks(groups, g), per = (groups + nc - 1) / nc;
#pragma omp parallel for schedule(static) if (nc > 1)
    for (size_t c = 0; c < nc; c++) {
        const size_t k0 = c * per, k1 = k0 + per < groups ? k0 + per : groups;
        if (k0 < k1) simd->lsq_forward(f, out + k0 * g, w + k0 * g, scales + k0, k1 - k0, g);
    }
    return GQ_OK;
}

int gq_cpu_fakequant_lsq_backward(float *grad, float *dscales, const float *w, const float *scales, int rows, int cols,
                                  const gq_qspec *spec) {
    GQ_TRY(lsq_check(spec, rows, cols));
    const int g = gq_qgroup(spec, cols);
    const gq_qformat f = spec->format;
    const size_t groups = (size_t)rows * cols / (size_t)g;
    const float gs = gq_lsq_gradscale(f, g);
    const gq_simd_ops *simd = gq_simd();
    const size_t nc = lsq_chunks(groups, g), per = (groups + nc - 1) / nc;
#pragma omp parallel for schedule(static) if (nc > 1)
    for (size_t c = 0; c < nc; c++) {
        const size_t k0 = c * per, k1 = k0 + per < groups ? k0 + per : groups;
        if (k0 < k1) simd->lsq_backward(f, grad + k0 * g, dscales + k0, w + k0 * g, scales + k0, k1 - k0, g, gs);
    }
    return GQ_OK;
}

int gq_cpu_round_bf16_sr(float *out, const float *in, size_t n, uint64_t seed, uint64_t base) {
    if (!n) return GQ_OK;
    /* a Philox block gives the bits of four elements: blocks q0 .. q1 cover indices base .. base + n - 1 */
    const uint64_t q0 = base / 4, q1 = (base + n - 1) / 4;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (uint64_t q = q0; q <= q1; q++) {
        const gq_u32x4 r = gq_philox_block(seed, q);
        for (uint64_t j = 0, g = 4 * q; j < 4; j++, g++)
            if (g >= base && g - base < n) out[g - base] = gq_bf16_sr(in[g - base], r.v[j]);
    }
    return GQ_OK;
}

int gq_cpu_fakequant_backward(float *grad, const uint8_t *mask, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) grad[i] = mask[i] ? grad[i] : 0.0f;
    return GQ_OK;
}

int gq_cpu_act_fakequant(float *x, size_t n) {
    if (n % GQ_ACT_BLOCK)
        return gq_errf(GQ_ESHAPE, "activation fake-quant of %zu values: not a multiple of %d", n, GQ_ACT_BLOCK);
    const size_t blocks = n / GQ_ACT_BLOCK, per = 2048, nc = (blocks + per - 1) / per;
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static) if (nc > 1)
    for (size_t c = 0; c < nc; c++)
        simd->act8_fake(x + c * per * GQ_ACT_BLOCK, c + 1 < nc ? per : blocks - c * per);
    return GQ_OK;
}
