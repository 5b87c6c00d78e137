/* engine_test.h — the few helpers the engine tests share: EXPECT that counts failures instead of stopping
 * (so one run shows every broken case), fixture paths, a scratch folder, and whole-file I/O.
 * Each test program ends with `return engine_test_summary("name");`, which prints "N passed, M failed". */
#ifndef DK_ENGINE_TEST_H
#define DK_ENGINE_TEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

extern int engine_test_checks;
extern int engine_test_failures;

#define EXPECT(cond, ...)                                                                         \
    do {                                                                                          \
        engine_test_checks++;                                                                     \
        if (!(cond)) {                                                                            \
            engine_test_failures++;                                                               \
            fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);                    \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

/* Checks that err is set and that its message contains every one of the NULL-terminated needles. */
#define EXPECT_ERR_HAS(err, ...) engine_expect_err_has(__FILE__, __LINE__, (err), __VA_ARGS__, (const char *)NULL)
void engine_expect_err_has(const char *file, int line, const dk_err *err, ...);

/* $DIFFKIT_FIXTURES/engine/<rel> (the caller frees). Exits with a message when DIFFKIT_FIXTURES is unset. */
char *engine_fixture(const char *rel);
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

/* Prints "<name>: N passed, M failed" and returns the exit status. */
int engine_test_summary(const char *name);

#endif
