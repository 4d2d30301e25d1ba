/* gq_error: the project's error codes (one X-macro list), gq_strerror, and a per-thread
 * detail message so that a tool can print one line naming the file and the problem. */
#ifndef GQ_ERROR_H
#define GQ_ERROR_H

#include <stdarg.h>

/* X(name, value, text) */
#define GQ_ERROR_LIST(X)                                   \
    X(GQ_EIO, -1, "input/output error")                    \
    X(GQ_ENOENT, -2, "no such file")                       \
    X(GQ_EFORMAT, -3, "wrong format")                      \
    X(GQ_ETRUNC, -4, "truncated file")                     \
    X(GQ_ESHAPE, -5, "wrong shape")                        \
    X(GQ_ERANGE, -6, "value out of range")                 \
    X(GQ_ENOMEM, -7, "out of memory")                      \
    X(GQ_EINVAL, -8, "invalid argument")                   \
    X(GQ_ENOSPC, -9, "no space left on device")            \
    X(GQ_ENAN, -10, "non-finite value")                    \
    X(GQ_EVOCAB, -11, "vocabulary does not match")         \
    X(GQ_EDEVICE, -12, "device error")                     \
    X(GQ_ENODEVICE, -13, "no device present")              \
    X(GQ_EUNSUPPORTED, -14, "unsupported")

enum gq_error {
    GQ_OK = 0,
#define GQ_ERROR_ENUM(name, value, text) name = value,
    GQ_ERROR_LIST(GQ_ERROR_ENUM)
#undef GQ_ERROR_ENUM
};

/* Propagate a gq error code: return it from the calling function if it is not GQ_OK. */
#define GQ_TRY(call)                                                                                                   \
    do {                                                                                                               \
        int gq_rc_ = (call);                                                                                           \
        if (gq_rc_) return gq_rc_;                                                                                     \
    } while (0)

/* Text of a code ("unknown error" for codes outside the list). */
const char *gq_strerror(int code);

/* Record a detail message for the calling thread and return `code`, so that
 *   return gq_errf(GQ_EFORMAT, "%s: dataset /train: expected uint16", path);
 * both sets the message and propagates the code. */
int gq_errf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gq_verrf(int code, const char *fmt, va_list ap);

/* The calling thread's last detail message, or gq_strerror(code) if none was set since
 * gq_err_clear(). Never NULL. */
const char *gq_errmsg(int code);
void gq_err_clear(void);

/* Map an errno value to a gq code (ENOENT -> GQ_ENOENT, ENOSPC -> GQ_ENOSPC, ...). */
int gq_from_errno(int err);

#endif
