/* engine_test.h — what the engine tests need beyond tests/test.h (EXPECT, EXPECT_CONTAINS, dk_fixture_path,
 * dk_test_finish, which they use directly): error-message checks (EXPECT_ERR_HAS), engine fixture paths, a
 * scratch folder, whole-file I/O, a deterministic rng, input mutation and corpus replay for the fuzz ctests.
 * Each test program ends with `return dk_test_finish("name");`. */
#ifndef DK_ENGINE_TEST_H
#define DK_ENGINE_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "test.h"

/* Checks that err is set and that its message contains every one of the needles; one EXPECT per needle,
 * counted by test.h like every other check. */
#define EXPECT_ERR_HAS(err, ...) engine_expect_err_has(__FILE__, __LINE__, (err), __VA_ARGS__, (const char *)NULL)
static inline void engine_expect_err_has(const char *file, int line, const dk_err *err, ...) {
    if (!dk_expect(err && err->code != 0, file, line, "expected an error, got none")) return;
    va_list ap;
    va_start(ap, err);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;)
        dk_expect(strstr(err->msg, needle) != NULL, file, line, "error message lacks \"%s\":\n    %s", needle, err->msg);
    va_end(ap);
}

/* $DIFFKIT_FIXTURES/engine/<rel> through test.h's dk_fixture_path (the caller frees). */
static inline char *engine_fixture(const char *rel) {
    char *engine_rel = dk_sprintf("engine/%s", rel);
    char *path = dk_fixture_path(engine_rel);
    free(engine_rel);
    return path;
}

/* A fresh folder under $TMPDIR (or /tmp), removed with everything in it by engine_scratch_cleanup. */
const char *engine_scratch_dir(void);
void engine_scratch_cleanup(void);
/* Whole file into a malloc'ed buffer (exits on failure: fixtures must exist) / from a buffer. */
unsigned char *engine_read_all(const char *path, size_t *size);
void engine_write_all(const char *path, const void *bytes, size_t size);

/* Deterministic pseudo-random numbers (xorshift64*), the same on every machine. */
uint64_t engine_rng(void);
size_t engine_rng_below(size_t n);
/* Writes a mutation of seed[0..size) into out (capacity cap) and returns its size: bit flips, byte sets,
 * digit swaps, inserted JSON/format tokens, deletions, truncation. length_prefixed: the seed is a
 * safetensors image (mutate mostly its header; sometimes rewrite, sometimes fix, the 8-byte length). */
size_t engine_mutate(const uint8_t *seed, size_t size, uint8_t *out, size_t cap, bool length_prefixed);

/* Calls fn on every input of a packed corpus (records: u32 little-endian length, bytes), each in its own
 * exact-size heap block; returns the number of inputs. Exits when the file is missing or malformed. */
size_t engine_replay_corpus(const char *path, int (*fn)(const uint8_t *data, size_t size));

#endif
