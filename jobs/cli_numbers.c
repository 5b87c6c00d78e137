/* cli_numbers.c — see cli_numbers.h. */
#include "cli_numbers.h"

#include "config/node.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double cli_number(const char *command, const char *option, const char *text) {
    double value;
    int64_t integer;
    if (dk_cfg_parse_float(text, &value)) return value;
    if (dk_cfg_parse_int(text, &integer)) return (double)integer;
    fprintf(stderr, "diffkit %s: %s takes a number, not '%s'\n", command, option, text);
    exit(DK_EXIT_USAGE);
}

int64_t cli_integer(const char *command, const char *option, const char *text) {
    int64_t value;
    if (dk_cfg_parse_int(text, &value)) return value;
    fprintf(stderr, "diffkit %s: %s takes an integer, not '%s'\n", command, option, text);
    exit(DK_EXIT_USAGE);
}

bool cli_bool(const char *command, const char *option, const char *text) {
    if (strcmp(text, "true") == 0) return true;
    if (strcmp(text, "false") == 0) return false;
    fprintf(stderr, "diffkit %s: %s takes true or false, not '%s'\n", command, option, text);
    exit(DK_EXIT_USAGE);
}

int64_t *cli_id_list(const char *command, const char *option, const char *text, int64_t *n) {
    size_t cap = 16;
    int64_t *out = dk_malloc(cap * sizeof *out);
    *n = 0;
    for (const char *p = text; *p;) {
        int64_t value;
        size_t len = strcspn(p, ",");
        char *item = dk_malloc(len + 1);
        memcpy(item, p, len);
        item[len] = '\0';
        bool ok = dk_cfg_parse_int(item, &value) && value >= 0;
        free(item);
        if (!ok) break;
        if ((size_t)*n == cap) out = dk_realloc(out, (cap *= 2) * sizeof *out);
        out[(*n)++] = value;
        p += len;
        if (*p == ',' && p[1]) p++;
        else if (*p == ',') break; /* a trailing comma */
        else if (*p == '\0') return out;
    }
    fprintf(stderr, "diffkit %s: %s takes comma-separated token ids (non-negative integers, e.g. 1,2,3), not '%s'\n",
            command, option, text);
    exit(DK_EXIT_USAGE);
}

