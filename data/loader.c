/* loader: see loader.h. Window w of the epoch order maps to (file, start); files are read
 * with windowed reads (HDF5 hyperslabs or pread), so datasets need not fit in memory. */
#define _XOPEN_SOURCE 700
#include "loader.h"

#include "gq_error.h"
#include "gq_rng.h"
#include "bpe.h"
#include "shard.h"
#include "tokfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *path;
    gq_tokfile *tf; /* token file split, or */
    int fd;         /* llm.c shard (tokens start at byte 1024) */
    uint64_t n_tokens;
    uint64_t first_window; /* global index of this file's first window */
    uint64_t n_windows;
} segment;

struct gq_loader {
    gq_loader_config cfg;
    char split[8];
    segment *seg;
    int n_seg;
    uint64_t n_windows, n_tokens;
    uint64_t *order; /* epoch order (NULL when sequential) */
    uint64_t epoch, cursor;
    uint16_t *buf; /* T + 1 tokens */
    uint8_t *mbuf; /* their loss mask (1 = scored as a target) */
    int masked;    /* any segment has a loss mask */
};

static void draw_order(gq_loader *L) {
    if (!L->order) return;
    for (uint64_t i = 0; i < L->n_windows; i++) L->order[i] = i;
    gq_rng rng;
    gq_rng_seed(&rng, gq_mix64(L->cfg.seed) ^ gq_mix64(L->epoch + 0x1234567ULL));
    for (uint64_t i = L->n_windows - 1; i > 0; i--) { /* Fisher-Yates */
        uint64_t j = gq_rng_below(&rng, i + 1);
        uint64_t t = L->order[i];
        L->order[i] = L->order[j];
        L->order[j] = t;
    }
}

