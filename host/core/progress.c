/* progress.c — see progress.h. */
#include "progress.h"

#include "format.h"
#include "log.h"
#include "timer.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void dk_progress_begin_on(dk_progress *p, const char *label, double total, const char *unit, FILE *out, bool tty,
                          double interval, double now) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->unit, sizeof p->unit, "%s", unit);
    p->total = total;
    p->t_start = now;
    p->t_last_print = now;
    p->interval = interval > 0 ? interval : 30.0;
    p->tty = tty;
    p->out = out;
    p->enabled = dk_log_rank() == 0 && dk_log_get_level() >= DK_LOG_INFO;
}

void dk_progress_begin(dk_progress *p, const char *label, double total, const char *unit) {
    dk_progress_begin_on(p, label, total, unit, stderr, isatty(fileno(stderr)) == 1, 30.0, dk_time_now());
}

void dk_progress_set_note(dk_progress *p, const char *note) { snprintf(p->note, sizeof p->note, "%s", note); }

static void print_line(dk_progress *p, double now, bool final) {
    char a[DK_FMT_BUF], b[DK_FMT_BUF], r[DK_FMT_BUF], e[DK_FMT_BUF], eta[DK_FMT_BUF];
    double elapsed = now - p->t_start;
    double rate = elapsed > 0 ? p->done / elapsed : 0;
    dk_format_count(a, p->done);
    dk_format_count(r, rate);
    dk_format_duration(e, elapsed);
    char what[160];
    if (p->total > 0) {
        double frac = p->done / p->total;
        if (frac > 1) frac = 1;
        snprintf(what, sizeof what, "%s/%s %s (%.1f%%)", a, dk_format_count(b, p->total), p->unit, 100 * frac);
    } else {
        snprintf(what, sizeof what, "%s %s", a, p->unit);
    }
    if (final) {
        if (p->tty) fputc('\n', p->out);
        dk_log(DK_LOG_INFO, false, "%s: done, %s in %s, %s %s/s%s%s", p->label, what, e, r, p->unit,
               p->note[0] ? ", " : "", p->note);
        return;
    }
    if (p->total > 0 && rate > 0)
        dk_format_duration(eta, (p->total - p->done) / rate);
    else
        snprintf(eta, sizeof eta, "?");
    if (p->tty) {
        char bar[31];
        int filled = p->total > 0 ? (int)(30 * (p->done / p->total)) : 0;
        if (filled > 30) filled = 30;
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
        bar[30] = '\0';
        fprintf(p->out, "\r%s [%s] %s, %s %s/s, ETA %s%s%s   ", p->label, bar, what, r, p->unit, eta,
                p->note[0] ? ", " : "", p->note);
        fflush(p->out);
    } else {
        dk_log(DK_LOG_INFO, false, "%s: %s, %s %s/s, elapsed %s, ETA %s%s%s", p->label, what, r, p->unit, e, eta,
               p->note[0] ? ", " : "", p->note);
    }
}

void dk_progress_set_at(dk_progress *p, double done, double now) {
    p->done = done;
    if (!p->enabled) return;
    double gap = p->tty ? 0.2 : p->interval;
    if (now - p->t_last_print >= gap) {
        p->t_last_print = now;
        print_line(p, now, false);
    }
}

void dk_progress_add(dk_progress *p, double amount) { dk_progress_set_at(p, p->done + amount, dk_time_now()); }

void dk_progress_end_at(dk_progress *p, double now) {
    if (p->enabled) print_line(p, now, true);
    p->enabled = false;
}

void dk_progress_end(dk_progress *p) { dk_progress_end_at(p, dk_time_now()); }
