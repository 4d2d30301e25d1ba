/* Every op of the CPU backend, table-driven, on small random shapes:
 *   forward:  sum(out * P) of the float op vs. an independent double-precision reference
 *             (naive loops, no BLAS), relative error <= 1e-5;
 *   backward: the float backward with dout = P vs. central finite differences of the double
 *             reference (h = 1e-6), normalized error max|g - fd| / max|fd| <= 1e-5 (seen: ~1e-7).
 * It also checks the accumulation conventions of backend.h: parameter gradients add (+=),
 * activation gradients overwrite (=), layernorm's dinp adds. AdamW and the squared norm are
 * checked against double references of torch.optim.AdamW's formula. The fused cross-entropy
 * (forward_backward, the trainer's step) is the two checked ops' results bit for bit. */
#include "backend.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXT 6 /* tensors per case */

typedef struct {
    const char *name;
    int n_in;
    size_t size[MAXT];   /* element counts of the inputs */
    int grad[MAXT];      /* 0: not differentiated, 1: gradient overwritten, 2: gradient accumulated */
    size_t out_size;
    /* shapes */
    int B, T, C, NH, N, OC, V, Vp;
    int32_t *ids;        /* token ids or targets */
} opcase;

static const gq_backend *be;
#define DISTILL_W 0.6

/* ---- double references: return sum(out * P) ---- */

static double ref_loss(const opcase *k, double **in, const double *P) {
    double loss = 0;
    if (!strcmp(k->name, "encoder")) {
        for (int bt = 0; bt < k->B * k->T; bt++)
            for (int c = 0; c < k->C; c++)
                loss += (in[0][(size_t)k->ids[bt] * k->C + c] + in[1][(size_t)(bt % k->T) * k->C + c]) * P[(size_t)bt * k->C + c];
    } else if (!strcmp(k->name, "layernorm")) {
        for (int n = 0; n < k->N; n++) {
            const double *x = in[0] + (size_t)n * k->C;
            double m = 0, v = 0;
            for (int c = 0; c < k->C; c++) m += x[c];
            m /= k->C;
            for (int c = 0; c < k->C; c++) v += (x[c] - m) * (x[c] - m);
            v /= k->C;
            double s = 1 / sqrt(v + 1e-5);
            for (int c = 0; c < k->C; c++) loss += ((x[c] - m) * s * in[1][c] + in[2][c]) * P[(size_t)n * k->C + c];
        }
    } else if (!strcmp(k->name, "matmul")) {
        for (int n = 0; n < k->N; n++)
            for (int o = 0; o < k->OC; o++) {
                double y = in[2][o];
                for (int c = 0; c < k->C; c++) y += in[0][(size_t)n * k->C + c] * in[1][(size_t)o * k->C + c];
                loss += y * P[(size_t)n * k->OC + o];
            }
    } else if (!strcmp(k->name, "attention")) {
        int B = k->B, T = k->T, C = k->C, NH = k->NH, hs = C / NH;
        double att[64];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    const double *q = in[0] + ((size_t)b * T + t) * 3 * C + h * hs;
                    double mx = -1e300;
                    for (int u = 0; u <= t; u++) {
                        const double *kk = in[0] + ((size_t)b * T + u) * 3 * C + C + h * hs;
                        double s = 0;
                        for (int i = 0; i < hs; i++) s += q[i] * kk[i];
                        att[u] = s / sqrt((double)hs);
                        mx = fmax(mx, att[u]);
                    }
                    double sum = 0;
                    for (int u = 0; u <= t; u++) sum += (att[u] = exp(att[u] - mx));
                    for (int i = 0; i < hs; i++) {
                        double y = 0;
                        for (int u = 0; u <= t; u++) y += att[u] / sum * in[0][((size_t)b * T + u) * 3 * C + 2 * C + h * hs + i];
                        loss += y * P[((size_t)b * T + t) * C + h * hs + i];
                    }
                }
    } else if (!strcmp(k->name, "gelu")) {
        for (size_t i = 0; i < k->size[0]; i++) {
            double x = in[0][i];
            loss += 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x))) * P[i];
        }
    } else if (!strcmp(k->name, "residual")) {
        for (size_t i = 0; i < k->size[0]; i++) loss += (in[0][i] + in[1][i]) * P[i];
    } else if (!strcmp(k->name, "crossentropy")) {
        /* the scalar loss: mean over non-ignored rows (P unused) */
        int count = 0;
        for (int n = 0; n < k->N; n++) {
            if (k->ids[n] < 0) continue;
            const double *x = in[0] + (size_t)n * k->Vp;
            double mx = -1e300, sum = 0;
            for (int i = 0; i < k->V; i++) mx = fmax(mx, x[i]);
            for (int i = 0; i < k->V; i++) sum += exp(x[i] - mx);
            loss += mx + log(sum) - x[k->ids[n]];
            count++;
        }
        loss /= count;
    } else if (!strcmp(k->name, "distill")) {
        /* mean over non-ignored rows of -sum_i target_i log softmax(x)_i, target = (1 - w) onehot
         * + w softmax(teacher); the teacher (in[1]) is a constant */
        int count = 0;
        for (int n = 0; n < k->N; n++) {
            if (k->ids[n] < 0) continue;
            const double *x = in[0] + (size_t)n * k->Vp, *t = in[1] + (size_t)n * k->Vp;
            double mx = -1e300, sum = 0, tm = -1e300, ts = 0;
            for (int i = 0; i < k->V; i++) mx = fmax(mx, x[i]), tm = fmax(tm, t[i]);
            for (int i = 0; i < k->V; i++) sum += exp(x[i] - mx), ts += exp(t[i] - tm);
            double lse = mx + log(sum);
            for (int i = 0; i < k->V; i++) {
                double target = DISTILL_W * exp(t[i] - tm) / ts + (i == k->ids[n] ? 1 - DISTILL_W : 0);
                loss += target * (lse - x[i]);
            }
            count++;
        }
        loss /= count;
    }
    return loss;
}

