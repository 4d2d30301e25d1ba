/* gpt2q-export: post-training quantization of a model (a gpt2q checkpoint, or any model gpt2q
 * reads) into a packed HDF5 file or a GGUF file for llama.cpp, and the way back to transformers and
 * llm.c.
 *   gpt2q-export MODEL --format int4 [--group 64] [--layers PATTERNS] -o OUT.h5 [--json]
 *   gpt2q-export MODEL --format int4-gptq --calib TOKENS.h5 -o OUT.h5         (GPTQ)
 *   gpt2q-export MODEL --gguf --format q8_0|int4 --group 32 [--layers ..] [--f16] -o OUT.gguf
 *   gpt2q-export MODEL --hf [--dtype f32|f16|bf16] -o DIR          (transformers' folder)
 *   gpt2q-export MODEL --llmc -o OUT.bin                            (llm.c's model file) */
#define _POSIX_C_SOURCE 200809L
#include "bpe.h"
#include "gguf.h"
#include "gpt2_layout.h"
#include "gq_error.h"
#include "gptq_run.h"
#include "gpt2_weights.h"
#include "gq_file.h"
#include "h5io.h"
#include "hfexport.h"
#include "ptq.h"
#include "qexport.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "gpt2q-export"

static void usage(FILE *f) {
    fputs("usage: " PROG " MODEL --format FORMAT [--group N] [--layers PATTERNS] -o OUT.h5 [--json]\n"
          "  MODEL: a gpt2q checkpoint or run folder (its newest checkpoint), or any model gpt2q reads: an\n"
          "         HF model.safetensors or folder (a pretrained GPT-2), an llm.c .bin, another export (dequantized)\n"
          "  FORMAT: int8 (per row) | q8_0 | int4[-gN] | int4a[-gN] | int3[-gN] | int2[-gN] | nf4[-dq] | fp4,\n"
          "          or per-pattern rules 'mlp.*=int4,attn.*=int8,lm_head=int8'; -mse after any but int8 / q8_0\n"
          "          (int4-g32-mse, nf4-dq-mse): each group's scale searched for the least squared error\n"
          "          instead of absmax (same layout, same runner; slower to export)\n"
          "          -lsq (int3-lsq, int4-g32-lsq, ...): the scales that QAT with -lsq learned, read from\n"
          "          the checkpoint of that run (/qat/scales)\n"
          "          -gptq (int4-gptq, int3-g32-gptq, nf4-dq-gptq, int8-gptq, ...; with --calib): GPTQ, each\n"
          "          column's rounding error compensated on the columns after it, weighted by the\n"
          "          calibration inputs' second moments (block by block, each block calibrated on the\n"
          "          blocks before it already quantized); same layout, same runner\n"
          "  --calib DATA  calibration data for -mse (activation-aware search: each weight's error counts\n"
          "              by the mean square of the input channel it multiplies) and -gptq: the float model\n"
          "              runs on --calib-tokens N (default 32768) tokens of DATA's training split\n"
          "  --gptq-damp D  GPTQ's damping, a fraction of the mean diagonal (default 0.01)\n"
          "  --gptq-act-order  GPTQ takes the columns most strongly driven first, with every group's\n"
          "              scale fixed from the original weights beforehand (static groups; same layout)\n"
          "  PATTERNS: presets all | all-but-lm_head (default) | lm_head | last4-attn | qkv, or globs over\n"
          "            tensor names with layer ranges, e.g. 'h.8-11.attn.*,lm_head'\n"
          "  --gguf      write GGUF v3 for llama.cpp (arch gpt2, GPT-2 tokenizer): selected weights as Q8_0\n"
          "              (--format q8_0) or Q4_0 (--format int4 --group 32, also -mse / -lsq / -gptq), the rest F32\n"
          "              (F16 with --f16); GPTQ too (q8_0-gptq, int4-g32-gptq with --calib);\n"
          "              --vocab DIR holds encoder.json and vocab.bpe (default: the installed GPT-2 files)\n"
          "  --hf        write a Hugging Face folder OUT that transformers loads as it is (GPT2LMHeadModel,\n"
          "              AutoTokenizer): model.safetensors as save_pretrained writes it, config.json, and for\n"
          "              GPT-2's vocabulary vocab.json / merges.txt / tokenizer_config.json (from --vocab DIR);\n"
          "              --dtype f32 (default) | f16 | bf16\n"
          "  --llmc      write an llm.c model file (version 3, fp32)\n"
          "  (--hf and --llmc take no --format: the input's values as they are; a quantized export's\n"
          "  weights dequantized, as the runner computes with them)\n",
          f);
}

