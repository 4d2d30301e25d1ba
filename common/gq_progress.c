/* gq_progress: see gq_progress.h. */
#define _POSIX_C_SOURCE 200809L
#include "gq_progress.h"

#include <time.h>
#include <unistd.h>

double gq_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void gq_progress_init(gq_progress *p, FILE *out) {
    p->out = out;
    p->is_tty = isatty(fileno(out));
    p->t_start = p->t_last = gq_now();
    p->min_interval = p->is_tty ? 0.1 : 5.0;
    p->line_open = 0;
}

void gq_progress_update(gq_progress *p, const char *label, double done, double total, const char *unit) {
    double now = gq_now();
    int final = total > 0 && done >= total;
    if (!p->is_tty && now - p->t_start < p->min_interval) return; /* short work: no log noise */
    if (!final && now - p->t_last < p->min_interval) return;
    p->t_last = now;
    double elapsed = now - p->t_start;
    double rate = elapsed > 0 ? done / elapsed : 0;
    double eta = rate > 0 && total > done ? (total - done) / rate : 0;
    fprintf(p->out, "%s%s %.1f/%.1f M%s (%.1f%%) %.2f M%s/s ETA %.0fs%s", p->is_tty ? "\r" : "", label,
            done / 1e6, total / 1e6, unit, total > 0 ? 100.0 * done / total : 0.0, rate / 1e6, unit, eta,
            p->is_tty ? "\033[K" : "\n");
    p->line_open = p->is_tty;
    fflush(p->out);
}

void gq_progress_finish(gq_progress *p) {
    if (p->line_open) fputc('\n', p->out);
    p->line_open = 0;
    fflush(p->out);
}
