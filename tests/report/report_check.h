/* report_check.h — what the report tests share: a scratch copy of the committed results fixture
 * (tests/fixtures/report/results, trimmed real demo results; optionally the agent format fixture beside it),
 * running diff_report on it, and reading the page it wrote. */
#ifndef DK_TEST_REPORT_CHECK_H
#define DK_TEST_REPORT_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* A fresh scratch copy of the fixture under the build folder; with_agent adds the agent format fixture. */
static inline char *rc_scratch(const char *name, int with_agent) {
    char *results = dk_fixture_path("report/results"), *agent = dk_fixture_path("report/agent");
    static char dir[2048];
    snprintf(dir, sizeof dir, "%s/report_scratch_%s", getenv("PWD") ? getenv("PWD") : ".", name);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s' && chmod -R u+w '%s'%s%s%s%s", dir, results, dir, dir,
             with_agent ? " && cp -r '" : "", with_agent ? agent : "", with_agent ? "'/. '" : "", with_agent ? dir : "");
    if (with_agent) strncat(cmd, "'", sizeof cmd - strlen(cmd) - 1);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot make the scratch copy: %s\n", cmd);
        exit(2);
    }
    free(results), free(agent);
    return dir;
}

/* Runs diff_report on results_dir with extra arguments; returns its exit code, output in out (malloc'ed). */
static inline int rc_run(const char *bin, const char *results_dir, const char *extra, char **out) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "DIFFKIT_ROOT='%s' '%s' model=demo organism=demo_glacier_honey dataset=demo "
             "diffing.results_dir='%s' %s 2>&1", getenv("DIFFKIT_SOURCE_DIR"), bin, results_dir, extra ? extra : "");
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (p && (n = fread(buf + len, 1, cap - len - 1, p)) > 0)
        if ((len += n) + 1 >= cap) buf = realloc(buf, cap *= 2);
    buf[len] = '\0';
    int status = p ? pclose(p) : -1;
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static inline char *rc_read(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    size_t got = fread(buf, 1, (size_t)size, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* The section element of id: from its opening tag to the next "</section>" (malloc'ed), or NULL. */
static inline char *rc_section(const char *html, const char *id) {
    char key[256];
    snprintf(key, sizeof key, "<section class=\"method\" id=\"%s\"", id);
    const char *a = strstr(html, key);
    if (!a) return NULL;
    const char *b = strstr(a, "</section>");
    return b ? strndup(a, (size_t)(b - a)) : NULL;
}

#endif
