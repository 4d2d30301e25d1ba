/* The Hugging Face and llm.c exports (ckpt/hfexport.h) against files the other stacks wrote:
 * the fixture model (tests/fixtures/make_gpt2_fixture.py) as transformers' save_pretrained wrote
 * it in fp32, fp16 and bf16 (make_hf_dtype_fixture.py) and as the fixture script wrote llm.c's
 * format: the exports of the same weights must be those files byte for byte. Also: config.json
 * against transformers' own, the round trip through the importer, the tokenizer files for GPT-2's
 * vocabulary, and a value fp16 cannot hold (an error naming the tensor, the folder untouched).
 * usage: test_hfexport FIXTURE_DIR VOCAB_DIR */
#define _POSIX_C_SOURCE 200809L
#include "gpt2_weights.h"
#include "gq_error.h"
#include "gq_file.h"
#include "gq_test.h"
#include "hfexport.h"
#include "quant.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/gq_hfexport_XXXXXX";

/* the two files have the same bytes */
static int same_file(const char *a, const char *b) {
    uint8_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int same = !gq_read_file(a, &x, &nx) && !gq_read_file(b, &y, &ny) && nx == ny && !memcmp(x, y, nx);
    free(x), free(y);
    return same;
}

/* entries of dir whose name contains "tmp" */
static int temps_in(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, "tmp") != NULL;
    if (d) closedir(d);
    return n;
}

static cJSON *json_file(const char *path) {
    uint8_t *text;
    size_t len;
    if (gq_read_file(path, &text, &len)) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    return j;
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    char p[4200];
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p)) rm_tree(p);
        }
    if (d) closedir(d);
    rmdir(dir);
}

