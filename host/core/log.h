/* log.h — rank-aware logging to stderr.
 *
 * Under MPI every rank runs the same code; a job's log must still read like one program's. So the plain
 * macros print on rank 0 only, and the *_ALL variants print on every rank with a "r3/8" tag (for messages
 * that differ per rank). Lines look like:
 *     [diffkit 14:03:22] caching layer 13 of Qwen/Qwen3-1.7B            (1 rank)
 *     [diffkit 14:03:22 r0/8] caching layer 13 of Qwen/Qwen3-1.7B       (several ranks)
 * The level comes from DIFFKIT_LOG_LEVEL (error|warn|info|debug) or dk_log_set_level(); default info.
 */
#ifndef DK_LOG_H
#define DK_LOG_H

#include <stdbool.h>
#include <stdio.h>

typedef enum { DK_LOG_ERROR = 0, DK_LOG_WARN = 1, DK_LOG_INFO = 2, DK_LOG_DEBUG = 3 } dk_log_level;

/* Call once the rank is known (the dist layer does this after MPI_Init); before that rank 0 of 1 is assumed. */
void dk_log_set_rank(int rank, int nranks);
int dk_log_rank(void);
int dk_log_nranks(void);
void dk_log_set_level(dk_log_level level);
dk_log_level dk_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns false for anything else. */
bool dk_log_parse_level(const char *name, dk_log_level *out);
/* Redirects log output (tests); NULL restores stderr. */
void dk_log_set_stream(FILE *stream);

void dk_log(dk_log_level level, bool all_ranks, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Error messages used by dk_die (printed once, by the rank that failed or rank 0) and dk_fatal_at (every rank). */
void dk_log_error_once(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dk_log_error_all(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define LOG_DEBUG(...) dk_log(DK_LOG_DEBUG, false, __VA_ARGS__)
#define LOG_INFO(...) dk_log(DK_LOG_INFO, false, __VA_ARGS__)
#define LOG_WARN(...) dk_log(DK_LOG_WARN, false, __VA_ARGS__)
#define LOG_INFO_ALL(...) dk_log(DK_LOG_INFO, true, __VA_ARGS__)
#define LOG_WARN_ALL(...) dk_log(DK_LOG_WARN, true, __VA_ARGS__)

#endif
