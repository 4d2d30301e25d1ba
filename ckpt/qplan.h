/* qplan: which tensors get which quantization format. A plan is an ordered list of
 * (pattern, spec) rules over HF GPT-2 tensor names; the first rule that matches a 2-D weight
 * decides (biases, layernorms and wpe always stay fp32). Grammar:
 *   FORMAT                      int8 | q8_0 | int4[-gN] | int4a[-gN] | int3[-gN] | int2[-gN] |
 *                               nf4[-dq] | fp4   (default group 64, q8_0 is 32); any but
 *                               int8 / q8_0 may add -mse: each group's scale searched for the
 *                               least squared error (quant.h's gq_qsearch_group); int4, int3,
 *                               int2, nf4 and fp4 may add -lsq: QAT learns each group's scale
 *                               (quant.h's gq_lsq_*; the export takes them from the checkpoint)
 *   --layers PATTERNS           comma list; a pattern is a glob (fnmatch) over names, matched
 *                               also with "*." in front and ".weight" after, so "mlp.*",
 *                               "h.*.attn.c_attn" and "h.8-11.attn.*" (a layer range) work;
 *                               "lm_head" is the tied wte.weight
 *   presets                     all (every linear + the tied embedding), all-but-lm_head,
 *                               lm_head, last4-attn, qkv; default: every linear weight
 *   per-pattern formats         "mlp.*=int4,attn.*=int8,lm_head=int8" (mixed precision) */
#ifndef GQ_QPLAN_H
#define GQ_QPLAN_H

#include "quant.h"

#define GQ_QPLAN_MAX 64

typedef struct {
    int n;
    char pattern[GQ_QPLAN_MAX][128];
    gq_qspec spec[GQ_QPLAN_MAX];
    int n_layer; /* for presets and ranges */
} gq_qplan;

/* Parse a format name ("int4-g128", "nf4-dq", ...); group overrides when > 0. */
int gq_qformat_parse(const char *name, int group, gq_qspec *out);
const char *gq_qformat_name(gq_qformat f);
/* Build a plan: `format` is either one format for `layers` (NULL = default selection, or a
 * preset / pattern list) or a list of pattern=format rules. */
int gq_qplan_build(gq_qplan *plan, const char *format, const char *layers, int group, int n_layer);
/* Spec for a tensor name with shape (rows, cols); returns 0 (fp32) or 1 and fills *spec. */
int gq_qplan_lookup(const gq_qplan *plan, const char *name, int rows, int cols, gq_qspec *spec);

#endif
