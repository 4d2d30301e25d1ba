/* train: the training loop (see train.h). One optimizer step = grad_accum micro-batches of
 * (batch, seq) tokens, global-norm clipping as torch.nn.utils.clip_grad_norm_, AdamW. Every
 * step appends one JSON line to <out>/train.jsonl; a resumed run first drops the lines after
 * its checkpoint, so the log reads as one uninterrupted run. */
#define _DEFAULT_SOURCE
#include "train.h"

#include "bpe.h"
#include "gq_error.h"
#include "gq_file.h"
#include "gq_progress.h"
#include "gq_sha256.h"
#include "prepare.h"
#include "shard.h"
#include "tokfile.h"
#include "gpt2_weights.h"
#include "ptq.h"
#include "qexport.h"
#include "weights.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef GQ_HAVE_CUDA
#include "cuda_ops.h"
#endif

void openblas_set_num_threads(int num_threads);

double gq_train_flops_per_token(size_t n_params, const gq_gpt2_config *c, int T) {
    return 6.0 * (double)n_params + 12.0 * c->n_layer * c->n_embd * (double)T;
}

double gq_train_peak_flops(const char *gpu_name, const char *precision) {
    const char *env = getenv("GQ_PEAK_TFLOPS");
    if (env && *env) {
        char *end;
        double t = strtod(env, &end);
        if (*end == '\0' && t > 0) return t * 1e12;
    }
    /* dense (no sparsity) fp32 / tf32 / bf16 tensor rates of NVIDIA's datasheets, rounded as
     * bench/torch_train_gpu.py has them; the NVL parts (other clocks) are left unknown */
    static const struct {
        const char *name, *not_name;
        double fp32, tf32, bf16;
    } gpus[] = {{"H100 PCIe", NULL, 51.2e12, 378e12, 756e12},
                {"H100", "NVL", 67e12, 495e12, 989e12}, /* SXM5 */
                {"H200", "NVL", 67e12, 495e12, 989e12}, /* SXM */
                {"A100", NULL, 19.5e12, 156e12, 312e12}};
    for (size_t i = 0; gpu_name && i < sizeof gpus / sizeof *gpus; i++) {
        if (!strstr(gpu_name, gpus[i].name) || (gpus[i].not_name && strstr(gpu_name, gpus[i].not_name))) continue;
        return !strcmp(precision, "fp32") ? gpus[i].fp32 : !strcmp(precision, "tf32") ? gpus[i].tf32
               : !strcmp(precision, "bf16")                                          ? gpus[i].bf16
                                                                                      : 0.0;
    }
    return 0.0;
}

/* The backend --device names: cpu, cuda, or auto (cuda when this build has it and a GPU is
 * present). *what describes it for the log. */
static int pick_backend(const char *device, const gq_backend **be, char *what, size_t size) {
    int want_cuda = !strcmp(device, "cuda"), is_auto = !strcmp(device, "auto");
    if (!want_cuda && !is_auto && strcmp(device, "cpu"))
        return gq_errf(GQ_EINVAL, "device = '%s': expected cpu, cuda or auto", device);
#ifdef GQ_HAVE_CUDA
    if (want_cuda || is_auto) {
        if (gq_cuda_device_count() > 0) {
            char name[256];
            int rc = gq_cuda_device_name(name, sizeof name);
            if (rc) return rc;
            *be = gq_backend_cuda();
            snprintf(what, size, "cuda (%s)", name);
            return GQ_OK;
        }
        if (want_cuda) return gq_errf(GQ_ENODEVICE, "device = cuda: no CUDA GPU is visible (use --device cpu or auto)");
    }
#else
    if (want_cuda) return gq_errf(GQ_ENODEVICE, "device = cuda: this build has no CUDA backend (nvcc was not found)");
#endif
    *be = gq_backend_cpu();
    snprintf(what, size, "cpu");
    return GQ_OK;
}

/* batch = max (o->batch 0): the largest micro-batch whose planned device memory (the model,
 * a distillation teacher, the working weights of bf16 or QAT, and in bf16 the scratch the
 * products make: with bf16 operands the fp32 result of the MLP's first product before it is
 * rounded (the logits and their gradient are bf16 in the plan), without them the logits' gradient and the
 * tied embedding rounded to bf16 copies) fits 90 % of what the device reports free, less 1 GiB for cuBLAS and the backend's
 * other scratch; at most 4096. GPU only. */
static int resolve_max_batch(gq_train_opts *o, const gq_backend *be, int mode) {
    if (o->batch) return GQ_OK;
#ifdef GQ_HAVE_CUDA
    size_t free_b = 0, total_b = 0;
    if (strcmp(be->name, "cuda"))
        return gq_errf(GQ_EINVAL, "batch = max needs the GPU (device %s): give a number", be->name);
    int rc = gq_cuda_mem_info(&free_b, &total_b);
    if (rc) return rc;
    const double budget = 0.9 * (double)free_b - 1073741824.0;
    const int work = mode == GQ_MATMUL_BF16 || o->qat[0], teacher = o->distill > 0, ops16 = be->bf16_operands();
    const size_t Vp = (size_t)o->model.padded_vocab_size, C = (size_t)o->model.n_embd;
    int best = 0; /* (the plan grows with the batch; a plan is arithmetic, no allocation) */
    for (int b = 1; b <= 4096; b++) {
        const double need = (double)gq_gpt2_plan_bytes(&o->model, be, b, o->seq, work) +
                            (teacher ? (double)gq_gpt2_plan_bytes(&o->model, be, b, o->seq, 0) : 0) +
                            (mode != GQ_MATMUL_BF16 ? 0
                             : ops16             ? 16.0 * (double)b * o->seq * C
                                                 : 2.0 * ((double)b * o->seq + C) * Vp);
        if (need > budget) break;
        best = b;
    }
    if (!best)
        return gq_errf(GQ_ENOMEM, "batch = max: not even one sequence of %d tokens fits the GPU's %.2f GiB free",
                       o->seq, free_b / 1073741824.0);
    o->batch = best;
    printf("batch = max: %d sequences of %d tokens (planned %.2f GiB of the GPU's %.2f GiB free)\n", best, o->seq,
           ((double)gq_gpt2_plan_bytes(&o->model, be, best, o->seq, work) +
            (teacher ? (double)gq_gpt2_plan_bytes(&o->model, be, best, o->seq, 0) : 0)) / 1073741824.0,
           free_b / 1073741824.0);
    return GQ_OK;
#else
    (void)mode;
    return gq_errf(GQ_EINVAL, "batch = max needs the GPU (device %s): give a number", be->name);
#endif
}

typedef struct {
    gq_train_opts *o;
    gq_gpt2 *m;
    gq_gpt2 *teacher; /* distillation (forward only) */
    gq_loader *train, *val;
    gq_loader_state val_start;
    gq_bpe *bpe;
    int32_t *inputs, *targets; /* grad_accum micro-batches */
    long long *micro_scored;   /* scored targets of each */
    int log_fd; /* train.jsonl, appended line by line (log_line); -1: not open */
    char log_path[4400];
    int tty;
    char data_path[4400]; /* the one token file trained on ("" for several): --export's GPTQ calibration */
} run;