/* ---- the float op: forward, then backward with dout = P; returns sum(out * P) ---- */

static double run_op(const opcase *k, float **in, float **g, const float *P, float *out, float *scr1, float *scr2) {
    double loss = 0;
    if (!strcmp(k->name, "encoder")) {
        be->encoder_forward(out, k->ids, in[0], in[1], k->B, k->T, k->C);
        be->encoder_backward(g[0], g[1], P, k->ids, k->B, k->T, k->C);
    } else if (!strcmp(k->name, "layernorm")) {
        be->layernorm_forward(out, scr1, scr2, in[0], in[1], in[2], k->N, k->C);
        be->layernorm_backward(g[0], g[1], g[2], P, in[0], in[1], scr1, scr2, k->N, k->C);
    } else if (!strcmp(k->name, "matmul")) {
        be->matmul_forward(out, in[0], in[1], in[2], k->N, k->C, k->OC, 0);
        be->matmul_backward(g[0], g[1], g[2], P, in[0], in[1], k->N, k->C, k->OC, 0);
    } else if (!strcmp(k->name, "attention")) {
        be->attention_forward(out, scr1, in[0], k->B, k->T, k->C, k->NH);
        be->attention_backward(g[0], scr2, P, in[0], out, scr1, k->B, k->T, k->C, k->NH);
    } else if (!strcmp(k->name, "gelu")) {
        be->gelu_forward(out, in[0], k->size[0]);
        be->gelu_backward(g[0], in[0], P, k->size[0]);
    } else if (!strcmp(k->name, "residual")) {
        be->residual_forward(out, in[0], in[1], k->size[0]);
        for (size_t i = 0; i < k->size[0]; i++) g[0][i] = g[1][i] = P[i]; /* identity backward */
    } else if (!strcmp(k->name, "crossentropy")) {
        int count = 0;
        for (int n = 0; n < k->N; n++) count += k->ids[n] >= 0;
        be->crossentropy_forward(out, scr1, in[0], k->ids, k->N, k->V, k->Vp);
        for (int n = 0; n < k->N; n++) loss += out[n];
        memcpy(g[0], in[0], k->size[0] * sizeof(float));
        be->crossentropy_backward(g[0], scr1, k->ids, 1.0f / count, k->N, k->V, k->Vp);
        return loss / count;
    } else if (!strcmp(k->name, "distill")) {
        int count = 0;
        for (int n = 0; n < k->N; n++) count += k->ids[n] >= 0;
        be->crossentropy_forward(out, scr1, in[0], k->ids, k->N, k->V, k->Vp);       /* student lse */
        be->crossentropy_forward(scr2 + k->N, scr2, in[1], k->ids, k->N, k->V, k->Vp); /* teacher lse */
        for (int n = 0; n < k->N; n++) {
            if (k->ids[n] < 0) continue;
            const float *x = in[0] + (size_t)n * k->Vp, *t = in[1] + (size_t)n * k->Vp;
            for (int i = 0; i < k->V; i++)
                loss += (DISTILL_W * exp((double)t[i] - scr2[n]) + (i == k->ids[n] ? 1 - DISTILL_W : 0)) *
                        ((double)scr1[n] - x[i]);
        }
        memcpy(g[0], in[0], k->size[0] * sizeof(float));
        be->crossentropy_distill_backward(g[0], scr1, in[1], scr2, k->ids, (float)DISTILL_W, 1.0f / count, k->N, k->V,
                                          k->Vp);
        return loss / count;
    }
    for (size_t i = 0; i < k->out_size; i++) loss += (double)out[i] * P[i];
    return loss;
}

