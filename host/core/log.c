/* log.c — see log.h. One fprintf per line so lines from different ranks do not interleave mid-line. */
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_rank = 0, log_nranks = 1;
static int log_level = -1; /* -1: not read from the environment yet */
static FILE *log_stream = NULL;

static const char *level_names[] = {"error", "warn", "info", "debug"};

void dk_log_set_rank(int rank, int nranks) {
    log_rank = rank;
    log_nranks = nranks > 0 ? nranks : 1;
}
int dk_log_rank(void) { return log_rank; }
int dk_log_nranks(void) { return log_nranks; }

bool dk_log_parse_level(const char *name, dk_log_level *out) {
    for (int i = 0; i < 4; i++) {
        if (name && strcasecmp(name, level_names[i]) == 0) {
            *out = (dk_log_level)i;
            return true;
        }
    }
    return false;
}

dk_log_level dk_log_get_level(void) {
    if (log_level < 0) {
        dk_log_level lvl = DK_LOG_INFO;
        const char *env = getenv("DIFFKIT_LOG_LEVEL");
        if (env && !dk_log_parse_level(env, &lvl))
            fprintf(stderr, "[diffkit] DIFFKIT_LOG_LEVEL=%s is not one of error|warn|info|debug; using info\n", env);
        log_level = (int)lvl;
    }
    return (dk_log_level)log_level;
}

void dk_log_set_level(dk_log_level level) { log_level = (int)level; }
void dk_log_set_stream(FILE *stream) { log_stream = stream; }

static void emit(dk_log_level level, const char *fmt, va_list ap) {
    char body[4096], stamp[16], tag[64];
    vsnprintf(body, sizeof body, fmt, ap);
    time_t now = time(NULL);
    struct tm tm_now;
    localtime_r(&now, &tm_now);
    strftime(stamp, sizeof stamp, "%H:%M:%S", &tm_now);
    if (log_nranks > 1)
        snprintf(tag, sizeof tag, "%s r%d/%d", stamp, log_rank, log_nranks);
    else
        snprintf(tag, sizeof tag, "%s", stamp);
    const char *kind = level == DK_LOG_ERROR ? "error: " : level == DK_LOG_WARN ? "warning: " : "";
    FILE *out = log_stream ? log_stream : stderr;
    fprintf(out, "[diffkit %s] %s%s\n", tag, kind, body);
    fflush(out);
}

void dk_log(dk_log_level level, bool all_ranks, const char *fmt, ...) {
    if ((int)level > (int)dk_log_get_level()) return;
    if (!all_ranks && log_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, fmt, ap);
    va_end(ap);
}

void dk_log_error_once(const char *fmt, ...) {
    /* dk_die is called by the rank that found the error; it prints, then aborts everyone. */
    va_list ap;
    va_start(ap, fmt);
    emit(DK_LOG_ERROR, fmt, ap);
    va_end(ap);
}

void dk_log_error_all(const char *fmt, ...) {
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    char body[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    dk_log_error_once("[rank %d/%s] %s", log_rank, host, body);
}
