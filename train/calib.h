/* calib: activation statistics for activation-aware quantization (gpt2q-export --calib). The
 * float model runs on calibration tokens (the token file's training split, in file order) on
 * the CPU, and every weight that a quantization plan can select gets one importance per input
 * channel: the mean square of the activation that channel multiplies (llama.cpp's "importance
 * matrix" diagonal). The searched scales (-mse) then minimize sum_c imp_c (w_c - q_c)^2 per
 * group, an estimate of the error in the product's output, rather than the weights' own. */
#ifndef GQ_CALIB_H
#define GQ_CALIB_H

#include "gpt2.h"

typedef struct {
    gq_gpt2_config cfg;
    float *imp;       /* gq_gpt2_calib_size(cfg) values, gq_gpt2_calib_offset's layout */
    long tokens;      /* tokens seen */
    char desc[1200];  /* "<data> train split, N tokens" (the export records it) */
} gq_calib;

/* Run the checkpoint's float model over `tokens` tokens of `data` (windows of min(T, the
 * model's block size)); progress on stderr when `progress`. */
int gq_calib_collect(gq_calib *c, const char *ckpt, const char *data, long tokens, int progress);
/* gq_imp_fn for gq_export_imp: the importances of a tensor by its name, or NULL. */
const float *gq_calib_lookup(const char *name, void *calib);
void gq_calib_free(gq_calib *c);

#endif
