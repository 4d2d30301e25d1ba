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
    /* millions, or thousands / units for small totals (32768 calibration tokens: 32.8 ktok) */
    const double div = !(total > 0) || total >= 1e6 ? 1e6 : total >= 1e3 ? 1e3 : 1.0;
    const char *pre = div == 1e6 ? "M" : div == 1e3 ? "k" : "";
    fprintf(p->out, "%s%s %.1f/%.1f %s%s (%.1f%%) %.2f %s%s/s ETA %.0fs%s", p->is_tty ? "\r" : "", label, done / div,
            total / div, pre, unit, total > 0 ? 100.0 * done / total : 0.0, rate / div, pre, unit, eta,
            p->is_tty ? "\033[K" : "\n");
    p->line_open = p->is_tty;
    fflush(p->out);
}

void gq_progress_finish(gq_progress *p) {
    if (p->line_open) fputc('\n', p->out);
    p->line_open = 0;
    fflush(p->out);
}
