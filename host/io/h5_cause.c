/* h5_cause.c — see h5_cause.h. */
#include "io/h5_cause.h"

#include <errno.h>
#include <hdf5.h>
#include <string.h>

typedef struct stack_search {
    int found;  /* an errno value named in the stack, 0 = none */
} stack_search;

static herr_t search_frame(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    stack_search *s = data;
    static const struct { const char *text; int code; } causes[] = {
        {"No space left", ENOSPC}, {"File too large", EFBIG}, {"Disk quota", EDQUOT}, {"quota exceeded", EDQUOT},
        {"Input/output error", EIO}, {"Read-only file system", EROFS}, {"Permission denied", EACCES}};
    for (size_t i = 0; i < sizeof causes / sizeof causes[0] && !s->found; i++)
        if (e->desc && strstr(e->desc, causes[i].text)) s->found = causes[i].code;
    return 0;
}

int dk_h5_error_errno(int fallback) {
    stack_search s = {0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, search_frame, &s);
    return s.found ? s.found : fallback;
}
