/* libFuzzer target: any bytes read as JSON Lines (gq_prepare_jsonl, field "text") either fail with
 * an error or give one <|endoftext|> per document (a line that is not blank) and ids in the
 * vocabulary; the documents' own text never yields the special id (it is plain text). Read again
 * with the prompt field "p": a success gives a loss mask as long as the ids, 0 / 1, 1 at every
 * <|endoftext|>, and at least as many ids as without the prompts. */
#include "bpe.h"
#include "gq_error.h"
#include "prepare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gq_bpe *bpe;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    int rc = gq_bpe_load_dir(&bpe, GQ_FUZZ_VOCAB_DIR);
    if (rc) {
        fprintf(stderr, "fuzz_jsonl: %s\n", gq_errmsg(rc));
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gq_ids ids = {0};
    int rc = gq_prepare_jsonl(bpe, "fuzz.jsonl", data, size, "text", NULL, 0, 1, &ids, NULL, NULL, 0, 0);
    if (!rc) {
        size_t docs = 0, eots = 0;
        for (size_t pos = 0; pos < size;) { /* lines that are not blank (space, tab, CR) */
            const uint8_t *nl = memchr(data + pos, '\n', size - pos);
            size_t end = nl ? (size_t)(nl - data) : size;
            for (size_t k = pos; k < end; k++)
                if (data[k] != ' ' && data[k] != '\t' && data[k] != '\r') {
                    docs++;
                    break;
                }
            pos = end + 1;
        }
        for (size_t i = 0; i < ids.n; i++) {
            if (ids.ids[i] < 0 || ids.ids[i] >= gq_bpe_vocab_size(bpe)) abort();
            eots += ids.ids[i] == gq_bpe_eot(bpe);
        }
        if (eots != docs) abort();
    }
    gq_err_clear();
    gq_ids pids = {0};
    gq_bytes mask = {0};
    int prc = gq_prepare_jsonl(bpe, "fuzz.jsonl", data, size, "text", "p", 0, 1, &pids, &mask, NULL, 0, 0);
    if (!prc) {
        if (rc || mask.n != pids.n || pids.n < ids.n) abort(); /* every line with "p" has "text" too */
        for (size_t i = 0; i < pids.n; i++)
            if (mask.data[i] > 1 || (pids.ids[i] == gq_bpe_eot(bpe) && mask.data[i] != 1)) abort();
    }
    gq_err_clear();
    gq_bytes_free(&mask);
    gq_ids_free(&pids);
    gq_ids_free(&ids);
    return 0;
}
