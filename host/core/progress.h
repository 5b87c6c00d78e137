/* progress.h — progress of a long job for a person watching it, or for a log file on a cluster.
 *
 * On a terminal: one bar redrawn in place. Otherwise (SLURM logs, pipes): one line every `interval`
 * seconds (default 30 s), with rate and ETA, so a log file stays short and readable:
 *     [diffkit 14:03:52] caching: 1.20M/5.00M tokens (24.0%), 10.3k tokens/s, elapsed 1m56s, ETA 6m09s, 0.98 GiB written
 * Only rank 0 prints (callers pass the global amount when they know it, or their own otherwise).
 */
#ifndef DK_PROGRESS_H
#define DK_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct dk_progress {
    char label[64];
    char unit[24];       /* plural noun: "tokens", "sequences" */
    char note[96];       /* free text appended to each line, e.g. "0.98 GiB written" */
    double total;        /* <= 0: unknown total (no percentage or ETA) */
    double done;
    double t_start;
    double t_last_print;
    double interval;     /* seconds between lines when not on a terminal */
    bool tty;
    bool enabled;
    FILE *out;
} dk_progress;

/* Starts progress on stderr; a bar when stderr is a terminal, periodic lines otherwise; silent on ranks != 0. */
void dk_progress_begin(dk_progress *p, const char *label, double total, const char *unit);
/* Full control, for tests and for callers with their own clock. */
void dk_progress_begin_on(dk_progress *p, const char *label, double total, const char *unit, FILE *out, bool tty,
                          double interval, double now);
void dk_progress_add(dk_progress *p, double amount);
void dk_progress_set_at(dk_progress *p, double done, double now);
void dk_progress_set_note(dk_progress *p, const char *note);
/* Prints the final line (always, on rank 0): total, rate and elapsed time. */
void dk_progress_end(dk_progress *p);
void dk_progress_end_at(dk_progress *p, double now);

#endif
