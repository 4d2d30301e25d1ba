/* libFuzzer target: the training config parser ("key = value" lines) on arbitrary text:
 * accept or reject with an error naming the line, never crash. */
#include "gq_error.h"
#include "train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gq_train_opts o;
    gq_train_defaults(&o);
    gq_train_parse_config(&o, (const char *)data, size, "input");
    return 0;
}
