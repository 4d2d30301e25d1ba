/* libFuzzer target: the llm.c shard reader on arbitrary files (through the real file path:
 * the bytes are written to a temp file and read with gq_shard_read_all and the loader).
 * It must accept or reject with an error, never crash or read out of bounds. */
#define _GNU_SOURCE
#include "gq_error.h"
#include "loader.h"
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(path, sizeof path, "/tmp/gq_fuzz_shard.%ld", (long)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t n;
    int rc = gq_shard_parse_header(data, size, size, "input", &n);
    if (!rc && GQ_SHARD_HEADER_BYTES + 2 * n != size) abort();
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
    uint16_t *tok = NULL;
    size_t count = 0;
    int rc2 = gq_shard_read_all(path, 50257, &tok, &count);
    if (!rc && rc2 == GQ_OK && count != n) abort();
    free(tok);
    gq_loader *L;
    const char *p = path;
    gq_loader_config cfg = {2, 3, 1, 5, "train", 0};
    if (gq_loader_open(&L, &p, 1, &cfg) == GQ_OK) {
        int32_t in[6], tg[6];
        for (int i = 0; i < 4 && gq_loader_next(L, in, tg) == GQ_OK; i++)
            for (int k = 0; k < 6; k++)
                if (in[k] < 0 || in[k] >= 50257 || tg[k] < 0 || tg[k] >= 50257) abort();
        gq_loader_close(L);
    }
    unlink(path);
    return 0;
}
