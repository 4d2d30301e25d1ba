/* bpe: GPT-2 byte-level BPE (see bpe.h). Tokens are stored as raw bytes (the byte<->unicode
 * mapping of encoder.json is undone at load), merges as a hash table (left id, right id) ->
 * (rank, merged id). A piece is encoded by (1) a whole-token lookup, else (2) repeatedly
 * merging the lowest-ranked adjacent pair, leftmost first: an O(n^2) scan for short pieces,
 * a heap over a linked list for long ones. Both give GPT-2's result because a merge's product
 * can only take part in merges of higher rank. */
#define _GNU_SOURCE /* memmem */
#include "bpe.h"

#include "gq_error.h"
#include "gq_file.h"
#include "pretok.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define SHORT_PIECE 64 /* pieces up to this many bytes use the O(n^2) merge loop */

typedef struct {
    uint32_t off, len;
} span;

typedef struct {
    uint64_t key; /* pair_key(left, right), never 0; 0 marks an empty slot */
    uint32_t rank;
    int32_t merged;
} pair_slot;

struct gq_bpe {
    int vocab_size;
    int eot;
    uint8_t *blob; /* all token bytes */
    span *tok;     /* id -> bytes in blob */
    int32_t byte_id[256];
    /* bytes -> id, open addressing; slot holds id+1 (0 = empty) */
    int32_t *lut;
    uint32_t lut_mask;
    /* (left, right) -> (rank, merged) */
    pair_slot *pairs;
    uint32_t pair_mask;
    int n_merges;
};

/* ---- growable arrays ---- */

void gq_ids_free(gq_ids *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

static int ids_reserve(gq_ids *v, size_t need) {
    if (need <= v->cap) return GQ_OK;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < need) cap *= 2;
    int32_t *p = realloc(v->ids, cap * sizeof *p);
    if (!p) return gq_errf(GQ_ENOMEM, "out of memory for %zu token ids", cap);
    v->ids = p;
    v->cap = cap;
    return GQ_OK;
}

int gq_ids_push(gq_ids *v, int32_t id) {
    if (v->n == v->cap) {
        int rc = ids_reserve(v, v->n + 1);
        if (rc) return rc;
    }
    v->ids[v->n++] = id;
    return GQ_OK;
}

void gq_bytes_free(gq_bytes *b) {
    free(b->data);
    b->data = NULL;
    b->n = b->cap = 0;
}

int gq_bytes_append(gq_bytes *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p) return gq_errf(GQ_ENOMEM, "out of memory for %zu bytes", cap);
        b->data = p;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->n, data, n);
    b->n += n;
    b->data[b->n] = 0;
    return GQ_OK;
}

/* ---- hashing ---- */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w);
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix64(h ^ w ^ 0x5555);
}

static inline int32_t lut_find(const gq_bpe *b, const uint8_t *p, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(p, n) & b->lut_mask;
    for (;;) {
        int32_t v = b->lut[i];
        if (!v) return -1;
        span t = b->tok[v - 1];
        if (t.len == n && memcmp(b->blob + t.off, p, n) == 0) return v - 1;
        i = (i + 1) & b->lut_mask;
    }
}

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static inline const pair_slot *pair_find(const gq_bpe *b, int32_t left, int32_t right) {
    uint64_t key = pair_key(left, right);
    uint32_t i = (uint32_t)mix64(key) & b->pair_mask;
    for (;;) {
        const pair_slot *s = &b->pairs[i];
        if (s->key == key) return s;
        if (!s->key) return NULL;
        i = (i + 1) & b->pair_mask;
    }
}

/* ---- loading ---- */

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes
 * to U+0100.. in byte order. Fills unicode -> byte for code points < 324 (-1 = none). */
static void unicode_to_byte_table(int16_t u2b[324]) {
    for (int i = 0; i < 324; i++) u2b[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        u2b[printable ? b : 256 + n++] = (int16_t)b;
    }
}

/* Decode one encoder.json / vocab.bpe symbol (UTF-8 of mapped bytes) into raw bytes. */
static int decode_symbol(const int16_t u2b[324], const uint8_t *s, size_t n, uint8_t *out, size_t *out_len) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t m = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (m <= 0 || cp >= 324 || u2b[cp] < 0) return -1;
        out[k++] = (uint8_t)u2b[cp];
        i += (size_t)m;
    }
    *out_len = k;
    return 0;
}

static uint32_t pow2_at_least(uint32_t n) {
    uint32_t c = 1;
    while (c < n) c <<= 1;
    return c;
}