static int open_segment(gq_loader *L, segment *s, const char *path) {
    s->fd = -1;
    s->path = strdup(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return gq_errf(gq_from_errno(errno), "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[GQ_SHARD_HEADER_BYTES];
    ssize_t got = pread(fd, head, sizeof head, 0);
    struct stat st;
    if (got < 0 || fstat(fd, &st)) {
        close(fd);
        return gq_errf(GQ_EIO, "%s: cannot read", path);
    }
    if (gq_is_hdf5(head, (size_t)got)) {
        close(fd);
        int rc = gq_tokfile_open(path, &s->tf);
        if (rc) return rc;
        const gq_tokfile_info *in = gq_tokfile_get_info(s->tf);
        if (!L->cfg.vocab_size) L->cfg.vocab_size = in->vocab_size;
        L->masked |= in->has_mask;
        if (in->vocab_size > L->cfg.vocab_size)
            return gq_errf(GQ_EVOCAB, "%s: vocab_size %d is larger than the model's %d", path, in->vocab_size,
                           L->cfg.vocab_size);
        return gq_tokfile_split_len(s->tf, L->split, &s->n_tokens);
    }
    if (gq_shard_has_magic(head, (size_t)got)) {
        s->fd = fd;
        if (!L->cfg.vocab_size) L->cfg.vocab_size = GQ_GPT2_VOCAB_SIZE;
        return gq_shard_parse_header(head, (size_t)got, (uint64_t)st.st_size, path, &s->n_tokens);
    }
    close(fd);
    return gq_errf(GQ_EFORMAT, "%s: neither a gpt2q token file (HDF5) nor an llm.c token shard (magic %d)", path,
                   GQ_SHARD_MAGIC);
}

int gq_loader_open(gq_loader **out, const char *const *paths, int n_paths, const gq_loader_config *cfg) {
    *out = NULL;
    if (cfg->B <= 0 || cfg->T <= 0) return gq_errf(GQ_EINVAL, "loader: B and T must be positive (B=%d T=%d)", cfg->B, cfg->T);
    if (n_paths <= 0) return gq_errf(GQ_EINVAL, "loader: no input files");
    gq_loader *L = calloc(1, sizeof *L);
    if (!L) return gq_errf(GQ_ENOMEM, "out of memory");
    L->cfg = *cfg;
    snprintf(L->split, sizeof L->split, "%s", cfg->split ? cfg->split : "train");
    L->cfg.split = L->split;
    L->seg = calloc((size_t)n_paths, sizeof *L->seg);
    L->buf = malloc(((size_t)cfg->T + 1) * sizeof *L->buf);
    L->mbuf = malloc((size_t)cfg->T + 1);
    int rc = L->seg && L->buf && L->mbuf ? GQ_OK : gq_errf(GQ_ENOMEM, "out of memory");
    for (int i = 0; i < n_paths && !rc; i++) {
        L->n_seg++;
        segment *s = &L->seg[i];
        rc = open_segment(L, s, paths[i]);
        if (rc) break;
        s->first_window = L->n_windows;
        s->n_windows = s->n_tokens > (uint64_t)cfg->T ? (s->n_tokens - 1) / (uint64_t)cfg->T : 0;
        L->n_windows += s->n_windows;
        L->n_tokens += s->n_tokens;
    }
    if (!rc && L->n_windows == 0)
        rc = gq_errf(GQ_ESHAPE, "%s%s: %llu tokens%s%s, fewer than T + 1 = %d: no window to read", paths[0],
                     n_paths > 1 ? " ..." : "", (unsigned long long)L->n_tokens, L->seg[0].tf ? " in split " : "",
                     L->seg[0].tf ? L->split : "", cfg->T + 1);
    if (!rc && cfg->shuffle) {
        L->order = malloc(L->n_windows * sizeof *L->order);
        if (!L->order) rc = gq_errf(GQ_ENOMEM, "out of memory for %llu windows", (unsigned long long)L->n_windows);
        else draw_order(L);
    }
    if (rc) {
        gq_loader_close(L);
        return rc;
    }
    *out = L;
    return GQ_OK;
}

static int read_window(gq_loader *L, uint64_t w) {
    int lo = 0, hi = L->n_seg - 1; /* last segment with first_window <= w */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (L->seg[mid].first_window <= w) lo = mid;
        else hi = mid - 1;
    }
    segment *s = &L->seg[lo];
    while (s->n_windows == 0 || w >= s->first_window + s->n_windows) s++; /* skip empty files */
    uint64_t start = (w - s->first_window) * (uint64_t)L->cfg.T;
    size_t n = (size_t)L->cfg.T + 1;
    memset(L->mbuf, 1, n);
    if (s->tf) {
        int rc = gq_tokfile_read(s->tf, L->split, start, n, L->buf);
        if (!rc && gq_tokfile_get_info(s->tf)->has_mask) rc = gq_tokfile_read_mask(s->tf, L->split, start, n, L->mbuf);
        return rc;
    }
    ssize_t got = pread(s->fd, L->buf, n * 2, (off_t)(GQ_SHARD_HEADER_BYTES + 2 * start));
    if (got != (ssize_t)(n * 2))
        return gq_errf(GQ_ETRUNC, "%s: short read at token %llu (file changed or truncated?)", s->path,
                       (unsigned long long)start);
    return gq_shard_check_ids(L->buf, n, L->cfg.vocab_size, s->path, start);
}

int gq_loader_next(gq_loader *L, int32_t *inputs, int32_t *targets) {
    const int B = L->cfg.B, T = L->cfg.T;
    for (int b = 0; b < B; b++) {
        uint64_t w = L->order ? L->order[L->cursor] : L->cursor;
        int rc = read_window(L, w);
        if (rc) return rc;
        for (int t = 0; t < T; t++) {
            inputs[(size_t)b * T + t] = L->buf[t];
            targets[(size_t)b * T + t] = L->mbuf[t + 1] ? L->buf[t + 1] : -1;
        }
        if (++L->cursor == L->n_windows) {
            L->cursor = 0;
            L->epoch++;
            draw_order(L);
        }
    }
    return GQ_OK;
}

uint64_t gq_loader_windows(const gq_loader *L) { return L->n_windows; }
uint64_t gq_loader_tokens(const gq_loader *L) { return L->n_tokens; }
int gq_loader_vocab_size(const gq_loader *L) { return L->cfg.vocab_size; }
int gq_loader_masked(const gq_loader *L) { return L->masked; }

void gq_loader_get_state(const gq_loader *L, gq_loader_state *st) {
    memset(st, 0, sizeof *st);
    st->epoch = L->epoch;
    st->cursor = L->cursor;
    st->n_windows = L->n_windows;
    st->seed = L->cfg.seed;
    st->shuffle = L->cfg.shuffle;
    st->T = L->cfg.T;
}

int gq_loader_set_state(gq_loader *L, const gq_loader_state *st) {
    if (st->n_windows != L->n_windows || st->T != L->cfg.T || st->shuffle != L->cfg.shuffle ||
        (st->shuffle && st->seed != L->cfg.seed))
        return gq_errf(GQ_EINVAL,
                       "loader state is for other data or settings (windows %llu vs %llu, T %d vs %d, shuffle %d vs %d)",
                       (unsigned long long)st->n_windows, (unsigned long long)L->n_windows, st->T, L->cfg.T,
                       st->shuffle, L->cfg.shuffle);
    if (st->cursor >= L->n_windows) return gq_errf(GQ_EINVAL, "loader state cursor %llu out of range", (unsigned long long)st->cursor);
    int redraw = st->epoch != L->epoch;
    L->epoch = st->epoch;
    L->cursor = st->cursor;
    if (redraw) draw_order(L);
    return GQ_OK;
}

void gq_loader_close(gq_loader *L) {
    if (!L) return;
    for (int i = 0; i < L->n_seg; i++) {
        gq_tokfile_close(L->seg[i].tf);
        if (L->seg[i].fd >= 0) close(L->seg[i].fd);
        free(L->seg[i].path);
    }
    free(L->seg);
    free(L->order);
    free(L->buf);
    free(L->mbuf);
    free(L);
}
