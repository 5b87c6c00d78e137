/* tok_pretokenize.c — pre-tokenizers: cut each piece of normalized text into the "words" BPE sees
 * (HF src/pre_tokenizers and NormalizedString::split). Each stage maps the piece list to a new one;
 * empty pieces are dropped after every stage, as PreTokenizedString::split does. */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

void tok_pre_scratch_free(tok_pre_scratch *s) {
    tok_pieces_free(&s->tmp);
    if (s->region) onig_region_free(s->region, 1);
    free(s->spans);
    memset(s, 0, sizeof *s);
}

/* Spans of a char-predicate pattern (HF `impl Pattern for F: Fn(char) -> bool`): each matching char is
 * its own match. */
static size_t find_chars(bool (*pred)(uint32_t), const char *s, size_t len, tok_span **spans, size_t *cap) {
    size_t n = 0, last = 0;
    if (len == 0) {
        if (*cap == 0) {
            *cap = 64;
            *spans = dk_realloc(*spans, *cap * sizeof **spans);
        }
        (*spans)[n++] = (tok_span){0, 0, false};
        return n;
    }
    for (size_t i = 0; i < len;) {
        size_t l;
        uint32_t cp = tok_utf8_decode(s + i, &l);
        if (pred(cp)) {
            if (n + 2 > *cap) {
                *cap = *cap ? *cap * 2 : 64;
                *spans = dk_realloc(*spans, *cap * sizeof **spans);
            }
            if (last < i) (*spans)[n++] = (tok_span){last, i, false};
            (*spans)[n++] = (tok_span){i, i + l, true};
            last = i + l;
        }
        i += l;
    }
    if (last < len) {
        if (n + 1 > *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *spans = dk_realloc(*spans, *cap * sizeof **spans);
        }
        (*spans)[n++] = (tok_span){last, len, false};
    }
    return n;
}

/* NormalizedString::split: turns pattern spans into kept pieces of `piece`, appended to *out.
 * On return spans[] has been rewritten (is_match now means "remove"). */
static void split_by_spans(tok_span *spans, size_t n, tok_split_behavior behavior, const char *s, bool at_start,
                           tok_pieces *out) {
    size_t m = 0; /* spans rewritten in place: out[m] from in[i], m <= i */
    bool previous_match = false;
    switch (behavior) {
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++) spans[i].is_match = false;
        m = n;
        break;
    case TOK_SPLIT_REMOVED:
        m = n;
        break;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            tok_span sp = spans[i];
            if (sp.is_match == previous_match && m > 0) spans[m - 1].end = sp.end;
            else spans[m++] = (tok_span){sp.start, sp.end, false};
            previous_match = sp.is_match;
        }
        break;
    case TOK_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < n; i++) {
            tok_span sp = spans[i];
            if (sp.is_match && !previous_match && m > 0) spans[m - 1].end = sp.end;
            else spans[m++] = (tok_span){sp.start, sp.end, false};
            previous_match = sp.is_match;
        }
        break;
    case TOK_SPLIT_MERGED_WITH_NEXT: {
        /* Walk backwards, building the result from the end of the array towards the front. */
        size_t w = n; /* result occupies spans[w..n) */
        for (size_t k = n; k-- > 0;) {
            tok_span sp = spans[k];
            if (sp.is_match && !previous_match && w < n) spans[w].start = sp.start;
            else spans[--w] = (tok_span){sp.start, sp.end, false};
            previous_match = sp.is_match;
        }
        memmove(spans, spans + w, (n - w) * sizeof *spans);
        m = n - w;
        break;
    }
    }
    for (size_t i = 0; i < m; i++)
        if (!spans[i].is_match) tok_pieces_add(out, s + spans[i].start, spans[i].end - spans[i].start, at_start && spans[i].start == 0);
}

/* HF Whitespace: keeps the matches of the Rust-regex `\w+|[^\w\s]+`, i.e. maximal runs of word chars and
 * maximal runs of other non-space chars. Done natively because Rust's \w (with Join_Control and
 * Other_Alphabetic) differs from Oniguruma's. */
static void whitespace_split_words(const char *s, size_t len, bool at_start, tok_pieces *out) {
    size_t run_start = 0;
    int run_class = 0; /* 0 whitespace (dropped), 1 word, 2 other */
    for (size_t i = 0; i <= len;) {
        size_t l = 1;
        int cls = 0;
        if (i < len) {
            uint32_t cp = tok_utf8_decode(s + i, &l);
            cls = tok_is_word_char(cp) ? 1 : tok_is_whitespace(cp) ? 0 : 2;
        }
        if (i == len || cls != run_class) {
            if (run_class != 0) tok_pieces_add(out, s + run_start, i - run_start, at_start && run_start == 0);
            run_start = i;
            run_class = cls;
        }
        if (i == len) break;
        i += l;
    }
}

static bool is_ws(uint32_t cp) { return tok_is_whitespace(cp); }

