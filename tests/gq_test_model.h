/* gq_test_model: a random GPT-2 (the trainer's initialisation) saved as a gpt2q checkpoint,
 * the starting point of the export, GGUF and runner tests. */
#ifndef GQ_TEST_MODEL_H
#define GQ_TEST_MODEL_H

#include "gpt2.h"
#include "gq_test.h"
#include "qexport.h"
#include "qplan.h"
#include "train.h"

#include <stdlib.h>

/* Create a model for (B, T) batches with cfg (padded_vocab_size filled in on return),
 * initialise it from seed and save it to path. NULL (and a failed check) on error. */
static inline gq_gpt2 *gq_test_random_ckpt(const char *path, gq_gpt2_config *cfg, int B, int T, uint64_t seed) {
    gq_gpt2 *m = NULL;
    CHECK_OK(gq_gpt2_create(&m, cfg, gq_backend_cpu(), B, T));
    if (!m) return NULL;
    *cfg = m->cfg;
    CHECK_OK(gq_gpt2_init(m, seed));
    gq_train_opts o;
    gq_train_defaults(&o);
    gq_train_state st = {0};
    CHECK_OK(gq_ckpt_save(path, m, &st, &o));
    return m;
}

static inline int gq_test_shape_cb(const char *name, int *rows, int *cols, void *ctx) {
    return gq_gpt2_shape_of((const gq_gpt2_config *)ctx, name, rows, cols);
}

/* Export the checkpoint to `out` in fmt with gpt2q-export's layer selection (NULL: the
 * linears only). A failed check on error. */
static inline void gq_test_export(const char *ckpt, const char *out, const char *fmt, const char *layers,
                                  const gq_gpt2_config *cfg) {
    gq_qplan plan;
    CHECK_OK(gq_qplan_build(&plan, fmt, layers, 0, cfg->n_layer));
    gq_export_entry *e = NULL;
    int n = 0;
    CHECK_OK(gq_export(ckpt, out, &plan, gq_test_shape_cb, (void *)cfg, &e, &n));
    free(e);
}

#endif
