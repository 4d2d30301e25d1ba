/* checkpoint: training checkpoints in HDF5 (DESIGN.md decision 6). Layout:
 *   /            format = "gpt2q-checkpoint", format_version = 1
 *   /config      n_layer, n_head, n_embd, block_size, vocab_size, padded_vocab_size
 *   /params/<HF GPT-2 name>   float32, weights (out, in) as nn.Linear, wte padded to Vp rows
 *   /optim/m/<name>, /optim/v/<name>   AdamW moments, same shapes
 *   /qat/scales/<name>, /qat/m/<name>, /qat/v/<name>   QAT with learned scales (-lsq): each
 *                group's scale (rows, cols / group) and its AdamW moments; attribute format on
 *                /qat/scales/<name> (e.g. "int3-g64")
 *   /state       step, tokens, loader_{epoch,cursor,n_windows,seed,shuffle,T}
 *   /train       options: the run's settings as "key = value" lines */
#define _DEFAULT_SOURCE
#include "train.h"

#include "gpt2_weights.h"
#include "gq_error.h"
#include "h5io.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CKPT_FORMAT "gpt2q-checkpoint"

typedef int (*tensor_fn)(void *ctx, const char *name, float *data, int ndim, const size_t *dims);

/* Call fn for every tensor of one of the model's arrays (params, m or v), by HF name. */
static int each_tensor(const gq_gpt2 *m, float *base, const char *group, tensor_fn fn, void *ctx) {
    size_t off = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        size_t rows, cols;
        gq_gpt2_tensor_shape(&m->cfg, i, &rows, &cols);
        int layers = gq_gpt2_tensor(i)->per_layer ? m->cfg.n_layer : 1;
        for (int l = 0; l < layers; l++) {
            char name[256];
            int n = snprintf(name, sizeof name, "%s/", group);
            snprintf(name + n, sizeof name - (size_t)n, gq_gpt2_tensor(i)->hf_name, l);
            size_t dims[2] = {rows, cols};
            int rc = fn(ctx, name, base + off, cols ? 2 : 1, dims);
            if (rc) return rc;
            off += rows * (cols ? cols : 1);
        }
    }
    return GQ_OK;
}

static int put(void *w, const char *name, float *data, int ndim, const size_t *dims) {
    return gq_h5w_f32(w, name, data, ndim, dims);
}
static int get(void *r, const char *name, float *data, int ndim, const size_t *dims) {
    return gq_h5r_f32(r, name, data, ndim, dims);
}

/* Every -lsq tensor's scales and moments (the rest of /qat: none) */
static int save_lsq(gq_h5w *w, const gq_gpt2 *m) {
    float *host = malloc(3 * m->n_lsq * sizeof(float));
    if (!host) return gq_errf(GQ_ENOMEM, "out of memory");
    int rc = gq_gpt2_lsq_get(m, host, host + m->n_lsq, host + 2 * m->n_lsq);
    static const char *groups[3] = {"/qat/scales", "/qat/m", "/qat/v"};
    for (int k = 0; k < m->n_qat && !rc; k++) {
        const struct gq_qat_tensor *t = &m->qat[k];
        if (!t->spec.lsq) continue;
        const size_t dims[2] = {(size_t)t->rows, (size_t)(t->cols / gq_qgroup(&t->spec, t->cols))};
        for (int a = 0; a < 3 && !rc; a++) {
            char path[300];
            snprintf(path, sizeof path, "%s/%s", groups[a], t->name);
            rc = gq_h5w_f32(w, path, host + (size_t)a * m->n_lsq + t->lsq_off, 2, dims);
            if (!rc && a == 0) {
                char fmt[64];
                snprintf(fmt, sizeof fmt, "%s-g%d", gq_qformat_name(t->spec.format), gq_qgroup(&t->spec, t->cols));
                rc = gq_h5w_attr_str(w, path, "format", fmt);
            }
        }
    }
    free(host);
    return rc;
}

