/* tok_normalize.c — normalizers, applied to each stretch of text between added tokens (HF
 * src/normalizers): Unicode normal forms through utf8proc, per-char Lowercase as Rust's char::to_lowercase,
 * Strip, Replace (literal or regex), Prepend and Sequence. Input and output are valid UTF-8. */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"
#include "tokenizer/tok_unicode_hf.h"

#include "core/error.h"
#include "core/strutil.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static void set_buf(dk_strbuf *b, const char *s, size_t len) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
    if (len) dk_strbuf_append_n(b, s, len);
    else if (!b->data) dk_strbuf_append(b, "");
}

/* Code points HF's normalizers do not know (tok_unicode_hf.h): they pass through untouched. */
static bool hf_norm_inert(uint32_t cp) {
    size_t lo = 0, hi = HF_NORM_INERT_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < HF_NORM_INERT[mid][0]) hi = mid;
        else if (cp > HF_NORM_INERT[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

static void utf8proc_append(utf8proc_option_t options, const char *s, size_t len, dk_strbuf *out) {
    if (len == 0) return;
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &res, options);
    CHECK(n >= 0, "utf8proc could not normalize valid UTF-8 (%s)", utf8proc_errmsg(n));
    dk_strbuf_append_n(out, (const char *)res, (size_t)n);
    free(res);
}

/* A Unicode normal form as HF computes it: characters its (older) tables do not know are inert starters, so
 * the text between them is normalized on its own and they are copied as they are. */
static void unicode_form(utf8proc_option_t options, const char *s, size_t len, dk_strbuf *out) {
    set_buf(out, "", 0);
    size_t run = 0;
    for (size_t i = 0; i < len;) {
        size_t l;
        uint32_t cp = tok_utf8_decode(s + i, &l);
        if (cp >= HF_NORM_INERT[0][0] && hf_norm_inert(cp)) {
            utf8proc_append(options, s + run, i - run, out);
            dk_strbuf_append_n(out, s + i, l);
            run = i + l;
        }
        i += l;
    }
    utf8proc_append(options, s + run, len - run, out);
}

/* True when NFC cannot change s: every char is below U+0300 (no combining marks, no Hangul, and every such
 * char is its own NFC form with canonical combining class 0). Most text takes this path. */
static bool nfc_is_identity(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) continue;
        if (c >= 0xCC) return false; /* lead bytes 0xCC.. start U+0300 and above */
        i++;                         /* two-byte char below U+0300: skip its continuation byte */
    }
    return true;
}

/* HF's lowercase of cp when it differs from utf8proc's (newer Unicode in Rust; tok_unicode_hf.h), else NULL. */
static const char *hf_lowercase_exception(uint32_t cp) {
    size_t lo = 0, hi = HF_LOWERCASE_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < HF_LOWERCASE[mid].cp) hi = mid;
        else if (cp > HF_LOWERCASE[mid].cp) lo = mid + 1;
        else return HF_LOWERCASE[mid].lower;
    }
    return NULL;
}

static void lowercase(const char *s, size_t len, dk_strbuf *out) {
    set_buf(out, "", 0);
    for (size_t i = 0; i < len;) {
        size_t l;
        uint32_t cp = tok_utf8_decode(s + i, &l);
        char enc[8];
        const char *exception = cp >= 0x80 ? hf_lowercase_exception(cp) : NULL;
        if (cp == 0x130) { /* the one unconditional multi-char lowercase mapping: İ -> i + U+0307 */
            dk_strbuf_append(out, "i\xCC\x87");
        } else if (exception) {
            dk_strbuf_append(out, exception);
        } else {
            uint32_t lc = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
            dk_strbuf_append_n(out, enc, tok_utf8_encode(lc, enc));
        }
        i += l;
    }
}

static void strip(const tok_normalizer *n, const char *s, size_t len, dk_strbuf *out) {
    size_t start = 0, end = len;
    if (n->strip_left) {
        while (start < end) {
            size_t l;
            uint32_t cp = tok_utf8_decode(s + start, &l);
            if (!tok_is_whitespace(cp)) break;
            start += l;
        }
    }
    if (n->strip_right) {
        while (end > start) {
            size_t b = end - 1;
            while (b > start && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
            size_t l;
            uint32_t cp = tok_utf8_decode(s + b, &l);
            if (!tok_is_whitespace(cp)) break;
            end = b;
        }
    }
    set_buf(out, s + start, end - start);
}

static void replace(const tok_normalizer *n, const char *s, size_t len, dk_strbuf *out) {
    tok_span *spans = NULL;
    size_t cap = 0;
    size_t ns = tok_pattern_find(&n->pattern, s, len, &spans, &cap);
    set_buf(out, "", 0);
    for (size_t i = 0; i < ns; i++) {
        if (spans[i].is_match) dk_strbuf_append(out, n->content);
        else if (spans[i].end > spans[i].start) dk_strbuf_append_n(out, s + spans[i].start, spans[i].end - spans[i].start);
    }
    free(spans);
}

void tok_normalize(const tok_normalizer *n, const char *s, size_t len, dk_strbuf *out) {
    switch (n->type) {
    case TOK_NORM_NFC:
        if (nfc_is_identity(s, len)) set_buf(out, s, len);
        else unicode_form(UTF8PROC_STABLE | UTF8PROC_COMPOSE, s, len, out);
        return;
    case TOK_NORM_NFD: unicode_form(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, s, len, out); return;
    case TOK_NORM_NFKC: unicode_form(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, s, len, out); return;
    case TOK_NORM_NFKD: unicode_form(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, s, len, out); return;
    case TOK_NORM_LOWERCASE: lowercase(s, len, out); return;
    case TOK_NORM_STRIP: strip(n, s, len, out); return;
    case TOK_NORM_REPLACE: replace(n, s, len, out); return;
    case TOK_NORM_PREPEND:
        set_buf(out, "", 0);
        if (len) {
            dk_strbuf_append(out, n->content);
            dk_strbuf_append_n(out, s, len);
        }
        return;
    case TOK_NORM_SEQUENCE: {
        set_buf(out, s, len);
        dk_strbuf tmp = {0};
        for (size_t i = 0; i < n->n_children; i++) {
            tok_normalize(&n->children[i], out->data, out->len, &tmp);
            dk_strbuf swap = *out;
            *out = tmp;
            tmp = swap;
        }
        dk_strbuf_free(&tmp);
        return;
    }
    }
}
