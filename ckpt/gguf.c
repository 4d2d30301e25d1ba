/* gguf: see gguf.h. Layout (GGUF v3, little-endian): magic "GGUF", version 3, tensor count,
 * metadata count; metadata (key string, value type, value); tensor infos (name, n_dims, dims
 * innermost first, ggml type, offset from the data section); padding to general.alignment
 * (32); the tensor data, each tensor at an aligned offset. */
#define _POSIX_C_SOURCE 200809L
#include "gguf.h"

#include "gpt2_weights.h"
#include "gq_error.h"
#include "gq_file.h"
#include "h5io.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 32

enum { T_U32 = 4, T_I32 = 5, T_F32 = 6, T_STR = 8, T_ARR = 9 };

/* a growable byte buffer for the header */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
    uint64_t kv; /* metadata entries written */
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1 << 20;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s, size_t n) { u64(b, n), put(b, s, n); }
static void key(buf *b, const char *k) { str(b, k, strlen(k)), b->kv++; }
static void kv_u32(buf *b, const char *k, uint32_t v) { key(b, k), u32(b, T_U32), u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { key(b, k), u32(b, T_F32), put(b, &v, 4); }
static void kv_str(buf *b, const char *k, const char *v) { key(b, k), u32(b, T_STR), str(b, v, strlen(v)); }

/* ---- vocabulary: tokens by id from encoder.json, merges from vocab.bpe ---- */

typedef struct {
    char **tok;
    int n_tok;
    char *merges_text; /* vocab.bpe, lines cut in place */
    char **merge;
    int n_merge;
} vocab;

static void vocab_free(vocab *v) {
    for (int i = 0; v->tok && i < v->n_tok; i++)
        free(v->tok[i]);
    free(v->tok), free(v->merges_text), free(v->merge);
}

static int vocab_load(vocab *v, const char *dir, int n_vocab) {
    memset(v, 0, sizeof *v);
    char path[4200];
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    uint8_t *text;
    size_t len;
    int rc = gq_read_file(path, &text, &len);
    if (rc) return rc;
    cJSON *j = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return gq_errf(GQ_EFORMAT, "%s: not a JSON object of token -> id", path);
    }
    v->tok = calloc((size_t)n_vocab, sizeof *v->tok);
    v->n_tok = n_vocab;
    int count = 0;
    for (cJSON *e = j->child; e && v->tok; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valueint < 0 || e->valueint >= n_vocab || v->tok[e->valueint]) continue;
        v->tok[e->valueint] = strdup(e->string);
        count++;
    }
    cJSON_Delete(j);
    if (!v->tok) return gq_errf(GQ_ENOMEM, "out of memory");
    if (count != n_vocab)
        return gq_errf(GQ_EVOCAB, "%s: %d distinct ids below %d; the model has a vocabulary of %d", path, count,
                       n_vocab, n_vocab);
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    if ((rc = gq_read_file(path, &text, &len))) return rc;
    v->merges_text = (char *)text;
    v->merge = malloc(sizeof *v->merge * (len / 3 + 1));
    if (!v->merge) return gq_errf(GQ_ENOMEM, "out of memory");
    for (char *line = v->merges_text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (!l || (line == v->merges_text && !strncmp(line, "#version", 8))) continue; /* merges may start with # */
        if (!strchr(line, ' ')) return gq_errf(GQ_EFORMAT, "%s: merge line \"%s\" is not two tokens", path, line);
        v->merge[v->n_merge++] = line;
    }
    return GQ_OK;
}

/* ---- tensors ---- */

typedef struct {
    char name[64];
    int src; /* tensor index in gpt2_layout, -1 none */
    int layer;
    int rows, cols; /* our (out, in); rows = V for the token embedding */
    int type;
    int search;     /* Q4_0 with searched scales (--format int4-mse) */
    float *learned; /* Q4_0 with learned scales (--format int4-g32-lsq): one per block, from /qat/scales */
    const gq_qtensor *pre; /* -gptq: GPTQ's codes and scales (blocks of 32 in row order) */
    size_t src_off; /* into the parameter array */
    size_t off, bytes;
} gtensor;

static size_t type_bytes(int type, size_t n) {
    switch (type) {
    case GQ_GGML_F32: return n * 4;
    case GQ_GGML_F16: return n * 2;
    case GQ_GGML_Q4_0: return n / 32 * 18;
    default: return n / 32 * 34;
    }
}

