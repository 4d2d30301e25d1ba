/* prepare: see prepare.h. */
#include "prepare.h"

#include "gq_error.h"
#include "gq_file.h"
#include "gq_progress.h"
#include "gq_sha256.h"
#include "pretok.h"
#include "shard.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

cJSON *gq_jsonl_value(const uint8_t *p, size_t l, int first, int *blank) {
    size_t k = 0;
    while (k < l && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
    *blank = k == l;
    if (*blank) return NULL;
    if (first && l - k >= 3 && !memcmp(p + k, "\xEF\xBB\xBF", 3)) k += 3; /* a UTF-8 byte-order mark */
    const char *after = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)p + k, l - k, &after, 0);
    for (; j && after < (const char *)p + l; after++) /* nothing but blanks after the value */
        if (*after != ' ' && *after != '\t' && *after != '\r') {
            cJSON_Delete(j);
            return NULL;
        }
    return j;
}

/* n mask bytes of value v */
static int mask_run(gq_bytes *mask, uint8_t v, size_t n) {
    uint8_t run[256];
    memset(run, v, sizeof run);
    for (size_t k = 0; k < n; k += sizeof run) GQ_TRY(gq_bytes_append(mask, run, n - k < sizeof run ? n - k : sizeof run));
    return GQ_OK;
}

/* gq_prepare_jsonl (prepare.h): lines parsed in batches of ~16 MB, each batch's documents (and
 * prompts) tokenized in parallel and appended in file order. */

int gq_prepare_jsonl(const gq_bpe *bpe, const char *path, const uint8_t *data, size_t len, const char *key,
                     const char *prompt_key, int flags, int threads, gq_ids *all, gq_bytes *mask, gq_progress *prog,
                     double done, double total) {
    const int eot = gq_bpe_eot(bpe);
#ifdef _OPENMP
    const int nt = threads > 0 ? threads : omp_get_max_threads();
#else
    const int nt = 1;
    (void)threads;
#endif
    size_t pos = 0, cap = 0;
    long line = 0;
    int rc = GQ_OK;
    cJSON **docs = NULL;
    while (pos < len && !rc) {
        size_t n = 0, batch_bytes = 0;
        for (; pos < len && batch_bytes < (16u << 20);) { /* one batch of lines */
            const uint8_t *nl = memchr(data + pos, '\n', len - pos);
            size_t end = nl ? (size_t)(nl - data) : len, l = end - pos;
            line++;
            const uint8_t *p = data + pos;
            pos = nl ? end + 1 : len;
            int blank;
            cJSON *j = gq_jsonl_value(p, l, line == 1, &blank);
            if (blank) continue;
            const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
            const cJSON *pf = j && prompt_key ? cJSON_GetObjectItemCaseSensitive(j, prompt_key) : NULL;
            if (!j || !cJSON_IsString(f) || (prompt_key && !cJSON_IsString(pf))) {
                rc = gq_errf(GQ_EFORMAT, !j ? "%s:%ld: not a JSON value (--jsonl %s reads one object a line)"
                                            : "%s:%ld: no string field \"%s\"",
                             path, line, !j || !cJSON_IsString(f) ? key : prompt_key);
                cJSON_Delete(j);
                break;
            }
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 1024;
                cJSON **d = realloc(docs, nc * sizeof *d);
                if (!d) {
                    cJSON_Delete(j);
                    rc = gq_errf(GQ_ENOMEM, "out of memory");
                    break;
                }
                docs = d, cap = nc;
            }
            docs[n++] = j;
            batch_bytes += l;
        }
        /* parts[2d] the prompt's ids (empty without prompt_key), parts[2d + 1] the document's */
        gq_ids *parts = NULL;
        int *rcs = NULL;
        if (!rc && (!(parts = calloc(2 * n + 1, sizeof *parts)) || !(rcs = calloc(n ? n : 1, sizeof *rcs))))
            rc = gq_errf(GQ_ENOMEM, "out of memory");
        if (!rc) {
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt)
            for (size_t d = 0; d < n; d++) {
                const char *t = cJSON_GetObjectItemCaseSensitive(docs[d], key)->valuestring;
                const char *pt = prompt_key ? cJSON_GetObjectItemCaseSensitive(docs[d], prompt_key)->valuestring : "";
                rcs[d] = gq_bpe_encode(bpe, (const uint8_t *)pt, strlen(pt), flags, &parts[2 * d]);
                if (!rcs[d]) rcs[d] = gq_bpe_encode(bpe, (const uint8_t *)t, strlen(t), flags, &parts[2 * d + 1]);
            }
            for (size_t d = 0; d < n && !rc; d++) {
                if (rcs[d]) rc = gq_errf(rcs[d], "%s: a document failed to encode", path);
                if (!rc) rc = gq_ids_push(all, eot);
                for (int h = 0; h < 2; h++)
                    for (size_t t = 0; t < parts[2 * d + h].n && !rc; t++) rc = gq_ids_push(all, parts[2 * d + h].ids[t]);
                if (!rc && mask) rc = mask_run(mask, 1, 1);
                if (!rc && mask) rc = mask_run(mask, 0, parts[2 * d].n);
                if (!rc && mask) rc = mask_run(mask, 1, parts[2 * d + 1].n);
            }
            if (prog) gq_progress_update(prog, "prepare: tokenized", done + (double)pos, total, "B");
        }
        for (size_t d = 0; parts && d < 2 * n; d++) gq_ids_free(&parts[d]);
        free(parts);
        free(rcs);
        for (size_t d = 0; d < n; d++) cJSON_Delete(docs[d]);
    }
    free(docs);
    return rc;
}

