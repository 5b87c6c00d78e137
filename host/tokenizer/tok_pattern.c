/* tok_pattern.c — HF's Pattern::find_matches for the two pattern kinds tokenizer.json uses (a literal
 * string, an Oniguruma regex, either possibly inverted), and the piece list the pipeline stages share.
 *
 * Matching follows the `onig` crate's find_iter exactly: non-overlapping leftmost matches; an empty match
 * right after the previous match is skipped by advancing one char. Spans cover the whole input, matched
 * and unmatched alternately (an empty input gives one unmatched empty span). */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"
#include "tokenizer/tok_unicode_hf.h"

#include "core/strutil.h"

#include "core/error.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pieces ---- */

void tok_pieces_clear(tok_pieces *p) {
    p->buf_len = 0;
    p->n = 0;
}

void tok_pieces_free(tok_pieces *p) {
    free(p->buf);
    free(p->items);
    memset(p, 0, sizeof *p);
}

void tok_pieces_begin(tok_pieces *p) {
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->items = dk_realloc(p->items, p->cap * sizeof *p->items);
    }
    p->items[p->n].off = p->buf_len;
    p->items[p->n].len = 0;
}

void tok_pieces_reserve(tok_pieces *p, size_t extra) {
    if (p->buf_len + extra > p->buf_cap) {
        size_t cap = p->buf_cap ? p->buf_cap : 256;
        while (cap < p->buf_len + extra) cap *= 2;
        p->buf = dk_realloc(p->buf, cap);
        p->buf_cap = cap;
    }
}

void tok_pieces_append(tok_pieces *p, const char *s, size_t len) {
    tok_pieces_reserve(p, len);
    if (len) memcpy(p->buf + p->buf_len, s, len);
    p->buf_len += len;
}

void tok_pieces_end(tok_pieces *p, bool at_start) {
    tok_piece *it = &p->items[p->n];
    it->len = p->buf_len - it->off;
    it->at_start = at_start;
    if (it->len > 0) p->n++; /* HF drops empty splits */
}

void tok_pieces_add(tok_pieces *p, const char *s, size_t len, bool at_start) {
    if (len == 0) return;
    tok_pieces_begin(p);
    tok_pieces_append(p, s, len);
    tok_pieces_end(p, at_start);
}

/* ---- patterns ---- */

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static void onig_init_once(void) {
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    onig_initialize(&enc, 1);
}

/* Appends the code point ranges of an HF_EXTRA_* table as class items "\x{A}-\x{B}". */
static void append_ranges(dk_strbuf *b, const uint32_t (*ranges)[2], size_t n) {
    for (size_t i = 0; i < n; i++) dk_strbuf_printf(b, "\\x{%X}-\\x{%X}", ranges[i][0], ranges[i][1]);
}

/* HF's Oniguruma has newer Unicode data than ours (tok_unicode_hf.h): every \p{L} / \p{N} (also \pL, \P{L},
 * ...) becomes a bracket class that adds the letters / numbers we lack. Inside a [...] class this is a nested
 * class, which Oniguruma's Ruby syntax unions with the rest. Other escapes are copied whole, so an escaped
 * backslash followed by "p{L}" is left alone. Returns the rewritten pattern (the caller frees). */
static char *widen_unicode_classes(const char *pat, size_t len, size_t *out_len) {
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "");
    for (size_t i = 0; i < len; i++) {
        if (pat[i] != '\\' || i + 1 == len) {
            dk_strbuf_append_n(&b, pat + i, 1);
            continue;
        }
        char e = pat[i + 1], prop = 0;
        size_t escape_len = 2;
        if ((e == 'p' || e == 'P') && i + 4 < len && pat[i + 2] == '{' && pat[i + 4] == '}' &&
            (pat[i + 3] == 'L' || pat[i + 3] == 'N')) {
            prop = pat[i + 3];
            escape_len = 5;
        } else if ((e == 'p' || e == 'P') && i + 2 < len && (pat[i + 2] == 'L' || pat[i + 2] == 'N')) {
            prop = pat[i + 2];
            escape_len = 3;
        }
        if (prop) {
            dk_strbuf_append(&b, e == 'P' ? "[^" : "[");
            dk_strbuf_append(&b, prop == 'L' ? "\\p{L}" : "\\p{N}");
            if (prop == 'L') append_ranges(&b, HF_EXTRA_LETTERS, HF_EXTRA_LETTERS_COUNT);
            else append_ranges(&b, HF_EXTRA_NUMBERS, HF_EXTRA_NUMBERS_COUNT);
            dk_strbuf_append(&b, "]");
        } else {
            dk_strbuf_append_n(&b, pat + i, escape_len);
        }
        i += escape_len - 1;
    }
    *out_len = b.len;
    return dk_strbuf_take(&b);
}

