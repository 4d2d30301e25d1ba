/* weights: moving GPT-2 weights in and out of a gq_gpt2: Hugging Face safetensors (with or
 * without the "transformer." prefix, Conv1D (in, out) weights transposed), llm.c .bin
 * (magic 20240326, version 3, padded vocab), gpt2q checkpoints (params only), and gpt2q
 * quantized exports (dequantized to fp32 by kernels/quant.h). */
#ifndef GQ_WEIGHTS_H
#define GQ_WEIGHTS_H

#include "gpt2.h"

enum gq_weights_kind { GQ_WEIGHTS_UNKNOWN, GQ_WEIGHTS_GPT2Q, GQ_WEIGHTS_SAFETENSORS, GQ_WEIGHTS_LLMC };

int gq_weights_kind(const char *path, int *kind);
/* The architecture stored in (or beside, for config.json) a weights file. */
int gq_weights_config(const char *path, gq_gpt2_config *cfg);
/* Load parameters into a model created with gq_weights_config's config (shapes checked). */
int gq_weights_load(const char *path, gq_gpt2 *m);

#endif
