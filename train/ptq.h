/* ptq: post-training quantization of a model into a packed HDF5 export, the whole job of
 * `gpt2q-export MODEL --format F -o OUT.h5` (and of `gpt2q-train --export F ...` at the end of a
 * run): the plan, the calibration that -mse / -gptq formats ask for, the export itself, and its
 * sizes. */
#ifndef GQ_PTQ_H
#define GQ_PTQ_H

#include "gpt2.h"
#include "qexport.h"
#include "qplan.h"

typedef struct {
    const char *model;  /* a gpt2q checkpoint, or any model gq_weights_read takes */
    const char *out;    /* the export (written atomically) */
    const char *format; /* a format, or pattern=format rules (qplan.h) */
    const char *layers; /* qplan.h's presets / patterns; NULL: every linear weight */
    int group;          /* > 0: overrides the format's group */
    const char *calib;  /* token file for -gptq (and activation-aware -mse); NULL: none */
    long calib_tokens;  /* calibration tokens of the training split (gpt2q-export's default: 32768) */
    double gptq_damp;   /* GPTQ's damping, a fraction of the mean diagonal (0 allowed; the reference's: 0.01) */
    int gptq_act_order;
    int progress;       /* calibration / GPTQ progress on stderr */
} gq_ptq_req;

typedef struct {
    gq_export_entry *e; /* every tensor written (malloc'd) */
    int n;
    long long file_bytes;        /* on disk */
    size_t payload, fp32;        /* stored payload; the same tensors in fp32 */
    size_t qweights, qbytes;     /* quantized weights and their bytes */
    double bits_per_weight;      /* 8 qbytes / qweights (0 if none) */
    long gptq_tokens;            /* calibration tokens of GPTQ (0: none) */
    int gptq_tensors;
    double gptq_seconds, gptq_seconds_calib;
} gq_ptq_res;

/* Build `plan` from format / layers / group for a model of n_layer blocks and check what the
 * formats need: -gptq needs calibration data (have_calib); --calib is only for -mse / -gptq.
 * *searched / *gptq (either may be NULL): whether any rule has -mse / -gptq. */
int gq_ptq_plan(gq_qplan *plan, const char *format, const char *layers, int group, int n_layer, int have_calib,
                int *searched, int *gptq);

/* The export of q->model by q's plan into q->out; res (may be NULL) gets its sizes. */
int gq_ptq_export(const gq_ptq_req *q, gq_ptq_res *res);
void gq_ptq_res_free(gq_ptq_res *res);

#endif
