/* gpt2_weights: see gpt2_weights.h. */
#define _POSIX_C_SOURCE 200809L
#include "gpt2_weights.h"

#include "gq_error.h"
#include "gq_file.h"
#include "h5io.h"
#include "qexport.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LLMC_MAGIC 20240326

/* A folder (transformers' save_pretrained, gpt2q-export --hf) stands for its model.safetensors. */
static const char *in_folder(const char *path, char *buf, size_t size) {
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return path;
    snprintf(buf, size, "%s/model.safetensors", path);
    return buf;
}

int gq_run_newest(const char *dir, char *path, size_t size, int64_t *step) {
    path[0] = '\0';
    *step = -1;
    DIR *d = opendir(dir);
    if (!d) return gq_errf(GQ_ENOENT, "%s: cannot read the folder", dir);
    for (struct dirent *e; (e = readdir(d));) {
        long long s;
        char tail[8];
        /* ckpt-00000100.h5 exactly; temp files (".h5.tmp.<pid>") are incomplete by definition */
        if (sscanf(e->d_name, "ckpt-%lld.h%1[5]%1s", &s, tail, tail + 2) == 2 && s > *step) {
            *step = s;
            snprintf(path, size, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    return *step >= 0 ? GQ_OK : gq_errf(GQ_ENOENT, "%s: no checkpoint (ckpt-<step>.h5)", dir);
}

int gq_weights_resolve(const char *path, char *out, size_t size, int *run) {
    struct stat st;
    if (run) *run = 0;
    snprintf(out, size, "%s", path);
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return GQ_OK; /* (a missing file: its reader says so) */
    char buf[4200];
    if (gq_file_exists(in_folder(path, buf, sizeof buf))) {
        snprintf(out, size, "%s", buf);
        return GQ_OK;
    }
    int64_t step;
    if (!gq_run_newest(path, out, size, &step)) {
        if (run) *run = 1;
        return GQ_OK;
    }
    snprintf(out, size, "%s", path);
    return gq_errf(GQ_ENOENT, "%s: a folder with neither model.safetensors (a transformers folder; convert a "
                   "pytorch_model.bin with save_pretrained(..., safe_serialization=True)) nor a ckpt-<step>.h5 (a "
                   "gpt2q-train run folder)", path);
}

int gq_weights_kind(const char *path, int *kind) {
    char buf[4200];
    const char *folder = path;
    path = in_folder(path, buf, sizeof buf);
    *kind = GQ_WEIGHTS_UNKNOWN;
    if (path != folder && !gq_file_exists(path))
        return gq_errf(GQ_ENOENT, "%s: a folder without model.safetensors (gpt2q reads a model folder's safetensors; "
                       "convert a pytorch_model.bin with save_pretrained(..., safe_serialization=True))", folder);
    FILE *f = fopen(path, "rb");
    if (!f) return gq_errf(GQ_ENOENT, "%s: cannot open: no such file or not readable", path);
    uint8_t h[16] = {0};
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    int32_t magic = (int32_t)((uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24);
    if (n >= 8 && !memcmp(h, sig, 8))
        *kind = GQ_WEIGHTS_GPT2Q;
    else if (n >= 4 && magic == LLMC_MAGIC)
        *kind = GQ_WEIGHTS_LLMC;
    else if (n >= 9 && h[8] == '{')
        *kind = GQ_WEIGHTS_SAFETENSORS;
    else
        return gq_errf(GQ_EFORMAT, "%s: not a gpt2q checkpoint (HDF5), HF safetensors or llm.c .bin (magic %d)", path,
                       LLMC_MAGIC);
    return GQ_OK;
}

/* ---- llm.c ---- */

static int llmc_header(const char *path, int32_t hdr[256], long *file_size) {
    FILE *f = fopen(path, "rb");
    if (!f) return gq_errf(GQ_ENOENT, "%s: cannot open", path);
    size_t got = fread(hdr, 4, 256, f);
    fseek(f, 0, SEEK_END);
    *file_size = ftell(f);
    fclose(f);
    if (got != 256) return gq_errf(GQ_ETRUNC, "%s: truncated llm.c model header", path);
    if (hdr[0] != LLMC_MAGIC) return gq_errf(GQ_EFORMAT, "%s: wrong magic %d for an llm.c model", path, hdr[0]);
    if (hdr[1] != 3)
        return gq_errf(GQ_EUNSUPPORTED, "%s: llm.c model version %d; only version 3 (fp32, padded vocab) is supported",
                       path, hdr[1]);
    return GQ_OK;
}

/* ---- HF config.json ---- */

static int hf_config(const char *st_path, const gq_safetensors *st, gq_gpt2_config *cfg) {
    char dirbuf[4300], cfg_path[4400];
    snprintf(dirbuf, sizeof dirbuf, "%s", st_path);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dirname(dirbuf));
    memset(cfg, 0, sizeof *cfg);
    const char *prefix = gq_st_find(st, "transformer.wte.weight") ? "transformer." : "";
    char name[256];
    snprintf(name, sizeof name, "%swte.weight", prefix);
    const gq_st_tensor *wte = gq_st_find(st, name);
    snprintf(name, sizeof name, "%swpe.weight", prefix);
    const gq_st_tensor *wpe = gq_st_find(st, name);
    if (!wte || !wpe || wte->ndim != 2 || wpe->ndim != 2)
        return gq_errf(GQ_EFORMAT, "%s: no 2-D wte.weight / wpe.weight: not a GPT-2 model", st_path);
    cfg->vocab_size = (int)wte->shape[0];
    cfg->n_embd = (int)wte->shape[1];
    cfg->block_size = (int)wpe->shape[0];
    for (int l = 0;; l++) {
        snprintf(name, sizeof name, "%sh.%d.ln_1.weight", prefix, l);
        if (!gq_st_find(st, name)) break;
        cfg->n_layer = l + 1;
    }
    cfg->n_head = cfg->n_embd % 64 == 0 ? cfg->n_embd / 64 : 0; /* GPT-2's head size, if no config.json */
    uint8_t *text;
    size_t len;
    if (gq_file_exists(cfg_path) && gq_read_file(cfg_path, &text, &len) == GQ_OK) {
        cJSON *j = cJSON_ParseWithLength((const char *)text, len);
        free(text);
        if (!j) return gq_errf(GQ_EFORMAT, "%s: invalid JSON", cfg_path);
        const char *keys[] = {"n_head", "n_layer", "n_embd", "n_positions", "vocab_size"};
        int *dst[] = {&cfg->n_head, NULL, NULL, NULL, NULL};
        int expect[] = {0, cfg->n_layer, cfg->n_embd, cfg->block_size, cfg->vocab_size};
        int rc = GQ_OK;
        for (int k = 0; k < 5 && !rc; k++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
            if (!cJSON_IsNumber(v)) continue;
            if (dst[k])
                *dst[k] = v->valueint;
            else if (v->valueint != expect[k])
                rc =
                    gq_errf(GQ_ESHAPE, "%s: %s = %d but %s has %d", cfg_path, keys[k], v->valueint, st_path, expect[k]);
        }
        cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activation_function");
        if (!rc && cJSON_IsString(act) && strcmp(act->valuestring, "gelu_new") &&
            strcmp(act->valuestring, "gelu_pytorch_tanh"))
            rc = gq_errf(GQ_EUNSUPPORTED,
                         "%s: activation_function \"%s\"; gpt2q implements GPT-2's tanh GELU (gelu_new)", cfg_path,
                         act->valuestring);
        cJSON *eps = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_epsilon");
        if (!rc && cJSON_IsNumber(eps) && eps->valuedouble != 1e-5)
            rc = gq_errf(GQ_EUNSUPPORTED, "%s: layer_norm_epsilon %g; gpt2q uses GPT-2's 1e-5", cfg_path,
                         eps->valuedouble);
        cJSON_Delete(j);
        if (rc) return rc;
    }
    if (!cfg->n_head) return gq_errf(GQ_EFORMAT, "%s: no config.json beside it to give n_head", st_path);
    return gq_gpt2_config_check(cfg);
}

int gq_weights_config(const char *path, gq_gpt2_config *cfg) {
    char buf[4200];
    path = in_folder(path, buf, sizeof buf);
    int kind, rc = gq_weights_kind(path, &kind);
    if (rc) return rc;
    memset(cfg, 0, sizeof *cfg);
    if (kind == GQ_WEIGHTS_LLMC) {
        int32_t h[256];
        long size;
        if ((rc = llmc_header(path, h, &size))) return rc;
        *cfg = (gq_gpt2_config){.block_size = h[2],
                                .vocab_size = h[3],
                                .n_layer = h[4],
                                .n_head = h[5],
                                .n_embd = h[6],
                                .padded_vocab_size = h[7]};
        rc = gq_gpt2_config_check(cfg);
        return rc ? gq_errf(rc, "%s: %s", path, gq_errmsg(rc)) : GQ_OK;
    }
    if (kind == GQ_WEIGHTS_SAFETENSORS) {
        gq_safetensors *st;
        if ((rc = gq_st_open(&st, path))) return rc;
        rc = hf_config(path, st, cfg);
        gq_st_close(st);
        return rc;
    }
    gq_h5r *r;
    if ((rc = gq_h5r_open(&r, path))) return rc;
    int64_t v[6];
    const char *keys[6] = {"n_layer", "n_head", "n_embd", "block_size", "vocab_size", "padded_vocab_size"};
    for (int i = 0; i < 6 && !rc; i++)
        rc = gq_h5r_attr_i64(r, "/config", keys[i], &v[i]);
    gq_h5r_close(r);
    if (rc) return rc;
    *cfg = (gq_gpt2_config){(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5]};
    rc = gq_gpt2_config_check(cfg);
    return rc ? gq_errf(rc, "%s: /config: %s", path, gq_errmsg(rc)) : GQ_OK;
}

static int same_config(const char *path, const gq_gpt2_config *a, const gq_gpt2_config *b) {
    if (a->n_layer != b->n_layer || a->n_head != b->n_head || a->n_embd != b->n_embd ||
        a->block_size != b->block_size || a->vocab_size != b->vocab_size ||
        a->padded_vocab_size != b->padded_vocab_size)
        return gq_errf(GQ_ESHAPE, "%s: model is L%d H%d C%d T%d V%d (Vp %d), expected L%d H%d C%d T%d V%d (Vp %d)",
                       path, a->n_layer, a->n_head, a->n_embd, a->block_size, a->vocab_size, a->padded_vocab_size,
                       b->n_layer, b->n_head, b->n_embd, b->block_size, b->vocab_size, b->padded_vocab_size);
    return GQ_OK;
}

/* Copy the HF tensors into host (our layout), transposing Conv1D weights. */
static int load_hf(const char *path, const gq_gpt2_config *c, float *host) {
    gq_safetensors *st;
    int rc = gq_st_open(&st, path);
    if (rc) return rc;
    const char *prefix = gq_st_find(st, "transformer.wte.weight") ? "transformer." : "";
    float *tmp = NULL;
    size_t off = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS && !rc; i++) {
        size_t rows, cols;
        gq_gpt2_tensor_shape(c, i, &rows, &cols);
        int conv1d = i == 4 || i == 6 || i == 10 || i == 12;
        int layers = gq_gpt2_tensor(i)->per_layer ? c->n_layer : 1;
        for (int l = 0; l < layers && !rc; l++) {
            char base[160], name[200];
            snprintf(base, sizeof base, gq_gpt2_tensor(i)->hf_name, l);
            snprintf(name, sizeof name, "%s%s", prefix, base);
            const gq_st_tensor *t = gq_st_find(st, name);
            size_t want_rows = i == 0 ? (size_t)c->vocab_size : rows, per = rows * (cols ? cols : 1);
            /* expected HF shape: vectors (n); Linear-like (rows, cols); Conv1D (cols, rows) */
            int64_t e0 = (int64_t)(conv1d ? cols : want_rows), e1 = (int64_t)(conv1d ? rows : cols);
            if (!t) {
                rc = gq_errf(GQ_EFORMAT, "%s: tensor %s is missing", path, name);
            } else if (cols ? (t->ndim != 2 || t->shape[0] != e0 || t->shape[1] != e1)
                            : (t->ndim != 1 || t->shape[0] != (int64_t)rows)) {
                rc =
                    gq_errf(GQ_ESHAPE, "%s: tensor %s has shape [%lld%s%lld], expected [%lld%s%lld]", path, name,
                            (long long)t->shape[0], t->ndim > 1 ? ", " : "", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                            (long long)e0, cols ? ", " : "", cols ? (long long)e1 : 0LL);
            } else if (conv1d) {
                free(tmp);
                tmp = malloc(per * sizeof *tmp);
                rc = tmp ? gq_st_read_f32(st, t, tmp) : gq_errf(GQ_ENOMEM, "out of memory");
                for (size_t r = 0; !rc && r < rows; r++)
                    for (size_t k = 0; k < cols; k++)
                        host[off + r * cols + k] = tmp[k * rows + r];
            } else {
                rc = gq_st_read_f32(st, t, host + off); /* wte: the first V rows; padding stays 0 */
            }
            off += per;
        }
    }
    if (!rc) {
        char name[64];
        snprintf(name, sizeof name, "%s", "lm_head.weight");
        const gq_st_tensor *lm = gq_st_find(st, name);
        if (lm) { /* tied in GPT-2: must equal wte */
            size_t n = (size_t)c->vocab_size * c->n_embd;
            free(tmp);
            tmp = malloc(n * sizeof *tmp);
            if (lm->numel != n)
                rc = gq_errf(GQ_ESHAPE, "%s: lm_head.weight has %llu values, expected %zu", path,
                             (unsigned long long)lm->numel, n);
            else if (!(rc = gq_st_read_f32(st, lm, tmp)) && memcmp(tmp, host, n * sizeof *tmp))
                rc = gq_errf(GQ_EUNSUPPORTED,
                             "%s: lm_head.weight differs from wte.weight; gpt2q ties them as GPT-2 does", path);
        }
    }
    free(tmp);
    gq_st_close(st);
    return rc;
}

static int load_llmc(const char *path, const gq_gpt2_config *c, float *host) {
    const size_t n_params = gq_gpt2_n_params(c);
    int32_t h[256];
    long size;
    int rc = llmc_header(path, h, &size);
    if (rc) return rc;
    long expect = 1024 + (long)(n_params * sizeof(float));
    if (size != expect)
        return gq_errf(size < expect ? GQ_ETRUNC : GQ_EFORMAT, "%s: %ld bytes, the header's model needs %ld%s", path,
                       size, expect, size < expect ? " (truncated)" : "");
    FILE *f = fopen(path, "rb");
    if (!f) return gq_errf(GQ_ENOENT, "%s: cannot open", path);
    fseek(f, 1024, SEEK_SET);
    size_t got = fread(host, sizeof(float), n_params, f);
    fclose(f);
    return got == n_params ? GQ_OK : gq_errf(GQ_ETRUNC, "%s: short read", path);
}

static int load_gpt2q(const char *path, const gq_gpt2_config *c, float *host) {
    gq_h5r *r;
    int rc = gq_h5r_open(&r, path);
    if (rc) return rc;
    char fmt[64] = "";
    gq_h5r_attr_str(r, "/", "format", fmt, sizeof fmt);
    int quantized = !strcmp(fmt, "gpt2q-quantized"); /* an export: dequantize (quant.h) */
    size_t off = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS && !rc; i++) {
        size_t rows, cols;
        gq_gpt2_tensor_shape(c, i, &rows, &cols);
        int layers = gq_gpt2_tensor(i)->per_layer ? c->n_layer : 1;
        for (int l = 0; l < layers && !rc; l++) {
            char base[160], name[200];
            snprintf(base, sizeof base, gq_gpt2_tensor(i)->hf_name, l);
            size_t dims[2] = {rows, cols};
            if (quantized) {
                rc = gq_export_read_dequant(r, base, host + off, (int)rows, (int)cols, NULL);
            } else {
                snprintf(name, sizeof name, "/params/%s", base);
                rc = gq_h5r_f32(r, name, host + off, cols ? 2 : 1, dims);
            }
            off += rows * (cols ? cols : 1);
        }
    }
    gq_h5r_close(r);
    return rc;
}

int gq_weights_read(const char *path, const gq_gpt2_config *cfg, float *host) {
    char buf[4200];
    path = in_folder(path, buf, sizeof buf);
    gq_gpt2_config file_cfg;
    int kind, rc = gq_weights_kind(path, &kind);
    if (!rc) rc = gq_weights_config(path, &file_cfg);
    if (!rc) rc = same_config(path, &file_cfg, cfg);
    if (rc) return rc;
    const size_t n_params = gq_gpt2_n_params(cfg);
    memset(host, 0, n_params * sizeof *host);
    rc = kind == GQ_WEIGHTS_SAFETENSORS ? load_hf(path, cfg, host)
         : kind == GQ_WEIGHTS_LLMC      ? load_llmc(path, cfg, host)
                                        : load_gpt2q(path, cfg, host);
    for (size_t i = 0; !rc && i < n_params; i++)
        if (!(host[i] == host[i]) || host[i] > 3.4e38f || host[i] < -3.4e38f)
            rc = gq_errf(GQ_ENAN, "%s: parameter value %zu is not finite", path, i);
    return rc;
}
