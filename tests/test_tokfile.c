#define _GNU_SOURCE /* mkdtemp */
/* Token files and llm.c shards: round trips, attributes, atomic writes, and the bad inputs
 * (missing, wrong magic, truncated, ids >= vocab, not HDF5, wrong dataset type) with
 * messages that name the file. */
#include "gq_error.h"
#include "gq_test.h"
#include "shard.h"
#include "tokfile.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/gq_test_tokfile_XXXXXX";

static const char *path_in(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void truncate_copy(const char *src, const char *dst, long keep) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    for (long i = 0; i < keep; i++) {
        int c = fgetc(in);
        if (c == EOF) break;
        fputc(c, out);
    }
    fclose(in);
    fclose(out);
}

static void test_tokfile_round_trip(void) {
    uint16_t train[1000], val[50];
    for (int i = 0; i < 1000; i++) train[i] = (uint16_t)(i * 37 % 50257);
    for (int i = 0; i < 50; i++) val[i] = (uint16_t)(50256 - i);
    gq_token_source src[2] = {{"a.txt", "00ab", 600}, {"b.bin", "ff01", 450}};
    gq_tokfile_meta meta = {50257, 50256, 0.05, 4096, "gpt2", 2, src};
    const char *p = path_in("t.h5");
    CHECK_OK(gq_tokfile_write(p, train, 1000, val, 50, &meta));
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    CHECK(access(tmp, F_OK) != 0); /* temp file renamed away */
    gq_tokfile *tf;
    CHECK_OK(gq_tokfile_open(p, &tf));
    if (!tf) return;
    const gq_tokfile_info *in = gq_tokfile_get_info(tf);
    CHECK(in->vocab_size == 50257 && in->eot_id == 50256);
    CHECK(in->n_train == 1000 && in->n_val == 50);
    CHECK(in->n_sources == 2 && !strcmp(in->source_names[1], "b.bin") && !strcmp(in->source_sha256[0], "00ab"));
    CHECK(in->source_tokens[0] == 600 && in->source_tokens[1] == 450);
    CHECK(!strcmp(in->tokenizer, "gpt2"));
    uint16_t got[1000];
    CHECK_OK(gq_tokfile_read(tf, "train", 0, 1000, got));
    CHECK(!memcmp(got, train, sizeof train));
    CHECK_OK(gq_tokfile_read(tf, "val", 10, 40, got));
    CHECK(!memcmp(got, val + 10, 40 * sizeof *val));
    CHECK(gq_tokfile_read(tf, "val", 10, 41, got) == GQ_ERANGE);
    CHECK(gq_tokfile_read(tf, "test", 0, 1, got) == GQ_EINVAL);
    gq_tokfile_close(tf);

    /* ids >= vocab are refused before anything is written, and a good file is not replaced */
    train[5] = 60000;
    int rc = gq_tokfile_write(p, train, 1000, val, 50, &meta);
    CHECK(rc == GQ_ERANGE && strstr(gq_errmsg(rc), p));
    CHECK_OK(gq_tokfile_open(p, &tf));
    if (tf) CHECK(gq_tokfile_get_info(tf)->n_train == 1000);
    gq_tokfile_close(tf);

    /* a truncated copy: one clear error, no crash */
    for (long keep = 0; keep < 3000; keep += 397) {
        const char *q = path_in("trunc.h5");
        truncate_copy(p, q, keep);
        rc = gq_tokfile_open(q, &tf);
        CHECKF(rc < 0 && strstr(gq_errmsg(rc), q), "truncated to %ld bytes: rc %d", keep, rc);
        if (!rc) gq_tokfile_close(tf);
    }
    /* empty splits are legal */
    CHECK_OK(gq_tokfile_write(path_in("empty.h5"), train, 0, val, 0, &meta));
    CHECK_OK(gq_tokfile_open(path_in("empty.h5"), &tf));
    if (tf) CHECK(gq_tokfile_get_info(tf)->n_train == 0);
    gq_tokfile_close(tf);
    /* unwritable destination */
    rc = gq_tokfile_write("/nonexistent/dir/x.h5", train, 10, val, 0, &meta);
    CHECK(rc < 0 && strstr(gq_errmsg(rc), "/nonexistent/dir/x.h5"));
}

