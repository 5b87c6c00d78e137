/* timer.h — wall-clock timing for progress lines and end-of-job reports ("compute 81%, I/O 19%").
 * A dk_timer accumulates the time between start/stop pairs, so one timer can measure "all HDF5 writes". */
#ifndef DK_TIMER_H
#define DK_TIMER_H

/* Monotonic seconds since an arbitrary origin. */
double dk_time_now(void);

typedef struct dk_timer {
    double total;    /* seconds accumulated over all start/stop pairs */
    double started;  /* dk_time_now() at the last start, or < 0 when stopped */
    long count;      /* completed start/stop pairs */
} dk_timer;

void dk_timer_reset(dk_timer *t);
void dk_timer_start(dk_timer *t);
void dk_timer_stop(dk_timer *t);
/* Accumulated seconds, including the running interval if started. */
double dk_timer_seconds(const dk_timer *t);

#endif
