/* QAT in the model:
 *   - straight-through estimator: with fake-quant on, the gradient reaching each latent weight
 *     equals the gradient of a float model whose weights ARE the fake-quant weights, bit for
 *     bit, except values that were clipped, whose gradient is 0;
 *   - after QAT steps, the loss of the fake-quant model equals the loss of its export read back
 *     through the dequantize path, exactly, for int4 (with clipping), nf4-dq and mixed rules.
 * On the CPU reference, or the CUDA backend with GQ_TEST_BACKEND=cuda (same claims, bit for bit). */
#define _GNU_SOURCE
#include "gpt2.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "gq_test_backend.h"
#include "qexport.h"
#include "train.h"

#include <stdlib.h>
#include <string.h>

static int shape_cb(const char *name, int *rows, int *cols, void *ctx) {
    return gq_gpt2_shape_of((const gq_gpt2_config *)ctx, name, rows, cols);
}

int main(void) {
    char dir[] = "/tmp/gq_test_qat_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    gq_gpt2_config cfg = {2, 2, 64, 32, 300, 0};
    gq_rng r;
    gq_rng_seed(&r, 21);
    int32_t in[64], tg[64];
    for (int i = 0; i < 64; i++) in[i] = (int32_t)gq_rng_below(&r, 300), tg[i] = (int32_t)gq_rng_below(&r, 300);
    const char *formats[] = {"int4", "int2", "nf4-dq", "mlp.*=int4,attn.*=int8,lm_head=q8_0"};
    const char *layers[] = {"all", "all", NULL, NULL};
    const gq_backend *be = gq_test_backend();
    printf("backend: %s\n", be->name);
    for (int f = 0; f < 4; f++) {
        gq_gpt2 *q = NULL, *ref = NULL;
        CHECK_OK(gq_gpt2_create(&q, &cfg, be, 2, 32));
        CHECK_OK(gq_gpt2_create(&ref, &cfg, be, 2, 32));
        if (!q || !ref) break;
        const size_t np = q->n_params;
        float *hq = malloc(np * 4), *hr = malloc(np * 4);
        uint8_t *hmask = malloc(np);
        CHECK_OK(gq_gpt2_init(q, 3));
        gq_qplan plan;
        CHECK_OK(gq_qplan_build(&plan, formats[f], layers[f], 0, cfg.n_layer));
        CHECK_OK(gq_gpt2_qat_enable(q, &plan));
        /* the reference: float weights equal to the fake-quant ones */
        CHECK_OK(be->copy(ref->params_mem, q->qat_mem, np * 4));
        float lq, lr;
        CHECK_OK(gq_gpt2_zero_grad(q));
        CHECK_OK(gq_gpt2_forward(q, in, tg, 2, 32, &lq));
        CHECK_OK(gq_gpt2_backward(q, 1.0f));
        CHECK_OK(gq_gpt2_qat_mask_grads(q));
        CHECK_OK(gq_gpt2_zero_grad(ref));
        CHECK_OK(gq_gpt2_forward(ref, in, tg, 2, 32, &lr));
        CHECK_OK(gq_gpt2_backward(ref, 1.0f));
        CHECK(lq == lr);
        size_t differ = 0, masked = 0;
        CHECK_OK(be->download(hq, q->grads_mem, np * 4));
        CHECK_OK(be->download(hr, ref->grads_mem, np * 4));
        memset(hmask, 1, np); /* unselected weights: the mask is never read for them */
        for (int k = 0; k < q->n_qat; k++)
            CHECK_OK(be->download(hmask + q->qat[k].offset, q->qat_mask + q->qat[k].offset,
                                  (size_t)q->qat[k].rows * q->qat[k].cols));
        for (size_t i = 0; i < np; i++) {
            float want = hmask[i] ? hr[i] : 0.0f;
            masked += !hmask[i];
            differ += memcmp(&hq[i], &want, 4) != 0;
        }
        printf("%-40s STE: %zu gradients differ, %zu clipped values masked\n", formats[f], differ, masked);
        CHECK(differ == 0);
        if (f == 1) CHECK(masked > 0); /* int2 clips */
        /* a few QAT steps, then export and compare losses */
        for (int t = 1; t <= 3; t++) {
            float norm;
            CHECK_OK(gq_gpt2_refresh_weights(q, t));
            CHECK_OK(gq_gpt2_zero_grad(q));
            CHECK_OK(gq_gpt2_forward(q, in, tg, 2, 32, &lq));
            CHECK_OK(gq_gpt2_backward(q, 1.0f));
            CHECK_OK(gq_gpt2_qat_mask_grads(q));
            CHECK_OK(gq_gpt2_grad_norm(q, &norm));
            CHECK_OK(gq_gpt2_update(q, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 1.0f));
        }
        CHECK_OK(gq_gpt2_refresh_weights(q, 4));
        CHECK_OK(gq_gpt2_forward(q, in, tg, 2, 32, &lq));
        char ckpt[256], out[256];
        snprintf(ckpt, sizeof ckpt, "%s/c.h5", dir);
        snprintf(out, sizeof out, "%s/q.h5", dir);
        gq_train_opts o;
        gq_train_defaults(&o);
        gq_train_state st = {0};
        CHECK_OK(gq_ckpt_save(ckpt, q, &st, &o));
        gq_export_entry *e = NULL;
        int n = 0;
        CHECK_OK(gq_export(ckpt, out, &plan, shape_cb, &q->cfg, &e, &n));
        free(e);
        gq_h5r *rd;
        CHECK_OK(gq_h5r_open(&rd, out));
        size_t off = 0;
        for (int i = 0; i < GQ_GPT2_N_TENSORS && rd; i++) {
            size_t rows, cols;
            gq_gpt2_tensor_shape(&q->cfg, i, &rows, &cols);
            int nl = gq_gpt2_tensor(i)->per_layer ? cfg.n_layer : 1;
            for (int l = 0; l < nl; l++) {
                char name[160];
                gq_gpt2_tensor_name(i, l, name, sizeof name);
                CHECK_OK(gq_export_read_dequant(rd, name, hr + off, (int)rows, (int)cols, NULL));
                off += rows * (cols ? cols : 1);
            }
        }
        gq_h5r_close(rd);
        CHECK_OK(be->upload(ref->params_mem, hr, np * 4));
        CHECK_OK(be->download(hq, q->qat_mem, np * 4));
        CHECK(!memcmp(hr, hq, np * 4));
        CHECK_OK(gq_gpt2_forward(ref, in, tg, 2, 32, &lr));
        printf("%-40s after 3 QAT steps: fake-quant loss %.7f, exported model %.7f\n", formats[f], lq, lr);
        CHECK(lq == lr);
        gq_gpt2_free(q);
        gq_gpt2_free(ref);
        free(hq), free(hr), free(hmask);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return gq_test_finish("test_qat");
}