int gq_ckpt_load_lsq(const char *path, gq_gpt2 *m, int *found) {
    *found = 0;
    if (!m->n_lsq) return GQ_OK;
    gq_h5r *r;
    int rc = gq_h5r_open(&r, path);
    if (rc) return rc;
    float *host = malloc(3 * m->n_lsq * sizeof(float));
    if (!host) rc = gq_errf(GQ_ENOMEM, "out of memory");
    static const char *groups[3] = {"/qat/scales", "/qat/m", "/qat/v"};
    int have = 0, want = 0;
    for (int k = 0; k < m->n_qat && !rc; k++) {
        const struct gq_qat_tensor *t = &m->qat[k];
        if (!t->spec.lsq) continue;
        want++;
        char p0[300];
        snprintf(p0, sizeof p0, "%s/%s", groups[0], t->name);
        if (!gq_h5r_exists(r, p0)) continue;
        have++;
        const size_t dims[2] = {(size_t)t->rows, (size_t)(t->cols / gq_qgroup(&t->spec, t->cols))};
        for (int a = 0; a < 3 && !rc; a++) {
            char p[300];
            snprintf(p, sizeof p, "%s/%s", groups[a], t->name);
            rc = gq_h5r_f32(r, p, host + (size_t)a * m->n_lsq + t->lsq_off, 2, dims);
        }
    }
    if (!rc && have && have != want)
        rc = gq_errf(GQ_EFORMAT, "%s: learned scales for %d of the %d -lsq weights (expected all or none)", path, have,
                     want);
    gq_h5r_close(r);
    if (!rc && have) {
        rc = gq_gpt2_lsq_set(m, host, host + m->n_lsq, host + 2 * m->n_lsq);
        *found = 1;
    }
    free(host);
    return rc;
}

static char *opts_text(const gq_train_opts *o) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    gq_train_print_opts(o, f);
    fclose(f);
    return buf;
}

int gq_ckpt_save(const char *path, const gq_gpt2 *m, const gq_train_state *st, const gq_train_opts *o) {
    const size_t bytes = m->n_params * sizeof(float);
    float *host = malloc(bytes);
    char *text = opts_text(o);
    if (!host || !text) {
        free(host);
        free(text);
        return gq_errf(GQ_ENOMEM, "out of memory saving %s", path);
    }
    gq_h5w *w;
    int rc = gq_h5w_begin(&w, path);
    if (rc) {
        free(host);
        free(text);
        return rc;
    }
    const gq_gpt2_config *c = &m->cfg;
    gq_h5w_attr_str(w, "/", "format", CKPT_FORMAT);
    gq_h5w_attr_i64(w, "/", "format_version", 1);
    gq_h5w_attr_i64(w, "/config", "n_layer", c->n_layer);
    gq_h5w_attr_i64(w, "/config", "n_head", c->n_head);
    gq_h5w_attr_i64(w, "/config", "n_embd", c->n_embd);
    gq_h5w_attr_i64(w, "/config", "block_size", c->block_size);
    gq_h5w_attr_i64(w, "/config", "vocab_size", c->vocab_size);
    gq_h5w_attr_i64(w, "/config", "padded_vocab_size", c->padded_vocab_size);
    float *arrays[3] = {m->params_mem, m->m_mem, m->v_mem};
    const char *groups[3] = {"/params", "/optim/m", "/optim/v"};
    for (int a = 0; a < 3 && !rc; a++) {
        rc = m->be->download(host, arrays[a], bytes);
        if (!rc) rc = each_tensor(m, host, groups[a], put, w);
    }
    if (!rc && m->n_lsq && m->lsq_mem) rc = save_lsq(w, m);
    gq_h5w_attr_i64(w, "/state", "step", st->step);
    gq_h5w_attr_f64(w, "/state", "tokens", st->tokens);
    gq_h5w_attr_u64(w, "/state", "loader_epoch", st->loader.epoch);
    gq_h5w_attr_u64(w, "/state", "loader_cursor", st->loader.cursor);
    gq_h5w_attr_u64(w, "/state", "loader_n_windows", st->loader.n_windows);
    gq_h5w_attr_u64(w, "/state", "loader_seed", st->loader.seed);
    gq_h5w_attr_i64(w, "/state", "loader_shuffle", st->loader.shuffle);
    gq_h5w_attr_i64(w, "/state", "loader_T", st->loader.T);
    gq_h5w_attr_str(w, "/train", "options", text);
    free(host);
    free(text);
    if (rc) {
        gq_h5w_abort(w);
        return rc;
    }
    return gq_h5w_commit(w);
}