/* A checkpoint of a QAT run holds its float weights; what QAT trained for is the quantized file:
 * say so (stderr) before writing the float ones. */
static void qat_note(const char *in) {
    int kind;
    gq_h5r *r = NULL;
    if (gq_weights_kind(in, &kind) || kind != GQ_WEIGHTS_GPT2Q || gq_h5r_open(&r, in)) {
        gq_err_clear();
        return;
    }
    char act[16] = "";
    gq_h5r_attr_str(r, "/", "trained_activations", act, sizeof act); /* (an export of W8A8 QAT) */
    gq_h5r_close(r);
    gq_train_opts *o = malloc(sizeof *o); /* a checkpoint's options, as --resume reads them */
    if (o) gq_train_defaults(o);
    const char *qat = o && !gq_ckpt_load_opts(in, o) ? o->qat : "";
    gq_err_clear();
    if (qat[0])
        fprintf(stderr,
                "note: %s comes from QAT (qat = %s): its float master weights are written; the weights QAT "
                "trained for are the run's model-%s.h5 (or gpt2q-export CKPT --format %s): export that one\n",
                in, qat, qat, qat);
    if (!strcmp(act, "int8"))
        fprintf(stderr,
                "note: %s was trained with int8 activations (--qat-act int8): the weights are written as they "
                "are, but a float runner multiplies float activations (gpt2q-infer --act int8 scores it as trained)\n",
                in);
    free(o);
}