static int load_encoder(gq_bpe *b, const char *path, const int16_t u2b[324]) {
    uint8_t *text;
    size_t len;
    int rc = gq_read_file(path, &text, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength((const char *)text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at ? (long)(at - (const char *)text) : -1;
        free(text);
        return gq_errf(GQ_EFORMAT, "%s: invalid JSON near byte %ld", path, off);
    }
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return gq_errf(GQ_EFORMAT, "%s: expected a JSON object of token -> id", path);
    }
    int n = cJSON_GetArraySize(root);
    if (n < 256) {
        cJSON_Delete(root);
        return gq_errf(GQ_EVOCAB, "%s: %d entries, a byte-level BPE vocabulary has at least 256", path, n);
    }
    size_t blob_cap = 0;
    for (cJSON *it = root->child; it; it = it->next) blob_cap += strlen(it->string);
    b->blob = malloc(blob_cap + 1);
    b->tok = calloc((size_t)n, sizeof *b->tok);
    uint8_t *seen = calloc((size_t)n, 1);
    if (!b->blob || !b->tok || !seen) {
        free(seen);
        cJSON_Delete(root);
        return gq_errf(GQ_ENOMEM, "%s: out of memory", path);
    }
    uint32_t off = 0;
    rc = GQ_OK;
    for (cJSON *it = root->child; it; it = it->next) {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || v < 0 || v >= n || v != (double)(int)v) {
            rc = gq_errf(GQ_EVOCAB, "%s: token \"%.40s\": id must be an integer in [0, %d)", path, it->string, n);
            break;
        }
        int id = (int)v;
        if (seen[id]) {
            rc = gq_errf(GQ_EVOCAB, "%s: id %d is given to two tokens", path, id);
            break;
        }
        seen[id] = 1;
        size_t blen;
        if (decode_symbol(u2b, (const uint8_t *)it->string, strlen(it->string), b->blob + off, &blen)) {
            rc = gq_errf(GQ_EVOCAB, "%s: token \"%.40s\" is not in GPT-2's byte-level alphabet", path, it->string);
            break;
        }
        b->tok[id] = (span){off, (uint32_t)blen};
        off += (uint32_t)blen;
        if (strcmp(it->string, "<|endoftext|>") == 0) b->eot = id;
    }
    cJSON_Delete(root);
    free(seen);
    if (rc) return rc;
    b->vocab_size = n;

    b->lut_mask = pow2_at_least((uint32_t)n * 2) - 1;
    b->lut = calloc((size_t)b->lut_mask + 1, sizeof *b->lut);
    if (!b->lut) return gq_errf(GQ_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < 256; i++) b->byte_id[i] = -1;
    for (int id = 0; id < n; id++) {
        if (id == b->eot) continue; /* special: never produced from plain text */
        const uint8_t *p = b->blob + b->tok[id].off;
        size_t len_id = b->tok[id].len;
        if (lut_find(b, p, len_id) >= 0)
            return gq_errf(GQ_EVOCAB, "%s: two ids (%d and %d) have the same bytes", path, lut_find(b, p, len_id), id);
        uint32_t i = (uint32_t)hash_bytes(p, len_id) & b->lut_mask;
        while (b->lut[i]) i = (i + 1) & b->lut_mask;
        b->lut[i] = id + 1;
        if (len_id == 1) b->byte_id[p[0]] = id;
    }
    for (int i = 0; i < 256; i++)
        if (b->byte_id[i] < 0) return gq_errf(GQ_EVOCAB, "%s: no token for byte 0x%02x", path, i);
    return GQ_OK;
}

