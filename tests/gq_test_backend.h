/* gq_test_backend: the backend a whole-model test runs on: the CPU reference, or the CUDA
 * backend when GQ_TEST_BACKEND=cuda (ctest's *_cuda variants, label gpu), which skips (77)
 * where this build or machine has no GPU. */
#ifndef GQ_TEST_BACKEND_H
#define GQ_TEST_BACKEND_H

#include "backend.h"
#include "gq_test.h"

#include <stdlib.h>
#include <string.h>
#ifdef GQ_HAVE_CUDA
#include "cuda_ops.h"
#endif

static inline const gq_backend *gq_test_backend(void) {
    const char *want = getenv("GQ_TEST_BACKEND");
    if (want && !strcmp(want, "cuda")) {
#ifdef GQ_HAVE_CUDA
        if (gq_cuda_device_count() > 0) return gq_backend_cuda();
#endif
        SKIP("GQ_TEST_BACKEND=cuda: no CUDA device in this build or machine");
    }
    return gq_backend_cpu();
}

#endif
