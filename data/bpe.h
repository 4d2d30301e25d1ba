/* bpe: GPT-2's byte-level BPE tokenizer. Loads OpenAI's encoder.json + vocab.bpe and
 * reproduces GPT-2's encoder exactly; decode is the exact byte inverse of encode for any
 * byte string (invalid UTF-8 included). A loaded gq_bpe is read-only: encode/decode may run
 * on many threads at once. */
#ifndef GQ_BPE_H
#define GQ_BPE_H

#include <stddef.h>
#include <stdint.h>

#define GQ_GPT2_VOCAB_SIZE 50257
#define GQ_GPT2_EOT 50256

typedef struct gq_bpe gq_bpe;

/* A growable array of token ids. Zero-initialise, free with gq_ids_free. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} gq_ids;

/* A growable byte buffer. Zero-initialise, free with gq_bytes_free. */
typedef struct {
    uint8_t *data;
    size_t n, cap;
} gq_bytes;

void gq_ids_free(gq_ids *v);
int gq_ids_push(gq_ids *v, int32_t id);
void gq_bytes_free(gq_bytes *b);
int gq_bytes_append(gq_bytes *b, const void *data, size_t n);

enum {
    GQ_BPE_ALLOW_SPECIAL = 1, /* "<|endoftext|>" in the text becomes id 50256 */
    GQ_BPE_FORCE_HEAP = 2     /* testing: use the O(n log n) merge path on every piece */
};

/* Load from explicit files. Errors name the file and what is wrong with it. */
int gq_bpe_load(gq_bpe **out, const char *encoder_json_path, const char *vocab_bpe_path);
/* Load from a directory holding encoder.json and vocab.bpe; dir == NULL searches
 * $GPT2Q_VOCAB_DIR, <exe>/../share/gpt2q/gpt2, <exe>/../data/gpt2, then the source tree. */
int gq_bpe_load_dir(gq_bpe **out, const char *dir);
/* The directory gq_bpe_load_dir would load from (same search), into out. */
int gq_bpe_find_dir(const char *dir, char *out, size_t size);
void gq_bpe_free(gq_bpe *bpe);

int gq_bpe_vocab_size(const gq_bpe *bpe);
int gq_bpe_eot(const gq_bpe *bpe); /* id of "<|endoftext|>" */
/* Bytes of token `id` (NULL if out of range). */
const uint8_t *gq_bpe_token_bytes(const gq_bpe *bpe, int32_t id, size_t *len);

/* Append the ids of `text` to `out`. */
int gq_bpe_encode(const gq_bpe *bpe, const uint8_t *text, size_t len, int flags, gq_ids *out);
/* Same result as gq_bpe_encode, the text cut at safe points and encoded on n_threads
 * OpenMP threads (n_threads <= 0: all). */
int gq_bpe_encode_parallel(const gq_bpe *bpe, const uint8_t *text, size_t len, int flags, int n_threads,
                           gq_ids *out);
/* Append the bytes of `ids` to `out`; an id outside the vocabulary is GQ_ERANGE. */
int gq_bpe_decode(const gq_bpe *bpe, const int32_t *ids, size_t n, gq_bytes *out);

#endif
