/* gq_file: see gq_file.h. */
#define _GNU_SOURCE
#include "gq_file.h"

#include "gq_error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int gq_read_file(const char *path, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return gq_errf(gq_from_errno(errno), "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (!is_stdin && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return gq_errf(GQ_EINVAL, "%s: is a directory, expected a file", path);
    }
    size_t cap = 1 << 16, n = 0;
    if (!is_stdin && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) cap = (size_t)st.st_size + 1;
    uint8_t *buf = malloc(cap + 1);
    if (!buf) {
        if (!is_stdin) fclose(f);
        return gq_errf(GQ_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);
    }
    for (;;) {
        if (n == cap) {
            uint8_t *grown = realloc(buf, 2 * cap + 1);
            if (!grown) {
                free(buf);
                if (!is_stdin) fclose(f);
                return gq_errf(GQ_ENOMEM, "%s: out of memory", path);
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    int err = errno;
    if (!is_stdin) fclose(f);
    if (failed) {
        free(buf);
        return gq_errf(gq_from_errno(err), "%s: read error: %s", path, strerror(err));
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return GQ_OK;
}

void gq_temp_path(const char *final_path, char *out, size_t out_size) {
    snprintf(out, out_size, "%s.tmp.%ld", final_path, (long)getpid());
}

static int fsync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

int gq_commit_file(const char *tmp_path, const char *final_path) {
    if (fsync_path(tmp_path, O_RDONLY) != 0) {
        int err = errno;
        unlink(tmp_path);
        return gq_errf(gq_from_errno(err), "%s: fsync failed: %s", final_path, strerror(err));
    }
    if (rename(tmp_path, final_path) != 0) {
        int err = errno;
        unlink(tmp_path);
        return gq_errf(gq_from_errno(err), "%s: rename failed: %s", final_path, strerror(err));
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", final_path);
    fsync_path(dirname(dir), O_RDONLY | O_DIRECTORY); /* best effort: some filesystems refuse */
    return GQ_OK;
}

int gq_write_temp(const char *path, const char *tmp, const void *data, size_t len) {
    FILE *f = fopen(tmp, "wb");
    if (!f) return gq_errf(gq_from_errno(errno), "%s: cannot create it: %s", path, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len, err = ok ? 0 : errno;
    if (fclose(f) != 0 && ok) ok = 0, err = errno;
    if (!ok) {
        unlink(tmp);
        return gq_errf(GQ_EIO, "%s: writing failed (disk full?)%s%s", path, err ? ": " : "", err ? strerror(err) : "");
    }
    return GQ_OK;
}

int gq_write_file(const char *path, const void *data, size_t len) {
    char tmp[PATH_MAX + 32];
    gq_temp_path(path, tmp, sizeof tmp);
    const int rc = gq_write_temp(path, tmp, data, len);
    return rc ? rc : gq_commit_file(tmp, path);
}

int gq_gnuplot_svg(const char *svg, int width, int height, const char *script) {
    if (strchr(script, '"') || strchr(svg, '\'') || strchr(svg, '"'))
        return gq_errf(GQ_EINVAL, "%s: a chart path or script with quotes", svg);
    char tmp[PATH_MAX + 32];
    gq_temp_path(svg, tmp, sizeof tmp);
    const size_t n = strlen(script) + strlen(tmp) + 256;
    char *cmd = malloc(n);
    if (!cmd) return gq_errf(GQ_ENOMEM, "out of memory");
    snprintf(cmd, n, "gnuplot -e \"set terminal svg size %d,%d dynamic background rgb 'white'; set output '%s'; %s\" 2>/dev/null",
             width, height, tmp, script);
    const int ran = system(cmd) == 0;
    free(cmd);
    uint8_t *text = NULL;
    size_t len = 0;
    if (!ran || gq_read_file(tmp, &text, &len)) {
        unlink(tmp);
        free(text);
        return gq_errf(GQ_EUNSUPPORTED, "%s: gnuplot failed (is it installed?)", svg);
    }
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' ')) len--;
    const int whole = len >= 6 && !memcmp(text + len - 6, "</svg>", 6);
    free(text);
    if (!whole) {
        unlink(tmp);
        return gq_errf(GQ_EIO, "%s: the chart was not written whole (disk full?)", svg);
    }
    return gq_commit_file(tmp, svg);
}

void gq_exe_dir(char *out, size_t out_size) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        if (out_size) out[0] = '\0';
        return;
    }
    exe[n] = '\0';
    snprintf(out, out_size, "%s", dirname(exe));
}

int gq_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int gq_mkdir_p(const char *path) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char save = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return gq_errf(gq_from_errno(errno), "%s: cannot create directory: %s", buf, strerror(errno));
            *p = save;
            if (!save) break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return gq_errf(GQ_EIO, "%s: not a directory", path);
    return GQ_OK;
}
