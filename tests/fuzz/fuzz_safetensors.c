/* libFuzzer target: the safetensors header parser on arbitrary bytes: it accepts (and then
 * every tensor lies inside the data and can be converted) or rejects with an error. */
#include "gq_error.h"
#include "safetensors.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gq_safetensors st = {0};
    st.path = "input";
    if (gq_st_parse(&st, data, size, "input") == GQ_OK) {
        for (int i = 0; i < st.n_tensors; i++) {
            const gq_st_tensor *t = &st.tensors[i];
            if (t->end > st.data_len || t->begin > t->end) abort();
            if (t->numel > (1u << 20)) continue;
            float *f = malloc(t->numel * sizeof *f + 4);
            int32_t *n = malloc(t->numel * sizeof *n + 4);
            gq_st_read_f32(&st, t, f); /* may refuse integer dtypes: fine */
            gq_st_read_i32(&st, t, n);
            free(f);
            free(n);
        }
        gq_st_clear(&st);
    }
    return 0;
}