static void check_case(opcase *k, gq_rng *r) {
    float *in[MAXT], *g[MAXT], *pre[MAXT];
    double *din[MAXT];
    size_t big = 1 << 16;
    float *P = malloc(big * 4), *out = malloc(big * 4), *s1 = malloc(big * 4), *s2 = malloc(big * 4);
    double *Pd = malloc(big * 8);
    for (size_t i = 0; i < big; i++) Pd[i] = P[i] = gq_rng_float(r) * 2 - 1;
    for (int t = 0; t < k->n_in; t++) {
        in[t] = malloc(k->size[t] * 4);
        g[t] = malloc(k->size[t] * 4);
        pre[t] = malloc(k->size[t] * 4);
        din[t] = malloc(k->size[t] * 8);
        for (size_t i = 0; i < k->size[t]; i++) {
            in[t][i] = (gq_rng_float(r) * 2 - 1) *
                       (strcmp(k->name, "crossentropy") && strcmp(k->name, "distill") ? 1.0f : 3.0f);
            din[t][i] = in[t][i];
            pre[t][i] = g[t][i] = gq_rng_float(r) - 0.5f; /* garbage or prior accumulation */
        }
    }
    double loss_f = run_op(k, in, g, P, out, s1, s2);
    double loss_d = ref_loss(k, din, Pd);
    double fwd_err = fabs(loss_f - loss_d) / fmax(fabs(loss_d), 1e-3);
    CHECKF(fwd_err <= 1e-5, "%s forward: float %.9g vs double %.9g", k->name, loss_f, loss_d);
    for (int t = 0; t < k->n_in; t++) {
        if (!k->grad[t]) continue;
        double max_err = 0, max_fd = 0;
        for (size_t i = 0; i < k->size[t]; i++) {
            const double h = 1e-6;
            double x = din[t][i];
            din[t][i] = x + h;
            double lp = ref_loss(k, din, Pd);
            din[t][i] = x - h;
            double lm = ref_loss(k, din, Pd);
            din[t][i] = x;
            double fd = (lp - lm) / (2 * h);
            double an = k->grad[t] == 2 ? (double)g[t][i] - pre[t][i] : g[t][i];
            max_err = fmax(max_err, fabs(an - fd));
            max_fd = fmax(max_fd, fabs(fd));
        }
        double err = max_err / fmax(max_fd, 1e-6);
        printf("  %-13s input %d: forward rel err %.2e, backward normalized err %.2e (max |grad| %.3g)\n", k->name, t,
               fwd_err, err, max_fd);
        CHECKF(err <= 1e-5, "%s backward input %d: normalized error %.3g", k->name, t, err);
    }
    for (int t = 0; t < k->n_in; t++) free(in[t]), free(g[t]), free(pre[t]), free(din[t]);
    free(P), free(out), free(s1), free(s2), free(Pd);
}

/* crossentropy_forward_backward == crossentropy_forward then crossentropy_backward, every bit,
 * on rows long enough for the SIMD loops and their tails, ignored targets included */
