/* prepare: text files (each one document, preceded by <|endoftext|>; or JSON Lines, each line's
 * string field `jsonl_key` one document) and llm.c shards into a
 * gpt2q token file with the interleaved validation split: the code behind `gpt2q-data
 * prepare` and `gpt2q-train --data notes.txt` (which caches the result in its run folder). */
#ifndef GQ_PREPARE_H
#define GQ_PREPARE_H

#include "bpe.h"
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
} gq_prepare_opts;

typedef struct {
    size_t bytes, tokens, n_train, n_val;
    double seconds;           /* tokenizing */
    gq_token_source *sources; /* n_inputs entries, malloc'd; free with free() */
} gq_prepare_report;

int gq_prepare(const gq_bpe *bpe, const gq_prepare_opts *o, gq_prepare_report *rep);

#endif
