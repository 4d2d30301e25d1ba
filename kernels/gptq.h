/* gptq: post-training quantization with second-order error compensation (GPTQ: Frantar,
 * Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative
 * Pre-trained Transformers", ICLR 2023). Round to nearest quantizes each weight alone; GPTQ
 * quantizes a weight matrix W (rows = outputs, cols = inputs) one input column at a time and
 * moves each column's rounding error onto the columns not yet quantized, weighted by the
 * inverse of H = sum over calibration inputs x of x x^T, so that the layer's OUTPUT on those
 * inputs, sum |(W - Q) x|^2 = tr((W - Q) H (W - Q)^T), stays small rather than |W - Q|^2.
 *
 * The quantizer of each column is the format's own (kernels/quant.h: gq_qgroup_params /
 * gq_qgroup_code for the group formats, the int8 per-row rule), so the result is an ordinary
 * gq_qtensor: the same file layout and runner, only other codes (and scales: a group's scale is
 * the format's rule over the group's values as they stand, error updates included, when its
 * first column comes up, as GPTQ's grouped variant does). nf4's double quantization applies to
 * the scales afterwards, as in gq_quantize. Everything runs in double except the quantizer,
 * which sees each value rounded to fp32 as a weight is stored.
 *
 * Differences from the reference implementation: a column whose input never fires (H_jj = 0) keeps its weights (the reference zeroes them; here
 * it is rounded alone), and a group's scale sees the updates of the columns before it in the
 * same block of 128 (the reference's sees only the previous blocks'). Host code; the trailing
 * updates go through cblas_dgemm. */
#ifndef GQ_GPTQ_H
#define GQ_GPTQ_H

#include "quant.h"

typedef struct {
    double damp;     /* lambda = damp * mean(diag H) added to the diagonal (reference: 0.01) */
    int act_order;   /* 1: the columns in descending H_jj ("act-order", the reference's desc_act),
                        with static groups: every group's parameters from the original weights
                        before the first column (the layout keeps groups in place); 0: in order */
    double damp_used; /* out: the damping that made H positive definite (damp, x10 per retry) */
    double err_rtn;  /* out: tr(D H D^T) / tr(W H W^T) for D = W - RTN(W), H as given */
    double err_gptq; /* out: the same for GPTQ's weights */
} gq_gptq_opts;

/* Why GPTQ cannot quantize with this spec a (rows, cols) tensor, or NULL */
const char *gq_gptq_problem(const gq_qspec *s, int rows, int cols);

/* Quantize w (rows, cols) by GPTQ with the Hessian H (cols x cols, symmetric, row-major; any
 * positive multiple of sum x x^T). q as gq_quantize's (packed codes, scales, zeros, nf4-dq).
 * wq (may be NULL): rows * cols, the dequantized result (the file's values).
 * Returns 0; -1 if a weight is not finite (*bad = its index); -2 if H has a value that is not
 * finite or stays indefinite after damping up to 1e5 x the mean diagonal; -3 out of memory. */
int gq_gptq_quantize(const gq_qspec *s, const float *w, int rows, int cols, const double *H, gq_gptq_opts *o,
                     gq_qtensor *q, float *wq, size_t *bad);

/* tr(D H D^T) for D = a - b (rows, cols), H (cols x cols): the squared output error of a
 * product whose inputs have second moments H. */
double gq_gptq_output_error(const float *a, const float *b, int rows, int cols, const double *H);

#endif
