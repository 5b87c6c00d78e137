/* error.h — how diffkit reports failures.
 *
 * Two kinds of failure, two mechanisms:
 *   - Expected failures (bad config, missing file, corrupt checkpoint, unknown key) are values: a function
 *     fills a dk_err with an exit code and a message written for a person (what, where — file, key or
 *     value — and what to do) and returns -1 / NULL. The caller decides: a job prints it and exits with
 *     err.code; a test checks the message.
 *   - Broken invariants and failed library calls (CHECK, CUDA_CHECK, MPI_CHECK, H5_CHECK) are fatal: they
 *     print "[rank r/host] file:line: ..." once and end the whole job (MPI_Abort when an abort handler is
 *     installed, so no rank is left hanging in a collective).
 *
 * Exit codes: 2 = usage or configuration error (the user must change the command or a file), 1 = runtime
 * error (I/O, library, data).
 */
#ifndef DK_ERROR_H
#define DK_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* DK_EXIT_MUST_RUN: a stage's `--check` (the pipeline's reuse check, README "diffkit run") found no complete
 * results for its inputs: the stage must run. --check exits 0 when they exist, 2 on configuration errors. */
enum { DK_EXIT_OK = 0, DK_EXIT_RUNTIME = 1, DK_EXIT_USAGE = 2, DK_EXIT_MUST_RUN = 3 };

typedef struct dk_err {
    int code;        /* 0 = no error; else the process exit code this error deserves */
    char msg[2048];  /* one message, possibly several lines, no trailing newline */
} dk_err;

/* Records an error (first one wins: a later call does not overwrite an earlier message). Returns -1 so
 * callers can write `return dk_err_set(err, DK_EXIT_USAGE, "...", ...);`. err may be NULL. */
int dk_err_set(dk_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int dk_err_setv(dk_err *err, int code, const char *fmt, va_list ap);
/* Prefixes context to an existing message ("while loading X: <old message>"). */
void dk_err_prefix(dk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dk_err_clear(dk_err *err);
static inline bool dk_err_is_set(const dk_err *err) { return err && err->code != 0; }

/* Prints "diffkit: error: <msg>" (rank-aware, once under MPI) and ends the job with err->code. */
void dk_die(const dk_err *err) __attribute__((noreturn));

/* dk_die for an error every rank of an MPI job meets identically, because every rank reads the same files and
 * arguments (a configuration error): rank 0 prints it and ends the job; the other ranks print nothing and wait
 * for that end, so the message appears once. A rank whose error rank 0 does not share (an environment variable
 * that differs between nodes) prints its own after a few seconds and ends the job itself. */
void dk_die_identical(const dk_err *err) __attribute__((noreturn));

/* Fatal error at a source location. Ends the job through the abort handler (see below) or exit(code). */
void dk_fatal_at(int code, const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* Things a job must undo if it ends before it undoes them itself (a temporary output file to remove, a store
 * lock file, io/out_file.c and io/store_lock.c): dk_cleanup_add(fn, obj) makes exit(), dk_die and dk_abort
 * (also under MPI, where the abort handler never returns) call fn(obj); dk_cleanup_remove(obj) forgets it once
 * the owner cleaned up. At most 128 at a time (more are not tracked). */
void dk_cleanup_add(void (*fn)(void *obj), void *obj);
void dk_cleanup_remove(void *obj);

/* The dist layer installs MPI_Abort (and ncclCommAbort) here; default: exit(code). */
typedef void (*dk_abort_handler)(int code);
void dk_set_abort_handler(dk_abort_handler handler);
void dk_abort(int code) __attribute__((noreturn));

/* Checks an invariant that must hold whatever the input; the hint says what the user can do.
 *   CHECK(n_tokens > 0, "the plan gave rank %d no tokens", rank);                                     */
#define CHECK(cond, ...)                                                                              \
    do {                                                                                              \
        if (!(cond)) dk_check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__);                         \
    } while (0)
void dk_check_failed(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* malloc/calloc/realloc/strdup that end the job with the requested size when memory runs out. */
void *dk_malloc(size_t bytes);
void *dk_calloc(size_t count, size_t size);
void *dk_realloc(void *ptr, size_t bytes);
char *dk_strdup(const char *s);
char *dk_strndup(const char *s, size_t n);
/* asprintf that ends the job on failure. */
char *dk_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *dk_vsprintf(const char *fmt, va_list ap);  /* the same with a va_list (ap is used up) */

#endif
