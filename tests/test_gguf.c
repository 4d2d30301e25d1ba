/* GGUF export (ckpt/gguf.h) read back by an independent minimal GGUF parser written here:
 *   - header, metadata (architecture, hyperparameters, the 50257 GPT-2 tokens with
 *     <|endoftext|> as a control token, the 50000 merges), 4 + 12 L tensor infos with
 *     llama.cpp's names, dims innermost first and aligned offsets;
 *   - every Q4_0 / Q8_0 block equals, byte for byte, the fp16 scale and packed codes of our
 *     HDF5 export of the same checkpoint (int4-g32 / q8_0 / int4-g32-mse / int4-g32-lsq: QAT's
 *     learned scales from the checkpoint), and F32 tensors
 *     equal the weights;
 *   - bad input: a format GGUF cannot hold is refused and leaves no file.
 * usage: test_gguf VOCAB_DIR */
#define _GNU_SOURCE
#include "gguf.h"
#include "gpt2.h"
#include "gq_error.h"
#include "gq_test.h"
#include "gq_test_model.h"
#include "gptq_run.h"
#include "tokfile.h"
#include "h5io.h"
#include "qexport.h"
#include "train.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int shape_cb(const char *name, int *rows, int *cols, void *ctx) {
    return gq_gpt2_shape_of((const gq_gpt2_config *)ctx, name, rows, cols);
}

typedef struct {
    const uint8_t *p, *end;
    int bad;
} rd;
static uint64_t rd_u(rd *r, int n) {
    uint64_t v = 0;
    if (r->p + n > r->end) {
        r->bad = 1;
        return 0;
    }
    memcpy(&v, r->p, (size_t)n);
    r->p += n;
    return v;
}
static const char *rd_s(rd *r, uint64_t *len) {
    *len = rd_u(r, 8);
    const char *s = (const char *)r->p;
    if (r->p + *len > r->end)
        r->bad = 1, *len = 0;
    else
        r->p += *len;
    return s;
}
static void skip_value(rd *r, uint32_t type);
static void skip_value(rd *r, uint32_t type) {
    static const int size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    uint64_t l;
    if (type == 8)
        rd_s(r, &l);
    else if (type == 9) {
        uint32_t t = (uint32_t)rd_u(r, 4);
        uint64_t n = rd_u(r, 8);
        for (uint64_t i = 0; i < n && !r->bad; i++)
            skip_value(r, t);
    } else if (type < 13)
        rd_u(r, size[type]);
    else
        r->bad = 1;
}

