/* qexport: post-training quantization of a checkpoint's parameters into a packed HDF5 file,
 * and reading such a file back (format "gpt2q-quantized", docs/FORMAT.md). The math is
 * kernels/quant.h's, so the dequantized weights equal fake-quant's bit for bit. */
#ifndef GQ_QEXPORT_H
#define GQ_QEXPORT_H

#include "gpt2_layout.h"
#include "h5io.h"
#include "qplan.h"

typedef struct {
    char name[160];
    gq_qspec spec; /* format GQ_QF_F32 for tensors kept in fp32 */
    int rows, cols; /* cols 0 for vectors */
    size_t bytes;   /* payload bytes stored (codes, scales, zeros, second-level scales) */
} gq_export_entry;

/* Expected (rows, cols) of a parameter name under the checkpoint's config; return nonzero if
 * the name is unknown. Supplied by the caller (the model knows its tensors). */
typedef int (*gq_shape_fn)(const char *name, int *rows, int *cols, void *ctx);

/* Quantize the /params of `ckpt_path` by `plan` into `out_path` (atomic). entries (malloc'd)
 * describe every tensor written. Errors name the file and tensor; a plan that selects
 * nothing is an error. */
int gq_export(const char *ckpt_path, const char *out_path, const gq_qplan *plan, gq_shape_fn shape, void *ctx,
              gq_export_entry **entries, int *n_entries);

/* What gq_export would find before it reads a value: the first tensor the plan gives a format
 * that does not fit its shape (GQ_ESHAPE), or a plan that selects nothing (GQ_EINVAL), for a model
 * of config cfg. */
int gq_export_check(const gq_qplan *plan, const gq_gpt2_config *cfg);

/* Export with hooks (any may be NULL):
 * - imp(name, imp_ctx): for the tensors whose scales are searched (-mse), one importance per
 *   input channel (cols floats; NULL: none), weighting each weight's squared error in the
 *   search (gpt2q-export --calib: the mean square of the activation it multiplies);
 * - pre(name, pre_ctx): for the tensors with -gptq, the tensor GPTQ quantized (train/gptq_run.h),
 *   written as it is; a -gptq tensor without one is an error;
 * - calib: recorded as the root attribute `calibration`;
 * - params, cfg: the weights in gpt2_layout's canonical order (gq_weights_read: an HF model, an
 *   llm.c file, another export dequantized) instead of the HDF5 checkpoint's /params; the file
 *   at ckpt_path is then not opened (no learned scales, no training options) and only named. */
typedef const float *(*gq_imp_fn)(const char *name, void *imp_ctx);
typedef const gq_qtensor *(*gq_pre_fn)(const char *name, void *pre_ctx);
typedef struct {
    gq_imp_fn imp;
    void *imp_ctx;
    gq_pre_fn pre;
    void *pre_ctx;
    const char *calib;
    const float *params;
    const gq_gpt2_config *cfg;
} gq_export_hooks;
int gq_export_with(const char *ckpt_path, const char *out_path, const gq_qplan *plan, gq_shape_fn shape, void *ctx,
                   const gq_export_hooks *hooks, gq_export_entry **entries, int *n_entries);

/* The spec of an exported tensor (GQ_QF_F32 for a tensor kept in fp32), checked against
 * its expected (rows, cols): an unknown format or a group that does not fit is an error. */
int gq_export_tensor_spec(gq_h5r *r, const char *name, int rows, int cols, gq_qspec *spec);

/* Read one tensor of an exported file and dequantize it into dst (rows * max(cols,1)). */
int gq_export_read_dequant(gq_h5r *r, const char *name, float *dst, int rows, int cols, gq_qspec *spec_out);

#endif