static const char *gguf_names[GQ_GPT2_N_TENSORS] = {
    "token_embd.weight",      "position_embd.weight", "blk.%d.attn_norm.weight",   "blk.%d.attn_norm.bias",
    "blk.%d.attn_qkv.weight", "blk.%d.attn_qkv.bias", "blk.%d.attn_output.weight", "blk.%d.attn_output.bias",
    "blk.%d.ffn_norm.weight", "blk.%d.ffn_norm.bias", "blk.%d.ffn_up.weight",      "blk.%d.ffn_up.bias",
    "blk.%d.ffn_down.weight", "blk.%d.ffn_down.bias", "output_norm.weight",        "output_norm.bias"};

/* The learned scales of weight `name` (rows, cols; blocks of 32) from a checkpoint's /qat/scales */
static int read_learned(const char *ckpt_path, const char *name, int rows, int cols, float **out) {
    gq_h5r *r;
    int rc = gq_h5r_open(&r, ckpt_path);
    if (rc) return rc;
    char path[300];
    snprintf(path, sizeof path, "/qat/scales/%s", name);
    const size_t dims[2] = {(size_t)rows, (size_t)cols / 32};
    if (!gq_h5r_exists(r, path))
        rc = gq_errf(GQ_EFORMAT, "%s: no learned scales for %s (%s): -lsq exports the scales that QAT with -lsq trained",
                     ckpt_path, name, path);
    else if (!(*out = malloc(dims[0] * dims[1] * sizeof **out)))
        rc = gq_errf(GQ_ENOMEM, "out of memory");
    else
        rc = gq_h5r_f32(r, path, *out, 2, dims);
    gq_h5r_close(r);
    return rc;
}