static int load_merges(gq_bpe *b, const char *path, const int16_t u2b[324]) {
    uint8_t *text;
    size_t len;
    int rc = gq_read_file(path, &text, &len);
    if (rc) return rc;
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += text[i] == '\n';
    b->pair_mask = pow2_at_least((uint32_t)(n_lines * 2 + 16)) - 1;
    b->pairs = calloc((size_t)b->pair_mask + 1, sizeof *b->pairs);
    uint8_t *scratch = malloc(len + 1);
    if (!b->pairs || !scratch) {
        free(text);
        free(scratch);
        return gq_errf(GQ_ENOMEM, "%s: out of memory", path);
    }
    int rank = 0, line_no = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        line_no++;
        size_t line_len = e - i;
        if (line_len && text[i + line_len - 1] == '\r') line_len--;
        const uint8_t *line = text + i;
        i = e + 1;
        if (line_len == 0 || (line_no == 1 && line[0] == '#')) continue;
        const uint8_t *sp = memchr(line, ' ', line_len);
        size_t la, lb;
        if (!sp || sp == line || sp == line + line_len - 1 || memchr(sp + 1, ' ', line_len - (size_t)(sp - line) - 1)) {
            rc = gq_errf(GQ_EFORMAT, "%s: line %d: expected two symbols separated by one space", path, line_no);
            break;
        }
        if (decode_symbol(u2b, line, (size_t)(sp - line), scratch, &la) ||
            decode_symbol(u2b, sp + 1, line_len - (size_t)(sp - line) - 1, scratch + la, &lb)) {
            rc = gq_errf(GQ_EVOCAB, "%s: line %d: symbol outside GPT-2's byte-level alphabet", path, line_no);
            break;
        }
        int32_t left = lut_find(b, scratch, la), right = lut_find(b, scratch + la, lb);
        int32_t merged = lut_find(b, scratch, la + lb);
        if (left < 0 || right < 0 || merged < 0) {
            rc = gq_errf(GQ_EVOCAB, "%s: line %d: merge \"%.*s\" uses or makes a token that the encoder lacks", path,
                         line_no, (int)line_len, (const char *)line);
            break;
        }
        uint64_t key = pair_key(left, right);
        uint32_t slot = (uint32_t)mix64(key) & b->pair_mask;
        while (b->pairs[slot].key && b->pairs[slot].key != key) slot = (slot + 1) & b->pair_mask;
        if (!b->pairs[slot].key) /* a repeated merge keeps its first (lowest) rank */
            b->pairs[slot] = (pair_slot){key, (uint32_t)rank, merged};
        rank++;
    }
    free(text);
    free(scratch);
    b->n_merges = rank;
    if (!rc && rank == 0) rc = gq_errf(GQ_EVOCAB, "%s: no merges", path);
    return rc;
}

int gq_bpe_load(gq_bpe **out, const char *encoder_json_path, const char *vocab_bpe_path) {
    *out = NULL;
    gq_bpe *b = calloc(1, sizeof *b);
    if (!b) return gq_errf(GQ_ENOMEM, "out of memory");
    b->eot = -1;
    int16_t u2b[324];
    unicode_to_byte_table(u2b);
    int rc = load_encoder(b, encoder_json_path, u2b);
    if (!rc) rc = load_merges(b, vocab_bpe_path, u2b);
    if (!rc && b->eot < 0) rc = gq_errf(GQ_EVOCAB, "%s: no \"<|endoftext|>\" token", encoder_json_path);
    if (rc) {
        gq_bpe_free(b);
        return rc;
    }
    *out = b;
    return GQ_OK;
}

static int has_vocab(const char *dir) {
    char enc[4400], merges[4400];
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(merges, sizeof merges, "%s/vocab.bpe", dir);
    return gq_file_exists(enc) && gq_file_exists(merges);
}

int gq_bpe_find_dir(const char *dir, char *out, size_t size) {
    if (dir) {
        if (!has_vocab(dir)) return gq_errf(GQ_ENOENT, "%s: no encoder.json and vocab.bpe in this directory", dir);
        snprintf(out, size, "%s", dir);
        return GQ_OK;
    }
    char exe[4096], cand[4200];
    gq_exe_dir(exe, sizeof exe);
    const char *env = getenv("GPT2Q_VOCAB_DIR");
    if (env && *env && has_vocab(env)) {
        snprintf(out, size, "%s", env);
        return GQ_OK;
    }
    const char *suffixes[] = {"/../share/gpt2q/gpt2", "/../data/gpt2", "/../../data/gpt2"};
    for (size_t i = 0; exe[0] && i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(cand, sizeof cand, "%s%s", exe, suffixes[i]);
        if (has_vocab(cand)) {
            snprintf(out, size, "%s", cand);
            return GQ_OK;
        }
    }
#ifdef GQ_SOURCE_DATA_DIR
    if (has_vocab(GQ_SOURCE_DATA_DIR "/gpt2")) {
        snprintf(out, size, "%s", GQ_SOURCE_DATA_DIR "/gpt2");
        return GQ_OK;
    }
#endif
    return gq_errf(GQ_ENOENT,
                   "GPT-2 vocabulary (encoder.json, vocab.bpe) not found: pass --vocab DIR or set GPT2Q_VOCAB_DIR");
}

int gq_bpe_load_dir(gq_bpe **out, const char *dir) {
    char found[4200], enc[4400], merges[4400];
    int rc = gq_bpe_find_dir(dir, found, sizeof found);
    if (rc) return rc;
    snprintf(enc, sizeof enc, "%s/encoder.json", found);
    snprintf(merges, sizeof merges, "%s/vocab.bpe", found);
    return gq_bpe_load(out, enc, merges);
}

