/* libFuzzer target: any bytes must encode without error, decode back to the same bytes, and
 * give the same ids on both merge paths and with the special-token option's plain segments. */
#include "bpe.h"
#include "gq_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gq_bpe *bpe;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    int rc = gq_bpe_load_dir(&bpe, GQ_FUZZ_VOCAB_DIR);
    if (rc) {
        fprintf(stderr, "fuzz_bpe: %s\n", gq_errmsg(rc));
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int flags = size && (data[0] & 1) ? GQ_BPE_ALLOW_SPECIAL : 0;
    gq_ids a = {0}, b = {0};
    gq_bytes back = {0};
    if (gq_bpe_encode(bpe, data, size, flags, &a) || gq_bpe_encode(bpe, data, size, flags | GQ_BPE_FORCE_HEAP, &b))
        abort();
    if (a.n != b.n || (a.n && memcmp(a.ids, b.ids, a.n * sizeof *a.ids))) abort();
    if (gq_bpe_decode(bpe, a.ids, a.n, &back)) abort();
    if (back.n != size || (size && memcmp(back.data, data, size))) abort();
    gq_ids_free(&a);
    gq_ids_free(&b);
    gq_bytes_free(&back);
    return 0;
}
