/* bench_qmatmul: one-token (decode) matrix-vector products on packed weights, per format and
 * kernel variant, for GPT-2 124M shapes: GB/s of weight bytes streamed and the ratio to the
 * fp32 sgemv of the same shape run in the same process. Matrices are allocated 8 at a time
 * (about 30-300 MB) so that the weights come from memory as in a real decode step.
 * Every format runs again in the CPU runner's 8-row layout ("-x8" rows).
 *   bench_qmatmul [ROWS COLS] [--reps N] */
#include "gq_progress.h"
#include "gq_rng.h"
#include "qmatmul.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NM = 8 };

typedef struct {
    gq_qmat w;
    gq_qtensor q;
    uint16_t *s16;
} qm;

static void make(qm *m, const char *fmt, const gq_qspec *s, int rows, int cols, const float *x) {
    (void)fmt;
    memset(m, 0, sizeof *m);
    m->w.spec = *s, m->w.rows = rows, m->w.cols = cols;
    if (s->format == GQ_QF_F32) {
        float *c = malloc(sizeof(float) * rows * cols);
        memcpy(c, x, sizeof(float) * rows * cols);
        m->w.f32 = c;
        return;
    }
    m->w.group = gq_qgroup(s, cols);
    size_t g = gq_qn_groups(s, rows, cols);
    m->q = (gq_qtensor){
        malloc(gq_qpacked_bytes(s, rows, cols)), malloc(g * 4), malloc(g), malloc(g), malloc((g / 256 + 1) * 4), 0};
    gq_quantize(s, x, rows, cols, &m->q, NULL);
    m->w.q = m->q.qweight;
    if (gq_qscale_f16(s->format)) {
        m->s16 = malloc(g * 2);
        for (size_t k = 0; k < g; k++)
            m->s16[k] = gq_f32_to_f16(m->q.scales[k]);
        m->w.s16 = m->s16;
    } else {
        m->w.s32 = m->q.scales;
    }
    if (s->format == GQ_QF_INT4A) m->w.zeros = m->q.zeros;
}

static void drop(qm *m) {
    free((void *)m->w.f32), free(m->q.qweight), free(m->q.scales), free(m->q.zeros), free(m->q.absmax_q);
    free(m->q.absmax2), free(m->s16);
}

/* Best time per matrix of one-token products over the NM matrices (threads split the rows as
 * gq_qmatmul does: multiples of 8). */
static double time_rows(const gq_qdot_ops *ops, qm *ms, int reps, const float *x, int8_t *aq, float *ad, int32_t *ab,
                        float *y, int rows, int cols) {
    gq_qact a = {x, aq, ad, ab, 1, cols, 0};
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = gq_now();
        for (int k = 0; k < NM; k++) {
            if (gq_qmat_int_path(&ms[k].w)) gq_qact_quantize(&a);
#pragma omp parallel
            {
                const int nt = omp_get_num_threads(), t = omp_get_thread_num();
                const int per = ((rows + nt - 1) / nt + 7) / 8 * 8;
                const int r0 = t * per < rows ? t * per : rows, r1 = r0 + per < rows ? r0 + per : rows;
                if (r0 < r1) ops->rows(&ms[k].w, r0, r1, &a, y + r0, rows);
            }
        }
        double dt = (gq_now() - t0) / NM;
        best = dt < best ? dt : best;
    }
    return best;
}

int main(int argc, char **argv) {
    int rows = 3072, cols = 768, reps = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (i + 1 < argc && atoi(argv[i]) > 0)
            rows = atoi(argv[i]), cols = atoi(argv[++i]);
    }
    gq_rng r;
    gq_rng_seed(&r, 1);
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * cols),
          *y = malloc(sizeof(float) * rows);
    for (int i = 0; i < rows * cols; i++)
        w[i] = (gq_rng_float(&r) - 0.5f) * 0.04f;
    for (int i = 0; i < cols; i++)
        x[i] = gq_rng_float(&r) - 0.5f;
    int8_t *aq = malloc(cols);
    float *ad = malloc(sizeof(float) * cols / 32);
    int32_t *ab = malloc(sizeof(int32_t) * cols / 32);
    printf("bench_qmatmul: %d x %d, %d threads, one token, %d matrices cycled (weights from memory)\n", rows, cols,
           omp_get_max_threads(), NM);
    /* the peer: OpenBLAS sgemv on fp32 */
    float *fw[NM];
    for (int k = 0; k < NM; k++)
        fw[k] = malloc(sizeof(float) * rows * cols), memcpy(fw[k], w, sizeof(float) * rows * cols);
    double best_ref = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = gq_now();
        for (int k = 0; k < NM; k++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, fw[k], cols, x, 1, 0.0f, y, 1);
        double dt = (gq_now() - t0) / NM;
        best_ref = dt < best_ref ? dt : best_ref;
    }
    for (int k = 0; k < NM; k++)
        free(fw[k]);
    const double ref_gbs = (double)rows * cols * 4 / best_ref / 1e9;
    printf("%-10s %-10s %9s %9s %9s %s\n", "format", "kernel", "us", "GB/s", "bytes/w", "vs OpenBLAS fp32 sgemv");
    printf("%-10s %-10s %9.1f %9.2f %9.2f 1.00x\n", "f32", "sgemv", best_ref * 1e6, ref_gbs, 4.0);
    const char *fmts[] = {"f32",       "int8", "q8_0", "int4-g32", "int4-g64", "int4-g128",
                          "int4a-g64", "nf4",  "fp4",  "int3-g64", "int2-g64"};
    const gq_qformat ff[] = {GQ_QF_F32,   GQ_QF_INT8, GQ_QF_Q8_0, GQ_QF_INT4, GQ_QF_INT4, GQ_QF_INT4,
                             GQ_QF_INT4A, GQ_QF_NF4,  GQ_QF_FP4,  GQ_QF_INT3, GQ_QF_INT2};
    const int gg[] = {0, 0, 32, 32, 64, 128, 64, 64, 64, 64, 64};
    const char *const *variants = gq_qdot_names; /* every variant this CPU runs */
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++) {
        gq_qspec s = {ff[f], gg[f], 0, 0, 0, 0};
        qm ms[NM];
        for (int k = 0; k < NM; k++)
            make(&ms[k], fmts[f], &s, rows, cols, w);
        /* then int4 / int4a again in the CPU runner's 8-row layout */
        for (int x8 = 0; x8 < 2; x8++) {
            if (x8) {
                if (!gq_qmat_x8_able(&ms[0].w)) break;
                for (int k = 0; k < NM; k++)
                    gq_qmat_to_x8(&ms[k].w);
            }
            for (int v = 0; variants[v]; v++) {
                const gq_qdot_ops *ops = gq_qdot_variant(variants[v]);
                if (!ops || !gq_qdot_supported(variants[v])) continue;
                const double best = time_rows(ops, ms, v ? reps : 2, x, aq, ad, ab, y, rows, cols);
                const double bytes = (double)gq_qmat_bytes(&ms[0].w);
                char name[32];
                snprintf(name, sizeof name, "%s%s", variants[v], x8 ? "-x8" : "");
                printf("%-10s %-10s %9.1f %9.2f %9.2f %.2fx\n", fmts[f], name, best * 1e6, bytes / best / 1e9,
                       bytes * 8 / ((double)rows * cols) / 8, best_ref / best);
            }
        }
        for (int k = 0; k < NM; k++)
            drop(&ms[k]);
    }
    free(w), free(x), free(y), free(aq), free(ad), free(ab);
    return 0;
}