void gq_bpe_free(gq_bpe *b) {
    if (!b) return;
    free(b->blob);
    free(b->tok);
    free(b->lut);
    free(b->pairs);
    free(b);
}

int gq_bpe_vocab_size(const gq_bpe *b) { return b->vocab_size; }
int gq_bpe_eot(const gq_bpe *b) { return b->eot; }

const uint8_t *gq_bpe_token_bytes(const gq_bpe *b, int32_t id, size_t *len) {
    if (id < 0 || id >= b->vocab_size) return NULL;
    *len = b->tok[id].len;
    return b->blob + b->tok[id].off;
}

/* ---- encoding ---- */

static int merge_short(const gq_bpe *b, const uint8_t *p, size_t n, gq_ids *out) {
    int32_t ids[SHORT_PIECE];
    uint32_t rank[SHORT_PIECE];
    int32_t merged[SHORT_PIECE];
    size_t m = n;
    for (size_t k = 0; k < n; k++) ids[k] = b->byte_id[p[k]];
    for (size_t k = 0; k + 1 < m; k++) {
        const pair_slot *s = pair_find(b, ids[k], ids[k + 1]);
        rank[k] = s ? s->rank : UINT32_MAX;
        merged[k] = s ? s->merged : -1;
    }
    while (m > 1) {
        size_t best = 0;
        for (size_t k = 1; k + 1 < m; k++)
            if (rank[k] < rank[best]) best = k;
        if (rank[best] == UINT32_MAX) break;
        ids[best] = merged[best];
        size_t tail = m - best - 2; /* ids after the removed one; pairs after it: tail - 1 */
        memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
        if (tail > 1) {
            memmove(rank + best + 1, rank + best + 2, (tail - 1) * sizeof *rank);
            memmove(merged + best + 1, merged + best + 2, (tail - 1) * sizeof *merged);
        }
        m--;
        for (size_t k = best ? best - 1 : 0; k <= best && k + 1 < m; k++) {
            const pair_slot *s = pair_find(b, ids[k], ids[k + 1]);
            rank[k] = s ? s->rank : UINT32_MAX;
            merged[k] = s ? s->merged : -1;
        }
    }
    int rc = ids_reserve(out, out->n + m);
    if (rc) return rc;
    memcpy(out->ids + out->n, ids, m * sizeof *ids);
    out->n += m;
    return GQ_OK;
}

typedef struct {
    uint32_t rank;
    int32_t pos, left_id, right_id, right, merged;
} heap_entry;

