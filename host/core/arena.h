/* arena.h — one big allocation carved into aligned pieces (llm.c style: plan memory up front, allocate once).
 *
 * Used for per-batch scratch buffers and activation staging: no malloc/free in the steady-state loop, and
 * the peak is known and reportable. Running out is a planning bug, so it ends the job with a message that
 * names the arena, the request and the capacity. Marks give stack-like release:
 *     size_t mark = dk_arena_mark(&a); ...allocs...; dk_arena_reset_to(&a, mark);
 */
#ifndef DK_ARENA_H
#define DK_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum { DK_ARENA_DEFAULT_ALIGN = 256 }; /* enough for AVX-512, cuBLASLt and 128-bit device loads */

typedef struct dk_arena {
    char name[48];
    uint8_t *base;      /* [capacity] bytes, aligned to DK_ARENA_DEFAULT_ALIGN */
    size_t capacity;
    size_t used;
    size_t peak;
} dk_arena;

/* Returns 0, or -1 with err set (code 1) when the memory cannot be had. */
int dk_arena_init(dk_arena *a, const char *name, size_t capacity, dk_err *err);
void dk_arena_free(dk_arena *a);
/* Contents are undefined. align: a power of two up to 256 (0 = 256). */
void *dk_arena_alloc(dk_arena *a, size_t bytes, size_t align);
size_t dk_arena_mark(const dk_arena *a);
void dk_arena_reset_to(dk_arena *a, size_t mark);
static inline void dk_arena_reset(dk_arena *a) { dk_arena_reset_to(a, 0); }

#endif
