/* model_cuda (infer/): the runner's GPU path behind gq_im_plan / gq_im_forward when
 * m->device == GQ_IM_CUDA (model_cuda.c; a build without CUDA refuses it with a message). */
#ifndef GQ_INFER_MODEL_CUDA_H
#define GQ_INFER_MODEL_CUDA_H

#include "model.h"

/* 1 if this build has the CUDA backend and a device is present */
int gq_imc_available(void);
/* Upload the weights (first call) and plan the device run state for m's host plan (B = 1). */
int gq_imc_plan(gq_im *m);
/* gq_im_forward on the GPU for one sequence: the last token's pick in m->next_token (greedy, or
 * sampled with m->temperature / top_k / top_p and draw m->sample_draw of the Philox stream
 * m->sample_seed: infer/sample.h's rule;
 * -1 when the device left it to the host) and its logits in m->logits (host; not downloaded
 * when m->skip_logits and the device picked); with targets, the loss sums as on the CPU. */
int gq_imc_forward(gq_im *m, const int32_t *tokens, int n, int pos, const int32_t *targets, double *loss_sum,
                   long *n_scored);
void gq_imc_free(struct gq_im_cuda *c);
/* The device's copy bandwidth (read + write bytes/s) and its memory in use (total - free). */
int gq_imc_copy_bandwidth(double *bytes_per_s);
int gq_imc_mem_used(size_t *bytes);

#endif
