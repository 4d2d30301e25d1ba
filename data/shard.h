/* shard: llm.c token shards: a 256 x int32 header (magic 20240520, version 1, token count)
 * followed by that many uint16 tokens, little-endian. Read, validate and write. */
#ifndef GQ_SHARD_H
#define GQ_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define GQ_SHARD_MAGIC 20240520
#define GQ_SHARD_VERSION 1
#define GQ_SHARD_HEADER_BYTES 1024

/* 1 if the first bytes carry the shard magic. */
int gq_shard_has_magic(const uint8_t *head, size_t len);

/* Validate a header against the file's size; `name` is used in messages. */
int gq_shard_parse_header(const uint8_t *head, size_t len, uint64_t file_size, const char *name, uint64_t *n_tokens);

/* Check every token is < vocab_size; the message names the file and the position. */
int gq_shard_check_ids(const uint16_t *tokens, size_t n, int vocab_size, const char *name, uint64_t base);

/* Whole shard into a malloc'd array, validated (header, size, ids < vocab_size). */
int gq_shard_read_all(const char *path, int vocab_size, uint16_t **tokens, size_t *n_tokens);

/* Write a shard atomically (temp file + rename). */
int gq_shard_write(const char *path, const uint16_t *tokens, size_t n);

#endif
