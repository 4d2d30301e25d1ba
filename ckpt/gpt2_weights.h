/* gpt2_weights: reading GPT-2 weights from disk into a host parameter array in the canonical
 * order of gpt2_layout.h: Hugging Face safetensors (with or without the "transformer." prefix,
 * Conv1D (in, out) weights transposed, config.json beside it), llm.c .bin (magic 20240326,
 * version 3, padded vocab), gpt2q checkpoints (/params) and gpt2q quantized exports
 * (dequantized to fp32 by kernels/quant.h: the reference path). A folder holding a
 * model.safetensors (transformers' save_pretrained, gpt2q-export --hf) stands for that file. */
#ifndef GQ_GPT2_WEIGHTS_H
#define GQ_GPT2_WEIGHTS_H

#include "gpt2_layout.h"

#include <stddef.h>
#include <stdint.h>

enum gq_weights_kind { GQ_WEIGHTS_UNKNOWN, GQ_WEIGHTS_GPT2Q, GQ_WEIGHTS_SAFETENSORS, GQ_WEIGHTS_LLMC };

/* The file a model path names: a file as it is; a folder's model.safetensors (transformers'
 * save_pretrained, gpt2q-export --hf) or else its newest checkpoint (a gpt2q-train run folder;
 * *run = 1 then, may be NULL). A folder with neither is an error naming it. */
int gq_weights_resolve(const char *path, char *out, size_t size, int *run);
/* The newest complete checkpoint of a run folder (ckpt-<step>.h5 exactly: temp files are not):
 * its path and step; GQ_ENOENT if the folder cannot be read or holds none. */
int gq_run_newest(const char *dir, char *path, size_t size, int64_t *step);

int gq_weights_kind(const char *path, int *kind);
/* The architecture stored in (or beside, for config.json) a weights file. */
int gq_weights_config(const char *path, gq_gpt2_config *cfg);
/* Read every parameter (gq_gpt2_n_params(cfg) floats) into host; the file's config must equal
 * cfg. Non-finite values are an error naming the file. */
int gq_weights_read(const char *path, const gq_gpt2_config *cfg, float *host);

#endif