static int split_paths(const char *spec, char ***out, int *n) {
    int cap = 1;
    for (const char *p = spec; *p; p++) cap += *p == ',';
    char **v = calloc((size_t)cap, sizeof *v);
    char *copy = strdup(spec), *save = NULL;
    *n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) v[(*n)++] = strdup(tok);
    free(copy);
    *out = v;
    return *n ? GQ_OK : gq_errf(GQ_EINVAL, "no training data: pass --data tokens.h5");
}

static void free_paths(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Plain text among the inputs: tokenize everything (text and shards) once into a token file
 * cached in the run folder, keyed by the inputs' names, sizes and modification times. */
static int tokenize_text_inputs(run *r, char **paths, int n, char *cache, size_t cache_size) {
    int any_text = 0, any_h5 = 0;
    char key[8192] = "";
    size_t kl = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) return gq_errf(GQ_ENOENT, "%s: cannot open: no such file or not readable", paths[i]);
        uint8_t head[8] = {0};
        size_t got = fread(head, 1, 8, f);
        fclose(f);
        any_h5 |= gq_is_hdf5(head, got);
        any_text |= !gq_is_hdf5(head, got) && !gq_shard_has_magic(head, got);
        struct stat st;
        stat(paths[i], &st);
        kl += (size_t)snprintf(key + kl, sizeof key - (kl < sizeof key ? kl : sizeof key), "%s|%lld|%lld;", paths[i],
                               (long long)st.st_size, (long long)st.st_mtime);
    }
    const char *jsonl = r->o->data_jsonl[0] ? r->o->data_jsonl : NULL;
    const char *prompt = r->o->data_jsonl_prompt[0] ? r->o->data_jsonl_prompt : NULL;
    if (prompt && !jsonl) return gq_errf(GQ_EINVAL, "data_jsonl_prompt needs data_jsonl (the completion's field)");
    if (prompt && !strcmp(prompt, jsonl)) return gq_errf(GQ_EINVAL, "data_jsonl_prompt and data_jsonl name the same field");
    const char *parts[4] = {jsonl ? "jsonl:" : "", jsonl ? jsonl : "", prompt ? "|prompt:" : "", prompt ? prompt : ""};
    for (int p = 0; p < 4; p++) /* another cache for other fields */
        for (const char *c = parts[p]; *c && kl + 1 < sizeof key; c++) key[kl++] = *c, key[kl] = '\0';
    cache[0] = '\0';
    if (!any_text) return GQ_OK;
    if (any_h5) return gq_errf(GQ_EINVAL, "--data mixes text files with a token file; give one token file, or text/shards");
    char hex[65];
    gq_sha256_hex(key, strlen(key), hex);
    snprintf(cache, cache_size, "%s/tokens-%.16s.h5", r->o->out, hex);
    if (gq_file_exists(cache)) {
        printf("data: using the cached token file %s\n", cache);
        return GQ_OK;
    }
    gq_bpe *bpe;
    int rc = gq_bpe_load_dir(&bpe, NULL);
    if (rc) return rc;
    gq_prepare_opts po = {(const char *const *)paths, n, cache, 0.05, 4096, r->o->threads, 0, jsonl, prompt};
    gq_prepare_report rep;
    rc = gq_prepare(bpe, &po, &rep);
    gq_bpe_free(bpe);
    if (rc) return rc;
    printf("data: tokenized %zu bytes into %zu tokens (%zu train, %zu val) in %.1f s, cached in %s\n", rep.bytes,
           rep.tokens, rep.n_train, rep.n_val, rep.seconds, cache);
    if (rep.masked)
        printf("data: loss mask: %zu of %zu train and %zu of %zu val targets scored (prompts left out)\n",
               rep.n_train_scored, rep.n_train, rep.n_val_scored, rep.n_val);
    free(rep.sources);
    return GQ_OK;
}

static int open_data(run *r) {
    char **paths;
    int n, rc = split_paths(r->o->data, &paths, &n);
    if (rc) return rc;
    char cache[4400];
    if ((rc = tokenize_text_inputs(r, paths, n, cache, sizeof cache))) {
        free_paths(paths, n);
        return rc;
    }
    if (cache[0]) {
        free_paths(paths, n);
        n = 1;
        paths = calloc(1, sizeof *paths);
        paths[0] = strdup(cache);
    }
    if (n == 1) snprintf(r->data_path, sizeof r->data_path, "%s", paths[0]);
    gq_loader_config tc = {r->o->batch, r->o->seq, r->o->shuffle, r->o->seed, "train", 0};
    rc = gq_loader_open(&r->train, (const char *const *)paths, n, &tc);
    if (!rc && gq_loader_vocab_size(r->train) != r->o->model.vocab_size)
        rc = gq_errf(GQ_EVOCAB, "%s: vocabulary of %d tokens, the model has %d", paths[0], gq_loader_vocab_size(r->train),
                     r->o->model.vocab_size);
    if (!rc && gq_loader_masked(r->train))
        printf("data: %s has a loss mask: the prompts' tokens are left out of the loss\n", paths[0]);
    if (!rc) {
        gq_loader_config vc = {r->o->batch, r->o->seq, 0, 0, "val", 0};
        int vrc = gq_loader_open(&r->val, (const char *const *)paths, n, &vc);
        if (vrc) {
            fprintf(stderr, "gpt2q-train: note: no validation windows (%s); validation loss is skipped\n", gq_errmsg(vrc));
            r->val = NULL;
        } else {
            gq_loader_get_state(r->val, &r->val_start);
        }
    }
    free_paths(paths, n);
    return rc;
}

/* Mean loss over the first eval_batches validation batches, or over every whole batch of
 * the validation split when `full` (the final evaluation). */
static int evaluate(run *r, int full, float *val_loss) {
    *val_loss = NAN;
    if (!r->val) return GQ_OK;
    int rc = gq_loader_set_state(r->val, &r->val_start);
    const int B = r->o->batch;
    /* windows scored: eval_batches whole batches, or (full) every window of the split, the
     * last batch partial, as gpt2q-infer eval scores them */
    uint64_t windows = gq_loader_windows(r->val), want = (uint64_t)r->o->eval_batches * (uint64_t)B;
    if (!full && want < windows) windows = want;
    if (windows < 1) windows = 1;
    double sum = 0, scored = 0; /* each batch's mean weighted by its scored targets (a loss mask leaves some out) */
    for (uint64_t w = 0; w < windows && !rc; w += (uint64_t)B) {
        const int Bn = windows - w < (uint64_t)B ? (int)(windows - w) : B;
        float l = 0;
        rc = gq_loader_next(r->val, r->inputs, r->targets);
        if (!rc) rc = gq_gpt2_forward(r->m, r->inputs, r->targets, Bn, r->o->seq, &l);
        sum += (double)l * r->m->n_targets;
        scored += r->m->n_targets;
    }
    *val_loss = scored > 0 ? (float)(sum / scored) : NAN;
    return rc;
}

