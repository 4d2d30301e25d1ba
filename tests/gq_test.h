/* gq_test: the few macros every C test uses. A test prints what failed and exits 1; it exits
 * 77 (ctest: skipped) when something it needs is missing, never passing silently. */
#ifndef GQ_TEST_H
#define GQ_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int gq_test_failures = 0;
static int gq_test_checks = 0;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        gq_test_checks++;                                                           \
        if (!(cond)) {                                                              \
            gq_test_failures++;                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

#define CHECKF(cond, ...)                                                  \
    do {                                                                   \
        gq_test_checks++;                                                  \
        if (!(cond)) {                                                     \
            gq_test_failures++;                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* A call returning a gq status must succeed; print its message otherwise. */
#define CHECK_OK(call)                                                                              \
    do {                                                                                            \
        int gq_rc_ = (call);                                                                        \
        gq_test_checks++;                                                                           \
        if (gq_rc_) {                                                                               \
            gq_test_failures++;                                                                     \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, gq_errmsg(gq_rc_)); \
        }                                                                                           \
    } while (0)

#define SKIP(...)                          \
    do {                                   \
        fprintf(stderr, "SKIP: " __VA_ARGS__); \
        fputc('\n', stderr);               \
        exit(77);                          \
    } while (0)

static inline int gq_test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, gq_test_checks, gq_test_failures);
    return gq_test_failures ? 1 : 0;
}

#endif