static void byte_level_map(const char *s, size_t len, bool at_start, tok_pieces *out) {
    tok_pieces_begin(out);
    tok_pieces_reserve(out, 2 * len); /* every byte maps to a 1- or 2-byte char */
    char *dst = out->buf + out->buf_len;
    for (size_t i = 0; i < len; i++) {
        const char *u = tok_byte_to_utf8((uint8_t)s[i]);
        *dst++ = u[0];
        if (u[1]) *dst++ = u[1];
    }
    out->buf_len = (size_t)(dst - out->buf);
    tok_pieces_end(out, at_start);
}

/* One pre-tokenizer (not a Sequence) over every piece of *in, results appended to *out. */
static void pre_one(const tok_pretokenizer *pre, const tok_pieces *in, tok_pieces *out, tok_pre_scratch *sc) {
    for (size_t p = 0; p < in->n; p++) {
        const char *s = tok_piece_text(in, p);
        size_t len = in->items[p].len;
        bool at_start = in->items[p].at_start;
        size_t n;
        switch (pre->type) {
        case TOK_PRE_SPLIT:
            n = tok_pattern_find_r(&pre->pattern, s, len, &sc->spans, &sc->spans_cap, sc->region);
            split_by_spans(sc->spans, n, pre->behavior, s, at_start, out);
            break;
        case TOK_PRE_WHITESPACE:
            whitespace_split_words(s, len, at_start, out);
            break;
        case TOK_PRE_WHITESPACE_SPLIT:
            n = find_chars(is_ws, s, len, &sc->spans, &sc->spans_cap);
            split_by_spans(sc->spans, n, TOK_SPLIT_REMOVED, s, at_start, out);
            break;
        case TOK_PRE_DIGITS:
            n = find_chars(tok_is_numeric, s, len, &sc->spans, &sc->spans_cap);
            split_by_spans(sc->spans, n, pre->individual_digits ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS, s,
                           at_start, out);
            break;
        case TOK_PRE_BYTE_LEVEL: {
            /* Optional prefix space, optional GPT-2 regex split, then every byte -> its char. */
            char *owned = NULL;
            if (pre->add_prefix_space && (len == 0 || s[0] != ' ')) {
                owned = dk_malloc(len + 1);
                owned[0] = ' ';
                memcpy(owned + 1, s, len);
                s = owned;
                len++;
            }
            if (pre->use_regex) {
                n = tok_pattern_find_r(&pre->pattern, s, len, &sc->spans, &sc->spans_cap, sc->region);
                for (size_t i = 0; i < n; i++)
                    if (sc->spans[i].end > sc->spans[i].start)
                        byte_level_map(s + sc->spans[i].start, sc->spans[i].end - sc->spans[i].start,
                                       at_start && sc->spans[i].start == 0, out);
            } else {
                byte_level_map(s, len, at_start, out);
            }
            free(owned);
            break;
        }
        case TOK_PRE_METASPACE: {
            /* ' ' -> replacement, optional prepended replacement, optional split (MergedWithNext). */
            tok_pieces one = {0};
            tok_pieces_begin(&one);
            size_t rl = strlen(pre->replacement);
            bool starts_with_rep = false;
            if (len >= 1 && s[0] == ' ') starts_with_rep = true;
            else if (len >= rl && memcmp(s, pre->replacement, rl) == 0) starts_with_rep = true;
            if (!starts_with_rep && (pre->prepend_scheme == TOK_PREPEND_ALWAYS ||
                                     (pre->prepend_scheme == TOK_PREPEND_FIRST && at_start)))
                tok_pieces_append(&one, pre->replacement, rl);
            for (size_t i = 0; i < len; i++) {
                if (s[i] == ' ') tok_pieces_append(&one, pre->replacement, rl);
                else tok_pieces_append(&one, s + i, 1);
            }
            tok_pieces_end(&one, at_start);
            if (one.n) {
                const char *t = tok_piece_text(&one, 0);
                size_t tl = one.items[0].len;
                if (pre->split) {
                    tok_pattern lit = {.literal = (char *)pre->replacement, .literal_len = rl};
                    n = tok_pattern_find(&lit, t, tl, &sc->spans, &sc->spans_cap);
                    split_by_spans(sc->spans, n, TOK_SPLIT_MERGED_WITH_NEXT, t, at_start, out);
                } else {
                    tok_pieces_add(out, t, tl, at_start);
                }
            }
            tok_pieces_free(&one);
            break;
        }
        case TOK_PRE_SEQUENCE:
            CHECK(false, "a Sequence reached pre_one (tok_pretokenize unrolls them)");
        }
    }
}

void tok_pretokenize(const tok_pretokenizer *pre, tok_pieces *pieces, tok_pre_scratch *scratch) {
    if (!scratch->region) scratch->region = onig_region_new();
    if (pre->type == TOK_PRE_SEQUENCE) {
        for (size_t i = 0; i < pre->n_children; i++) tok_pretokenize(&pre->children[i], pieces, scratch);
        return;
    }
    tok_pieces_clear(&scratch->tmp);
    pre_one(pre, pieces, &scratch->tmp, scratch);
    tok_pieces swap = *pieces;
    *pieces = scratch->tmp;
    scratch->tmp = swap;
}
