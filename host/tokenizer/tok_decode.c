/* tok_decode.c — ids back to text, as HF TokenizerImpl::decode: id -> token string (added tokens first),
 * optionally drop special tokens, then the decoder chain (each decoder maps a list of strings to a list
 * of strings: src/decoders decode_chain) and a final concatenation. The same chain without the replacement
 * of invalid UTF-8 gives the raw bytes of one token (dk_tokenizer_token_bytes). */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include "core/error.h"
#include "core/strutil.h"

#include <stdlib.h>
#include <string.h>

typedef struct str_list {
    dk_strbuf *items;  /* [cap], n used; each item owns its data */
    size_t n, cap;
} str_list;

static void list_push(str_list *l, const char *s, size_t len) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->items = dk_realloc(l->items, l->cap * sizeof *l->items);
    }
    dk_strbuf b = {0};
    dk_strbuf_append_n(&b, len ? s : "", len);
    l->items[l->n++] = b;
}

static void list_free(str_list *l) {
    for (size_t i = 0; i < l->n; i++) dk_strbuf_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xHH>" -> byte, as Rust u8::from_str_radix(&token[3..5], 16) (which also takes "+H"). */
static int byte_token(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    if (s[3] == '+') return hex_digit(s[4]);
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* raw: keep the bytes of ByteLevel and ByteFallback tokens as they are instead of replacing invalid UTF-8. */
static void decode_chain(const tok_decoder *d, str_list *in, str_list *out, bool raw_bytes) {
    switch (d->type) {
    case TOK_DEC_BYTE_LEVEL: {
        dk_strbuf raw = {0};
        for (size_t i = 0; i < in->n; i++) {
            const char *t = in->items[i].data;
            size_t tl = in->items[i].len, start = raw.len;
            bool all = true;
            for (size_t k = 0; k < tl && all;) {
                size_t l;
                int b = tok_char_to_byte(tok_utf8_decode(t + k, &l));
                if (b < 0) all = false;
                else {
                    char c = (char)b;
                    dk_strbuf_append_n(&raw, &c, 1);
                }
                k += l;
            }
            if (!all) {
                raw.len = start;
                dk_strbuf_append_n(&raw, tl ? t : "", tl);
            }
        }
        dk_strbuf text = {0};
        dk_strbuf_append(&text, "");
        if (raw_bytes) dk_strbuf_append_n(&text, raw.len ? raw.data : "", raw.len);
        else tok_utf8_append_lossy(&text, raw.data ? raw.data : "", raw.len);
        dk_strbuf_free(&raw);
        list_push(out, text.data, text.len);
        dk_strbuf_free(&text);
        return;
    }
    case TOK_DEC_REPLACE: {
        tok_span *spans = NULL;
        size_t cap = 0;
        for (size_t i = 0; i < in->n; i++) {
            size_t ns = tok_pattern_find(&d->pattern, in->items[i].data, in->items[i].len, &spans, &cap);
            dk_strbuf b = {0};
            dk_strbuf_append(&b, "");
            for (size_t k = 0; k < ns; k++) {
                if (spans[k].is_match) dk_strbuf_append(&b, d->content);
                else dk_strbuf_append_n(&b, in->items[i].data + spans[k].start, spans[k].end - spans[k].start);
            }
            list_push(out, b.data, b.len);
            dk_strbuf_free(&b);
        }
        free(spans);
        return;
    }
    case TOK_DEC_BYTE_FALLBACK: {
        dk_strbuf bytes = {0};
        for (size_t i = 0; i <= in->n; i++) {
            int b = i < in->n ? byte_token(in->items[i].data, in->items[i].len) : -1;
            if (b >= 0) {
                char c = (char)b;
                dk_strbuf_append_n(&bytes, &c, 1);
                continue;
            }
            if (bytes.len) {
                if (raw_bytes || tok_utf8_first_invalid(bytes.data, bytes.len) == bytes.len)
                    list_push(out, bytes.data, bytes.len);
                else
                    for (size_t k = 0; k < bytes.len; k++) list_push(out, "\xEF\xBF\xBD", 3);
                bytes.len = 0;
            }
            if (i < in->n) list_push(out, in->items[i].data, in->items[i].len);
        }
        dk_strbuf_free(&bytes);
        return;
    }
    case TOK_DEC_FUSE: {
        dk_strbuf all = {0};
        dk_strbuf_append(&all, "");
        for (size_t i = 0; i < in->n; i++) dk_strbuf_append_n(&all, in->items[i].data, in->items[i].len);
        list_push(out, all.data, all.len);
        dk_strbuf_free(&all);
        return;
    }
    case TOK_DEC_STRIP:
    case TOK_DEC_METASPACE: {
        for (size_t i = 0; i < in->n; i++) {
            const char *t = in->items[i].data;
            size_t tl = in->items[i].len;
            /* chars of the token as (offset, code point) */
            size_t nch = 0;
            for (size_t k = 0; k < tl; nch++) k += tok_utf8_char_len((unsigned char)t[k]);
            size_t *offs = dk_malloc((nch + 1) * sizeof *offs);
            uint32_t *cps = dk_malloc((nch + 1) * sizeof *cps);
            for (size_t k = 0, c = 0; k < tl; c++) {
                size_t l;
                offs[c] = k;
                cps[c] = tok_utf8_decode(t + k, &l);
                k += l;
            }
            offs[nch] = tl;
            dk_strbuf b = {0};
            dk_strbuf_append(&b, "");
            if (d->type == TOK_DEC_STRIP) {
                size_t start_cut = 0, stop_cut = nch;
                for (size_t c = 0; c < nch && c < d->strip_start; c++) {
                    if (cps[c] != d->strip_content) break;
                    start_cut = c + 1;
                }
                for (size_t k = 0; k < d->strip_stop && k < nch; k++) {
                    size_t idx = nch - k - 1;
                    if (cps[idx] != d->strip_content) break;
                    stop_cut = idx;
                }
                if (stop_cut > start_cut) dk_strbuf_append_n(&b, t + offs[start_cut], offs[stop_cut] - offs[start_cut]);
            } else {
                for (size_t c = 0; c < nch; c++) {
                    if (cps[c] == d->replacement_cp) {
                        if (!(i == 0 && d->prepend_scheme != TOK_PREPEND_NEVER)) dk_strbuf_append(&b, " ");
                    } else {
                        dk_strbuf_append_n(&b, t + offs[c], offs[c + 1] - offs[c]);
                    }
                }
            }
            list_push(out, b.data, b.len);
            dk_strbuf_free(&b);
            free(offs);
            free(cps);
        }
        return;
    }
    case TOK_DEC_SEQUENCE: {
        str_list cur = *in, next = {0};
        memset(in, 0, sizeof *in);
        for (size_t k = 0; k < d->n_children; k++) {
            decode_chain(&d->children[k], &cur, &next, raw_bytes);
            list_free(&cur);
            cur = next;
            memset(&next, 0, sizeof next);
        }
        *out = cur;
        return;
    }
    }
}

static char *decode(const dk_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special_tokens, bool raw_bytes,
                   size_t *len, dk_err *err) {
    tok_pattern_take_error(NULL, 0);
    str_list tokens = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        const char *t = dk_tokenizer_id_to_token(tok, id);
        if (!t) {
            list_free(&tokens);
            dk_err_set(err, DK_EXIT_USAGE, "id %d (position %zu) is not a token of %s (ids are 0..%d)", id, i,
                       tok->name, tok->vocab_size - 1);
            return NULL;
        }
        if (skip_special_tokens) {
            int32_t a = tok_strmap_get(&tok->added_by_content, t, strlen(t));
            if (a >= 0 && tok->added[a].special) continue;
        }
        list_push(&tokens, t, strlen(t));
    }
    dk_strbuf text = {0};
    dk_strbuf_append(&text, "");
    if (tok->decoder) {
        str_list out = {0};
        decode_chain(tok->decoder, &tokens, &out, raw_bytes);
        for (size_t i = 0; i < out.n; i++) dk_strbuf_append_n(&text, out.items[i].data, out.items[i].len);
        list_free(&out);
    } else {
        for (size_t i = 0; i < tokens.n; i++) {
            if (i) dk_strbuf_append(&text, " ");
            dk_strbuf_append_n(&text, tokens.items[i].data, tokens.items[i].len);
        }
    }
    list_free(&tokens);
    char why[ONIG_MAX_ERROR_MESSAGE_LEN];
    if (tok_pattern_take_error(why, sizeof why)) { /* a decoder's Replace regex gave up (see tok_pattern.c) */
        dk_strbuf_free(&text);
        dk_err_set(err, DK_EXIT_RUNTIME, "the tokenizer's decoder regex gave up on these ids (Oniguruma: %s): decode "
                   "fewer ids at once", why);
        return NULL;
    }
    if (len) *len = text.len;
    return dk_strbuf_take(&text);
}

char *dk_tokenizer_decode(const dk_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special_tokens,
                          size_t *len, dk_err *err) {
    return decode(tok, ids, n, skip_special_tokens, false, len, err);
}

char *dk_tokenizer_token_bytes(const dk_tokenizer *tok, int32_t id, size_t *len, dk_err *err) {
    return decode(tok, &id, 1, false, true, len, err);
}

bool dk_tokenizer_is_added(const dk_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->vocab_size && tok->added_by_id[id] >= 0;
}

int32_t dk_tokenizer_vocab_size(const dk_tokenizer *tok) { return tok->vocab_size; }

const char *dk_tokenizer_id_to_token(const dk_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->vocab_size) return NULL;
    int32_t a = tok->added_by_id[id];
    if (a >= 0) return tok->added[a].token_string;
    return id < tok->bpe.n_ids ? tok->bpe.id_to_token[id] : NULL;
}

int32_t dk_tokenizer_token_to_id(const dk_tokenizer *tok, const char *token) {
    int32_t a = tok_strmap_get(&tok->added_by_content, token, strlen(token));
    if (a >= 0) return tok->added[a].id;
    return tok_strmap_get(&tok->bpe.vocab, token, strlen(token));
}

const char *dk_tokenizer_config_json(const dk_tokenizer *tok) { return tok->config_json; }
