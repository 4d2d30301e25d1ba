/* gq_error: code table and the per-thread detail message. */
#include "gq_error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char detail[1024];

const char *gq_strerror(int code) {
    switch (code) {
    case GQ_OK: return "success";
#define GQ_ERROR_CASE(name, value, text) \
    case name: return text;
        GQ_ERROR_LIST(GQ_ERROR_CASE)
#undef GQ_ERROR_CASE
    default: return "unknown error";
    }
}

int gq_verrf(int code, const char *fmt, va_list ap) {
    /* format aside first: the arguments may include gq_errmsg() itself (wrapping a message) */
    char buf[sizeof detail];
    vsnprintf(buf, sizeof buf, fmt, ap);
    memcpy(detail, buf, sizeof detail);
    return code;
}

int gq_errf(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    gq_verrf(code, fmt, ap);
    va_end(ap);
    return code;
}

const char *gq_errmsg(int code) { return detail[0] ? detail : gq_strerror(code); }

void gq_err_clear(void) { detail[0] = '\0'; }

int gq_from_errno(int err) {
    switch (err) {
    case ENOENT: return GQ_ENOENT;
    case ENOSPC:
    case EDQUOT: return GQ_ENOSPC;
    case ENOMEM: return GQ_ENOMEM;
    case EINVAL: return GQ_EINVAL;
    default: return GQ_EIO;
    }
}
