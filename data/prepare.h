/* prepare: text files (each one document, preceded by <|endoftext|>; or JSON Lines, each line's
 * string field `jsonl_key` one document) and llm.c shards into a
 * gpt2q token file with the interleaved validation split: the code behind `gpt2q-data
 * prepare` and `gpt2q-train --data notes.txt` (which caches the result in its run folder). */
#ifndef GQ_PREPARE_H
#define GQ_PREPARE_H

#include "bpe.h"

#include <cjson/cJSON.h>
#include "gq_progress.h"
#include "tokfile.h"

typedef struct {
    const char *const *inputs;
    int n_inputs;
    const char *out;
    double val_fraction; /* 0.05 */
    size_t val_block;    /* 4096 */
    int threads;         /* 0 = all */
    int allow_special;
    const char *jsonl_key; /* non-NULL: text inputs are JSON Lines, this field of each line a document */
    /* non-NULL (with jsonl_key): each line's field jsonl_prompt is the document's prompt, tokenized
     * apart and put before jsonl_key's text (the completion); the file gets loss masks that leave
     * the prompt's tokens out of the loss (every other token, <|endoftext|> included, is scored) */
    const char *jsonl_prompt;
} gq_prepare_opts;

typedef struct {
    size_t bytes, tokens, n_train, n_val;
    int masked;                          /* loss masks written (jsonl_prompt) */
    size_t n_train_scored, n_val_scored; /* targets they keep */
    double seconds;           /* tokenizing */
    gq_token_source *sources; /* n_inputs entries, malloc'd; free with free() */
} gq_prepare_report;

int gq_prepare(const gq_bpe *bpe, const gq_prepare_opts *o, gq_prepare_report *rep);

/* JSON Lines `data` (the file `path`, for messages) into `all`: the string field `key` of every
 * line that is not blank is one document, <|endoftext|> then its ids (flags: gq_bpe_encode's).
 * With prompt_key (may be NULL), each line's string field prompt_key is tokenized apart and its
 * ids go between <|endoftext|> and key's, and `mask` (one byte a token appended to it; may be
 * NULL without prompt_key) gets 0 for the prompt's ids and 1 for the others. A line that is not
 * JSON, or lacks a string field, is an error naming path:line. prog (may be NULL) shows done +
 * bytes read of total. */
int gq_prepare_jsonl(const gq_bpe *bpe, const char *path, const uint8_t *data, size_t len, const char *key,
                     const char *prompt_key, int flags, int threads, gq_ids *all, gq_bytes *mask, gq_progress *prog,
                     double done, double total);

/* One line of a JSON Lines file (without its '\n'): *blank = 1 and NULL for a line of spaces,
 * tabs and CRs; otherwise its value, or NULL when it is not one JSON value with nothing but
 * blanks after it. first: the file's first line, where a UTF-8 byte-order mark is skipped. */
cJSON *gq_jsonl_value(const uint8_t *p, size_t len, int first, int *blank);

#endif