static void test_foreign_files(void) {
    gq_tokfile *tf;
    int rc = gq_tokfile_open(path_in("missing.h5"), &tf);
    CHECK(rc == GQ_ENOENT && strstr(gq_errmsg(rc), "missing.h5"));
    FILE *f = fopen(path_in("text.h5"), "w");
    fputs("just some text\n", f);
    fclose(f);
    rc = gq_tokfile_open(path_in("text.h5"), &tf);
    CHECK(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), "not an HDF5 file"));
    /* an HDF5 file that is not ours, and one with a float /train */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t h = H5Fcreate(path_in("other.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(h);
    rc = gq_tokfile_open(path_in("other.h5"), &tf);
    CHECK(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), "not a gpt2q token file"));
    uint16_t t[4] = {1, 2, 3, 4};
    gq_tokfile_meta meta = {50257, 50256, 0.0, 4096, "gpt2", 0, NULL};
    CHECK_OK(gq_tokfile_write(path_in("float.h5"), t, 4, t, 0, &meta));
    h = H5Fopen(path_in("float.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(h, "train", H5P_DEFAULT);
    hsize_t dims = 4;
    hid_t sp = H5Screate_simple(1, &dims, NULL);
    hid_t d = H5Dcreate2(h, "train", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(h);
    rc = gq_tokfile_open(path_in("float.h5"), &tf);
    CHECK(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), "/train") && strstr(gq_errmsg(rc), "uint16"));
}

static void test_shards(void) {
    uint16_t tok[300];
    for (int i = 0; i < 300; i++) tok[i] = (uint16_t)(i * 101);
    const char *p = path_in("s.bin");
    CHECK_OK(gq_shard_write(p, tok, 300));
    uint16_t *got;
    size_t n;
    CHECK_OK(gq_shard_read_all(p, 50257, &got, &n));
    CHECK(n == 300 && got && !memcmp(got, tok, sizeof tok));
    free(got);
    /* truncated: header says 300 tokens, fewer are there */
    truncate_copy(p, path_in("short.bin"), 1024 + 2 * 299);
    int rc = gq_shard_read_all(path_in("short.bin"), 50257, &got, &n);
    CHECK(rc == GQ_ETRUNC && strstr(gq_errmsg(rc), "short.bin") && strstr(gq_errmsg(rc), "truncated"));
    truncate_copy(p, path_in("head.bin"), 100);
    rc = gq_shard_read_all(path_in("head.bin"), 50257, &got, &n);
    CHECK(rc == GQ_ETRUNC);
    /* wrong magic, wrong version */
    uint8_t head[1024] = {0};
    int32_t *h32 = (int32_t *)head;
    h32[0] = 20240326;
    h32[1] = 1;
    FILE *f = fopen(path_in("magic.bin"), "wb");
    fwrite(head, 1, sizeof head, f);
    fclose(f);
    rc = gq_shard_read_all(path_in("magic.bin"), 50257, &got, &n);
    CHECK(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), "magic"));
    h32[0] = GQ_SHARD_MAGIC;
    h32[1] = 2;
    CHECK(gq_shard_parse_header(head, sizeof head, sizeof head, "x", &(uint64_t){0}) == GQ_EFORMAT);
    /* an id >= vocab names the position */
    tok[123] = 50257;
    CHECK_OK(gq_shard_write(path_in("big.bin"), tok, 300));
    rc = gq_shard_read_all(path_in("big.bin"), 50257, &got, &n);
    CHECK(rc == GQ_ERANGE && strstr(gq_errmsg(rc), "token 123"));
}

static void test_split_rule(void) {
    enum { n = 4 * 400 + 3 };
    static uint16_t tok[n], train[n], val[n];
    for (int i = 0; i < n; i++) tok[i] = (uint16_t)i;
    size_t nt, nv;
    gq_split_interleaved(tok, n, 0.05, 4, train, &nt, val, &nv);
    CHECK(nt + nv == n);
    CHECK(nv == 20 * 4); /* blocks 19, 39, ..., 399 of the 401 */
    int ok = 1;
    for (size_t i = 0; i < nv; i++) ok &= val[i] == (uint16_t)((19 + 20 * (i / 4)) * 4 + i % 4);
    CHECK(ok);
    CHECK(train[0] == 0 && train[19 * 4] == 20 * 4 && train[nt - 1] == n - 1);
    gq_split_interleaved(tok, n, 0.0, 4, train, &nt, val, &nv);
    CHECK(nv == 0 && nt == n);
    gq_split_interleaved(tok, n, 0.5, 4, train, &nt, val, &nv);
    CHECK(val[0] == 4 && nv == 200 * 4); /* every other block, starting with block 1 */
}

/* Loss masks: written and read beside the splits, split by the same rule as the tokens, counted;
 * a mask for one split, a value other than 0 / 1, a mask dataset of the wrong length or alone in
 * a file, and a mask read from a file without one are errors naming the file. */