int tok_regex_compile(const char *pattern, size_t len, regex_t **out, dk_err *err) {
    pthread_once(&onig_once, onig_init_once);
    OnigErrorInfo einfo;
    size_t wide_len;
    char *wide = widen_unicode_classes(pattern, len, &wide_len);
    const UChar *p = (const UChar *)wide;
    int r = onig_new(out, p, p + wide_len, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_RUBY, &einfo);
    free(wide);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        *out = NULL;
        return dk_err_set(err, DK_EXIT_USAGE, "invalid regex /%.*s/: %s", (int)(len > 200 ? 200 : len), pattern,
                          (const char *)msg);
    }
    return 0;
}

void tok_pattern_free(tok_pattern *pat) {
    free(pat->literal);
    if (pat->regex) onig_free(pat->regex);
    memset(pat, 0, sizeof *pat);
}

static void push_span(tok_span **spans, size_t *cap, size_t *n, size_t start, size_t end, bool is_match) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *spans = dk_realloc(*spans, *cap * sizeof **spans);
    }
    (*spans)[(*n)++] = (tok_span){start, end, is_match};
}

static const char *find_literal(const char *s, size_t n, const char *lit, size_t m) {
    for (size_t i = 0; i + m <= n;) {
        const char *p = memchr(s + i, lit[0], n - m + 1 - i);
        if (!p) return NULL;
        if (memcmp(p, lit, m) == 0) return p;
        i = (size_t)(p - s) + 1;
    }
    return NULL;
}

/* The first Oniguruma search failure on this thread since the last tok_pattern_take_error (0 = none).
 * A search can fail on legal input: Oniguruma gives up after 10,000,000 backtracking steps, which a run of
 * about ten million whitespace characters reaches with the GPT-2 style patterns. Hugging Face tokenizers
 * stops at the same point (its onig wrapper panics with "retry-limit-in-match over"). The match loops have
 * no error path, so the failure is recorded here, the loop ends as if nothing more matched, and the encoder
 * (dk_tok_worker_encode) turns it into an error for that text. */
static _Thread_local int search_error;

bool tok_pattern_failed(void) { return search_error != 0; }

int tok_pattern_take_error(char *msg, size_t cap) {
    int e = search_error;
    search_error = 0;
    if (e && msg && cap) {
        UChar text[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(text, e);
        snprintf(msg, cap, "%s", (const char *)text);
    }
    return e;
}

/* Next match at or after `from`: true with [*ms, *me). */
static bool next_match(const tok_pattern *pat, const char *s, size_t len, size_t from, OnigRegion *region,
                       size_t *ms, size_t *me) {
    if (pat->literal) {
        if (from > len || len - from < pat->literal_len) return false;
        const char *hit = find_literal(s + from, len - from, pat->literal, pat->literal_len);
        if (!hit) return false;
        *ms = (size_t)(hit - s);
        *me = *ms + pat->literal_len;
        return true;
    }
    const UChar *str = (const UChar *)s, *end = str + len;
    onig_region_clear(region);
    int r = onig_search(pat->regex, str, end, str + from, end, region, ONIG_OPTION_NONE);
    if (r < 0) {
        if (r != ONIG_MISMATCH && !search_error) search_error = r;
        return false;
    }
    *ms = (size_t)region->beg[0];
    *me = (size_t)region->end[0];
    return true;
}

size_t tok_pattern_find(const tok_pattern *pat, const char *s, size_t len, tok_span **spans, size_t *cap) {
    return tok_pattern_find_r(pat, s, len, spans, cap, NULL);
}

size_t tok_pattern_find_r(const tok_pattern *pat, const char *s, size_t len, tok_span **spans, size_t *cap,
                          OnigRegion *caller_region) {
    size_t n = 0;
    if (len == 0) {
        push_span(spans, cap, &n, 0, 0, pat->invert);
        return n;
    }
    OnigRegion *region = pat->regex ? (caller_region ? caller_region : onig_region_new()) : NULL;
    size_t prev = 0, last_end = 0;
    bool have_last = false;
    size_t last_match_end = 0;
    while (last_end <= len) {
        size_t ms, me;
        if (!next_match(pat, s, len, last_end, region, &ms, &me)) break;
        if (ms == me && have_last && last_match_end == me) {
            last_end += last_end < len ? tok_utf8_char_len((unsigned char)s[last_end]) : 1;
            continue;
        }
        last_end = me;
        last_match_end = me;
        have_last = true;
        if (prev != ms) push_span(spans, cap, &n, prev, ms, pat->invert);
        push_span(spans, cap, &n, ms, me, !pat->invert);
        prev = me;
    }
    if (prev != len) push_span(spans, cap, &n, prev, len, pat->invert);
    if (region && region != caller_region) onig_region_free(region, 1);
    return n;
}