/* config.json: the fields a GPT-2 depends on, as transformers wrote them for the same model */
static void check_config(const char *ours, const char *theirs, const char *dtype) {
    cJSON *a = json_file(ours), *b = json_file(theirs);
    CHECKF(a && b, "%s / %s parse", ours, theirs);
    if (!a || !b) return;
    static const char *same[] = {"activation_function", "attn_pdrop",          "embd_pdrop",
                                 "layer_norm_epsilon",  "model_type",          "n_embd",
                                 "n_head",              "n_inner",             "n_layer",
                                 "n_positions",         "reorder_and_upcast_attn", "resid_pdrop",
                                 "scale_attn_by_inverse_layer_idx", "scale_attn_weights", "use_cache",
                                 "vocab_size",          "architectures"};
    for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, same[k]), *y = cJSON_GetObjectItemCaseSensitive(b, same[k]);
        CHECKF(x && y && cJSON_Compare(x, y, 1), "config.json: %s differs from transformers' (%s)", same[k], ours);
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(a, "torch_dtype");
    CHECKF(cJSON_IsString(d) && !strcmp(d->valuestring, dtype), "config.json: torch_dtype %s, expected %s",
           cJSON_IsString(d) ? d->valuestring : "?", dtype);
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(a, "tie_word_embeddings");
    CHECK(!tie || cJSON_IsTrue(tie));
    cJSON_Delete(a), cJSON_Delete(b);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_hfexport FIXTURE_DIR VOCAB_DIR\n");
        return 2;
    }
    const char *fx = argv[1], *vocab = argv[2];
    if (!mkdtemp(tmpdir)) SKIP("no temp folder");
    char src[4200], out[4300], path[4400], ref[4400];
    snprintf(src, sizeof src, "%s/model.safetensors", fx);

    gq_gpt2_config cfg;
    CHECK_OK(gq_weights_config(src, &cfg));
    const size_t n = gq_gpt2_n_params(&cfg);
    float *w = malloc(n * sizeof *w), *back = malloc(n * sizeof *back);
    CHECK_OK(gq_weights_read(src, &cfg, w));

    /* fp32 / fp16 / bf16: transformers' save_pretrained files, byte for byte */
    static const char *dn[] = {"f32", "f16", "bf16"}, *torch_dt[] = {"float32", "float16", "bfloat16"};
    for (int dt = GQ_HF_F32; dt <= GQ_HF_BF16; dt++) {
        snprintf(out, sizeof out, "%s/%s", tmpdir, dn[dt]);
        const gq_hf_opts o = {dt, vocab}; /* (96 tokens: no tokenizer files) */
        int files = 0;
        size_t bytes = 0;
        CHECK_OK(gq_hf_export(w, &cfg, out, &o, &files, &bytes));
        CHECKF(files == 2, "%s: %d files, expected model.safetensors and config.json", dn[dt], files);
        snprintf(path, sizeof path, "%s/model.safetensors", out);
        if (dt == GQ_HF_F32)
            snprintf(ref, sizeof ref, "%s/model.safetensors", fx);
        else
            snprintf(ref, sizeof ref, "%s/model_%s.safetensors", fx, dn[dt]);
        CHECKF(same_file(path, ref), "%s: %s differs from transformers' %s", dn[dt], path, ref);
        snprintf(ref, sizeof ref, "%s/config.json", fx);
        snprintf(path, sizeof path, "%s/config.json", out);
        check_config(path, ref, torch_dt[dt]);
        /* the importer reads it back: the same values (fp32) or their rounding */
        gq_gpt2_config c2;
        snprintf(path, sizeof path, "%s/model.safetensors", out);
        CHECK_OK(gq_weights_config(path, &c2));
        CHECK(c2.n_layer == cfg.n_layer && c2.n_head == cfg.n_head && c2.n_embd == cfg.n_embd &&
              c2.block_size == cfg.block_size && c2.vocab_size == cfg.vocab_size);
        CHECK_OK(gq_weights_read(path, &cfg, back));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            const float r = dt == GQ_HF_F32   ? w[i]
                            : dt == GQ_HF_F16 ? gq_f16_to_f32(gq_f32_to_f16(w[i]))
                                              : gq_bf16_to_f32(gq_f32_to_bf16(w[i]));
            bad += memcmp(&r, &back[i], 4) != 0;
        }
        CHECKF(bad == 0, "%s: %zu values read back differ", dn[dt], bad);
        CHECK(temps_in(out) == 0);
    }

    /* llm.c: the fixture script's model.bin, byte for byte; and from it the HF file again */
    snprintf(out, sizeof out, "%s/m.bin", tmpdir);
    size_t bytes = 0;
    CHECK_OK(gq_llmc_export(w, &cfg, out, &bytes));
    snprintf(ref, sizeof ref, "%s/model.bin", fx);
    CHECKF(same_file(out, ref), "llm.c: %s differs from %s", out, ref);
    CHECK(bytes == 1024 + 4 * n);
    CHECK_OK(gq_weights_read(ref, &cfg, back));
    snprintf(out, sizeof out, "%s/from_llmc", tmpdir);
    CHECK_OK(gq_hf_export(back, &cfg, out, NULL, NULL, NULL));
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    CHECKF(same_file(path, src), "llm.c -> HF: %s differs from %s", path, src);

    /* a value fp16 cannot hold: an error naming the tensor; the folder's older files untouched */
    snprintf(out, sizeof out, "%s/f32", tmpdir);
    float *big = malloc(n * sizeof *big);
    memcpy(big, w, n * sizeof *big);
    big[gq_gpt2_tensor_numel(&cfg, 0) + 5] = 1e5f; /* in wpe */
    const gq_hf_opts f16 = {GQ_HF_F16, NULL};
    const int rc = gq_hf_export(big, &cfg, out, &f16, NULL, NULL);
    CHECKF(rc == GQ_ERANGE && strstr(gq_errmsg(rc), "transformer.wpe.weight") && strstr(gq_errmsg(rc), "fp16"),
           "fp16 overflow: rc %d, '%s'", rc, gq_errmsg(rc));
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    CHECKF(same_file(path, src), "a failed export left %s changed", path);
    snprintf(path, sizeof path, "%s/config.json", out);
    cJSON *j = json_file(path);
    const cJSON *d = j ? cJSON_GetObjectItemCaseSensitive(j, "torch_dtype") : NULL;
    CHECKF(cJSON_IsString(d) && !strcmp(d->valuestring, "float32"), "a failed export changed config.json");
    cJSON_Delete(j);
    CHECKF(temps_in(out) == 0, "a failed export left temp files in %s", out);
    free(big);

    /* GPT-2's vocabulary: the tokenizer files, unpadded embedding */
    gq_gpt2_config g = {.n_layer = 1, .n_head = 2, .n_embd = 16, .block_size = 24, .vocab_size = 50257};
    CHECK_OK(gq_gpt2_config_check(&g));
    const size_t gn = gq_gpt2_n_params(&g);
    float *gw = malloc(gn * sizeof *gw);
    for (size_t i = 0; i < gn; i++)
        gw[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    snprintf(out, sizeof out, "%s/gpt2", tmpdir);
    const gq_hf_opts go = {GQ_HF_F32, vocab};
    int files = 0;
    CHECK_OK(gq_hf_export(gw, &g, out, &go, &files, NULL));
    CHECK(files == 5);
    snprintf(path, sizeof path, "%s/vocab.json", out);
    snprintf(ref, sizeof ref, "%s/encoder.json", vocab);
    CHECKF(same_file(path, ref), "vocab.json is not %s", ref);
    snprintf(path, sizeof path, "%s/merges.txt", out);
    snprintf(ref, sizeof ref, "%s/vocab.bpe", vocab);
    CHECKF(same_file(path, ref), "merges.txt is not %s", ref);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", out);
    j = json_file(path);
    const cJSON *ml = j ? cJSON_GetObjectItemCaseSensitive(j, "model_max_length") : NULL;
    CHECK(cJSON_IsNumber(ml) && ml->valueint == 24);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    gq_safetensors *st = NULL;
    CHECK_OK(gq_st_open(&st, path));
    const gq_st_tensor *wte = st ? gq_st_find(st, "transformer.wte.weight") : NULL;
    const gq_st_tensor *fc = st ? gq_st_find(st, "transformer.h.0.mlp.c_fc.weight") : NULL;
    CHECK(wte && wte->ndim == 2 && wte->shape[0] == 50257 && wte->shape[1] == 16);
    CHECK(fc && fc->ndim == 2 && fc->shape[0] == 16 && fc->shape[1] == 64); /* Conv1D: (in, out) */
    CHECK(st && !gq_st_find(st, "lm_head.weight") && st->n_tensors == 4 + 12);
    if (st) gq_st_close(st);
    /* a tokenizer file that cannot be read, after the model and config.json were written: none of
     * the three goes into place (the folder keeps the export above) */
    char keep[4400];
    snprintf(keep, sizeof keep, "%s/keep.safetensors", tmpdir);
    uint8_t *kb;
    size_t kn;
    CHECK_OK(gq_read_file(path, &kb, &kn));
    CHECK_OK(gq_write_file(keep, kb, kn));
    free(kb);
    gw[3] += 1.0f;
    const gq_hf_opts novocab = {GQ_HF_BF16, "/nonexistent-gq-vocab"};
    const int rc3 = gq_hf_export(gw, &g, out, &novocab, NULL, NULL);
    gw[3] -= 1.0f;
    CHECKF(rc3 != GQ_OK && strstr(gq_errmsg(rc3), "encoder.json"), "missing vocabulary: rc %d '%s'", rc3,
           gq_errmsg(rc3));
    CHECKF(same_file(path, keep), "a failed export replaced %s", path);
    snprintf(ref, sizeof ref, "%s/config.json", out);
    j = json_file(ref);
    d = j ? cJSON_GetObjectItemCaseSensitive(j, "torch_dtype") : NULL;
    CHECKF(cJSON_IsString(d) && !strcmp(d->valuestring, "float32"), "a failed export replaced config.json");
    cJSON_Delete(j);
    CHECKF(temps_in(out) == 0, "a failed export left temp files in %s", out);
    float *gb = malloc(gn * sizeof *gb);
    CHECK_OK(gq_weights_read(path, &g, gb));
    size_t diff = 0, pad_from = (size_t)50257 * 16, pad_to = (size_t)g.padded_vocab_size * 16;
    for (size_t i = 0; i < gn; i++)
        diff += i >= pad_from && i < pad_to ? gb[i] != 0.0f : memcmp(&gb[i], &gw[i], 4) != 0;
    CHECKF(diff == 0, "GPT-2 vocabulary round trip: %zu values differ (padding rows must read back as 0)", diff);
    free(gb), free(gw);

    /* a folder that cannot be made */
    const gq_hf_opts none = {GQ_HF_F32, NULL};
    const int rc2 = gq_hf_export(w, &cfg, "/proc/gq_no/such", &none, NULL, NULL);
    CHECKF(rc2 != GQ_OK && strstr(gq_errmsg(rc2), "/proc/gq_no"), "unwritable folder: rc %d '%s'", rc2, gq_errmsg(rc2));

    free(w), free(back);
    rm_tree(tmpdir);
    return gq_test_finish("test_hfexport");
}