static void test_masks(void) {
    enum { n = 4 * 60 + 1 };
    static uint16_t tok[n], tr[n], va[n];
    static uint8_t mask[n], mtr[n], mva[n];
    for (int i = 0; i < n; i++) tok[i] = (uint16_t)i, mask[i] = (uint8_t)((i * 7) % 3 != 0);
    size_t nt, nv;
    gq_split_interleaved(tok, n, 0.1, 4, tr, &nt, va, &nv);
    gq_split_interleaved_mask(mask, n, 0.1, 4, mtr, mva);
    int ok = 1; /* each token keeps its own mask byte through the split */
    for (size_t i = 0; i < nt; i++) ok &= mtr[i] == mask[tr[i]];
    for (size_t i = 0; i < nv; i++) ok &= mva[i] == mask[va[i]];
    CHECK(ok && nv == 6 * 4);
    uint64_t kt = 0, kv = 0;
    for (size_t i = 0; i < nt; i++) kt += mtr[i];
    for (size_t i = 0; i < nv; i++) kv += mva[i];
    gq_tokfile_meta meta = {50257, 50256, 0.1, 4, "gpt2", 0, NULL};
    const char *p = path_in("m.h5");
    CHECK_OK(gq_tokfile_write_masked(p, tr, nt, va, nv, mtr, mva, &meta));
    gq_tokfile *tf = NULL;
    CHECK_OK(gq_tokfile_open(p, &tf));
    if (!tf) return;
    const gq_tokfile_info *in = gq_tokfile_get_info(tf);
    CHECK(in->has_mask && in->n_train_scored == kt && in->n_val_scored == kv && kt < nt && kt > 0);
    uint8_t got[n];
    CHECK_OK(gq_tokfile_read_mask(tf, "train", 5, 100, got));
    CHECK(!memcmp(got, mtr + 5, 100));
    CHECK_OK(gq_tokfile_read_mask(tf, "val", 0, nv, got));
    CHECK(!memcmp(got, mva, nv));
    int rc = gq_tokfile_read_mask(tf, "val", 1, nv, got);
    CHECK(rc == GQ_ERANGE && strstr(gq_errmsg(rc), "m.h5"));
    gq_tokfile_close(tf);
    /* without masks: none, counts = the splits, reading one is an error */
    CHECK_OK(gq_tokfile_write(path_in("nm.h5"), tr, nt, va, nv, &meta));
    CHECK_OK(gq_tokfile_open(path_in("nm.h5"), &tf));
    if (tf) {
        in = gq_tokfile_get_info(tf);
        CHECK(!in->has_mask && in->n_train_scored == nt && in->n_val_scored == nv);
        rc = gq_tokfile_read_mask(tf, "train", 0, 4, got);
        CHECK(rc == GQ_EINVAL && strstr(gq_errmsg(rc), "no loss mask"));
        gq_tokfile_close(tf);
    }
    rc = gq_tokfile_write_masked(path_in("x.h5"), tr, nt, va, nv, mtr, NULL, &meta);
    CHECK(rc == GQ_EINVAL && strstr(gq_errmsg(rc), "one split only"));
    mtr[3] = 2;
    rc = gq_tokfile_write_masked(path_in("x.h5"), tr, nt, va, nv, mtr, mva, &meta);
    CHECK(rc == GQ_EINVAL && strstr(gq_errmsg(rc), "mask value 2"));
    mtr[3] = 1;
    CHECK(access(path_in("x.h5"), F_OK) != 0);
    /* damaged files: a mask alone, a mask of the wrong length, one without its count, a value of 2
     * (found when it is read) */
    for (int k = 0; k < 4; k++) {
        const char *d = path_in("d.h5");
        CHECK_OK(gq_tokfile_write_masked(d, tr, nt, va, nv, mtr, mva, &meta));
        hid_t f = H5Fopen(d, H5F_ACC_RDWR, H5P_DEFAULT);
        H5Ldelete(f, "val_mask", H5P_DEFAULT);
        if (k > 0) { /* a val_mask again: one byte short, without n_scored, or with a 2 */
            uint8_t v[n];
            memcpy(v, mva, nv);
            v[0] = 2;
            hsize_t dims = k == 1 ? nv - 1 : nv;
            hid_t sp = H5Screate_simple(1, &dims, NULL);
            hid_t ds = H5Dcreate2(f, "val_mask", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, k == 3 ? v : mva);
            if (k == 3) {
                hid_t as = H5Screate(H5S_SCALAR), a = H5Acreate2(ds, "n_scored", H5T_STD_U64LE, as, H5P_DEFAULT, H5P_DEFAULT);
                H5Awrite(a, H5T_NATIVE_UINT64, &kv);
                H5Aclose(a);
                H5Sclose(as);
            }
            H5Dclose(ds);
            H5Sclose(sp);
        }
        H5Fclose(f);
        tf = NULL;
        rc = gq_tokfile_open(d, &tf);
        const char *want[4] = {"/train_mask without /val_mask", "the loss masks hold", "without a valid n_scored",
                               "/val_mask holds 2"};
        if (k == 3 && !rc && tf) rc = gq_tokfile_read_mask(tf, "val", 0, 4, got);
        CHECKF(rc && (k == 3 || !tf) && strstr(gq_errmsg(rc), want[k]) && strstr(gq_errmsg(rc), "d.h5"), "case %d: %s", k,
               gq_errmsg(rc));
        gq_tokfile_close(tf);
    }
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_masks();
    test_split_rule();
    test_tokfile_round_trip();
    test_foreign_files();
    test_shards();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return gq_test_finish("test_tokfile");
}
