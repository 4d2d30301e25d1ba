/* The tokenizer against independent references: GPT-2's published encoder behaviour
 * (gpt2_bpe_vectors.jsonl) and tiktoken on generated hard cases (bpe_tiktoken.jsonl), plus
 * properties: exact byte round trip of arbitrary bytes, both merge paths agree, parallel ==
 * serial, safe cuts are safe, the ASCII fast path agrees with utf8proc, bad vocab files fail
 * with a message naming the file.
 * usage: test_bpe VOCAB_DIR FIXTURE.jsonl... */
#define _GNU_SOURCE
#include "bpe.h"
#include "gq_error.h"
#include "gq_file.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "pretok.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int same_ids(const gq_ids *a, const int32_t *b, size_t n) {
    return a->n == n && (n == 0 || memcmp(a->ids, b, n * sizeof *b) == 0);
}

static void check_fixture(const gq_bpe *bpe, const char *path) {
    uint8_t *data;
    size_t len;
    CHECK_OK(gq_read_file(path, &data, &len));
    if (!data) return;
    int n_cases = 0, n_ok = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        cJSON *text = cJSON_GetObjectItem(j, "text"), *ids = cJSON_GetObjectItem(j, "ids");
        if (!cJSON_IsString(text) || !cJSON_IsArray(ids)) {
            CHECKF(0, "%s: malformed line %d", path, n_cases + 1);
            cJSON_Delete(j);
            continue;
        }
        n_cases++;
        /* cJSON strings end at a NUL, so a text holding U+0000 is rebuilt from the expected
         * ids' bytes (decode is plain concatenation) and must encode back to those ids. */
        size_t tlen = strlen(text->valuestring);
        int has_nul = strstr(line, "\\u0000") != NULL;
        int n = cJSON_GetArraySize(ids);
        int32_t *expect = malloc(((size_t)n + 1) * sizeof *expect);
        for (int i = 0; i < n; i++) expect[i] = cJSON_GetArrayItem(ids, i)->valueint;
        if (has_nul) { /* rebuild the text from the expected ids' bytes instead */
            gq_bytes b = {0};
            CHECK_OK(gq_bpe_decode(bpe, expect, (size_t)n, &b));
            gq_ids got = {0};
            CHECK_OK(gq_bpe_encode(bpe, b.data, b.n, 0, &got));
            int ok = same_ids(&got, expect, (size_t)n);
            CHECKF(ok, "%s line %d (with NUL): ids differ", path, n_cases);
            n_ok += ok;
            gq_ids_free(&got);
            gq_bytes_free(&b);
        } else {
            gq_ids got = {0}, heap = {0};
            CHECK_OK(gq_bpe_encode(bpe, (const uint8_t *)text->valuestring, tlen, 0, &got));
            CHECK_OK(gq_bpe_encode(bpe, (const uint8_t *)text->valuestring, tlen, GQ_BPE_FORCE_HEAP, &heap));
            int ok = same_ids(&got, expect, (size_t)n);
            CHECKF(ok, "%s line %d: %zu ids, expected %d, text \"%.60s\"", path, n_cases, got.n, n, text->valuestring);
            CHECKF(same_ids(&heap, expect, (size_t)n), "%s line %d: heap merge path differs", path, n_cases);
            gq_bytes back = {0};
            CHECK_OK(gq_bpe_decode(bpe, expect, (size_t)n, &back));
            CHECKF(back.n == tlen && (tlen == 0 || !memcmp(back.data, text->valuestring, tlen)),
                   "%s line %d: decode is not the inverse", path, n_cases);
            n_ok += ok;
            gq_ids_free(&got);
            gq_ids_free(&heap);
            gq_bytes_free(&back);
        }
        free(expect);
        cJSON_Delete(j);
    }
    printf("%s: %d/%d cases exact\n", path, n_ok, n_cases);
    CHECKF(n_cases > 0, "%s: no cases", path);
    free(data);
}

/* Random byte strings from several alphabets (raw bytes, UTF-8 pieces, broken UTF-8). */
static size_t random_text(gq_rng *r, uint8_t *buf, size_t max) {
    static const char *frags[] = {" ", "  ", "\n", "\r\n", "\t", "'s", "'ll", "'", "a", "Z", "7", "é", "日本",
                                  "\xc2\x85", "\xe3\x80\x80", "\xf0\x9f\xa4\x97", "\xe2\x80\x8d", "<|endoftext|>",
                                  "\xff", "\xc3", "\xe3\x80", "\xed\xa0\x80", "\xc0\xaf", "\x80\x80", "word",
                                  " the", "!!", "\x00", "\x1f", "12345"};
    size_t n = 0, target = gq_rng_below(r, max);
    int mode = (int)gq_rng_below(r, 3);
    while (n < target) {
        if (mode == 0) {
            buf[n++] = (uint8_t)gq_rng_u64(r);
        } else {
            const char *f = frags[gq_rng_below(r, sizeof frags / sizeof *frags)];
            size_t fl = strcmp(f, "\x00") == 0 ? 1 : strlen(f);
            if (n + fl > max) break;
            memcpy(buf + n, f, fl);
            n += fl;
            if (mode == 2 && n < max) buf[n++] = (uint8_t)gq_rng_u64(r);
        }
    }
    return n;
}

