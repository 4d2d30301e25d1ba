/* gq_progress: progress reporting for long work. On a terminal one line is redrawn in place
 * (at most ~10 times a second); otherwise plain log lines are printed every few seconds. */
#ifndef GQ_PROGRESS_H
#define GQ_PROGRESS_H

#include <stdio.h>

typedef struct {
    FILE *out;
    int is_tty;
    double t_start;   /* seconds, monotonic */
    double t_last;    /* last time a line was printed */
    double min_interval;
    int line_open;    /* a \r line is on screen and needs a final newline */
} gq_progress;

double gq_now(void); /* monotonic seconds */

void gq_progress_init(gq_progress *p, FILE *out);
/* Print "<label> <done>/<total> M<unit> (<%>) <rate> M<unit>/s ETA <s>" when due. Off a terminal,
 * work shorter than the log interval prints nothing. */
void gq_progress_update(gq_progress *p, const char *label, double done, double total, const char *unit);
void gq_progress_finish(gq_progress *p);

#endif