/* Greedy continuation of <|endoftext|>, printed on one line. */
static int sample(run *r, int step) {
    if (!r->bpe || r->o->sample_len <= 0) return GQ_OK;
    const int V = r->m->cfg.vocab_size, T = r->o->seq;
    int32_t *tok = r->inputs;
    int n = 1, rc = GQ_OK;
    tok[0] = V > GQ_GPT2_EOT ? GQ_GPT2_EOT : 0;
    float *logits = malloc((size_t)r->m->cfg.padded_vocab_size * sizeof *logits);
    gq_ids out = {0};
    for (int k = 0; k < r->o->sample_len && !rc; k++) {
        int ctx = n < T ? n : T;
        rc = gq_gpt2_forward(r->m, tok + (n - ctx), NULL, 1, ctx, NULL);
        if (!rc) rc = gq_gpt2_logits(r->m, 0, ctx - 1, logits);
        int best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        if (n < r->o->batch * T) tok[n++] = best;
        gq_ids_push(&out, best);
    }
    gq_bytes text = {0};
    if (!rc) rc = gq_bpe_decode(r->bpe, out.ids, out.n, &text);
    if (!rc) {
        if (r->tty) fputc('\n', stdout);
        printf("sample at step %d: \"", step);
        for (size_t i = 0; i < text.n; i++) {
            unsigned char c = text.data[i];
            if (c == '\n') fputs("\\n", stdout);
            else if (c == '"' || c == '\\') printf("\\%c", c);
            else if (c < 32) printf("\\x%02x", c);
            else fputc(c, stdout);
        }
        printf("\"\n");
        fflush(stdout);
    }
    gq_bytes_free(&text);
    gq_ids_free(&out);
    free(logits);
    return rc;
}

/* Keep train.jsonl lines with "step" <= keep_step (for a resumed run); no file: nothing to keep. */
static int truncate_log(const char *path, int64_t keep_step) {
    uint8_t *data;
    size_t len, kept = 0;
    if (!gq_file_exists(path) || gq_read_file(path, &data, &len)) return GQ_OK;
    char *save = NULL, *out = (char *)data; /* kept lines move down in place */
    for (char *line = strtok_r((char *)data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        long long s;
        const size_t n = strlen(line);
        if (sscanf(line, "{\"step\": %lld", &s) == 1 && s <= keep_step && line[n - 1] == '}')
            memmove(out + kept, line, n), kept += n, out[kept++] = '\n';
    }
    int rc = gq_write_file(path, out, kept);
    free(data);
    return rc;
}

/* One line appended to train.jsonl whole or not at all: a failed write (disk full) is cut off
 * again, so the log never ends in half a line. */
static int log_line(run *r, const char *line) {
    const size_t len = strlen(line);
    struct stat sb;
    if (fstat(r->log_fd, &sb) != 0) return gq_errf(GQ_EIO, "%s: %s", r->log_path, strerror(errno));
    const ssize_t n = write(r->log_fd, line, len);
    if (n == (ssize_t)len) return GQ_OK;
    const int err = n < 0 ? errno : ENOSPC;
    if (ftruncate(r->log_fd, sb.st_size) != 0) { /* nothing more to do: the error below stands */
    }
    return gq_errf(GQ_EIO, "%s: writing failed (disk full?): %s", r->log_path, strerror(err));
}

static void prune_checkpoints(const char *dir, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    long long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        long long s;
        char tail[8];
        if (sscanf(e->d_name, "ckpt-%lld.h%1[5]%1s", &s, tail, tail + 2) == 2) steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer >= keep) {
            char p[4400];
            snprintf(p, sizeof p, "%s/ckpt-%08lld.h5", dir, steps[i]);
            unlink(p);
        }
    }
}

static int save(run *r, const gq_train_state *st, char *last_path, size_t size) {
    char p[4400];
    snprintf(p, sizeof p, "%s/ckpt-%08lld.h5", r->o->out, (long long)st->step);
    int rc = gq_ckpt_save(p, r->m, st, r->o);
    if (rc) return rc;
    snprintf(last_path, size, "%s", p);
    prune_checkpoints(r->o->out, r->o->keep);
    return GQ_OK;
}

static void fmt_time(char *buf, size_t size, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, size, "?");
    else if (s >= 3600) snprintf(buf, size, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, size, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, size, "%.0fs", s);
}

/* loss.dat, val_loss.dat and loss.svg from train.jsonl (gnuplot; a missing gnuplot is only a
 * warning); each written whole or not at all. */
static int write_chart(const char *out) {
    char jsonl[4400], dat[4400], vdat[4400], svg[4400], script[12000];
    snprintf(jsonl, sizeof jsonl, "%s/train.jsonl", out);
    snprintf(dat, sizeof dat, "%s/loss.dat", out);
    snprintf(vdat, sizeof vdat, "%s/val_loss.dat", out);
    snprintf(svg, sizeof svg, "%s/loss.svg", out);
    char *t = NULL, *v = NULL;
    size_t tn = 0, vn = 0;
    FILE *in = fopen(jsonl, "r"), *ft = open_memstream(&t, &tn), *fv = open_memstream(&v, &vn);
    char line[4096];
    int n_val = 0;
    while (in && ft && fv && fgets(line, sizeof line, in)) {
        long long s;
        double l;
        if (sscanf(line, "{\"step\": %lld, \"loss\": %lf", &s, &l) == 2) fprintf(ft, "%lld %.6f\n", s, l);
        char *vl = strstr(line, "\"val_loss\": ");
        if (vl && sscanf(vl + 12, "%lf", &l) == 1) fprintf(fv, "%lld %.6f\n", s, l), n_val++;
    }
    if (in) fclose(in);
    if (ft) fclose(ft);
    if (fv) fclose(fv);
    int rc = !t || !v ? gq_errf(GQ_ENOMEM, "out of memory") : gq_write_file(dat, t, tn);
    if (!rc) rc = gq_write_file(vdat, v, vn);
    free(t), free(v);
    if (rc) return rc;
    snprintf(script, sizeof script,
             "set title 'gpt2q-train: loss'; set xlabel 'step'; set ylabel 'cross-entropy (nats)'; set grid;"
             " plot '%s' using 1:2 with lines lw 1 lc rgb '#7aa6da' title 'train'%s%s%s",
             dat, n_val ? ", '" : "", n_val ? vdat : "", n_val ? "' using 1:2 with linespoints lw 2 lc rgb '#c82829' title 'validation'" : "");
    rc = gq_gnuplot_svg(svg, 800, 480, script);
    if (rc == GQ_EUNSUPPORTED) {
        fprintf(stderr, "gpt2q-train: warning: gnuplot failed; no %s (the data is in %s)\n", svg, dat);
        return GQ_OK;
    }
    return rc;
}

static void print_qat(const gq_gpt2 *m) {
    size_t n = 0;
    for (int k = 0; k < m->n_qat; k++) n += (size_t)m->qat[k].rows * m->qat[k].cols;
    printf("QAT: %d weights (%.2fM values) trained through fake-quant, e.g. %s as %s group %d%s\n", m->n_qat, n / 1e6,
           m->qat[0].name, gq_qformat_name(m->qat[0].spec.format), gq_qgroup(&m->qat[0].spec, m->qat[0].cols),
           m->qat_act8 ? "; their inputs as int8 (blocks of 32)" : "");
    if (m->n_lsq)
        printf("QAT: %zu group scales learned (LSQ), starting from the format's rule, learning rate x %g\n", m->n_lsq,
               (double)m->lsq_lr);
}

