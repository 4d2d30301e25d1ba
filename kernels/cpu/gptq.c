/* gptq: see gptq.h. */
#include "gptq.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *gq_gptq_problem(const gq_qspec *s, int rows, int cols) {
    const char *why = gq_qspec_problem(s, rows, cols);
    if (why) return why;
    if (s->search) return "GPTQ takes each group's absmax rule (-mse's searched scales are not combined with -gptq)";
    if (s->lsq) return "GPTQ is post-training (-lsq's scales come from QAT)";
    return NULL;
}

static double dot(const double *a, const double *b, int n) {
    double s = 0.0;
    for (int k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}

/* In place: the lower triangle of A (n x n, row-major) becomes L with A = L L^T (the upper is
 * left alone). -1 if a pivot is not positive (A not positive definite). */
static int cholesky_lower(double *A, int n) {
    for (int j = 0; j < n; j++) {
        double *aj = A + (size_t)j * n;
        const double d = aj[j] - dot(aj, aj, j);
        if (!(d > 0.0) || !isfinite(d)) return -1;
        aj[j] = sqrt(d);
#pragma omp parallel for schedule(static) if ((long)(n - j) * j > 200000)
        for (int i = j + 1; i < n; i++) {
            double *ai = A + (size_t)i * n;
            ai[j] = (ai[j] - dot(ai, aj, j)) / aj[j];
        }
    }
    return 0;
}

/* U (n x n, upper triangular) with H^-1 = U^T U (the upper Cholesky factor of the inverse, which
 * GPTQ's updates read row by row), from H + lambda I: with P the reversal, P H P = L L^T gives
 * H^-1 = (P L^-1 P)^T (P L^-1 P), and P L^-1 P is upper triangular with a positive diagonal.
 * A diagonal 0 (an input that never fires) becomes 1 first. Returns the lambda used (damp x
 * mean diagonal, x10 while not positive definite), or -1. */
static double inverse_cholesky_upper(const double *H, int n, double damp, double *U, double *tmp) {
    double mean = 0.0;
    for (int i = 0; i < n; i++) mean += H[(size_t)i * n + i] == 0.0 ? 1.0 : H[(size_t)i * n + i];
    mean /= n;
    for (int attempt = 0; attempt < 8; attempt++, damp = damp > 0.0 ? damp * 10.0 : 1e-4) {
        if (damp > 1e5) break;
        for (int a = 0; a < n; a++)
            for (int b = 0; b <= a; b++) { /* the lower triangle of P H P */
                double h = H[(size_t)(n - 1 - a) * n + (n - 1 - b)];
                if (a == b) h = (h == 0.0 ? 1.0 : h) + damp * mean;
                tmp[(size_t)a * n + b] = h;
            }
        if (cholesky_lower(tmp, n)) continue;
        /* column c of L^-1 (forward substitution) into row c of U's transpose image: Z[c][i] */
#pragma omp parallel for schedule(dynamic, 16)
        for (int c = 0; c < n; c++) {
            double *z = U + (size_t)c * n; /* (U is used as Z here, rewritten below) */
            memset(z, 0, (size_t)n * sizeof *z);
            z[c] = 1.0 / tmp[(size_t)c * n + c];
            for (int i = c + 1; i < n; i++) {
                const double *li = tmp + (size_t)i * n;
                z[i] = -dot(li + c, z + c, i - c) / li[i];
            }
        }
        /* U[a][b] = (L^-1)[n-1-a][n-1-b] = Z[n-1-b][n-1-a]: transpose through tmp */
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) tmp[(size_t)a * n + b] = U[(size_t)(n - 1 - b) * n + (n - 1 - a)];
        memcpy(U, tmp, (size_t)n * n * sizeof *U);
        return damp;
    }
    return -1.0;
}

double gq_gptq_output_error(const float *a, const float *b, int rows, int cols, const double *H) {
    const int chunk = 256;
    double *D = malloc((size_t)chunk * cols * sizeof *D), *DH = malloc((size_t)chunk * cols * sizeof *DH);
    double total = 0.0;
    if (!D || !DH) {
        free(D), free(DH);
        return NAN;
    }
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        const int nr = rows - r0 < chunk ? rows - r0 : chunk;
        for (size_t i = 0; i < (size_t)nr * cols; i++)
            D[i] = (double)a[(size_t)r0 * cols + i] - (double)b[(size_t)r0 * cols + i];
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, nr, cols, 1.0, H, cols, D, cols, 0.0, DH, cols);
        total += dot(D, DH, nr * cols);
    }
    free(D), free(DH);
    return total;
}