static inline int heap_less(const heap_entry *x, const heap_entry *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(heap_entry *h, size_t *n, heap_entry e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&e, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static heap_entry heap_pop(heap_entry *h, size_t *n) {
    heap_entry top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void heap_push_pair(const gq_bpe *b, heap_entry *h, size_t *hn, const int32_t *id, int32_t pos, int32_t right) {
    const pair_slot *s = pair_find(b, id[pos], id[right]);
    if (s) heap_push(h, hn, (heap_entry){s->rank, pos, id[pos], id[right], right, s->merged});
}

static int merge_long(const gq_bpe *b, const uint8_t *p, size_t n, gq_ids *out) {
    int32_t *id = malloc(n * sizeof *id), *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    heap_entry *h = malloc(3 * n * sizeof *h);
    if (!id || !next || !prev || !h) {
        free(id), free(next), free(prev), free(h);
        return gq_errf(GQ_ENOMEM, "out of memory for a %zu-byte piece", n);
    }
    size_t hn = 0;
    for (size_t k = 0; k < n; k++) {
        id[k] = b->byte_id[p[k]];
        next[k] = k + 1 < n ? (int32_t)k + 1 : -1;
        prev[k] = (int32_t)k - 1;
    }
    for (size_t k = 0; k + 1 < n; k++) heap_push_pair(b, h, &hn, id, (int32_t)k, (int32_t)k + 1);
    while (hn) {
        heap_entry e = heap_pop(h, &hn);
        if (id[e.pos] != e.left_id || next[e.pos] != e.right || id[e.right] != e.right_id) continue; /* stale */
        id[e.pos] = e.merged;
        id[e.right] = -1;
        next[e.pos] = next[e.right];
        if (next[e.pos] >= 0) prev[next[e.pos]] = e.pos;
        if (prev[e.pos] >= 0) heap_push_pair(b, h, &hn, id, prev[e.pos], e.pos);
        if (next[e.pos] >= 0) heap_push_pair(b, h, &hn, id, e.pos, next[e.pos]);
    }
    int rc = GQ_OK;
    for (int32_t k = 0; k >= 0 && !rc; k = next[k]) rc = gq_ids_push(out, id[k]);
    free(id), free(next), free(prev), free(h);
    return rc;
}

static inline int encode_piece(const gq_bpe *b, const uint8_t *p, size_t n, int flags, gq_ids *out) {
    if (n == 1) return gq_ids_push(out, b->byte_id[p[0]]);
    int32_t whole = lut_find(b, p, n);
    if (whole >= 0) return gq_ids_push(out, whole);
    if (n <= SHORT_PIECE && !(flags & GQ_BPE_FORCE_HEAP)) return merge_short(b, p, n, out);
    return merge_long(b, p, n, out);
}

static int encode_ordinary(const gq_bpe *b, const uint8_t *s, size_t len, int flags, gq_ids *out) {
    int rc = ids_reserve(out, out->n + len / 4 + 16);
    for (size_t i = 0; i < len && !rc;) {
        size_t e = gq_pretok_next(s, len, i);
        rc = encode_piece(b, s + i, e - i, flags, out);
        i = e;
    }
    return rc;
}

int gq_bpe_encode(const gq_bpe *b, const uint8_t *text, size_t len, int flags, gq_ids *out) {
    if (!(flags & GQ_BPE_ALLOW_SPECIAL)) return encode_ordinary(b, text, len, flags, out);
    static const char special[] = "<|endoftext|>";
    const size_t sl = sizeof special - 1;
    size_t i = 0;
    for (;;) {
        const uint8_t *hit = len - i >= sl ? memmem(text + i, len - i, special, sl) : NULL;
        size_t end = hit ? (size_t)(hit - text) : len;
        int rc = encode_ordinary(b, text + i, end - i, flags, out);
        if (rc) return rc;
        if (!hit) return GQ_OK;
        rc = gq_ids_push(out, b->eot);
        if (rc) return rc;
        i = end + sl;
    }
}

int gq_bpe_encode_parallel(const gq_bpe *b, const uint8_t *text, size_t len, int flags, int n_threads,
                           gq_ids *out) {
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#else
    n_threads = 1;
#endif
    const size_t chunk_target = 1 << 20;
    if (n_threads <= 1 || len < 2 * chunk_target) return gq_bpe_encode(b, text, len, flags, out);
    size_t n_chunks_max = len / chunk_target + 2;
    size_t *cut = malloc((n_chunks_max + 1) * sizeof *cut);
    if (!cut) return gq_errf(GQ_ENOMEM, "out of memory");
    size_t n_chunks = 0;
    cut[0] = 0;
    /* The special token has no space in it, so a safe cut never splits it. */
    while (cut[n_chunks] < len) {
        size_t target = cut[n_chunks] + chunk_target;
        cut[n_chunks + 1] = target >= len ? len : gq_pretok_safe_cut(text, len, target);
        n_chunks++;
    }
    gq_ids *parts = calloc(n_chunks, sizeof *parts);
    int *rcs = calloc(n_chunks, sizeof *rcs);
    int rc = GQ_OK;
    if (!parts || !rcs) rc = gq_errf(GQ_ENOMEM, "out of memory");
    if (!rc) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
        for (size_t c = 0; c < n_chunks; c++)
            rcs[c] = gq_bpe_encode(b, text + cut[c], cut[c + 1] - cut[c], flags, &parts[c]);
        size_t total = out->n;
        for (size_t c = 0; c < n_chunks; c++) {
            if (rcs[c] && !rc) rc = gq_errf(rcs[c], "encoding failed in a worker thread");
            total += parts[c].n;
        }
        if (!rc) rc = ids_reserve(out, total);
        for (size_t c = 0; c < n_chunks && !rc; c++) {
            memcpy(out->ids + out->n, parts[c].ids, parts[c].n * sizeof *out->ids);
            out->n += parts[c].n;
        }
    }
    for (size_t c = 0; parts && c < n_chunks; c++) gq_ids_free(&parts[c]);
    free(parts);
    free(rcs);
    free(cut);
    return rc;
}

int gq_bpe_decode(const gq_bpe *b, const int32_t *ids, size_t n, gq_bytes *out) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= b->vocab_size)
            return gq_errf(GQ_ERANGE, "token id %d at position %zu is outside the vocabulary [0, %d)", ids[i], i,
                           b->vocab_size);
        span t = b->tok[ids[i]];
        int rc = gq_bytes_append(out, b->blob + t.off, t.len);
        if (rc) return rc;
    }
    return GQ_OK;
}