static void check_round_trip(const gq_bpe *bpe) {
    gq_rng r;
    gq_rng_seed(&r, 7);
    uint8_t buf[600];
    int bad = 0, differ = 0;
    for (int it = 0; it < 4000; it++) {
        size_t n = random_text(&r, buf, sizeof buf);
        for (int special = 0; special < 2; special++) {
            gq_ids ids = {0}, heap = {0};
            gq_bytes back = {0};
            int flags = special ? GQ_BPE_ALLOW_SPECIAL : 0;
            CHECK_OK(gq_bpe_encode(bpe, buf, n, flags, &ids));
            CHECK_OK(gq_bpe_encode(bpe, buf, n, flags | GQ_BPE_FORCE_HEAP, &heap));
            CHECK_OK(gq_bpe_decode(bpe, ids.ids, ids.n, &back));
            bad += back.n != n || (n && memcmp(back.data, buf, n));
            differ += !same_ids(&heap, ids.ids, ids.n);
            for (size_t i = 0; i < ids.n; i++) bad += !special && ids.ids[i] == GQ_GPT2_EOT;
            gq_ids_free(&ids);
            gq_ids_free(&heap);
            gq_bytes_free(&back);
        }
    }
    CHECKF(bad == 0, "%d random byte strings did not survive encode -> decode", bad);
    CHECKF(differ == 0, "%d random strings: the two merge paths disagree", differ);
}

static void check_special(const gq_bpe *bpe) {
    const char *t = "a<|endoftext|>b";
    gq_ids plain = {0}, special = {0};
    CHECK_OK(gq_bpe_encode(bpe, (const uint8_t *)t, strlen(t), 0, &plain));
    CHECK_OK(gq_bpe_encode(bpe, (const uint8_t *)t, strlen(t), GQ_BPE_ALLOW_SPECIAL, &special));
    int32_t want[3] = {64, GQ_GPT2_EOT, 65};
    CHECK(same_ids(&special, want, 3));
    CHECK(plain.n > 3);
    for (size_t i = 0; i < plain.n; i++) CHECK(plain.ids[i] != GQ_GPT2_EOT);
    gq_bytes b = {0};
    CHECK_OK(gq_bpe_decode(bpe, special.ids, special.n, &b));
    CHECK(b.n == strlen(t) && !memcmp(b.data, t, b.n));
    int32_t out_of_range = GQ_GPT2_VOCAB_SIZE;
    CHECK(gq_bpe_decode(bpe, &out_of_range, 1, &b) == GQ_ERANGE);
    int32_t negative = -1;
    CHECK(gq_bpe_decode(bpe, &negative, 1, &b) == GQ_ERANGE);
    gq_ids_free(&plain);
    gq_ids_free(&special);
    gq_bytes_free(&b);
}

static void check_parallel_and_cuts(const gq_bpe *bpe, const char *fixture) {
    uint8_t *data;
    size_t len;
    CHECK_OK(gq_read_file(fixture, &data, &len));
    if (!data) return;
    /* ~6 MB of mixed text: the fixture file itself (JSON with escapes and ids) repeated with
     * random bytes in between, so cuts fall in many contexts */
    size_t reps = 6000000 / (len + 1) + 2, n = 0;
    uint8_t *big = malloc(reps * (len + 64));
    gq_rng r;
    gq_rng_seed(&r, 11);
    for (size_t k = 0; k < reps; k++) {
        memcpy(big + n, data, len);
        n += len;
        n += random_text(&r, big + n, 64);
    }
    gq_ids serial = {0};
    CHECK_OK(gq_bpe_encode(bpe, big, n, 0, &serial));
    for (int threads = 2; threads <= 3; threads++) {
        gq_ids par = {0};
        CHECK_OK(gq_bpe_encode_parallel(bpe, big, n, 0, threads, &par));
        CHECKF(same_ids(&par, serial.ids, serial.n), "parallel encode (%d threads) differs from serial", threads);
        gq_ids_free(&par);
    }
    /* a cut at gq_pretok_safe_cut: prefix ids + suffix ids == whole ids */
    size_t sub = len < 200000 ? len : 200000;
    gq_ids whole = {0};
    CHECK_OK(gq_bpe_encode(bpe, big, sub, 0, &whole));
    int bad = 0;
    for (int it = 0; it < 40; it++) {
        size_t cut = gq_pretok_safe_cut(big, sub, gq_rng_below(&r, sub));
        gq_ids parts = {0};
        gq_bpe_encode(bpe, big, cut, 0, &parts);
        gq_bpe_encode(bpe, big + cut, sub - cut, 0, &parts);
        bad += !same_ids(&parts, whole.ids, whole.n);
        gq_ids_free(&parts);
    }
    CHECKF(bad == 0, "%d safe cuts changed the tokens", bad);
    gq_ids_free(&whole);
    gq_ids_free(&serial);
    free(big);
    free(data);
}