static int shape_of(const char *name, int *rows, int *cols, void *ctx) {
    return gq_gpt2_shape_of((const gq_gpt2_config *)ctx, name, rows, cols);
}

/* path <- the printf-formatted text, written whole or not at all (gq_write_file) */
static int write_formatted(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int write_formatted(const char *path, const char *fmt, ...) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return gq_errf(GQ_ENOMEM, "out of memory");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    int rc = gq_write_file(path, text, len);
    free(text);
    return rc;
}

/* The end of a QAT run: the deployable export beside the checkpoint, and the comparison of
 * the float starting point, its RTN PTQ in the same format, and the QAT model on the whole
 * validation split (printed, and qat_report.json in the run folder). */
static int qat_report(run *r, const gq_qplan *plan, const char *ckpt, float qat_loss) {
    gq_train_opts *o = r->o;
    char out[4400], fmt[64];
    snprintf(fmt, sizeof fmt, "%.40s", strchr(o->qat, '=') ? "mixed" : o->qat);
    snprintf(out, sizeof out, "%s/model-%s.h5", o->out, fmt);
    gq_export_entry *e = NULL;
    int n = 0, rc = gq_export(ckpt, out, plan, shape_of, &r->m->cfg, &e, &n);
    if (rc) return rc;
    size_t qbytes = 0, fbytes = 0;
    for (int i = 0; i < n; i++) qbytes += e[i].bytes, fbytes += (size_t)e[i].rows * (e[i].cols ? e[i].cols : 1) * 4;
    free(e);
    char jpath[4400];
    snprintf(jpath, sizeof jpath, "%s/qat_report.json", o->out);
    if (!o->final_eval || !r->val) { /* the caller scores the export itself, or nothing to score on: no rows */
        printf("QAT export: %s (%.1f MB; not scored here: %s)\n", out, qbytes / 1e6,
               r->val ? "final_eval = 0" : "no validation split");
        return write_formatted(jpath, "{\"format\": \"%s\", \"export\": \"%s\", \"bytes\": %zu, \"rows\": []}\n", o->qat,
                               out, qbytes);
    }
    float start = NAN, ptq = NAN;
    const char *start_name = o->init[0] ? o->init : "(this run's latent fp32 weights)";
    if (o->init[0]) { /* reload the starting point into the latent weights */
        if ((rc = gq_weights_load(o->init, r->m))) return rc;
    }
    rc = gq_gpt2_set_fakequant(r->m, 0); /* the latent weights */
    if (!rc) rc = evaluate(r, 1, &start);
    if (!rc) rc = gq_gpt2_set_lsq(r->m, 0); /* (learned scales: the format's rule instead) */
    if (!rc) rc = gq_gpt2_set_fakequant(r->m, 1); /* RTN of the starting point */
    if (!rc) rc = evaluate(r, 1, &ptq);
    if (rc) return rc;
    /* (a gap under GAP_MIN nats is run-to-run noise on the demo corpus, 0.001-0.0024: no share of it is reported) */
    const double GAP_MIN = 1e-3;
    double gap = ptq - start, recovered = gap > GAP_MIN ? (ptq - qat_loss) / gap : NAN;
    printf("\n%-38s %10s %10s %12s\n", "model (validation split)", "loss", "perplexity", "size");
    printf("%-38s %10.4f %10.2f %9.1f MB\n", o->init[0] ? "float start (--init)" : "float (latent weights)", start,
           exp(start), fbytes / 1e6);
    const int act8 = r->m->qat_act8; /* (the PTQ and QAT rows with int8 activations, as trained) */
    printf("%-38s %10.4f %10.2f %9.1f MB\n",
           o->init[0] ? (act8 ? "RTN PTQ of the start, int8 act." : "RTN PTQ of the start")
                      : (act8 ? "RTN PTQ of latent weights, int8 act." : "RTN PTQ of the latent weights"),
           ptq, exp(ptq), qbytes / 1e6);
    printf("%-38s %10.4f %10.2f %9.1f MB\n", act8 ? "QAT, int8 activations" : "QAT", qat_loss, exp(qat_loss),
           qbytes / 1e6);
    if (gap > GAP_MIN)
        printf("QAT recovered %.1f%% of the PTQ gap (%.4f nats); export: %s\n", 100 * recovered, gap, out);
    else
        printf("RTN PTQ cost nothing measurable here (gap %.4f nats, under %g), so there was no gap to recover; "
               "export: %s\n",
               gap, GAP_MIN, out);
    if (act8) printf("(score the export as trained, int8 activations: gpt2q-infer eval %s --act int8)\n", out);
    return write_formatted(jpath,
            "{\"format\": \"%s\", \"activations\": \"%s\", \"layers\": \"%s\", \"export\": \"%s\", \"start\": \"%s\",\n"
            " \"rows\": [{\"model\": \"float\", \"val_loss\": %.6f, \"perplexity\": %.4f, \"bytes\": %zu},\n"
            "          {\"model\": \"ptq\", \"val_loss\": %.6f, \"perplexity\": %.4f, \"bytes\": %zu},\n"
            "          {\"model\": \"qat\", \"val_loss\": %.6f, \"perplexity\": %.4f, \"bytes\": %zu}],\n"
            " \"ptq_gap\": %.6f, \"gap_recovered\": %.4f}\n",
            o->qat, act8 ? "int8" : "f32", o->qat_layers[0] ? o->qat_layers : "all-but-lm_head", out, start_name, start, exp(start), fbytes,
            ptq, exp(ptq), qbytes, qat_loss, exp(qat_loss), qbytes, gap, isfinite(recovered) ? recovered : -1.0);
}

/* --export: the formats (separated by spaces) one by one; the next one into tok, NULL at the end */
static const char *next_export(const char *p, char *tok, size_t cap) {
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) return NULL;
    size_t n = 0;
    while (p[n] && p[n] != ' ' && p[n] != '\t') n++;
    snprintf(tok, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    return p + n;
}

/* An export's file in the run folder: model-<format>.h5, "mixed" for pattern=format rules (the
 * k-th such export: mixed-k), as QAT names its own export */
static void export_path(const gq_train_opts *o, const char *fmt, int mixed_k, char *path, size_t cap) {
    if (strchr(fmt, '=')) {
        if (mixed_k > 1) snprintf(path, cap, "%s/model-mixed-%d.h5", o->out, mixed_k);
        else snprintf(path, cap, "%s/model-mixed.h5", o->out);
    } else {
        snprintf(path, cap, "%s/model-%.200s.h5", o->out, fmt);
    }
}

/* One --export format, tok, before training: it parses, selects weights, and has what it needs
 * (GPTQ: one token file to calibrate on; -lsq: QAT with learned scales); its file is neither QAT's
 * nor one of seen[0..n) (the formats before it). */
