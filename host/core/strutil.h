/* strutil.h — small string helpers shared by the config system and error messages:
 * edit distance for "did you mean ...?" suggestions, and a growable string buffer. */
#ifndef DK_STRUTIL_H
#define DK_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Levenshtein distance (insert, delete, substitute each cost 1), bytes compared exactly. */
size_t dk_edit_distance(const char *a, const char *b);
/* Index of the candidate closest to `word`, or -1 when none is within max(2, strlen(word)/3) edits. */
int dk_nearest_string(const char *word, const char *const *candidates, size_t n_candidates);

/* Frees an array of `count` malloc'ed strings and the array itself. */
void dk_free_strings(char **strings, size_t count);

bool dk_str_starts_with(const char *s, const char *prefix);
bool dk_str_ends_with(const char *s, const char *suffix);

/* Growable NUL-terminated byte buffer. */
typedef struct dk_strbuf {
    char *data;  /* [cap] bytes, data[len] == '\0' */
    size_t len;
    size_t cap;
} dk_strbuf;

void dk_strbuf_append(dk_strbuf *b, const char *s);
void dk_strbuf_append_n(dk_strbuf *b, const char *s, size_t n);
void dk_strbuf_printf(dk_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the string and leaves the buffer empty; the caller frees it. */
char *dk_strbuf_take(dk_strbuf *b);
void dk_strbuf_free(dk_strbuf *b);

#endif
