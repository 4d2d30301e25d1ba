/* shard: see shard.h. */
#define _POSIX_C_SOURCE 200809L /* fileno */
#include "shard.h"

#include "gq_error.h"
#include "gq_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int32_t le32(const uint8_t *p) { return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24); }

int gq_shard_has_magic(const uint8_t *head, size_t len) { return len >= 4 && le32(head) == GQ_SHARD_MAGIC; }

int gq_shard_parse_header(const uint8_t *head, size_t len, uint64_t file_size, const char *name, uint64_t *n_tokens) {
    if (len < GQ_SHARD_HEADER_BYTES)
        return gq_errf(GQ_ETRUNC, "%s: truncated llm.c shard: %zu bytes, the header alone is %d", name, len,
                       GQ_SHARD_HEADER_BYTES);
    int32_t magic = le32(head), version = le32(head + 4), count = le32(head + 8);
    if (magic != GQ_SHARD_MAGIC)
        return gq_errf(GQ_EFORMAT, "%s: wrong magic %d, an llm.c token shard starts with %d", name, magic,
                       GQ_SHARD_MAGIC);
    if (version != GQ_SHARD_VERSION)
        return gq_errf(GQ_EFORMAT, "%s: llm.c shard version %d, only version %d (uint16 tokens) is supported", name,
                       version, GQ_SHARD_VERSION);
    if (count < 0) return gq_errf(GQ_EFORMAT, "%s: negative token count %d in the header", name, count);
    uint64_t expect = GQ_SHARD_HEADER_BYTES + 2 * (uint64_t)count;
    if (file_size < expect)
        return gq_errf(GQ_ETRUNC, "%s: truncated llm.c shard: header says %d tokens (%llu bytes), file has %llu bytes",
                       name, count, (unsigned long long)expect, (unsigned long long)file_size);
    if (file_size > expect)
        return gq_errf(GQ_EFORMAT, "%s: %llu bytes after the %d tokens the header announces", name,
                       (unsigned long long)(file_size - expect), count);
    *n_tokens = (uint64_t)count;
    return GQ_OK;
}

int gq_shard_check_ids(const uint16_t *tokens, size_t n, int vocab_size, const char *name, uint64_t base) {
    for (size_t i = 0; i < n; i++)
        if (tokens[i] >= vocab_size)
            return gq_errf(GQ_ERANGE, "%s: token %llu is %u, not below the vocabulary size %d", name,
                           (unsigned long long)(base + i), tokens[i], vocab_size);
    return GQ_OK;
}

int gq_shard_read_all(const char *path, int vocab_size, uint16_t **tokens, size_t *n_tokens) {
    *tokens = NULL;
    *n_tokens = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return gq_errf(gq_from_errno(errno), "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    uint8_t head[GQ_SHARD_HEADER_BYTES];
    size_t got = fread(head, 1, sizeof head, f);
    uint64_t n = 0;
    int rc = fstat(fileno(f), &st) ? gq_errf(GQ_EIO, "%s: cannot stat", path)
                                   : gq_shard_parse_header(head, got, (uint64_t)st.st_size, path, &n);
    uint16_t *buf = NULL;
    if (!rc) {
        buf = malloc(n ? n * 2 : 1);
        if (!buf) rc = gq_errf(GQ_ENOMEM, "%s: out of memory for %llu tokens", path, (unsigned long long)n);
    }
    if (!rc && fread(buf, 2, n, f) != n) rc = gq_errf(GQ_ETRUNC, "%s: short read of the token array", path);
    fclose(f);
    if (!rc) rc = gq_shard_check_ids(buf, n, vocab_size, path, 0);
    if (rc) {
        free(buf);
        return rc;
    }
    *tokens = buf;
    *n_tokens = n;
    return GQ_OK;
}

int gq_shard_write(const char *path, const uint16_t *tokens, size_t n) {
    if (n > INT32_MAX) return gq_errf(GQ_ERANGE, "%s: %zu tokens do not fit one llm.c shard", path, n);
    char tmp[4200];
    gq_temp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "wb");
    if (!f) return gq_errf(gq_from_errno(errno), "%s: cannot create: %s", tmp, strerror(errno));
    int32_t head[256] = {GQ_SHARD_MAGIC, GQ_SHARD_VERSION, (int32_t)n};
    int ok = fwrite(head, sizeof head, 1, f) == 1 && fwrite(tokens, 2, n, f) == n, err = ok ? 0 : errno;
    if (fclose(f) != 0 && ok) ok = 0, err = errno;
    if (!ok) {
        unlink(tmp);
        return gq_errf(GQ_EIO, "%s: writing failed (disk full?): %s", path, strerror(err ? err : EIO));
    }
    return gq_commit_file(tmp, path);
}
