/* loader: deterministic batches of B x T token windows with next-token targets, from a
 * gpt2q token file split or from llm.c shards. An epoch is every non-overlapping window
 * (T + 1 tokens, windows never cross a file), in file order or in a permutation drawn from
 * (seed, epoch). The position is the small gq_loader_state, which a checkpoint saves. */
#ifndef GQ_LOADER_H
#define GQ_LOADER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int B, T;
    int shuffle;        /* 0: file order; 1: a fresh permutation every epoch */
    uint64_t seed;
    const char *split;  /* "train" or "val" for token files; ignored for shards */
    int vocab_size;     /* ids must be below it; 0 = from the token file, 50257 for shards */
} gq_loader_config;

typedef struct {
    uint64_t epoch;
    uint64_t cursor;    /* next window, as an index into this epoch's order */
    uint64_t n_windows; /* identity checks on restore */
    uint64_t seed;
    int32_t shuffle, T;
} gq_loader_state;

typedef struct gq_loader gq_loader;

/* paths: one gpt2q token file, or one or more llm.c shards (kind detected from content). */
int gq_loader_open(gq_loader **out, const char *const *paths, int n_paths, const gq_loader_config *cfg);
/* Fill inputs and targets, each (B, T) int32 row-major; targets[b][t] = inputs[b][t]'s
 * successor in the text, or -1 (not scored) where a token file's loss mask leaves that
 * successor out (a prompt's tokens). No allocation. */
int gq_loader_next(gq_loader *L, int32_t *inputs, int32_t *targets);
uint64_t gq_loader_windows(const gq_loader *L);
uint64_t gq_loader_tokens(const gq_loader *L); /* tokens across all files */
int gq_loader_vocab_size(const gq_loader *L);
int gq_loader_masked(const gq_loader *L); /* 1: some targets come as -1 (a token file's loss mask) */
void gq_loader_get_state(const gq_loader *L, gq_loader_state *st);
/* GQ_EINVAL if the state belongs to other data, another T, seed or order. */
int gq_loader_set_state(gq_loader *L, const gq_loader_state *st);
void gq_loader_close(gq_loader *L);

#endif