int gq_prepare(const gq_bpe *bpe, const gq_prepare_opts *po, gq_prepare_report *rep) {
    const int vocab = gq_bpe_vocab_size(bpe), eot = gq_bpe_eot(bpe);
    gq_prepare_opts o = *po;
    gq_ids all = {0};
    gq_bytes mask = {0}; /* with jsonl_prompt: the loss mask, a byte a token */
    const int masked = o.jsonl_key && o.jsonl_prompt;
    int rc = o.jsonl_prompt && !o.jsonl_key ? gq_errf(GQ_EINVAL, "a prompt field needs --jsonl (the completion's field)") : GQ_OK;
    memset(rep, 0, sizeof *rep);
    gq_token_source *src = calloc((size_t)o.n_inputs, sizeof *src);
    double t0 = gq_now();
    size_t total_bytes = 0;
    double bytes_in = 0;
    for (int i = 0; i < o.n_inputs; i++) {
        struct stat st;
        if (stat(o.inputs[i], &st) == 0) bytes_in += (double)st.st_size;
    }
    gq_progress prog;
    gq_progress_init(&prog, stderr);
    for (int i = 0; i < o.n_inputs && !rc; i++) {
        uint8_t *data;
        size_t len;
        rc = gq_read_file(o.inputs[i], &data, &len);
        if (rc) break;
        src[i].name = o.inputs[i];
        gq_sha256_hex(data, len, src[i].sha256);
        size_t before = all.n;
        if (gq_shard_has_magic(data, len)) {
            uint64_t n;
            rc = gq_shard_parse_header(data, len, len, o.inputs[i], &n);
            const uint16_t *tok = (const uint16_t *)(data + GQ_SHARD_HEADER_BYTES);
            if (!rc) rc = gq_shard_check_ids(tok, n, vocab, o.inputs[i], 0);
            for (uint64_t k = 0; k < n && !rc; k++) rc = gq_ids_push(&all, tok[k]);
        } else if (o.jsonl_key) {
            rc = gq_prepare_jsonl(bpe, o.inputs[i], data, len, o.jsonl_key, masked ? o.jsonl_prompt : NULL,
                                  o.allow_special ? GQ_BPE_ALLOW_SPECIAL : 0, o.threads, &all, masked ? &mask : NULL, &prog,
                                  (double)total_bytes, bytes_in);
        } else {
            rc = gq_ids_push(&all, eot);
            /* blocks of ~32 MB cut at safe points, so that progress shows on large files */
            for (size_t pos = 0; pos < len && !rc;) {
                size_t end = len - pos <= (32u << 20) ? len : gq_pretok_safe_cut(data, len, pos + (32u << 20));
                rc = gq_bpe_encode_parallel(bpe, data + pos, end - pos, o.allow_special ? GQ_BPE_ALLOW_SPECIAL : 0,
                                            o.threads, &all);
                gq_progress_update(&prog, "prepare: tokenized", (double)(total_bytes + end), bytes_in, "B");
                pos = end;
            }
            if (rc) rc = gq_errf(rc, "%s: %s", o.inputs[i], gq_errmsg(rc));
        }
        free(data);
        if (!rc && masked && mask.n < all.n) rc = mask_run(&mask, 1, all.n - mask.n); /* a shard's tokens: all scored */
        src[i].n_tokens = all.n - before;
        total_bytes += len;
        gq_progress_update(&prog, "prepare: tokenized", (double)total_bytes, bytes_in, "B");
    }
    gq_progress_finish(&prog);
    double t_encode = gq_now() - t0;
    uint16_t *tokens = NULL, *train = NULL, *val = NULL;
    uint8_t *mtrain = NULL, *mval = NULL;
    size_t n_val = 0, n_train = 0;
    if (!rc) {
        tokens = malloc(all.n * sizeof *tokens + 2);
        train = malloc(all.n * sizeof *train + 2);
        val = malloc(all.n * sizeof *val + 2);
        if (masked && (!(mtrain = malloc(all.n + 1)) || !(mval = malloc(all.n + 1)))) rc = gq_errf(GQ_ENOMEM, "out of memory");
        if (!tokens || !train || !val) rc = gq_errf(GQ_ENOMEM, "out of memory");
        for (size_t k = 0; !rc && k < all.n; k++) tokens[k] = (uint16_t)all.ids[k];
    }
    if (!rc) {
        gq_split_interleaved(tokens, all.n, o.val_fraction, (size_t)o.val_block, train, &n_train, val, &n_val);
        if (masked) gq_split_interleaved_mask(mask.data, all.n, o.val_fraction, (size_t)o.val_block, mtrain, mval);
        for (size_t k = 0; masked && k < n_train; k++) rep->n_train_scored += mtrain[k];
        for (size_t k = 0; masked && k < n_val; k++) rep->n_val_scored += mval[k];
        gq_tokfile_meta meta = {vocab, eot, o.val_fraction, (uint64_t)o.val_block, "gpt2", o.n_inputs, src};
        rc = gq_tokfile_write_masked(o.out, train, n_train, val, n_val, mtrain, mval, &meta);
    }
    rep->masked = masked;
    rep->bytes = total_bytes;
    rep->tokens = all.n;
    rep->n_train = n_train;
    rep->n_val = n_val;
    rep->seconds = t_encode;
    rep->sources = src;
    free(tokens);
    free(train);
    free(val);
    free(mtrain);
    free(mval);
    gq_bytes_free(&mask);
    gq_ids_free(&all);
    if (rc) {
        free(src);
        rep->sources = NULL;
    }
    return rc;
}