/* the quantizer of one value under its group's parameters: code (as stored) and value */
static int quantize_value(gq_qformat f, float x, gq_qparams p, float *v) {
    const int c = f == GQ_QF_INT8 ? (uint8_t)(int8_t)gq_q8_row_code(x, p.sc) : gq_qgroup_code(f, x, p);
    *v = gq_qvalue(f, c, p.sc, p.zero);
    return c;
}

/* a group's parameters from its n values (the int8 rule: per row, scale in sc) */
static gq_qparams group_params(gq_qformat f, const float *x, int n) {
    gq_qstats st = gq_qstats_zero();
    for (int i = 0; i < n; i++) gq_qstats_add(&st, x[i]);
    if (f == GQ_QF_INT8) {
        gq_qparams p = {gq_q8_row_scale(st.amax), 0.0f, 0};
        return p;
    }
    return gq_qgroup_params(f, st);
}

/* act-order: the columns by descending H_jj (a dead input's 1), ties by index */
typedef struct {
    double key;
    int col;
} column_key;
static int by_key(const void *a, const void *b) {
    const column_key *x = a, *y = b;
    return x->key > y->key ? -1 : x->key < y->key ? 1 : (x->col > y->col) - (x->col < y->col);
}

int gq_gptq_quantize(const gq_qspec *s, const float *w, int rows, int cols, const double *H, gq_gptq_opts *o,
                     gq_qtensor *q, float *wq, size_t *bad) {
    const size_t n = (size_t)rows * cols;
    if (!gq_all_finite(w, n, bad)) return -1;
    for (size_t i = 0; i < (size_t)cols * cols; i++)
        if (!isfinite(H[i])) return -2;
    const gq_qformat f = s->format;
    const int g = gq_qgroup(s, cols), bits = gq_qbits(f), ng = cols / g, gbytes = g * bits / 8;
    const int act = o->act_order != 0;
    /* blocks of 128 columns made of whole groups (a group as long as the row: its scale comes
     * from the untouched row when column 0 comes up, so any block does; with act-order every
     * scale is fixed before the first column) */
    int block = act || g >= cols ? 128 : g * ((128 + g - 1) / g);
    if (block > cols) block = cols;
    double *U = malloc((size_t)cols * cols * sizeof *U), *tmp = malloc((size_t)cols * cols * sizeof *tmp);
    double *W = malloc(n * sizeof *W), *Wb = malloc((size_t)block * rows * sizeof *Wb);
    double *Eb = malloc((size_t)block * rows * sizeof *Eb), *Hp = act ? malloc((size_t)cols * cols * sizeof *Hp) : NULL;
    gq_qparams *P = malloc((size_t)rows * ng * sizeof *P); /* every group's parameters */
    uint8_t *codes = malloc(n);                              /* at their own (unpermuted) places */
    int *perm = malloc((size_t)cols * sizeof *perm);
    float *xg = malloc((size_t)g * sizeof *xg), *rtn = malloc(n * sizeof *rtn);
    int rc = 0;
    if (!U || !tmp || !W || !Wb || !Eb || (act && !Hp) || !P || !codes || !perm || !xg || !rtn) rc = -3;
    for (int j = 0; !rc && j < cols; j++) perm[j] = j;
    if (!rc && act) { /* static groups: every scale from the original weights; then the columns
                       * permuted, the most strongly driven first */
        for (int r = 0; r < rows; r++)
            for (int gi = 0; gi < ng; gi++) {
                for (int u = 0; u < g; u++) xg[u] = w[(size_t)r * cols + (size_t)gi * g + u];
                P[(size_t)r * ng + gi] = group_params(f, xg, g);
            }
        column_key *key = malloc((size_t)cols * sizeof *key);
        for (int j = 0; key && j < cols; j++)
            key[j] = (column_key){H[(size_t)j * cols + j] == 0.0 ? 1.0 : H[(size_t)j * cols + j], j};
        if (key) qsort(key, (size_t)cols, sizeof *key, by_key);
        for (int j = 0; key && j < cols; j++) perm[j] = key[j].col;
        rc = key ? 0 : -3;
        free(key);
        for (int a = 0; !rc && a < cols; a++)
            for (int b = 0; b < cols; b++) Hp[(size_t)a * cols + b] = H[(size_t)perm[a] * cols + perm[b]];
    }
    const double lambda = rc ? -1.0 : inverse_cholesky_upper(act ? Hp : H, cols, o->damp, U, tmp);
    if (!rc && lambda < 0.0) rc = -2;
    if (!rc) {
        o->damp_used = lambda;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) W[(size_t)r * cols + j] = w[(size_t)r * cols + perm[j]];
    }
    for (int i1 = 0; !rc && i1 < cols; i1 += block) {
        const int cnt = cols - i1 < block ? cols - i1 : block, i2 = i1 + cnt;
        for (int k = 0; k < cnt; k++)
            for (int r = 0; r < rows; r++) Wb[(size_t)k * rows + r] = W[(size_t)r * cols + i1 + k];
        for (int k = 0; k < cnt; k++) {
            const int j = i1 + k, col = perm[j], gi = col / g;
            double *wk = Wb + (size_t)k * rows, *ek = Eb + (size_t)k * rows;
            if (!act && j % g == 0) /* a group starts: its parameters from its values as they stand now */
                for (int r = 0; r < rows; r++) {
                    for (int u = 0; u < g; u++)
                        xg[u] = (float)(j + u < i2 ? Wb[(size_t)(k + u) * rows + r] : W[(size_t)r * cols + j + u]);
                    P[(size_t)r * ng + gi] = group_params(f, xg, g);
                }
            const double ujj = U[(size_t)j * cols + j];
            for (int r = 0; r < rows; r++) {
                float v;
                codes[(size_t)r * cols + col] = (uint8_t)quantize_value(f, (float)wk[r], P[(size_t)r * ng + gi], &v);
                ek[r] = (wk[r] - (double)v) / ujj;
            }
            /* the error onto this block's later columns */
            const double *uj = U + (size_t)j * cols;
#pragma omp parallel for schedule(static) if ((long)rows * (cnt - k) > 65536)
            for (int kk = k + 1; kk < cnt; kk++) {
                const double u = uj[i1 + kk];
                double *wkk = Wb + (size_t)kk * rows;
                for (int r = 0; r < rows; r++) wkk[r] -= ek[r] * u;
            }
        }
        /* ... and onto the columns after the block, all at once */
        if (i2 < cols)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, cols - i2, cnt, -1.0, Eb, rows,
                        U + (size_t)i1 * cols + i2, cols, 1.0, W + i2, cols);
    }
    for (size_t gi = 0; !rc && gi < (size_t)rows * ng; gi++) { /* pack */
        gq_pack_group(codes + gi * g, g, bits, q->qweight + gi * gbytes);
        q->scales[gi] = P[gi].sc;
        if (f == GQ_QF_INT4A) q->zeros[gi] = (uint8_t)P[gi].zero;
    }
    if (!rc) {
        if (f == GQ_QF_NF4 && s->double_quant) gq_nf4_double_quant(q, gq_qn_groups(s, rows, cols));
        /* the figures of merit: output error of GPTQ's and of round to nearest's weights */
        float *out = wq ? wq : malloc(n * sizeof *out);
        gq_qtensor r;
        if (gq_qtensor_alloc(&r, s, rows, cols) || !out) {
            rc = -3;
        } else {
            gq_dequantize(s, q, rows, cols, out);
            gq_quantize(s, w, rows, cols, &r, NULL);
            /* tr(W H W^T): the output error of a zero weight (with W - 0) */
            memset(rtn, 0, n * sizeof *rtn);
            double ref = gq_gptq_output_error(w, rtn, rows, cols, H);
            ref = ref > 0.0 ? ref : 1.0;
            gq_dequantize(s, &r, rows, cols, rtn);
            o->err_gptq = gq_gptq_output_error(w, out, rows, cols, H) / ref;
            o->err_rtn = gq_gptq_output_error(w, rtn, rows, cols, H) / ref;
        }
        gq_qtensor_free(&r);
        if (out != wq) free(out);
    }
    free(U), free(tmp), free(W), free(Wb), free(Eb), free(Hp), free(P), free(codes), free(perm), free(xg), free(rtn);
    return rc;
}