static void check_classes(void) {
    for (int c = 0; c < 128; c++) {
        uint8_t b = (uint8_t)c;
        size_t clen;
        CHECKF(gq_char_class_at(&b, 1, 0, &clen) == gq_codepoint_class(c), "ASCII 0x%02x class", c);
    }
    /* White_Space beyond ASCII and a few letters/numbers of other scripts */
    CHECK(gq_codepoint_class(0x85) == GQ_CC_SPACE);
    CHECK(gq_codepoint_class(0xA0) == GQ_CC_SPACE);
    CHECK(gq_codepoint_class(0x3000) == GQ_CC_SPACE);
    CHECK(gq_codepoint_class(0x2029) == GQ_CC_SPACE);
    CHECK(gq_codepoint_class(0x200B) == GQ_CC_OTHER); /* zero width space is not White_Space */
    CHECK(gq_codepoint_class(0x1C) == GQ_CC_OTHER);   /* nor the information separators */
    CHECK(gq_codepoint_class(0x65E5) == GQ_CC_LETTER);
    CHECK(gq_codepoint_class(0x0663) == GQ_CC_NUMBER);
    CHECK(gq_codepoint_class(0x216B) == GQ_CC_NUMBER);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static void check_bad_vocab(const char *vocab_dir) {
    gq_bpe *b = NULL;
    int rc = gq_bpe_load_dir(&b, "/nonexistent/dir");
    CHECK(rc == GQ_ENOENT && strstr(gq_errmsg(rc), "/nonexistent/dir"));
    char dir[] = "/tmp/gq_test_bpe_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char enc[256], mer[256], good_mer[512];
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(mer, sizeof mer, "%s/vocab.bpe", dir);
    snprintf(good_mer, sizeof good_mer, "%s/vocab.bpe", vocab_dir);

    write_text(enc, "{\"a\": 0, ");
    rc = gq_bpe_load(&b, enc, good_mer);
    CHECK(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), enc) && strstr(gq_errmsg(rc), "JSON"));

    write_text(enc, "[1, 2, 3]");
    rc = gq_bpe_load(&b, enc, good_mer);
    CHECK(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), enc));

    /* a well-formed byte-level vocabulary of just the 256 bytes: the real merges need tokens it lacks */
    char *json = malloc(1 << 16);
    size_t n = (size_t)sprintf(json, "{");
    for (int byte = 0, extra = 0; byte < 256; byte++) {
        int printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
        int cp = printable ? byte : 256 + extra++;
        char u[16];
        if (cp < 0x80) {
            if (cp == '"' || cp == '\\') sprintf(u, "\\%c", cp);
            else sprintf(u, "%c", cp);
        } else {
            sprintf(u, "\\u%04x", cp);
        }
        n += (size_t)sprintf(json + n, "%s\"%s\": %d", byte ? ", " : "", u, byte);
    }
    sprintf(json + n, "}");
    write_text(enc, json);
    rc = gq_bpe_load(&b, enc, good_mer);
    CHECK(rc == GQ_EVOCAB && strstr(gq_errmsg(rc), good_mer));
    /* the same vocabulary with a merges file whose line is malformed */
    write_text(mer, "#version: 0.2\na b c\n");
    rc = gq_bpe_load(&b, enc, mer);
    CHECK(rc == GQ_EFORMAT && strstr(gq_errmsg(rc), "line 2"));
    /* ... and with a consistent merge file, but no <|endoftext|> */
    write_text(mer, "#version: 0.2\na b\n");
    rc = gq_bpe_load(&b, enc, mer);
    CHECK(rc == GQ_EVOCAB); /* "ab" is not in the 256-token vocabulary */
    free(json);
    unlink(enc);
    unlink(mer);
    rmdir(dir);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_bpe VOCAB_DIR FIXTURE.jsonl...\n");
        return 2;
    }
    gq_bpe *bpe;
    int rc = gq_bpe_load_dir(&bpe, argv[1]);
    if (rc) {
        fprintf(stderr, "%s\n", gq_errmsg(rc));
        return 1;
    }
    CHECK(gq_bpe_vocab_size(bpe) == GQ_GPT2_VOCAB_SIZE);
    CHECK(gq_bpe_eot(bpe) == GQ_GPT2_EOT);
    for (int i = 2; i < argc; i++) check_fixture(bpe, argv[i]);
    check_round_trip(bpe);
    check_special(bpe);
    check_parallel_and_cuts(bpe, argv[argc - 1]);
    check_classes();
    check_bad_vocab(argv[1]);
    gq_bpe_free(bpe);
    return gq_test_finish("test_bpe");
}
