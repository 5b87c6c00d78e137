/* arena.c — see arena.h. */
#include "arena.h"

#include "format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dk_arena_init(dk_arena *a, const char *name, size_t capacity, dk_err *err) {
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    size_t rounded = (capacity + DK_ARENA_DEFAULT_ALIGN - 1) / DK_ARENA_DEFAULT_ALIGN * DK_ARENA_DEFAULT_ALIGN;
    if (rounded == 0) rounded = DK_ARENA_DEFAULT_ALIGN;
    a->base = aligned_alloc(DK_ARENA_DEFAULT_ALIGN, rounded);
    if (!a->base) {
        char b[DK_FMT_BUF];
        return dk_err_set(err, DK_EXIT_RUNTIME, "cannot allocate the %s arena (%s): out of host memory; "
                          "lower the batch size or run on a machine with more memory", name, dk_format_bytes(b, (double)capacity));
    }
    a->capacity = rounded;
    return 0;
}

void dk_arena_free(dk_arena *a) {
    free(a->base);
    a->base = NULL;
    a->capacity = a->used = 0;
}

void *dk_arena_alloc(dk_arena *a, size_t bytes, size_t align) {
    if (align == 0) align = DK_ARENA_DEFAULT_ALIGN;
    CHECK((align & (align - 1)) == 0 && align <= DK_ARENA_DEFAULT_ALIGN,
          "arena %s: alignment %zu must be a power of two no larger than %d", a->name, align, DK_ARENA_DEFAULT_ALIGN);
    size_t start = (a->used + align - 1) & ~(align - 1);
    if (start > a->capacity || bytes > a->capacity - start) {
        char req[DK_FMT_BUF], used[DK_FMT_BUF], cap[DK_FMT_BUF];
        dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__,
                    "arena %s is exhausted: %s requested with %s of %s in use; the memory plan is too small "
                    "for this batch (lower the batch size, or report this as a bug)",
                    a->name, dk_format_bytes(req, (double)bytes), dk_format_bytes(used, (double)a->used),
                    dk_format_bytes(cap, (double)a->capacity));
    }
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + start;
}

size_t dk_arena_mark(const dk_arena *a) { return a->used; }

void dk_arena_reset_to(dk_arena *a, size_t mark) {
    CHECK(mark <= a->used, "arena %s: reset to mark %zu beyond the %zu bytes in use", a->name, mark, a->used);
    a->used = mark;
}