static int check_format(gq_h5r *r) {
    char fmt[64];
    if (gq_h5r_attr_str(r, "/", "format", fmt, sizeof fmt) || strcmp(fmt, CKPT_FORMAT))
        return gq_errf(GQ_EFORMAT, "%s: not a gpt2q checkpoint (root attribute format is not \"%s\")", gq_h5r_path(r),
                       CKPT_FORMAT);
    return GQ_OK;
}

int gq_ckpt_load_opts(const char *path, gq_train_opts *o) {
    gq_h5r *r;
    int rc = gq_h5r_open(&r, path);
    if (rc) return rc;
    char *text = malloc(1 << 16);
    rc = check_format(r);
    if (!rc) rc = gq_h5r_attr_str(r, "/train", "options", text, 1 << 16);
    if (!rc) rc = gq_train_parse_config(o, text, strlen(text), path);
    free(text);
    gq_h5r_close(r);
    return rc;
}

int gq_ckpt_load(const char *path, gq_gpt2 *m, gq_train_state *st, gq_train_opts *o) {
    gq_h5r *r;
    int rc = gq_h5r_open(&r, path);
    if (rc) return rc;
    rc = check_format(r);
    const size_t bytes = m->n_params * sizeof(float);
    float *host = malloc(bytes);
    if (!host) rc = gq_errf(GQ_ENOMEM, "out of memory");
    float *arrays[3] = {m->params_mem, m->m_mem, m->v_mem};
    const char *groups[3] = {"/params", "/optim/m", "/optim/v"};
    for (int a = 0; a < 3 && !rc; a++) {
        rc = each_tensor(m, host, groups[a], get, r);
        if (!rc) rc = m->be->upload(arrays[a], host, bytes);
    }
    int64_t i64 = 0;
    uint64_t u64 = 0;
    if (!rc) rc = gq_h5r_attr_i64(r, "/state", "step", &st->step);
    if (!rc) rc = gq_h5r_attr_f64(r, "/state", "tokens", &st->tokens);
    if (!rc) rc = gq_h5r_attr_u64(r, "/state", "loader_epoch", &st->loader.epoch);
    if (!rc) rc = gq_h5r_attr_u64(r, "/state", "loader_cursor", &st->loader.cursor);
    if (!rc) rc = gq_h5r_attr_u64(r, "/state", "loader_n_windows", &st->loader.n_windows);
    if (!rc) rc = gq_h5r_attr_u64(r, "/state", "loader_seed", &u64);
    st->loader.seed = u64;
    if (!rc) rc = gq_h5r_attr_i64(r, "/state", "loader_shuffle", &i64);
    st->loader.shuffle = (int32_t)i64;
    if (!rc) rc = gq_h5r_attr_i64(r, "/state", "loader_T", &i64);
    st->loader.T = (int32_t)i64;
    free(host);
    gq_h5r_close(r);
    if (!rc && o) rc = gq_ckpt_load_opts(path, o);
    return rc;
}

int gq_ckpt_latest(const char *dir, char *path, size_t size, int64_t *step) {
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return gq_errf(GQ_ENOENT, "%s: no such run folder, so no checkpoint to resume from", dir);
    if (gq_run_newest(dir, path, size, step))
        return gq_errf(GQ_ENOENT, "%s: no checkpoint (ckpt-*.h5) to resume from", dir);
    return GQ_OK;
}
