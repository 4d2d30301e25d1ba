/* gptq_run: GPTQ over a checkpoint (gpt2q-export --format F-gptq --calib DATA). The float model
 * runs on calibration tokens (DATA's training split, in file order, windows of min(T, 256)) on
 * the CPU; the selected weights are quantized block by block as GPTQ's reference does: the
 * second moments H = sum x x^T of the inputs of block l's products come from a forward whose
 * blocks before l already hold their quantized weights (so each block corrects the error of
 * those before it), then the block's -gptq weights are quantized (kernels/gptq.h) and put back
 * into the model dequantized; the tied embedding, as the LM head, last (its input: the final
 * layernorm's output with every block quantized; the embedding lookup runs on the float
 * table throughout). */
#ifndef GQ_GPTQ_RUN_H
#define GQ_GPTQ_RUN_H

#include "gpt2.h"
#include "gptq.h"
#include "qplan.h"

typedef struct {
    char name[96];
    gq_qspec spec;
    int rows, cols;
    gq_qtensor q;     /* packed codes, scales, zeros, nf4-dq: the export writes them as they are */
    gq_gptq_opts opt; /* the damping used, and the output errors of GPTQ and of round to nearest */
} gq_gptq_tensor;

typedef struct {
    int n;
    gq_gptq_tensor *t;
    long tokens;     /* calibration tokens per pass */
    double seconds;  /* wall time */
    double seconds_calib; /* of which the calibration passes (forwards and H) */
    char desc[1200]; /* "<data> train split, N tokens, GPTQ damp D" (the export records it) */
} gq_gptq_set;

/* Quantize every weight that `plan` gives a -gptq spec; damp: GPTQ's lambda as a fraction of
 * the mean diagonal of H (0.01 is the reference's); act_order: gq_gptq_opts'. Progress and one line per tensor on stderr
 * when `progress`. */
int gq_gptq_run(gq_gptq_set *out, const char *ckpt, const gq_qplan *plan, const char *data, long tokens, double damp,
                int act_order, int progress);
/* gq_export's precomputed-tensor hook: the result for a tensor name, or NULL */
const gq_qtensor *gq_gptq_lookup(const char *name, void *set);
void gq_gptq_free(gq_gptq_set *s);

#endif