static void check_gguf(const char *path, const char *h5, const gq_gpt2_config *cfg, int qtype) {
    uint8_t *data;
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "%s missing", path);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc(n);
    CHECK(fread(data, 1, n, f) == n);
    fclose(f);
    rd r = {data, data + n, 0};
    CHECK(!memcmp(data, "GGUF", 4));
    r.p += 4;
    CHECK(rd_u(&r, 4) == 3);
    uint64_t nt = rd_u(&r, 8), nkv = rd_u(&r, 8);
    CHECKF(nt == (uint64_t)(4 + 12 * cfg->n_layer), "%llu tensors", (unsigned long long)nt);
    int seen_arch = 0, seen_tokens = 0, seen_merges = 0, seen_blocks = 0, eot_control = 0;
    for (uint64_t k = 0; k < nkv && !r.bad; k++) {
        uint64_t kl, vl;
        const char *key = rd_s(&r, &kl);
        uint32_t type = (uint32_t)rd_u(&r, 4);
        if (kl == 20 && !memcmp(key, "general.architecture", 20) && type == 8) {
            const char *v = rd_s(&r, &vl);
            seen_arch = vl == 4 && !memcmp(v, "gpt2", 4);
        } else if (kl == 16 && !memcmp(key, "gpt2.block_count", 16) && type == 4) {
            seen_blocks = (int)rd_u(&r, 4) == cfg->n_layer;
        } else if (kl == 21 && !memcmp(key, "tokenizer.ggml.tokens", 21) && type == 9) {
            CHECK(rd_u(&r, 4) == 8);
            uint64_t cnt = rd_u(&r, 8);
            seen_tokens = cnt == 50257;
            for (uint64_t i = 0; i < cnt && !r.bad; i++) {
                const char *t = rd_s(&r, &vl);
                if (i == 0) seen_tokens &= vl == 1 && t[0] == '!';
                if (i == 50256) seen_tokens &= vl == 13 && !memcmp(t, "<|endoftext|>", 13);
            }
        } else if (kl == 25 && !memcmp(key, "tokenizer.ggml.token_type", 25) && type == 9) {
            CHECK(rd_u(&r, 4) == 5);
            uint64_t cnt = rd_u(&r, 8);
            for (uint64_t i = 0; i < cnt && !r.bad; i++) {
                uint32_t tt = (uint32_t)rd_u(&r, 4);
                if (i == 50256) eot_control = tt == 3;
            }
        } else if (kl == 21 && !memcmp(key, "tokenizer.ggml.merges", 21) && type == 9) {
            CHECK(rd_u(&r, 4) == 8);
            uint64_t cnt = rd_u(&r, 8);
            seen_merges = cnt == 50000;
            for (uint64_t i = 0; i < cnt && !r.bad; i++) {
                const char *t = rd_s(&r, &vl);
                if (i == 0) seen_merges &= vl == 4 && !memcmp(t, "\xc4\xa0 t", 4); /* "Ġ t" */
            }
        } else {
            skip_value(&r, type);
        }
    }
    CHECKF(!r.bad && seen_arch && seen_blocks && seen_tokens && seen_merges && eot_control,
           "%s metadata: arch %d blocks %d tokens %d merges %d eot %d", path, seen_arch, seen_blocks, seen_tokens,
           seen_merges, eot_control);
    /* tensor infos */
    struct {
        char name[64];
        uint64_t d0, d1, off;
        uint32_t nd, type;
    } ti[64];
    for (uint64_t t = 0; t < nt && t < 64 && !r.bad; t++) {
        uint64_t l;
        const char *s = rd_s(&r, &l);
        snprintf(ti[t].name, sizeof ti[t].name, "%.*s", (int)l, s);
        ti[t].nd = (uint32_t)rd_u(&r, 4);
        ti[t].d0 = rd_u(&r, 8);
        ti[t].d1 = ti[t].nd > 1 ? rd_u(&r, 8) : 1;
        ti[t].type = (uint32_t)rd_u(&r, 4);
        ti[t].off = rd_u(&r, 8);
    }
    size_t base = (size_t)(r.p - data);
    base = (base + 31) / 32 * 32;
    /* compare with the HDF5 export: token_embd (first V rows) and blk.0.attn_qkv */
    gq_h5r *h;
    CHECK_OK(gq_h5r_open(&h, h5));
    const char *pairs[3][2] = {{"token_embd.weight", "wte.weight"},
                               {"blk.0.attn_qkv.weight", "h.0.attn.c_attn.weight"},
                               {"blk.1.ffn_down.weight", "h.1.mlp.c_proj.weight"}};
    for (int p = 0; p < 3 && h; p++) {
        int t = -1;
        for (uint64_t i = 0; i < nt; i++)
            if (!strcmp(ti[i].name, pairs[p][0])) t = (int)i;
        CHECKF(t >= 0, "%s missing", pairs[p][0]);
        if (t < 0) continue;
        CHECKF(ti[t].type == (uint32_t)qtype && ti[t].off % 32 == 0, "%s: type %u offset %llu", pairs[p][0], ti[t].type,
               (unsigned long long)ti[t].off);
        int rows, cols;
        gq_gpt2_shape_of(cfg, pairs[p][1], &rows, &cols);
        if (p == 0) rows = cfg->vocab_size;
        CHECKF(ti[t].d0 == (uint64_t)cols && ti[t].d1 == (uint64_t)rows, "%s dims", pairs[p][0]);
        size_t full_rows = (size_t)(p == 0 ? cfg->padded_vocab_size : rows), groups = full_rows * cols / 32;
        int bits = qtype == GQ_GGML_Q4_0 ? 4 : 8;
        size_t qb = groups * 32 * bits / 8;
        uint8_t *qw = malloc(qb);
        uint16_t *sc = malloc(groups * 2);
        char path2[200];
        snprintf(path2, sizeof path2, "/tensors/%s/qweight", pairs[p][1]);
        CHECK_OK(gq_h5r_u8(h, path2, qw, 1, &qb));
        snprintf(path2, sizeof path2, "/tensors/%s/scales", pairs[p][1]);
        CHECK_OK(gq_h5r_u16(h, path2, sc, 1, &groups));
        const size_t bs = bits == 4 ? 18 : 34, used = (size_t)rows * cols / 32;
        int same = 1;
        for (size_t b = 0; b < used; b++) {
            const uint8_t *blk = data + base + ti[t].off + b * bs;
            same &= !memcmp(blk, &sc[b], 2) && !memcmp(blk + 2, qw + b * (bs - 2), bs - 2);
        }
        CHECKF(same, "%s: GGUF blocks differ from the HDF5 export's codes and scales", pairs[p][0]);
        free(qw), free(sc);
    }
    if (h) gq_h5r_close(h);
    CHECKF(base + ti[nt - 1].off <= n, "%s: data beyond the file", path);
    free(data);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_gguf VOCAB_DIR\n");
        return 2;
    }
    char dir[] = "/tmp/gq_test_gguf_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char ckpt[256], h5[256], gg[256];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    gq_gpt2_config cfg = {2, 2, 64, 32, 50257, 0};
    gq_gpt2 *m = gq_test_random_ckpt(ckpt, &cfg, 1, 32, 3);
    if (!m) return gq_test_finish("test_gguf");
    /* int4-g32-mse: Q4_0 blocks with searched scales (our export's, byte for byte) */
    const char *fmts[3] = {"int4-g32", "q8_0", "int4-g32-mse"};
    const int types[3] = {GQ_GGML_Q4_0, GQ_GGML_Q8_0, GQ_GGML_Q4_0};
    for (int k = 0; k < 3; k++) {
        gq_qplan plan;
        CHECK_OK(gq_qplan_build(&plan, fmts[k], "all", 0, cfg.n_layer));
        snprintf(h5, sizeof h5, "%s/%s.h5", dir, fmts[k]);
        snprintf(gg, sizeof gg, "%s/%s.gguf", dir, fmts[k]);
        gq_export_entry *e = NULL;
        int n = 0, nq = 0;
        CHECK_OK(gq_export(ckpt, h5, &plan, shape_cb, &cfg, &e, &n));
        free(e);
        gq_gguf_opts go = {0, argv[1], "test", NULL, NULL};
        CHECK_OK(gq_gguf_export(ckpt, gg, &plan, &go, &nq, NULL));
        CHECKF(nq == 1 + 4 * cfg.n_layer, "%d quantized tensors", nq);
        check_gguf(gg, h5, &cfg, types[k]);
    }
    /* int4-g32-lsq: Q4_0 blocks with QAT's learned scales (a checkpoint with /qat/scales, the
     * scales moved off the rule by factors 0.6 .. 1.4), our HDF5 export's byte for byte */
    {
        gq_qplan plan;
        char lck[256];
        snprintf(lck, sizeof lck, "%s/lsq.h5", dir);
        CHECK_OK(gq_qplan_build(&plan, "int4-g32-lsq", "all", 0, cfg.n_layer));
        CHECK_OK(gq_gpt2_qat_enable(m, &plan));
        float *sc = malloc(m->n_lsq * sizeof *sc);
        CHECK_OK(gq_gpt2_lsq_get(m, sc, NULL, NULL));
        for (size_t i = 0; i < m->n_lsq; i++) sc[i] *= 0.6f + 0.8f * (float)(i % 11) / 10.0f;
        CHECK_OK(gq_gpt2_lsq_set(m, sc, NULL, NULL));
        free(sc);
        gq_train_opts o;
        gq_train_defaults(&o);
        gq_train_state st = {0};
        CHECK_OK(gq_ckpt_save(lck, m, &st, &o));
        snprintf(h5, sizeof h5, "%s/lsq-export.h5", dir);
        snprintf(gg, sizeof gg, "%s/lsq.gguf", dir);
        gq_export_entry *e = NULL;
        int n = 0, nq = 0;
        CHECK_OK(gq_export(lck, h5, &plan, shape_cb, &cfg, &e, &n));
        free(e);
        gq_gguf_opts go = {0, argv[1], "test", NULL, NULL};
        CHECK_OK(gq_gguf_export(lck, gg, &plan, &go, &nq, NULL));
        check_gguf(gg, h5, &cfg, GQ_GGML_Q4_0);
        /* a checkpoint without learned scales, or a format Q4_0 cannot hold, is refused */
        snprintf(gg, sizeof gg, "%s/bad-lsq.gguf", dir);
        int rc = gq_gguf_export(ckpt, gg, &plan, &go, &nq, NULL);
        CHECKF(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), "no learned scales") && access(gg, F_OK) != 0,
               "int4-g32-lsq without /qat/scales: %s", gq_errmsg(rc));
        CHECK_OK(gq_qplan_build(&plan, "nf4-lsq", "all", 0, cfg.n_layer));
        rc = gq_gguf_export(lck, gg, &plan, &go, &nq, NULL);
        CHECKF(rc == GQ_EUNSUPPORTED && strstr(gq_errmsg(rc), "int4-g32-lsq") && access(gg, F_OK) != 0,
               "nf4-lsq to GGUF: %s", gq_errmsg(rc));
    }
    /* GPTQ: Q4_0 / Q8_0 blocks with GPTQ's codes and scales, our HDF5 export's byte for byte */
    {
        char tok[256];
        snprintf(tok, sizeof tok, "%s/tok.h5", dir);
        static uint16_t ids[3000];
        for (int i = 0; i < 3000; i++) ids[i] = (uint16_t)((i * 7919) % 50257);
        gq_tokfile_meta meta = {50257, 50256, 0.1, 0, "gpt2", 0, NULL};
        CHECK_OK(gq_tokfile_write(tok, ids, 2700, ids + 2700, 300, &meta));
        const char *gf[2] = {"int4-g32-gptq", "q8_0-gptq"};
        const int gt[2] = {GQ_GGML_Q4_0, GQ_GGML_Q8_0};
        for (int k = 0; k < 2; k++) {
            gq_qplan plan;
            CHECK_OK(gq_qplan_build(&plan, gf[k], "all", 0, cfg.n_layer));
            gq_gptq_set set;
            CHECK_OK(gq_gptq_run(&set, ckpt, &plan, tok, 1024, 0.01, 0, 0));
            snprintf(h5, sizeof h5, "%s/%s.h5", dir, gf[k]);
            snprintf(gg, sizeof gg, "%s/%s.gguf", dir, gf[k]);
            const gq_export_hooks hk = {NULL, NULL, gq_gptq_lookup, &set, set.desc, NULL, NULL};
            gq_export_entry *e = NULL;
            int n = 0, nq = 0;
            CHECK_OK(gq_export_with(ckpt, h5, &plan, shape_cb, &cfg, &hk, &e, &n));
            free(e);
            gq_gguf_opts go = {0, argv[1], "test", gq_gptq_lookup, &set};
            CHECK_OK(gq_gguf_export(ckpt, gg, &plan, &go, &nq, NULL));
            CHECKF(nq == 1 + 4 * cfg.n_layer, "%s: %d quantized tensors", gf[k], nq);
            check_gguf(gg, h5, &cfg, gt[k]);
            /* without GPTQ's tensors: refused, no file */
            snprintf(gg, sizeof gg, "%s/bad-gptq.gguf", dir);
            go.pre = NULL;
            int rc = gq_gguf_export(ckpt, gg, &plan, &go, &nq, NULL);
            CHECKF(rc == GQ_EINVAL && strstr(gq_errmsg(rc), "--calib") && access(gg, F_OK) != 0,
                   "%s to GGUF without GPTQ's tensors: %s", gf[k], gq_errmsg(rc));
            gq_gptq_free(&set);
        }
        gq_qplan plan;
        CHECK_OK(gq_qplan_build(&plan, "nf4-gptq", "all", 0, cfg.n_layer));
        gq_gguf_opts go = {0, argv[1], NULL, NULL, NULL};
        int nq = 0;
        snprintf(gg, sizeof gg, "%s/bad-gptq.gguf", dir);
        int rc = gq_gguf_export(ckpt, gg, &plan, &go, &nq, NULL);
        CHECKF(rc == GQ_EUNSUPPORTED && strstr(gq_errmsg(rc), "int4-g32-gptq") && access(gg, F_OK) != 0,
               "nf4-gptq to GGUF: %s", gq_errmsg(rc));
        unlink(tok);
    }
    /* bad input: int4 with groups of 64 has no GGUF type */
    gq_qplan plan;
    CHECK_OK(gq_qplan_build(&plan, "int4", "all", 64, cfg.n_layer));
    snprintf(gg, sizeof gg, "%s/bad.gguf", dir);
    gq_gguf_opts go = {0, argv[1], NULL, NULL, NULL};
    int nq = 0;
    int rc = gq_gguf_export(ckpt, gg, &plan, &go, &nq, NULL);
    CHECKF(rc == GQ_EUNSUPPORTED && strstr(gq_errmsg(rc), "Q4_0") && access(gg, F_OK) != 0, "int4-g64 to GGUF: %s",
           gq_errmsg(rc));
    gq_gpt2_free(m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return gq_test_finish("test_gguf");
}
