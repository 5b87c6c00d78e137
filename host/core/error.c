/* error.c — dk_err values, fatal errors and checked allocation (see error.h for the rules). */
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static dk_abort_handler abort_handler = NULL;
enum { MAX_CLEANUPS = 128 };
static struct {
    void (*fn)(void *);
    void *obj;
} cleanups[MAX_CLEANUPS];

static void run_cleanups(void) {
    for (int i = 0; i < MAX_CLEANUPS; i++) {
        void (*fn)(void *) = cleanups[i].fn;
        void *obj = cleanups[i].obj;
        cleanups[i].fn = NULL; /* once only, even if fn exits or the next exit() runs us again */
        cleanups[i].obj = NULL;
        if (fn) fn(obj);
    }
}

void dk_cleanup_add(void (*fn)(void *obj), void *obj) {
    static bool registered = false;
    if (!registered) atexit(run_cleanups); /* dk_abort runs them itself: MPI_Abort never returns */
    registered = true;
    for (int i = 0; i < MAX_CLEANUPS; i++)
        if (!cleanups[i].fn) {
            cleanups[i].fn = fn;
            cleanups[i].obj = obj;
            return;
        }
}

void dk_cleanup_remove(void *obj) {
    for (int i = 0; i < MAX_CLEANUPS; i++)
        if (cleanups[i].obj == obj) cleanups[i].fn = NULL, cleanups[i].obj = NULL;
}

/* How long a rank other than 0 waits for rank 0 to end the job on an identical error (dk_die_identical). */
enum { IDENTICAL_ERROR_WAIT_S = 10 };

int dk_err_setv(dk_err *err, int code, const char *fmt, va_list ap) {
    if (!err || err->code != 0) return -1;
    err->code = code ? code : DK_EXIT_RUNTIME;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return -1;
}

int dk_err_set(dk_err *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dk_err_setv(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

void dk_err_prefix(dk_err *err, const char *fmt, ...) {
    if (!err || err->code == 0) return;
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%.1023s%.1023s", prefix, old);
}

void dk_err_clear(dk_err *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = '\0';
}

void dk_set_abort_handler(dk_abort_handler handler) { abort_handler = handler; }

void dk_abort(int code) {
    run_cleanups();
    fflush(stdout);
    fflush(stderr);
    if (abort_handler) abort_handler(code);
    exit(code);
}

void dk_die(const dk_err *err) {
    int code = (err && err->code) ? err->code : DK_EXIT_RUNTIME;
    dk_log_error_once("%s", (err && err->msg[0]) ? err->msg : "unknown error");
    dk_abort(code);
}

void dk_die_identical(const dk_err *err) {
    if (dk_log_rank() != 0) {
        /* rank 0 meets the same error and aborts every rank: leave it the printing */
        const struct timespec wait = {.tv_sec = IDENTICAL_ERROR_WAIT_S, .tv_nsec = 0};
        fflush(stdout);
        nanosleep(&wait, NULL);
    }
    dk_die(err);
}

void dk_fatal_at(int code, const char *file, int line, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dk_log_error_all("%s:%d: %s", file, line, msg);
    dk_abort(code);
}

void dk_check_failed(const char *file, int line, const char *expr, const char *fmt, ...) {
    char hint[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hint, sizeof hint, fmt, ap);
    va_end(ap);
    dk_fatal_at(DK_EXIT_RUNTIME, file, line, "check failed: %s: %s", expr, hint);
}

void *dk_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "out of host memory allocating %zu bytes", bytes);
    return p;
}

void *dk_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "out of host memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *dk_realloc(void *ptr, size_t bytes) {
    void *p = realloc(ptr, bytes ? bytes : 1);
    if (!p) dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "out of host memory growing a buffer to %zu bytes", bytes);
    return p;
}

char *dk_strdup(const char *s) { return dk_strndup(s, strlen(s)); }

char *dk_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *p = dk_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *dk_vsprintf(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    CHECK(n >= 0, "bad format string '%s'", fmt);
    char *p = dk_malloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *dk_sprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = dk_vsprintf(fmt, ap);
    va_end(ap);
    return p;
}
