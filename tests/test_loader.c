#define _GNU_SOURCE /* mkdtemp */
/* The batch loader: targets are inputs shifted by one, sequential order is file order, a
 * shuffled epoch visits every window exactly once, the same seed gives the same batches,
 * a saved state resumes the exact stream (across epoch ends), shards and token files read
 * the same, and bad data is reported with the file named. */
#include "gq_error.h"
#include "gq_test.h"
#include "loader.h"
#include "shard.h"
#include "tokfile.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 20000, B = 4, T = 16 };
static char dir[] = "/tmp/gq_test_loader_XXXXXX";
static char h5[256], shard_a[256], shard_b[256];

static void make_files(void) {
    static uint16_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (uint16_t)i; /* token value == position */
    gq_tokfile_meta meta = {50257, 50256, 0.1, 0, "gpt2", 0, NULL};
    snprintf(h5, sizeof h5, "%s/t.h5", dir);
    CHECK_OK(gq_tokfile_write(h5, tok, N - 2000, tok + N - 2000, 2000, &meta));
    snprintf(shard_a, sizeof shard_a, "%s/a.bin", dir);
    snprintf(shard_b, sizeof shard_b, "%s/b.bin", dir);
    CHECK_OK(gq_shard_write(shard_a, tok, 1000));
    CHECK_OK(gq_shard_write(shard_b, tok + 1000, 501));
}

static gq_loader *open1(const char *path, int shuffle, uint64_t seed, const char *split) {
    gq_loader_config c = {B, T, shuffle, seed, split, 0};
    gq_loader *L = NULL;
    CHECK_OK(gq_loader_open(&L, &path, 1, &c));
    return L;
}

static void test_sequential(void) {
    gq_loader *L = open1(h5, 0, 0, "train");
    if (!L) return;
    CHECK(gq_loader_windows(L) == (N - 2000 - 1) / T);
    int32_t in[B * T], tg[B * T];
    int ok = 1;
    for (int batch = 0; batch < 3; batch++) {
        CHECK_OK(gq_loader_next(L, in, tg));
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int start = (batch * B + b) * T;
                ok &= in[b * T + t] == start + t && tg[b * T + t] == start + t + 1;
            }
    }
    CHECK(ok);
    gq_loader_close(L);
    L = open1(h5, 0, 0, "val");
    CHECK_OK(gq_loader_next(L, in, tg));
    CHECK(in[0] == N - 2000 && tg[0] == N - 2000 + 1);
    gq_loader_close(L);
}

static void test_shuffle_epoch(void) {
    gq_loader *L = open1(h5, 1, 42, "train"), *L2 = open1(h5, 1, 42, "train"), *L3 = open1(h5, 1, 43, "train");
    if (!L || !L2 || !L3) return;
    uint64_t W = gq_loader_windows(L);
    char *seen = calloc(W, 1);
    int32_t in[B * T], tg[B * T], in2[B * T], tg2[B * T], in3[B * T], tg3[B * T];
    int dup = 0, misaligned = 0, same_as_other_seed = 0, differs_same_seed = 0, batches = 0;
    uint64_t visited = 0;
    while (visited + B <= W) {
        CHECK_OK(gq_loader_next(L, in, tg));
        CHECK_OK(gq_loader_next(L2, in2, tg2));
        CHECK_OK(gq_loader_next(L3, in3, tg3));
        batches++;
        differs_same_seed += memcmp(in, in2, sizeof in) != 0 || memcmp(tg, tg2, sizeof tg) != 0;
        same_as_other_seed += memcmp(in, in3, sizeof in) == 0;
        for (int b = 0; b < B; b++) {
            int start = in[b * T];
            misaligned += start % T != 0;
            for (int t = 0; t < T; t++) misaligned += in[b * T + t] != start + t || tg[b * T + t] != start + t + 1;
            uint64_t w = (uint64_t)start / T;
            dup += w < W && seen[w];
            if (w < W) seen[w] = 1;
        }
        visited += B;
    }
    CHECK(dup == 0 && misaligned == 0 && differs_same_seed == 0);
    CHECK(same_as_other_seed < batches);
    /* not file order */
    gq_loader *S = open1(h5, 0, 0, "train");
    gq_loader_close(L2);
    L2 = open1(h5, 1, 42, "train");
    int32_t s_in[B * T], s_tg[B * T];
    gq_loader_next(S, s_in, s_tg);
    gq_loader_next(L2, in2, tg2);
    CHECK(memcmp(s_in, in2, sizeof s_in) != 0);
    gq_loader_close(S);
    free(seen);
    gq_loader_close(L);
    gq_loader_close(L2);
    gq_loader_close(L3);
}

