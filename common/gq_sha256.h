/* gq_sha256: SHA-256 (FIPS 180-4) for recording the provenance of source files. */
#ifndef GQ_SHA256_H
#define GQ_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t n_bytes;
    uint8_t block[64];
    size_t block_len;
} gq_sha256;

void gq_sha256_init(gq_sha256 *h);
void gq_sha256_update(gq_sha256 *h, const void *data, size_t len);
void gq_sha256_final(gq_sha256 *h, uint8_t digest[32]);
/* One-shot digest as 64 lowercase hex characters plus NUL. */
void gq_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
