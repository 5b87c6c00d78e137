/* test.h — the few helpers diffkit's C tests share: EXPECT records a failure with file:line and goes on,
 * so one run shows every broken case; dk_test_finish prints the "N passed, N failed" line ctest logs keep. */
#ifndef DK_TEST_H
#define DK_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dk_tests_passed = 0, dk_tests_failed = 0;

static inline bool dk_expect(bool ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        dk_tests_passed++;
        return true;
    }
    dk_tests_failed++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return false;
}

#define EXPECT(cond, ...) dk_expect((cond), __FILE__, __LINE__, __VA_ARGS__)

/* Message check: the text contains `needle`. */
#define EXPECT_CONTAINS(text, needle) \
    dk_expect((text) && strstr((text), (needle)) != NULL, __FILE__, __LINE__, "expected \"%s\" in: %s", (needle), (text) ? (text) : "(null)")

/* Path of a fixture: $DIFFKIT_FIXTURES/<rel> (the caller frees). */
static inline char *dk_fixture_path(const char *rel) {
    const char *root = getenv("DIFFKIT_FIXTURES");
    if (!root) {
        fprintf(stderr, "DIFFKIT_FIXTURES is not set: run this test through ctest\n");
        exit(2);
    }
    size_t n = strlen(root) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", root, rel);
    return p;
}

static inline int dk_test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, dk_tests_passed, dk_tests_failed);
    return dk_tests_failed ? 1 : 0;
}

#endif
