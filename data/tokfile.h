/* tokfile: gpt2q token files (HDF5): uint16 datasets /train and /val plus provenance
 * attributes on the root group. Written atomically; opened for windowed reads. */
#ifndef GQ_TOKFILE_H
#define GQ_TOKFILE_H

#include <stddef.h>
#include <stdint.h>

#define GQ_TOKFILE_FORMAT "gpt2q-tokens"
#define GQ_TOKFILE_VERSION 1

typedef struct {
    const char *name;   /* as given on the command line */
    char sha256[65];    /* of the file's bytes */
    uint64_t n_tokens;  /* tokens it contributed, EOT separators included */
} gq_token_source;

typedef struct {
    int vocab_size;
    int eot_id;
    double val_fraction;
    uint64_t val_block;    /* tokens per block of the interleaved split (gq_split_interleaved) */
    const char *tokenizer; /* "gpt2" */
    int n_sources;
    const gq_token_source *sources;
} gq_tokfile_meta;

/* The validation split rule: the token stream is cut into blocks of `block` tokens and block
 * b (from 0) goes to val when floor((b + 1) * fraction) > floor(b * fraction): with 0.05, every
 * 20th block (b = 19, 39, ...), so val samples the whole corpus instead of its end. The rest,
 * in order, is train. train and val must each hold n tokens of room. */
void gq_split_interleaved(const uint16_t *tokens, size_t n, double fraction, size_t block, uint16_t *train,
                          size_t *n_train, uint16_t *val, size_t *n_val);

/* The same rule over a loss mask (one byte a token), so that it stays beside its tokens. */
void gq_split_interleaved_mask(const uint8_t *mask, size_t n, double fraction, size_t block, uint8_t *train,
                               uint8_t *val);

/* Write `path` atomically. Every id must be < meta->vocab_size. */
int gq_tokfile_write(const char *path, const uint16_t *train, size_t n_train, const uint16_t *val, size_t n_val,
                     const gq_tokfile_meta *meta);
/* With loss masks (both or neither): mask[i] = 1 when token i is scored as a target (the
 * prediction from token i - 1 counts in the loss), 0 when not (a prompt's tokens). Stored as
 * uint8 datasets /train_mask and /val_mask beside the splits. */
int gq_tokfile_write_masked(const char *path, const uint16_t *train, size_t n_train, const uint16_t *val, size_t n_val,
                            const uint8_t *train_mask, const uint8_t *val_mask, const gq_tokfile_meta *meta);

typedef struct gq_tokfile gq_tokfile;

typedef struct {
    int format_version;
    int vocab_size;
    int eot_id;
    uint64_t n_train, n_val;
    double val_fraction;
    uint64_t val_block;
    char tokenizer[32];
    int n_sources;
    char **source_names;  /* n_sources strings */
    char **source_sha256; /* n_sources strings */
    uint64_t *source_tokens;
    int has_mask; /* /train_mask and /val_mask present (gq_tokfile_write_masked) */
    uint64_t n_train_scored, n_val_scored; /* targets the masks keep (n_train, n_val without masks) */
} gq_tokfile_info;

/* 1 if the file starts with the HDF5 signature. */
int gq_is_hdf5(const uint8_t *head, size_t len);

int gq_tokfile_open(const char *path, gq_tokfile **out);
const gq_tokfile_info *gq_tokfile_get_info(const gq_tokfile *tf);
/* Number of tokens in split "train" or "val" (GQ_EINVAL for other names). */
int gq_tokfile_split_len(const gq_tokfile *tf, const char *split, uint64_t *n);
/* Read tokens [offset, offset + n) of a split into dst; checks they are < vocab_size. */
int gq_tokfile_read(gq_tokfile *tf, const char *split, uint64_t offset, size_t n, uint16_t *dst);
/* The loss mask of tokens [offset, offset + n) of a split (GQ_EINVAL when the file has none). */
int gq_tokfile_read_mask(gq_tokfile *tf, const char *split, uint64_t offset, size_t n, uint8_t *dst);
const char *gq_tokfile_path(const gq_tokfile *tf);
void gq_tokfile_close(gq_tokfile *tf);

#endif
