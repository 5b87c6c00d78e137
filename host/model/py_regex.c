/* py_regex.c — see py_regex.h. One compile per call: adapter configs hold a handful of patterns matched against
 * a few hundred module names, once, at load. */
#include "py_regex.h"

#include <oniguruma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static regex_t *compile(const char *pattern, const char *what, dk_err *err) {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
    regex_t *reg = NULL;
    OnigErrorInfo info;
    int rc = onig_new(&reg, (const OnigUChar *)pattern, (const OnigUChar *)pattern + strlen(pattern), ONIG_OPTION_NONE,
                      ONIG_ENCODING_UTF8, ONIG_SYNTAX_PYTHON, &info);
    if (rc != ONIG_NORMAL) {
        OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(message, rc, &info);
        dk_err_set(err, DK_EXIT_USAGE, "%s: '%s' is not a valid regular expression (%s)", what, pattern,
                   (const char *)message);
        return NULL;
    }
    return reg;
}

/* Searches text with reg; when anchored, only a match at the start counts. Fills `out` from `group`. */
static int run(regex_t *reg, const char *text, bool anchored, const char *group, char *out, size_t cap) {
    const OnigUChar *s = (const OnigUChar *)text, *end = s + strlen(text);
    OnigRegion *region = onig_region_new();
    int at = anchored ? onig_match(reg, s, end, s, region, ONIG_OPTION_NONE)
                      : onig_search(reg, s, end, s, end, region, ONIG_OPTION_NONE);
    bool found = at >= 0;
    if (found && group && out && cap) {
        out[0] = '\0';
        int n = onig_name_to_backref_number(reg, (const OnigUChar *)group, (const OnigUChar *)group + strlen(group),
                                            region);
        if (n > 0 && region->beg[n] >= 0) snprintf(out, cap, "%.*s", region->end[n] - region->beg[n], text + region->beg[n]);
    }
    onig_region_free(region, 1);
    return found ? 1 : 0;
}

int dk_py_regex_fullmatch(const char *pattern, const char *text, const char *what, dk_err *err) {
    char *anchored = dk_sprintf("\\A(?:%s)\\Z", pattern); /* \Z: the end of the text in Python's syntax */
    regex_t *reg = compile(anchored, what, err);
    free(anchored);
    if (!reg) {
        /* report the pattern as the user wrote it */
        dk_err_clear(err);
        regex_t *plain = compile(pattern, what, err);
        if (plain) {
            onig_free(plain);
            dk_err_set(err, DK_EXIT_USAGE, "%s: '%s' is not a valid regular expression", what, pattern);
        }
        return -1;
    }
    int found = run(reg, text, false, NULL, NULL, 0);
    onig_free(reg);
    return found;
}

int dk_py_regex_match(const char *pattern, const char *text, const char *group, char *out, size_t cap,
                      const char *what, dk_err *err) {
    regex_t *reg = compile(pattern, what, err);
    if (!reg) return -1;
    int found = run(reg, text, true, group, out, cap);
    onig_free(reg);
    return found;
}
