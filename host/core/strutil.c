/* strutil.c — see strutil.h. */
#include "strutil.h"

#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t dk_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    size_t *row = dk_malloc((lb + 1) * sizeof *row); /* row[j] = distance(a[0..i), b[0..j)) */
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best) best = above + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    size_t d = row[lb];
    free(row);
    return d;
}

int dk_nearest_string(const char *word, const char *const *candidates, size_t n) {
    size_t limit = strlen(word) / 3;
    if (limit < 2) limit = 2;
    int best = -1;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = dk_edit_distance(word, candidates[i]);
        if (d < best_d) {
            best_d = d;
            best = (int)i;
        }
    }
    return best_d <= limit ? best : -1;
}

void dk_free_strings(char **strings, size_t count) {
    for (size_t i = 0; i < count; i++) free(strings[i]);
    free(strings);
}

bool dk_str_starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

bool dk_str_ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

static void reserve(dk_strbuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = dk_realloc(b->data, cap);
    b->cap = cap;
}

void dk_strbuf_append_n(dk_strbuf *b, const char *s, size_t n) {
    reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void dk_strbuf_append(dk_strbuf *b, const char *s) { dk_strbuf_append_n(b, s, strlen(s)); }

void dk_strbuf_printf(dk_strbuf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

char *dk_strbuf_take(dk_strbuf *b) {
    char *s = b->data ? b->data : dk_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

void dk_strbuf_free(dk_strbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
