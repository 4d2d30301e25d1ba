/* gq_test_model: a random GPT-2 (the trainer's initialisation) saved as a gpt2q checkpoint,
 * the starting point of the export, GGUF and runner tests. */
#ifndef GQ_TEST_MODEL_H
#define GQ_TEST_MODEL_H

#include "gpt2.h"
#include "gq_test.h"
#include "train.h"

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

#endif