/* Encode rows x cols floats as `type` into out (learned: Q4_0's block scales as QAT trained them). */
static int encode(const float *x, int rows, int cols, int type, int search, const float *learned,
                  const gq_qtensor *pre, uint8_t *out, const char *src, const char *name) {
    const size_t n = (size_t)rows * cols;
    if (type == GQ_GGML_F32) {
        memcpy(out, x, n * 4);
        return GQ_OK;
    }
    if (type == GQ_GGML_F16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = gq_f32_to_f16(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return GQ_OK;
    }
    uint8_t codes[32], packed[32];
    for (size_t b = 0; b < n / 32; b++) {
        const float *g = x + b * 32;
        for (int i = 0; i < 32; i++)
            if (!isfinite(g[i]))
                return gq_errf(GQ_ENAN, "%s: tensor %s: value %zu is not finite", src, name, b * 32 + i);
        float d;
        const size_t bs = type == GQ_GGML_Q8_0 ? 34 : 18;
        if (pre) { /* GPTQ's block: the same code layout and fp16 scale as Q8_0 / Q4_0 */
            const uint16_t h = gq_f32_to_f16(pre->scales[b]);
            memcpy(out + b * bs, &h, 2);
            memcpy(out + b * bs + 2, pre->qweight + b * (bs - 2), bs - 2);
            continue;
        }
        if (learned) { /* QAT's trained scale (quant.h's gq_lsq_*): Q4_0's (q - 8) d is its fake-quant value */
            d = gq_lsq_stored(GQ_QF_INT4, learned[b]);
            if (!isfinite(d)) return gq_errf(GQ_ENAN, "%s: tensor %s: learned scale %zu is not finite", src, name, b);
            for (int i = 0; i < 32; i++) codes[i] = (uint8_t)gq_lsq_code(GQ_QF_INT4, g[i], d);
        } else {
            d = type == GQ_GGML_Q8_0 ? gq_q8_group(g, 32, codes, 1)
                : search             ? gq_qsearch_group(GQ_QF_INT4, g, NULL, 32, codes, NULL)
                                     : gq_qsym_group(g, 32, 4, codes);
        }
        uint16_t h = gq_f32_to_f16(d);
        memcpy(out + b * bs, &h, 2);
        gq_pack_group(codes, 32, type == GQ_GGML_Q8_0 ? 8 : 4, packed);
        memcpy(out + b * bs + 2, packed, bs - 2);
    }
    return GQ_OK;
}

int gq_gguf_export(const char *ckpt_path, const char *out_path, const gq_qplan *plan, const gq_gguf_opts *o,
                   int *n_quant, size_t *bytes_out) {
    *n_quant = 0;
    gq_gpt2_config cfg;
    int rc = gq_weights_config(ckpt_path, &cfg);
    if (rc) return rc;
    const int L = cfg.n_layer, C = cfg.n_embd, V = cfg.vocab_size;
    vocab voc;
    if ((rc = vocab_load(&voc, o->vocab_dir, V))) {
        vocab_free(&voc);
        return rc;
    }
    /* tensor list and types */
    const int nt = 4 + 12 * L;
    gtensor *ts = calloc((size_t)nt, sizeof *ts);
    float *params = malloc(gq_gpt2_n_params(&cfg) * sizeof *params);
    if (!ts || !params) rc = gq_errf(GQ_ENOMEM, "out of memory");
    if (!rc) rc = gq_weights_read(ckpt_path, &cfg, params);
    int k = 0;
    size_t data = 0, src_off = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS && !rc; i++) {
        size_t rows, cols;
        gq_gpt2_tensor_shape(&cfg, i, &rows, &cols);
        const int layers = gq_gpt2_tensor(i)->per_layer ? L : 1;
        for (int l = 0; l < layers && !rc; l++, k++) {
            gtensor *t = &ts[k];
            snprintf(t->name, sizeof t->name, gguf_names[i], l);
            t->src = i, t->layer = l, t->rows = i == 0 ? V : (int)rows, t->cols = (int)cols, t->src_off = src_off;
            src_off += rows * (cols ? cols : 1);
            t->type = GQ_GGML_F32;
            char ours[160];
            gq_gpt2_tensor_name(i, l, ours, sizeof ours);
            gq_qspec s;
            if (cols && gq_qplan_lookup(plan, ours, (int)rows, (int)cols, &s)) {
                if (s.gptq && !(s.format == GQ_QF_Q8_0 || (s.format == GQ_QF_INT4 && s.group == 32)))
                    rc = gq_errf(GQ_EUNSUPPORTED,
                                 "%s: %s as %s group %d with GPTQ: GGUF export writes q8_0-gptq (Q8_0) or "
                                 "int4-g32-gptq (Q4_0)",
                                 ckpt_path, ours, gq_qformat_name(s.format), s.group);
                else if (s.gptq && !(t->pre = o->pre ? o->pre(ours, o->pre_ctx) : NULL))
                    rc = gq_errf(GQ_EINVAL, "%s: %s: -gptq quantizes with calibration data (--calib DATA)", ckpt_path,
                                 ours);
                else if (s.gptq)
                    t->type = s.format == GQ_QF_Q8_0 ? GQ_GGML_Q8_0 : GQ_GGML_Q4_0;
                else if (s.lsq && !(s.format == GQ_QF_INT4 && s.group == 32))
                    rc = gq_errf(GQ_EUNSUPPORTED,
                                 "%s: %s as %s group %d with learned scales: GGUF export writes them as Q4_0 "
                                 "(--format int4-g32-lsq)",
                                 ckpt_path, ours, gq_qformat_name(s.format), s.group);
                else if (s.lsq)
                    t->type = GQ_GGML_Q4_0, rc = read_learned(ckpt_path, ours, (int)rows, (int)cols, &t->learned);
                else if (s.format == GQ_QF_Q8_0)
                    t->type = GQ_GGML_Q8_0;
                else if (s.format == GQ_QF_INT4 && s.group == 32)
                    t->type = GQ_GGML_Q4_0, t->search = s.search;
                else
                    rc =
                        gq_errf(GQ_EUNSUPPORTED,
                                "%s: %s as %s group %d: GGUF export writes Q8_0 (--format q8_0) or Q4_0 (--format int4 "
                                "--group 32)",
                                ckpt_path, ours, gq_qformat_name(s.format), s.group);
                if (!rc && cols % 32)
                    rc = gq_errf(GQ_ESHAPE, "%s: %s has rows of %zu values, not a multiple of 32", ckpt_path, ours,
                                 cols);
                (*n_quant)++;
            } else if (cols && o->f16 && i != 1) {
                t->type = GQ_GGML_F16;
            }
            t->off = data;
            t->bytes = type_bytes(t->type, (size_t)t->rows * (cols ? cols : 1));
            data += (t->bytes + ALIGN - 1) / ALIGN * ALIGN;
        }
    }
    if (!rc && !*n_quant) rc = gq_errf(GQ_EINVAL, "%s: the layer selection matches no weight to quantize", ckpt_path);
    /* header */
    buf h = {0};
    if (!rc) {
        put(&h, "GGUF", 4);
        u32(&h, 3);
        u64(&h, (uint64_t)nt);
        u64(&h, 0); /* metadata entries: patched below */
        kv_str(&h, "general.architecture", "gpt2");
        kv_str(&h, "general.name", o->name ? o->name : "gpt2q");
        kv_u32(&h, "general.alignment", ALIGN);
        int has[9] = {0};
        for (int i = 0; i < nt; i++)
            has[ts[i].type] = 1;
        const int ftype = has[GQ_GGML_Q4_0] ? 2 : has[GQ_GGML_Q8_0] ? 7 : has[GQ_GGML_F16] ? 1 : 0; /* llama_ftype */
        kv_u32(&h, "general.file_type", (uint32_t)ftype);
        kv_u32(&h, "gpt2.context_length", (uint32_t)cfg.block_size);
        kv_u32(&h, "gpt2.embedding_length", (uint32_t)C);
        kv_u32(&h, "gpt2.feed_forward_length", (uint32_t)(4 * C));
        kv_u32(&h, "gpt2.block_count", (uint32_t)L);
        kv_u32(&h, "gpt2.attention.head_count", (uint32_t)cfg.n_head);
        kv_f32(&h, "gpt2.attention.layer_norm_epsilon", 1e-5f);
        kv_str(&h, "tokenizer.ggml.model", "gpt2");
        kv_str(&h, "tokenizer.ggml.pre", "gpt-2");
        key(&h, "tokenizer.ggml.tokens");
        u32(&h, T_ARR), u32(&h, T_STR), u64(&h, (uint64_t)V);
        for (int i = 0; i < V; i++)
            str(&h, voc.tok[i], strlen(voc.tok[i]));
        key(&h, "tokenizer.ggml.token_type");
        u32(&h, T_ARR), u32(&h, T_I32), u64(&h, (uint64_t)V);
        for (int i = 0; i < V; i++)
            u32(&h, !strcmp(voc.tok[i], "<|endoftext|>") ? 3 : 1); /* control : normal */
        key(&h, "tokenizer.ggml.merges");
        u32(&h, T_ARR), u32(&h, T_STR), u64(&h, (uint64_t)voc.n_merge);
        for (int i = 0; i < voc.n_merge; i++)
            str(&h, voc.merge[i], strlen(voc.merge[i]));
        const uint32_t eot = V > 50256 ? 50256 : (uint32_t)V - 1;
        kv_u32(&h, "tokenizer.ggml.bos_token_id", eot);
        kv_u32(&h, "tokenizer.ggml.eos_token_id", eot);
        if (!h.oom) memcpy(h.p + 16, &h.kv, 8);
        for (int i = 0; i < nt; i++) {
            str(&h, ts[i].name, strlen(ts[i].name));
            u32(&h, ts[i].cols ? 2 : 1);
            if (ts[i].cols) u64(&h, (uint64_t)ts[i].cols);
            u64(&h, (uint64_t)ts[i].rows);
            u32(&h, (uint32_t)ts[i].type);
            u64(&h, ts[i].off);
        }
        static const uint8_t zeros[ALIGN] = {0};
        if (h.n % ALIGN) put(&h, zeros, ALIGN - h.n % ALIGN);
        if (h.oom) rc = gq_errf(GQ_ENOMEM, "out of memory");
    }
    /* write: header, then each tensor padded to the alignment */
    char tmp[4300];
    gq_temp_path(out_path, tmp, sizeof tmp);
    FILE *f = rc ? NULL : fopen(tmp, "wb");
    if (!rc && !f) rc = gq_errf(GQ_EIO, "%s: cannot create it (directory missing or not writable?)", out_path);
    if (!rc && fwrite(h.p, 1, h.n, f) != h.n) rc = gq_errf(GQ_EIO, "%s: writing failed (disk full?)", out_path);
    size_t maxb = 0;
    for (int i = 0; i < nt && ts; i++)
        maxb = ts[i].bytes > maxb ? ts[i].bytes : maxb;
    uint8_t *tb = rc ? NULL : malloc(maxb + ALIGN);
    if (!rc && !tb) rc = gq_errf(GQ_ENOMEM, "out of memory");
    for (int i = 0; i < nt && !rc; i++) {
        const gtensor *t = &ts[i];
        rc = encode(params + t->src_off, t->rows, t->cols ? t->cols : 1, t->type, t->search, t->learned, t->pre, tb, ckpt_path,
                    t->name);
        const size_t padded = (t->bytes + ALIGN - 1) / ALIGN * ALIGN;
        memset(tb + t->bytes, 0, padded - t->bytes);
        if (!rc && fwrite(tb, 1, padded, f) != padded) rc = gq_errf(GQ_EIO, "%s: writing failed (disk full?)", out_path);
    }
    if (f && fclose(f) && !rc) rc = gq_errf(GQ_EIO, "%s: writing failed (disk full?)", out_path);
    if (!rc)
        rc = gq_commit_file(tmp, out_path);
    else if (f)
        remove(tmp);
    if (bytes_out) *bytes_out = h.n + data;
    for (int i = 0; i < nt && ts; i++) free(ts[i].learned);
    free(tb), free(h.p), free(ts), free(params);
    vocab_free(&voc);
    return rc;
}