static int check_export(run *r, const char *tok, const char *qat_path, char (*seen)[4400], int *n, int *mixed) {
    const gq_train_opts *o = r->o;
    const gq_gpt2_config *c = &r->m->cfg;
    gq_qplan plan;
    int rc = gq_qplan_build(&plan, tok, o->export_layers[0] ? o->export_layers : NULL, 0, c->n_layer);
    if (!rc) rc = gq_export_check(&plan, c); /* the export's own checks, now rather than after the training */
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", gq_errmsg(rc));
        return gq_errf(rc, "export = '%s': %s", tok, why);
    }
    int gptq = 0, lsq = 0;
    for (int k = 0; k < plan.n; k++) gptq |= plan.spec[k].gptq, lsq |= plan.spec[k].lsq;
    if (gptq && !r->data_path[0])
        return gq_errf(GQ_EINVAL, "export = '%s': -gptq calibrates on the training data, which must be one token "
                       "file here (or run gpt2q-export --calib on the checkpoint)", tok);
    if (lsq && !strstr(o->qat, "-lsq"))
        return gq_errf(GQ_EINVAL, "export = '%s': -lsq exports the scales QAT learned: it needs --qat with -lsq", tok);
    char path[4400];
    export_path(o, tok, strchr(tok, '=') ? ++*mixed : 0, path, sizeof path);
    if (!strcmp(path, qat_path))
        return gq_errf(GQ_EINVAL, "export = '%s' would write %s, QAT's own export (written anyway): leave it out", tok,
                       path);
    for (int i = 0; i < *n; i++)
        if (!strcmp(seen[i], path)) return gq_errf(GQ_EINVAL, "export = '%s': %s named twice", tok, path);
    if (*n == 64) return gq_errf(GQ_EINVAL, "export: more than 64 formats");
    snprintf(seen[(*n)++], sizeof seen[0], "%s", path);
    return GQ_OK;
}

/* Before training: every --export format (check_export), so that a typo fails now, not after it. */
static int check_exports(run *r) {
    char tok[4096], qat_path[4400] = "", (*seen)[4400] = malloc(64 * sizeof *seen); /* the files, in order */
    if (!seen) return gq_errf(GQ_ENOMEM, "out of memory");
    int n = 0, mixed = 0, rc = GQ_OK;
    if (r->o->qat[0]) export_path(r->o, r->o->qat, 1, qat_path, sizeof qat_path);
    for (const char *p = next_export(r->o->exports, tok, sizeof tok); p && !rc; p = next_export(p, tok, sizeof tok))
        rc = check_export(r, tok, qat_path, seen, &n, &mixed);
    free(seen);
    return rc;
}

/* The end of a run with --export: each format's PTQ of the final checkpoint written beside it,
 * then (final_eval) each scored on the whole validation split with its dequantized weights (the
 * runner's packed kernels give the same loss to round-off), against the checkpoint's own float
 * weights; printed as a table and written to exports.json. final_loss: this run's last whole-split
 * loss (the float weights' when the run has no QAT). */
static int run_exports(run *r, const char *ckpt, float final_loss) {
    const gq_train_opts *o = r->o;
    char tok[4096], path[4400];
    int mixed = 0, n = 0, rc = GQ_OK;
    for (const char *p = next_export(o->exports, tok, sizeof tok); p; p = next_export(p, tok, sizeof tok)) n++;
    struct {
        char fmt[256], path[4400];
        gq_ptq_res res;
        float loss;
    } *x = calloc((size_t)n, sizeof *x);
    if (!x) return gq_errf(GQ_ENOMEM, "out of memory");
    const char *layers = o->export_layers[0] ? o->export_layers : NULL;
    printf("\nPTQ exports of %s (%s):\n", ckpt, layers ? layers : "every linear weight");
    int i = 0;
    for (const char *p = next_export(o->exports, tok, sizeof tok); p && !rc; p = next_export(p, tok, sizeof tok), i++) {
        export_path(o, tok, strchr(tok, '=') ? ++mixed : 0, path, sizeof path);
        snprintf(x[i].fmt, sizeof x[i].fmt, "%.255s", tok);
        snprintf(x[i].path, sizeof x[i].path, "%s", path);
        x[i].loss = NAN;
        int gptq = strstr(tok, "-gptq") != NULL;
        const gq_ptq_req q = {ckpt, path, tok, layers, 0, gptq ? r->data_path : NULL, 32768, 0.01, 0, gptq};
        if ((rc = gq_ptq_export(&q, &x[i].res))) break;
        printf("  %-24s %s: %.2f MB (fp32 %.2f MB), quantized weights at %.3f bits\n", tok, path,
               x[i].res.payload / 1e6, x[i].res.fp32 / 1e6, x[i].res.bits_per_weight);
        fflush(stdout);
    }
    float fl = NAN;
    if (!rc && o->final_eval && !r->val) printf("(not scored: no validation split)\n");
    if (!rc && o->final_eval && r->val) {
        /* the float row: the checkpoint's weights as they are (a QAT run's latent ones) */
        rc = gq_gpt2_set_fakequant(r->m, 0);
        if (!rc && r->m->n_qat) {
            if (!(rc = gq_weights_load(ckpt, r->m))) rc = gq_gpt2_refresh_weights(r->m, r->m->sr_step);
            if (!rc) rc = evaluate(r, 1, &fl);
        } else {
            fl = final_loss;
        }
        for (i = 0; i < n && !rc; i++) {
            if (!(rc = gq_weights_load(x[i].path, r->m))) rc = gq_gpt2_refresh_weights(r->m, r->m->sr_step);
            if (!rc) rc = evaluate(r, 1, &x[i].loss);
        }
        if (!rc) {
            printf("\n%-26s %10s %10s %10s %10s %12s\n", "model (validation split)", "loss", "delta", "perplexity", "MB",
                   "bits/weight");
            printf("%-26s %10.4f %10s %10.2f %10.2f %12s\n", r->m->n_qat ? "float (latent weights)" : "float", fl, "",
                   exp(fl), x[0].res.fp32 / 1e6, "32");
            for (i = 0; i < n; i++)
                printf("%-26.26s %10.4f %+10.4f %10.2f %10.2f %12.3f\n", x[i].fmt, x[i].loss, x[i].loss - fl,
                       exp(x[i].loss), x[i].res.payload / 1e6, x[i].res.bits_per_weight);
        }
    }
    if (!rc) {
        char jpath[4400], *text = NULL;
        size_t len = 0;
        snprintf(jpath, sizeof jpath, "%s/exports.json", o->out);
        FILE *f = open_memstream(&text, &len);
        if (!f) rc = gq_errf(GQ_ENOMEM, "out of memory");
        else {
            fprintf(f, "{\"checkpoint\": \"%s\", \"layers\": \"%s\", \"float\": {\"bytes\": %zu", ckpt,
                    layers ? layers : "", n ? x[0].res.fp32 : 0);
            if (isfinite(fl)) fprintf(f, ", \"val_loss\": %.6f", fl);
            fprintf(f, "},\n \"exports\": [");
            for (i = 0; i < n; i++) {
                fprintf(f, "%s{\"format\": \"%s\", \"file\": \"%s\", \"bytes\": %zu, \"file_bytes\": %lld, "
                        "\"bits_per_weight\": %.4f",
                        i ? ",\n              " : "", x[i].fmt, x[i].path, x[i].res.payload, x[i].res.file_bytes,
                        x[i].res.bits_per_weight);
                if (isfinite(x[i].loss)) fprintf(f, ", \"val_loss\": %.6f, \"delta\": %.6f", x[i].loss, x[i].loss - fl);
                fprintf(f, "}");
            }
            fprintf(f, "]}\n");
            fclose(f);
            rc = gq_write_file(jpath, text, len);
            free(text);
            if (!rc) printf("exports: %s\n", jpath);
        }
    }
    for (i = 0; i < n; i++) gq_ptq_res_free(&x[i].res);
    free(x);
    return rc;
}

