/* fakequant (CPU): QAT's quantize-dequantize through quant.h (the reference for every backend),
 * the straight-through estimator's gradient mask, and the stochastic bf16 rounding of the
 * mixed-precision weight copy (sround.h). */
#include "cpu_ops.h"
#include "gq_error.h"
#include "quant.h"
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

int gq_cpu_fakequant_forward(float *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec,
                             void *work) {
    const char *why = gq_qspec_problem(spec, rows, cols);
    if (why) return gq_errf(GQ_ESHAPE, "fake-quant of a [%d, %d] tensor: %s", rows, cols, why);
    gq_qtensor q = carve_work(work, rows, cols, spec);
    size_t bad = 0, n = (size_t)rows * cols;
    if (gq_quantize(spec, w, rows, cols, &q, &bad)) return gq_errf(GQ_ENAN, "value %zu is not finite", bad);
    gq_dequantize(spec, &q, rows, cols, out);
    memset(mask, 1, n);
    /* clipped values (only the Q4_0-rule formats clip: the code past the top level) get no
     * gradient: their error exceeds half a step (0.51: the fp16 scale rounds by up to 0.05 %) */
    gq_qformat f = spec->format;
    if (f == GQ_QF_INT4 || f == GQ_QF_INT3 || f == GQ_QF_INT2) {
        int g = gq_qgroup(spec, cols);
        for (size_t i = 0; i < n; i++)
            if (fabsf(out[i] - w[i]) > 0.51f * fabsf(q.scales[i / g])) mask[i] = 0;
    }
    return GQ_OK;
}

int gq_cpu_round_bf16_sr(float *out, const float *in, size_t n, uint64_t seed, uint64_t base) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = gq_bf16_sr(in[i], gq_sr_bits(seed, base + i));
    return GQ_OK;
}

int gq_cpu_fakequant_backward(float *grad, const uint8_t *mask, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) grad[i] = mask[i] ? grad[i] : 0.0f;
    return GQ_OK;
}