/* --hf / --llmc: the input's values (any file gq_weights_read takes) for transformers or llm.c */
static int export_weights(const char *in, const char *out, int hf, const char *dtype, const char *vocab, int json,
                          int quant_opts) {
    if (!in || !out) {
        usage(stderr);
        return 2;
    }
    if (hf && strcmp(out + (strlen(out) > 12 ? strlen(out) - 12 : 0), ".safetensors") == 0) {
        fprintf(stderr, PROG ": --hf writes a folder (model.safetensors, config.json, ...): give -o a folder, not %s\n",
                out);
        return 2;
    }
    if (quant_opts) {
        fprintf(stderr, PROG ": --hf / --llmc write the input's values as they are: quantize with --format first "
                        "(gpt2q-export CKPT --format F -o Q.h5), then export Q.h5\n");
        return 2;
    }
    int dt = GQ_HF_F32;
    if (dtype && !strcmp(dtype, "f16")) dt = GQ_HF_F16;
    else if (dtype && !strcmp(dtype, "bf16")) dt = GQ_HF_BF16;
    else if (dtype && strcmp(dtype, "f32")) {
        fprintf(stderr, PROG ": --dtype must be f32, f16 or bf16, not '%s'\n", dtype);
        return 2;
    }
    if (!hf && dt != GQ_HF_F32) {
        fprintf(stderr, PROG ": --llmc writes llm.c's fp32 model file (version 3); --dtype applies to --hf\n");
        return 2;
    }
    gq_gpt2_config cfg;
    float *params = NULL;
    int rc = gq_weights_config(in, &cfg);
    if (!rc && !(params = malloc(gq_gpt2_n_params(&cfg) * sizeof *params))) rc = gq_errf(GQ_ENOMEM, "out of memory");
    if (!rc) rc = gq_weights_read(in, &cfg, params);
    if (!rc && !json) qat_note(in);
    char dir[4200] = "";
    if (!rc && hf && cfg.vocab_size == 50257) { /* the tokenizer files: GPT-2's vocabulary only */
        const int vr = gq_bpe_find_dir(vocab, dir, sizeof dir);
        if (vr && vocab) rc = vr; /* an explicit --vocab must be found */
        else if (vr) dir[0] = 0;  /* none installed: the folder goes without them */
    }
    int files = 1;
    size_t bytes = 0;
    if (!rc && hf) {
        const gq_hf_opts o = {dt, dir[0] ? dir : NULL};
        rc = gq_hf_export(params, &cfg, out, &o, &files, &bytes);
    } else if (!rc) {
        rc = gq_llmc_export(params, &cfg, out, &bytes);
    }
    free(params);
    if (rc) {
        fprintf(stderr, PROG ": error: %s\n", gq_errmsg(rc));
        return 1;
    }
    static const char *dn[] = {"f32", "f16", "bf16"};
    if (json)
        printf("{\"out\": \"%s\", \"kind\": \"%s\", \"dtype\": \"%s\", \"files\": %d, \"bytes\": %zu, "
               "\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"vocab_size\": %d, \"block_size\": %d}\n",
               out, hf ? "hf" : "llmc", dn[dt], files, bytes, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size,
               cfg.block_size);
    else if (hf)
        printf("wrote %s/: model.safetensors (%s) and %d more file%s, %zu bytes: GPT-2 L%d H%d C%d, %d tokens%s\n", out,
               dn[dt], files - 1, files == 2 ? "" : "s", bytes, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size,
               files > 2                 ? ""
               : cfg.vocab_size == 50257 ? " (no tokenizer files: GPT-2's vocabulary files not found; --vocab DIR)"
                                         : " (no tokenizer files: not GPT-2's vocabulary)");
    else
        printf("wrote %s: llm.c model (version 3, fp32), %zu bytes: GPT-2 L%d H%d C%d, %d tokens (%d padded)\n", out,
               bytes, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.padded_vocab_size);
    return 0;
}

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = NULL, *layers = NULL, *vocab = NULL, *calib = NULL;
    const char *dtype = NULL;
    int group = 0, json = 0, gguf = 0, f16 = 0, hf = 0, llmc = 0;
    long calib_tokens = 32768;
    double gptq_damp = 0.01;
    int gptq_act = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--gguf")) gguf = 1;
        else if (!strcmp(a, "--f16")) f16 = 1;
        else if (!strcmp(a, "--hf")) hf = 1;
        else if (!strcmp(a, "--llmc")) llmc = 1;
        else if (!strcmp(a, "--dtype") && i + 1 < argc) dtype = argv[++i];
        else if (!strcmp(a, "--gptq-act-order")) gptq_act = 1;
        else if (!strcmp(a, "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--format") && i + 1 < argc) format = argv[++i];
        else if (!strcmp(a, "--layers") && i + 1 < argc) layers = argv[++i];
        else if (!strcmp(a, "--calib") && i + 1 < argc) calib = argv[++i];
        else if (!strcmp(a, "--calib-tokens") && i + 1 < argc) {
            char *end;
            calib_tokens = strtol(argv[++i], &end, 10);
            if (*end || calib_tokens < 1) {
                fprintf(stderr, PROG ": --calib-tokens must be a positive integer\n");
                return 2;
            }
        }
        else if (!strcmp(a, "--gptq-damp") && i + 1 < argc) {
            char *end;
            gptq_damp = strtod(argv[++i], &end);
            if (*end || !(gptq_damp >= 0.0) || gptq_damp > 1e3) {
                fprintf(stderr, PROG ": --gptq-damp must be a number from 0 to 1000\n");
                return 2;
            }
        }
        else if (!strcmp(a, "--group") && i + 1 < argc) {
            group = atoi(argv[++i]);
            if (group < 1) {
                fprintf(stderr, PROG ": --group must be a positive integer\n");
                return 2;
            }
        } else if (a[0] != '-' && !in) in = a;
        else {
            fprintf(stderr, PROG ": unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    char in_file[4096];
    int from_run = 0;
    if (in) { /* a folder stands for its model: model.safetensors, or a gpt2q-train run's newest checkpoint */
        int rc = gq_weights_resolve(in, in_file, sizeof in_file, &from_run);
        if (rc) {
            fprintf(stderr, PROG ": error: %s\n", gq_errmsg(rc));
            return 1;
        }
        if (from_run && !json) fprintf(stderr, PROG ": %s: its newest checkpoint, %s\n", in, in_file);
        in = in_file;
    }
    if (hf || llmc) return export_weights(in, out, hf, dtype, vocab, json, format || layers || gguf || calib || group);
    if (!in || !out || !format) {
        usage(stderr);
        return 2;
    }
    if (dtype) {
        fprintf(stderr, PROG ": --dtype applies to --hf (--gguf takes --f16)\n");
        return 2;
    }
    if (gguf) { /* (the GGUF writer reads any input itself) */
        gq_gpt2_config cfg = {0};
        gq_qplan plan;
        int searched = 0, gptq = 0, rc = gq_weights_config(in, &cfg);
        if (!rc) rc = gq_ptq_plan(&plan, format, layers, group, cfg.n_layer, calib != NULL, &searched, &gptq);
        if (!rc && calib && searched)
            rc = gq_errf(GQ_EINVAL, "--calib with -mse applies to the HDF5 export, not --gguf (-gptq does both)");
        for (int k = 0; !rc && k < plan.n; k++) /* (before GPTQ's work) */
            if (plan.spec[k].gptq && plan.spec[k].format != GQ_QF_Q8_0 &&
                !(plan.spec[k].format == GQ_QF_INT4 && plan.spec[k].group == 32))
                rc = gq_errf(GQ_EUNSUPPORTED, "%s group %d with GPTQ: GGUF export writes q8_0-gptq (Q8_0) or "
                             "int4-g32-gptq (Q4_0)", gq_qformat_name(plan.spec[k].format), plan.spec[k].group);
        gq_gptq_set gq = {0};
        char dir[4200];
        if (!rc) rc = gq_bpe_find_dir(vocab, dir, sizeof dir);
        if (!rc && gptq) rc = gq_gptq_run(&gq, in, &plan, calib, calib_tokens, gptq_damp, gptq_act, !json);
        gq_gguf_opts go = {f16, dir, NULL, gptq ? gq_gptq_lookup : NULL, &gq};
        int nq = 0;
        size_t bytes = 0;
        if (!rc) rc = gq_gguf_export(in, out, &plan, &go, &nq, &bytes);
        gq_gptq_free(&gq);
        if (rc) {
            fprintf(stderr, PROG ": error: %s\n", gq_errmsg(rc));
            return 1;
        }
        if (json) printf("{\"out\": \"%s\", \"gguf_bytes\": %zu, \"quantized_tensors\": %d}\n", out, bytes, nq);
        else printf("wrote %s: GGUF v3, %zu bytes, %d quantized tensors\n", out, bytes, nq);
        return 0;
    }
    const gq_ptq_req req = {in, out, format, layers, group, calib, calib_tokens, gptq_damp, gptq_act, !json};
    gq_ptq_res res;
    int rc = gq_ptq_export(&req, &res);
    if (rc) {
        fprintf(stderr, PROG ": error: %s\n", gq_errmsg(rc));
        return 1;
    }
    if (res.gptq_tensors && !json)
        fprintf(stderr, "GPTQ: %d tensors on %ld calibration tokens in %.1f s (calibration passes %.1f s)\n",
                res.gptq_tensors, res.gptq_tokens, res.gptq_seconds, res.gptq_seconds_calib);
    const gq_export_entry *e = res.e;
    const int n = res.n;
    const size_t payload = res.payload, fp32 = res.fp32, qn = res.qweights, qbytes = res.qbytes;
    if (json) {
        printf("{\"out\": \"%s\", \"file_bytes\": %lld, \"payload_bytes\": %zu, \"fp32_bytes\": %zu, "
               "\"quantized_weights\": %zu, \"quantized_bits_per_weight\": %.4f, \"tensors\": [",
               out, res.file_bytes, payload, fp32, qn, qn ? 8.0 * qbytes / qn : 0.0);
        for (int i = 0; i < n; i++)
            printf("%s{\"name\": \"%s\", \"format\": \"%s\", \"group\": %d, \"scale_search\": \"%s\", \"rows\": %d, "
                   "\"cols\": %d, \"bytes\": %zu}",
                   i ? ", " : "", e[i].name, gq_qformat_name(e[i].spec.format), e[i].spec.group,
                   e[i].spec.format == GQ_QF_F32 ? "absmax"
                   : e[i].spec.gptq            ? "gptq"
                   : e[i].spec.lsq             ? "learned"
                   : e[i].spec.search          ? "mse"
                                               : "absmax",
                   e[i].rows, e[i].cols,
                   e[i].bytes);
        printf("]}\n");
    } else {
        printf("%-28s %-10s %6s %14s %12s\n", "tensor", "format", "group", "shape", "bytes");
        for (int i = 0; i < n; i++) {
            char shape[48], fmt[32];
            snprintf(shape, sizeof shape, e[i].cols ? "[%d, %d]" : "[%d]", e[i].rows, e[i].cols);
            snprintf(fmt, sizeof fmt, "%s%s%s%s", gq_qformat_name(e[i].spec.format),
                     e[i].spec.format != GQ_QF_F32 && e[i].spec.search ? "-mse" : "",
                     e[i].spec.format != GQ_QF_F32 && e[i].spec.lsq ? "-lsq" : "",
                     e[i].spec.format != GQ_QF_F32 && e[i].spec.gptq ? "-gptq" : "");
            printf("%-28s %-10s %6d %14s %12zu\n", e[i].name, fmt,
                   e[i].spec.format == GQ_QF_F32 ? 0 : gq_qgroup(&e[i].spec, e[i].cols), shape, e[i].bytes);
        }
        printf("wrote %s: %lld bytes on disk = %zu payload + %lld HDF5 metadata; fp32 would be %zu (%.2fx smaller); "
               "quantized weights at %.3f bits each\n",
               out, res.file_bytes, payload, res.file_bytes - (long long)payload, fp32,
               (double)fp32 / (double)res.file_bytes, qn ? 8.0 * qbytes / qn : 0.0);
    }
    gq_ptq_res_free(&res);
    return 0;
}