int gq_train_run(gq_train_opts *o) {
    run r = {.o = o, .log_fd = -1, .tty = isatty(fileno(stdout))};
    int rc = GQ_OK;
    gq_train_state st = {0};
    char last_ckpt[4400] = "", resume_path[4400] = "";
    if (o->threads > 0) {
#ifdef _OPENMP
        omp_set_num_threads(o->threads);
#endif
        openblas_set_num_threads(o->threads);
    }
    if ((rc = gq_mkdir_p(o->out))) return rc;
    if (o->resume) {
        int64_t s;
        if ((rc = gq_ckpt_latest(o->out, resume_path, sizeof resume_path, &s))) return rc;
    }
    /* --init / --teacher: a folder stands for its model (model.safetensors, or a run's newest checkpoint) */
    char *const named[2] = {o->init, o->teacher};
    for (int k = 0; k < 2; k++) {
        char file[4096];
        int from_run = 0;
        if (!named[k][0]) continue;
        if ((rc = gq_weights_resolve(named[k], file, sizeof file, &from_run))) return rc;
        if (from_run) printf("%s: %s, the run's newest checkpoint\n", k ? "teacher" : "init", file);
        snprintf(named[k], sizeof o->init, "%s", file);
    }
    /* the model's architecture: the checkpoint's or init file's, else the options' */
    gq_gpt2_config cfg = o->model;
    const char *arch_from = o->resume ? resume_path : o->init[0] ? o->init : NULL;
    if (arch_from && (rc = gq_weights_config(arch_from, &cfg))) return rc;
    o->model = cfg;
    if ((rc = gq_gpt2_config_check(&o->model))) return rc;
    if (o->seq > o->model.block_size)
        return gq_errf(GQ_EINVAL, "seq = %d is longer than the model's block_size = %d", o->seq, o->model.block_size);
    const gq_backend *be = NULL;
    char be_what[320];
    if ((rc = pick_backend(o->device, &be, be_what, sizeof be_what))) goto done;
    {
        const char *p = o->precision;
        int mode = !strcmp(p, "fp32") ? GQ_MATMUL_FP32 : !strcmp(p, "tf32") ? GQ_MATMUL_TF32
                   : !strcmp(p, "bf16")   ? GQ_MATMUL_BF16
                                          : -1;
        if (mode < 0) {
            rc = gq_errf(GQ_EINVAL, "precision = '%s': expected fp32, tf32 or bf16", p);
            goto done;
        }
        /* the mode first: the model plans its activations for it (bf16's attention saves a
         * log-sum-exp per row instead of the (T, T) softmax), and so does batch = max */
        if (!(rc = be->set_matmul(mode)) && !(rc = resolve_max_batch(o, be, mode)) && !(rc = open_data(&r)) &&
            !(rc = gq_gpt2_create(&r.m, &o->model, be, o->batch, o->seq)))
            rc = gq_gpt2_set_precision(r.m, mode, o->seed);
        if (rc == GQ_EUNSUPPORTED) {
            char why[256];
            snprintf(why, sizeof why, "%s", gq_errmsg(rc));
            rc = gq_errf(rc, "precision = %s on device %s: %s", p, be->name, why);
        }
        if (rc) goto done;
    }
    printf("device: %s; matrix products in %s%s\n", be_what, o->precision,
           !strcmp(o->precision, "bf16")
               ? (r.m->act16 ? " (weights stochastically rounded to a bf16 working copy each step, bf16 operands in "
                               "the linear layers and attention; layernorm, qkv, attention, MLP pre-activation and "
                               "GELU outputs stored in bf16; fp32 master weights, AdamW state, residual stream and "
                               "gradients)"
                             : " (weights stochastically rounded to bf16 each step, bf16 operands in the linear layers "
                               "and attention; fp32 master weights, AdamW state, activations and gradients)")
               : "");
    if (o->resume) {
        rc = gq_ckpt_load(resume_path, r.m, &st, NULL);
        if (!rc) rc = gq_loader_set_state(r.train, &st.loader);
        if (rc) goto done;
        printf("resumed from %s at step %lld\n", resume_path, (long long)st.step);
        snprintf(last_ckpt, sizeof last_ckpt, "%s", resume_path);
    } else if (o->init[0]) {
        if ((rc = gq_weights_load(o->init, r.m))) goto done;
        printf("initialised from %s\n", o->init);
    } else {
        if ((rc = gq_gpt2_init(r.m, o->seed))) goto done;
    }
    gq_qplan plan;
    const int act8 = !strcmp(o->qat_act, "int8");
    if (!act8 && strcmp(o->qat_act, "f32")) {
        rc = gq_errf(GQ_EINVAL, "qat_act = '%s': expected f32 or int8", o->qat_act);
        goto done;
    }
    if (act8 && !o->qat[0]) {
        rc = gq_errf(GQ_EINVAL, "qat_act = int8 quantizes the inputs of the QAT-selected products: it needs --qat");
        goto done;
    }
    if (act8 && (rc = gq_gpt2_set_act8(r.m, 1))) goto done;
    if (o->qat[0]) {
        if ((rc = gq_qplan_build(&plan, o->qat, o->qat_layers, o->qat_group, r.m->cfg.n_layer))) goto done;
        r.m->lsq_lr = (float)o->qat_lsq_lr;
        if (st.step + 1 >= o->qat_start_step && (rc = gq_gpt2_qat_enable(r.m, &plan))) goto done;
        if (r.m->qat_on && r.m->n_lsq && o->resume) { /* the learned scales where QAT had begun */
            int found = 0;
            if ((rc = gq_ckpt_load_lsq(resume_path, r.m, &found))) goto done;
            if (!found && st.step >= o->qat_start_step) {
                rc = gq_errf(GQ_EFORMAT, "%s: step %lld trained with learned scales (-lsq) but the checkpoint has none "
                             "(/qat/scales)", resume_path, (long long)st.step);
                goto done;
            }
        }
        if (r.m->qat_on) print_qat(r.m);
    }
    if (o->exports[0] && (rc = check_exports(&r))) goto done;
    double peak = 0; /* the GPU's datasheet rate in this precision (MFU's denominator; 0: not reported) */
#ifdef GQ_HAVE_CUDA
    if (!strcmp(be->name, "cuda")) { /* the plan (one allocation per kind) against what the driver reports */
        size_t fb = 0, tb = 0, work = r.m->work_floats * sizeof(float) + (r.m->qat_mask ? r.m->n_params : 0) +
                               r.m->n_lsq * 4 * sizeof(float); /* (learned scales: value, gradient, 2 moments) */
        if (!gq_cuda_mem_info(&fb, &tb))
            printf("GPU memory: planned %.2f GiB (parameters, gradients, AdamW state, activations%s); "
                   "device %.2f GiB used of %.2f GiB\n",
                   (4.0 * gq_gpt2_param_bytes(r.m) + gq_gpt2_act_bytes(r.m) + work) / 1073741824.0,
                   work ? ", working weights" : "", (tb - fb) / 1073741824.0, tb / 1073741824.0);
        char name[256] = "";
        if (!gq_cuda_device_name(name, sizeof name)) peak = gq_train_peak_flops(name, o->precision);
        if (peak > 0) printf("MFU against %.4g TFLOP/s (%s, %s, dense)\n", peak / 1e12, name, o->precision);
        else printf("MFU: the peak of %s in %s is not known (GQ_PEAK_TFLOPS=<dense TFLOP/s> reports it)\n", name,
                    o->precision);
    }
#endif
    if (o->distill > 0) { /* the teacher: a forward-only model of the same shape on the same device */
        const char *tpath = o->teacher[0] ? o->teacher : o->init;
        if (!tpath[0]) {
            rc = gq_errf(GQ_EINVAL, "distill = %g needs a teacher: --teacher FILE or --init FILE", o->distill);
            goto done;
        }
        gq_gpt2_config tc;
        if ((rc = gq_weights_config(tpath, &tc))) goto done;
        const gq_gpt2_config *c0 = &r.m->cfg;
        if (tc.n_layer != c0->n_layer || tc.n_embd != c0->n_embd || tc.n_head != c0->n_head ||
            tc.vocab_size != c0->vocab_size) {
            rc = gq_errf(GQ_ESHAPE, "%s: the teacher's architecture (L%d H%d C%d V%d) differs from the model's", tpath,
                         tc.n_layer, tc.n_head, tc.n_embd, tc.vocab_size);
            goto done;
        }
        tc.block_size = c0->block_size;
        if ((rc = gq_gpt2_create(&r.teacher, &tc, be, o->batch, o->seq)) || (rc = gq_weights_load(tpath, r.teacher)) ||
            (rc = gq_gpt2_set_precision(r.teacher, r.m->matmul, o->seed)))
            goto done;
        r.m->distill_w = (float)o->distill;
        r.m->distill_logits = r.teacher->a.logits;
        r.m->distill_lse = r.teacher->a.lse;
        printf("distillation: targets = %.2f x data + %.2f x the softmax of %s\n", 1 - o->distill, o->distill, tpath);
    }
    if (o->model.vocab_size == GQ_GPT2_VOCAB_SIZE && gq_bpe_load_dir(&r.bpe, NULL)) r.bpe = NULL; /* samples only */
    /* a step's micro-batches are read before its first forward (their scored targets weight them) */
    r.inputs = malloc((size_t)o->grad_accum * o->batch * o->seq * sizeof *r.inputs);
    r.targets = malloc((size_t)o->grad_accum * o->batch * o->seq * sizeof *r.targets);
    r.micro_scored = calloc((size_t)o->grad_accum, sizeof *r.micro_scored);
    if (!r.inputs || !r.targets || !r.micro_scored) {
        rc = gq_errf(GQ_ENOMEM, "out of memory for %d micro-batches of %d x %d tokens", o->grad_accum, o->batch, o->seq);
        goto done;
    }

    const gq_gpt2_config *c = &r.m->cfg;
    const double mib = 1.0 / (1 << 20);
    printf("model: L%d H%d C%d T%d V%d (padded %d): %.2fM parameters\n", c->n_layer, c->n_head, c->n_embd,
           c->block_size, c->vocab_size, c->padded_vocab_size, r.m->n_params / 1e6);
    printf("memory: parameters %.1f MiB, gradients %.1f MiB, AdamW state %.1f MiB, activations %.1f MiB "
           "(of which backward scratch %.1f MiB)\n",
           gq_gpt2_param_bytes(r.m) * mib, gq_gpt2_param_bytes(r.m) * mib, 2 * gq_gpt2_param_bytes(r.m) * mib,
           gq_gpt2_act_bytes(r.m) * mib, r.m->n_scratch * 4 * mib);
    printf("data: %s: %llu train windows of %d tokens%s; batch %d x %d x accum %d = %d tokens/step; %d steps\n",
           o->data, (unsigned long long)gq_loader_windows(r.train), o->seq, r.val ? "" : " (no validation split)",
           o->batch, o->seq, o->grad_accum, o->batch * o->seq * o->grad_accum, o->steps);
    fflush(stdout);

    snprintf(r.log_path, sizeof r.log_path, "%s/train.jsonl", o->out);
    if (o->resume && (rc = truncate_log(r.log_path, st.step))) goto done;
    r.log_fd = open(r.log_path, O_WRONLY | O_CREAT | O_APPEND | (o->resume ? 0 : O_TRUNC), 0644);
    if (r.log_fd < 0) {
        rc = gq_errf(GQ_EIO, "%s: cannot write: %s", r.log_path, strerror(errno));
        goto done;
    }
    const int tokens_per_step = o->batch * o->seq * o->grad_accum;
    const double flop_tok = gq_train_flops_per_token(r.m->n_params, &r.m->cfg, o->seq);
    const int first = (int)st.step + 1;
    if (first > o->steps)
        printf("nothing to train: %s is at step %lld and steps = %d (a larger --steps continues it)\n", resume_path,
               (long long)st.step, o->steps);
    double t_start = gq_now(), t_train = 0;
    int steps_run = 0;
    float loss = NAN, val_loss = NAN;
    for (int step = first; step <= o->steps; step++) {
        double t0 = gq_now();
        float lr = (float)gq_train_lr(o, step);
        if (o->qat[0] && !r.m->qat_on && step >= o->qat_start_step) {
            if ((rc = gq_gpt2_qat_enable(r.m, &plan))) break;
            printf("step %d: quantization-aware training starts\n", step);
            print_qat(r.m);
        }
        if ((rc = gq_gpt2_refresh_weights(r.m, step))) break; /* fake-quant, bf16 rounding: once per step */
        if ((rc = gq_gpt2_zero_grad(r.m))) break;
        /* The step's loss is the mean over all its scored targets: each micro-batch's mean is
         * weighted by its share of them (a loss mask makes the shares unequal; without one every
         * share is 1 / grad_accum, as before), so grad_accum x batch gives the gradient of one
         * batch of that size. A micro-batch without a scored target is skipped. */
        const size_t bt = (size_t)o->batch * o->seq;
        long long scored = 0, *counts = r.micro_scored;
        for (int micro = 0; micro < o->grad_accum && !rc; micro++) {
            rc = gq_loader_next(r.train, r.inputs + micro * bt, r.targets + micro * bt);
            counts[micro] = 0;
            for (size_t i = 0; i < bt; i++) counts[micro] += r.targets[micro * bt + i] >= 0;
            scored += counts[micro];
        }
        const int equal = scored == (long long)o->grad_accum * (long long)bt;
        double step_loss = 0;
        for (int micro = 0; micro < o->grad_accum && !rc; micro++) {
            const int32_t *in = r.inputs + micro * bt, *tg = r.targets + micro * bt;
            if (!counts[micro]) continue;
            const float share = equal ? 1.0f / o->grad_accum : (float)((double)counts[micro] / (double)scored);
            float l = 0;
            if (r.teacher) rc = gq_gpt2_forward(r.teacher, in, tg, o->batch, o->seq, NULL);
            if (!rc) rc = gq_gpt2_forward_backward(r.m, in, tg, o->batch, o->seq, share, &l);
            step_loss += equal ? l / o->grad_accum : (double)l * (double)counts[micro] / (double)scored;
        }
        if (rc) break;
        if ((rc = gq_gpt2_qat_mask_grads(r.m))) break;
        float norm = 0;
        if ((rc = gq_gpt2_grad_norm(r.m, &norm))) break;
        loss = (float)step_loss;
        if (!isfinite(loss) || !isfinite(norm)) {
            rc = gq_errf(GQ_ENAN, "step %d: %s is %s; training stopped, nothing saved for this step; last good checkpoint: %s",
                         step, isfinite(loss) ? "gradient norm" : "loss", isnan(isfinite(loss) ? norm : loss) ? "nan" : "inf",
                         last_ckpt[0] ? last_ckpt : "(none yet)");
            break;
        }
        float scale = o->clip > 0 ? (float)(o->clip / (norm + 1e-6)) : 1.0f;
        if ((rc = gq_gpt2_update(r.m, lr, (float)o->beta1, (float)o->beta2, (float)o->eps, (float)o->weight_decay, step,
                                 scale < 1.0f ? scale : 1.0f)))
            break;
        double dt = gq_now() - t0;
        t_train += dt;
        steps_run++;
        st.step = step;
        st.tokens += tokens_per_step;
        int last = step == o->steps || (o->stop_after && steps_run == o->stop_after);
        const int full = last && o->final_eval; /* the whole split at the end */
        int do_eval = full || (o->eval_every && step % o->eval_every == 0);
        val_loss = NAN;
        /* evaluate what this step produced: QAT's fake-quant copy is refreshed from the updated
         * latent weights first (the next step would do the same), so the final QAT loss is
         * exactly the loss of the export written from this checkpoint */
        if (do_eval && ((rc = gq_gpt2_refresh_weights(r.m, step + 1)) || (rc = evaluate(&r, full, &val_loss)))) break;
        double tok_s = tokens_per_step / dt, mfu = peak > 0 ? flop_tok * tok_s / peak : 0;
        char jl[512];
        int at = snprintf(jl, sizeof jl,
                          "{\"step\": %d, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"ms\": %.2f, \"tokens_per_s\": %.1f",
                          step, loss, lr, norm, dt * 1e3, tok_s);
        if (peak > 0) at += snprintf(jl + at, sizeof jl - (size_t)at, ", \"mfu\": %.4f", mfu);
        if (isfinite(val_loss)) at += snprintf(jl + at, sizeof jl - (size_t)at, ", \"val_loss\": %.6f", val_loss);
        snprintf(jl + at, sizeof jl - (size_t)at, "}\n");
        if ((rc = log_line(&r, jl))) break;
        char eta[32];
        fmt_time(eta, sizeof eta, t_train / steps_run * (o->steps - step));
        if (r.tty || do_eval || step % o->log_every == 0 || step == first) {
            char vbuf[32] = "", mbuf[32] = "";
            if (isfinite(val_loss)) snprintf(vbuf, sizeof vbuf, " | val %.4f", val_loss);
            if (peak > 0) snprintf(mbuf, sizeof mbuf, " | MFU %.1f%%", 100 * mfu);
            printf("%sstep %*d/%d | loss %.4f%s | lr %.2e | norm %.2f | %.0f tok/s%s | ETA %s%s", r.tty ? "\r" : "",
                   (int)snprintf(NULL, 0, "%d", o->steps), step, o->steps, loss, vbuf, lr, norm, tok_s, mbuf, eta,
                   r.tty ? (do_eval ? "\033[K\n" : "\033[K") : "\n");
            fflush(stdout);
        }
        if ((o->sample_every && step % o->sample_every == 0) || last) {
            if ((rc = sample(&r, step))) break;
        }
        gq_loader_get_state(r.train, &st.loader);
        if ((o->ckpt_every && step % o->ckpt_every == 0) || last) {
            if ((rc = save(&r, &st, last_ckpt, sizeof last_ckpt))) break;
        }
        if (last) break;
    }
    if (r.tty) printf("\n");
    if (!rc && steps_run) {
        double wall = gq_now() - t_start;
        const double tok_s = steps_run * (double)tokens_per_step / t_train;
        char mbuf[32] = "";
        if (peak > 0) snprintf(mbuf, sizeof mbuf, ", MFU %.1f%%", 100 * flop_tok * tok_s / peak);
        printf("done: %d steps in %.1f s (%.0f tokens/s training%s); final loss %.4f; checkpoint %s\n", steps_run, wall,
               tok_s, mbuf, loss, last_ckpt);
        if (isfinite(val_loss) && o->final_eval)
            printf("final validation loss %.4f over the whole validation split (%llu windows of %d tokens)\n", val_loss,
                   (unsigned long long)gq_loader_windows(r.val), o->seq);
#ifdef GQ_HAVE_CUDA
        if (!strcmp(be->name, "cuda")) { /* which products took cuBLASLt's epilogues (kernels/cuda/cublaslt.cu) */
            long long fused = 0, refused = 0;
            gq_cuda_lt_counts(&fused, &refused);
            printf("cuBLASLt epilogues (bias, residual, GELU): %s; %lld products fused, %lld requests refused (separate kernels)\n",
                   gq_cuda_lt_enabled() ? "on" : "off (GQ_CUDA_LT=0)", fused, refused);
            gq_cuda_ce_fused_counts(&fused, &refused); /* (kernels/cuda/crossentropy.cu) */
            printf("loss and gradient in one kernel: %lld micro-steps, %lld on the separate kernels\n", fused, refused);
        }
#endif
    }
    if (r.log_fd >= 0) {
        close(r.log_fd);
        r.log_fd = -1;
        if (steps_run && !rc) rc = write_chart(o->out);
    }
    if (!rc && steps_run && r.m->qat_on && st.step == o->steps) rc = qat_report(&r, &plan, last_ckpt, val_loss);
    if (!rc && steps_run && o->exports[0] && st.step == o->steps) rc = run_exports(&r, last_ckpt, val_loss);
done:
    if (r.log_fd >= 0) close(r.log_fd);
    gq_loader_close(r.train);
    gq_loader_close(r.val);
    gq_gpt2_free(r.m);
    gq_gpt2_free(r.teacher);
    gq_bpe_free(r.bpe);
    free(r.inputs);
    free(r.targets);
    free(r.micro_scored);
    return rc;
}