static void check_ce_fused(gq_rng *r) {
    const int shapes[3][3] = {{24, 13, 16}, {7, 1000, 1008}, {5, 50257, 50304}};
    for (int k = 0; k < 3; k++) {
        const int N = shapes[k][0], V = shapes[k][1], Vp = shapes[k][2];
        const size_t n = (size_t)N * Vp;
        float *a = malloc(n * 4), *b = malloc(n * 4), *la = malloc(N * 4), *lb = malloc(N * 4);
        float *sa = malloc(N * 4), *sb = malloc(N * 4);
        int32_t *tg = malloc(N * 4);
        for (size_t i = 0; i < n; i++) a[i] = b[i] = 8.0f * gq_rng_float(r) - 4.0f;
        for (int i = 0; i < N; i++) tg[i] = i % 4 == 2 ? -1 : (int32_t)gq_rng_below(r, (uint64_t)V);
        be->crossentropy_forward(la, sa, a, tg, N, V, Vp);
        be->crossentropy_backward(a, sa, tg, 0.125f, N, V, Vp);
        CHECK_OK(be->crossentropy_forward_backward(lb, sb, b, tg, 0.125f, N, V, Vp));
        CHECKF(!memcmp(la, lb, N * 4) && !memcmp(sa, sb, N * 4) && !memcmp(a, b, n * 4),
               "fused cross-entropy (N %d, V %d): not the two ops' bits", N, V);
        free(a), free(b), free(la), free(lb), free(sa), free(sb), free(tg);
    }
}

static void check_adamw(gq_rng *r) {
    enum { n = 1000 };
    static float p[n], g[n], m[n], v[n];
    static double pd[n], md[n], vd[n];
    for (int i = 0; i < n; i++) {
        pd[i] = p[i] = gq_rng_float(r) - 0.5f;
        m[i] = v[i] = 0;
        md[i] = vd[i] = 0;
    }
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, scale = 0.7;
    for (int t = 1; t <= 5; t++) {
        for (int i = 0; i < n; i++) g[i] = gq_rng_float(r) - 0.5f;
        be->adamw_update(p, g, m, v, n, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd, t, (float)scale);
        for (int i = 0; i < n; i++) {
            double gi = g[i] * scale;
            md[i] = b1 * md[i] + (1 - b1) * gi;
            vd[i] = b2 * vd[i] + (1 - b2) * gi * gi;
            pd[i] *= 1 - lr * wd;
            pd[i] -= lr / (1 - pow(b1, t)) * md[i] / (sqrt(vd[i]) / sqrt(1 - pow(b2, t)) + eps);
        }
    }
    double max_err = 0;
    for (int i = 0; i < n; i++) max_err = fmax(max_err, fabs(p[i] - pd[i]));
    printf("  adamw         5 steps: max |p - p_double| %.2e\n", max_err);
    CHECK(max_err < 1e-6);
    double ss, ssd = 0;
    be->sum_squares(&ss, g, n);
    for (int i = 0; i < n; i++) ssd += (double)g[i] * g[i];
    CHECK(fabs(ss - ssd) <= 1e-12 * ssd);
}

int main(void) {
    be = gq_backend_cpu();
    gq_rng r;
    gq_rng_seed(&r, 2024);
    int32_t ids[64], targets[24];
    for (int i = 0; i < 64; i++) ids[i] = (int32_t)gq_rng_below(&r, 11);
    for (int i = 0; i < 24; i++) targets[i] = i % 7 == 3 ? -1 : (int32_t)gq_rng_below(&r, 13);
    opcase cases[] = {
        {.name = "encoder", .n_in = 2, .size = {11 * 8, 5 * 8}, .grad = {2, 2}, .out_size = 3 * 5 * 8, .B = 3, .T = 5, .C = 8, .ids = ids},
        {.name = "layernorm", .n_in = 3, .size = {7 * 13, 13, 13}, .grad = {2, 2, 2}, .out_size = 7 * 13, .N = 7, .C = 13},
        {.name = "matmul", .n_in = 3, .size = {9 * 7, 5 * 7, 5}, .grad = {1, 2, 2}, .out_size = 9 * 5, .N = 9, .C = 7, .OC = 5},
        {.name = "attention", .n_in = 1, .size = {2 * 5 * 3 * 12}, .grad = {1}, .out_size = 2 * 5 * 12, .B = 2, .T = 5, .C = 12, .NH = 3},
        {.name = "gelu", .n_in = 1, .size = {257}, .grad = {1}, .out_size = 257},
        {.name = "residual", .n_in = 2, .size = {33, 33}, .grad = {1, 1}, .out_size = 33},
        {.name = "crossentropy", .n_in = 1, .size = {24 * 16}, .grad = {1}, .out_size = 24, .N = 24, .V = 13, .Vp = 16, .ids = targets},
        {.name = "distill", .n_in = 2, .size = {24 * 16, 24 * 16}, .grad = {1, 0}, .out_size = 24, .N = 24, .V = 13, .Vp = 16, .ids = targets},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) check_case(&cases[c], &r);
    check_adamw(&r);
    check_ce_fused(&r);
    return gq_test_finish("test_ops_grad");
}
