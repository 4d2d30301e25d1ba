/* weights: loading a weights file (any kind gpt2_weights.h reads) into a gq_gpt2. */
#ifndef GQ_WEIGHTS_H
#define GQ_WEIGHTS_H

#include "gpt2.h"
#include "gpt2_weights.h"

/* Load parameters into a model created with gq_weights_config's config (shapes checked). */
int gq_weights_load(const char *path, gq_gpt2 *m);

#endif
