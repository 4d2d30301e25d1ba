/* gq_test_qmat: a random weight matrix quantized with quant.h and wrapped as qmatmul.h's
 * gq_qmat (host memory), with gq_dequantize's values beside it: shared by the CPU and CUDA
 * qmatmul tests. make() puts in an outlier and a zero row. */
#ifndef GQ_TEST_QMAT_H
#define GQ_TEST_QMAT_H

#include "gq_rng.h"
#include "gq_test.h"
#include "qmatmul.h"
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    gq_qmat w;
    gq_qtensor q;
    uint16_t *s16;
    float *s32; /* a copy of q.scales for w (w's arrays may be rearranged; q stays as quantized) */
    float *deq; /* gq_dequantize's result */
} mat;

static float randn(gq_rng *r) {
    float u = gq_rng_float(r) + 1e-7f, v = gq_rng_float(r);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* m from the weights x (rows * cols floats, malloc'ed; m takes them over) */
static void make_from(mat *m, const gq_qspec *s, int rows, int cols, float *x) {
    memset(m, 0, sizeof *m);
    m->w.spec = *s;
    m->w.rows = rows;
    m->w.cols = cols;
    m->deq = malloc(sizeof(float) * rows * cols);
    if (s->format == GQ_QF_F32) {
        m->w.f32 = x;
        memcpy(m->deq, x, sizeof(float) * rows * cols);
        return;
    }
    m->w.group = gq_qgroup(s, cols);
    size_t groups = gq_qn_groups(s, rows, cols);
    m->q = (gq_qtensor){calloc(gq_qpacked_bytes(s, rows, cols) + 32, 1),
                        calloc(groups, 4),
                        calloc(groups, 1),
                        calloc(groups, 1),
                        calloc(groups / GQ_DQ_BLOCK + 1, 4),
                        0};
    size_t bad;
    CHECK(gq_quantize(s, x, rows, cols, &m->q, &bad) == 0);
    gq_dequantize(s, &m->q, rows, cols, m->deq);
    m->w.q = m->q.qweight;
    if (gq_qscale_f16(s->format)) {
        m->s16 = malloc(2 * groups);
        for (size_t k = 0; k < groups; k++)
            m->s16[k] = gq_f32_to_f16(m->q.scales[k]);
        m->w.s16 = m->s16;
    } else {
        m->s32 = malloc(4 * groups);
        memcpy(m->s32, m->q.scales, 4 * groups);
        m->w.s32 = m->s32;
    }
    if (s->format == GQ_QF_INT4A) m->w.zeros = m->q.zeros;
    if (s->format == GQ_QF_NF4 && s->double_quant) {
        m->w.absmax_q = m->q.absmax_q;
        m->w.absmax2 = m->q.absmax2;
        m->w.absmax_offset = m->q.absmax_offset;
    }
    free(x);
}

static void make(mat *m, const gq_qspec *s, int rows, int cols, gq_rng *rng) {
    float *x = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++)
        x[i] = 0.02f * randn(rng);
    x[rows * cols / 3] = 0.5f;                               /* an outlier */
    if (rows > 2) memset(x + cols, 0, sizeof(float) * cols); /* a zero row */
    make_from(m, s, rows, cols, x);
}

static void drop(mat *m) {
    if (m->w.spec.format == GQ_QF_F32) free((void *)m->w.f32);
    free(m->q.qweight), free(m->q.scales), free(m->q.zeros), free(m->q.absmax_q), free(m->q.absmax2);
    free(m->s16), free(m->s32), free(m->deq);
}

#endif
