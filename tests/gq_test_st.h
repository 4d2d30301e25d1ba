/* gq_test_st: reading a fixture's float32 tensor by name from a safetensors file, its size checked. */
#ifndef GQ_TEST_ST_H
#define GQ_TEST_ST_H

#include "gq_test.h"
#include "safetensors.h"

#include <stddef.h>

/* 0, or -1 (and a failed check) when the tensor is missing or not n values */
static inline int gq_test_st_f32(const gq_safetensors *st, const char *name, float *dst, size_t n) {
    const gq_st_tensor *t = gq_st_find(st, name);
    CHECKF(t && t->numel == n, "fixture tensor %s missing or not %zu values", name, n);
    if (!t || t->numel != n) return -1;
    CHECK_OK(gq_st_read_f32(st, t, dst));
    return 0;
}

#endif