static void test_resume(int shuffle) {
    /* run 300 batches (several epochs of the shards); save after k; resume in a new loader */
    const char *paths[2] = {shard_a, shard_b};
    gq_loader_config c = {B, T, shuffle, 9, "train", 0};
    gq_loader *L, *R;
    CHECK_OK(gq_loader_open(&L, paths, 2, &c));
    CHECK_OK(gq_loader_open(&R, paths, 2, &c));
    if (!L || !R) return;
    CHECK(gq_loader_windows(L) == 999 / T + 500 / T);
    int32_t in[B * T], tg[B * T], rin[B * T], rtg[B * T];
    gq_loader_state st;
    int k = 37, mismatches = 0, crossing = 0;
    for (int i = 0; i < k; i++) CHECK_OK(gq_loader_next(L, in, tg));
    gq_loader_get_state(L, &st);
    CHECK_OK(gq_loader_set_state(R, &st));
    for (int i = 0; i < 300; i++) {
        CHECK_OK(gq_loader_next(L, in, tg));
        CHECK_OK(gq_loader_next(R, rin, rtg));
        mismatches += memcmp(in, rin, sizeof in) != 0 || memcmp(tg, rtg, sizeof tg) != 0;
        for (int b = 0; b < B; b++) /* a window never crosses from shard a (tokens < 1000) into b */
            crossing += in[b * T] < 1000 && tg[b * T + T - 1] >= 1000;
    }
    CHECK(mismatches == 0 && crossing == 0);
    gq_loader_get_state(L, &st);
    CHECK(st.epoch >= 2);
    /* a state for other settings is refused */
    gq_loader_state bad = st;
    bad.T = T + 1;
    CHECK(gq_loader_set_state(R, &bad) == GQ_EINVAL);
    bad = st;
    bad.n_windows++;
    CHECK(gq_loader_set_state(R, &bad) == GQ_EINVAL);
    gq_loader_close(L);
    gq_loader_close(R);
}

static void test_errors(void) {
    gq_loader *L = NULL;
    gq_loader_config c = {B, 5000, 0, 0, "val", 0};
    const char *p = h5;
    int rc = gq_loader_open(&L, &p, 1, &c);
    CHECK(rc == GQ_ESHAPE && strstr(gq_errmsg(rc), "t.h5"));
    char txt[300];
    snprintf(txt, sizeof txt, "%s/x.txt", dir);
    FILE *f = fopen(txt, "w");
    fputs("hello", f);
    fclose(f);
    p = txt;
    c.T = 4;
    rc = gq_loader_open(&L, &p, 1, &c);
    CHECK(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), "x.txt"));
    /* an id >= vocab inside a shard is caught when its window is read */
    uint16_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (uint16_t)i;
    tok[10] = 65000;
    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    CHECK_OK(gq_shard_write(bad, tok, 64));
    p = bad;
    c.B = 1;
    c.T = 8;
    CHECK_OK(gq_loader_open(&L, &p, 1, &c));
    int32_t in[8], tg[8];
    if (L) {
        CHECK_OK(gq_loader_next(L, in, tg));
        rc = gq_loader_next(L, in, tg);
        CHECK(rc == GQ_ERANGE && strstr(gq_errmsg(rc), "bad.bin") && strstr(gq_errmsg(rc), "token 10"));
        gq_loader_close(L);
    }
}

/* A token file with a loss mask: targets[t] is the next token where its mask byte is 1 and -1
 * where it is 0 (the mask byte belongs to the target token, not the input); inputs are all
 * there; the unmasked file's targets are untouched. */
static void test_mask(void) {
    static uint16_t tok[N];
    static uint8_t mask[N];
    for (int i = 0; i < N; i++) tok[i] = (uint16_t)i, mask[i] = (uint8_t)(i % 5 != 2 && i % 7 != 0);
    gq_tokfile_meta meta = {50257, 50256, 0.1, 0, "gpt2", 0, NULL};
    char p[300];
    snprintf(p, sizeof p, "%s/m.h5", dir);
    CHECK_OK(gq_tokfile_write_masked(p, tok, N - 2000, tok + N - 2000, 2000, mask, mask + N - 2000, &meta));
    for (int sh = 0; sh < 2; sh++) {
        gq_loader *L = open1(p, sh, 7, sh ? "train" : "val");
        if (!L) return;
        CHECK(gq_loader_masked(L));
        int32_t in[B * T], tg[B * T];
        int ok = 1, ignored = 0;
        for (int batch = 0; batch < 5; batch++) {
            CHECK_OK(gq_loader_next(L, in, tg));
            for (int k = 0; k < B * T; k++) {
                const int next = in[k] + 1; /* token value == position in the stream */
                ok &= tg[k] == (mask[next] ? next : -1);
                ignored += tg[k] < 0;
            }
        }
        CHECKF(ok && ignored > 0 && ignored < 5 * B * T, "split %s: %d ignored", sh ? "train" : "val", ignored);
        gq_loader_close(L);
    }
    gq_loader *L = open1(h5, 0, 0, "train");
    if (L) {
        CHECK(!gq_loader_masked(L));
        gq_loader_close(L);
    }
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    make_files();
    test_mask();
    test_sequential();
    test_shuffle_epoch();
    test_resume(0);
    test_resume(1);
    test_errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return gq_test_finish("test_loader");
}
