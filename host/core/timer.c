/* timer.c — see timer.h. CLOCK_MONOTONIC: immune to wall-clock changes on long cluster jobs. */
#include "timer.h"

#include <time.h>

double dk_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dk_timer_reset(dk_timer *t) {
    t->total = 0.0;
    t->started = -1.0;
    t->count = 0;
}

void dk_timer_start(dk_timer *t) { t->started = dk_time_now(); }

void dk_timer_stop(dk_timer *t) {
    if (t->started < 0) return;
    t->total += dk_time_now() - t->started;
    t->started = -1.0;
    t->count++;
}

double dk_timer_seconds(const dk_timer *t) {
    return t->total + (t->started >= 0 ? dk_time_now() - t->started : 0.0);
}
