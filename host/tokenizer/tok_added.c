/* tok_added.c — added tokens (special or not) are found in the text before the model sees it, as HF's
 * AddedVocabulary does: a leftmost-longest match over all token contents (a byte trie here, Aho-Corasick
 * there), then per-token single_word / lstrip / rstrip rules, giving alternating text and token segments. */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

void tok_trie_init(tok_trie *t) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 256; i++) t->root_child[i] = -1;
    t->cap = 64;
    t->nodes = dk_malloc(t->cap * sizeof *t->nodes);
    t->nodes[0] = (tok_trie_node){-1, -1, -1, 0};
    t->n_nodes = 1;
}

void tok_trie_free(tok_trie *t) {
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

static int32_t trie_child(const tok_trie *t, int32_t node, uint8_t b) {
    if (node == 0) return t->root_child[b];
    for (int32_t c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        if (t->nodes[c].byte == b) return c;
    return -1;
}

void tok_trie_insert(tok_trie *t, const char *s, size_t len, int32_t token) {
    if (len == 0) return; /* an empty token can never match */
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = trie_child(t, node, b);
        if (c < 0) {
            if (t->n_nodes == t->cap) {
                t->cap *= 2;
                t->nodes = dk_realloc(t->nodes, t->cap * sizeof *t->nodes);
            }
            c = (int32_t)t->n_nodes++;
            t->nodes[c] = (tok_trie_node){-1, t->nodes[node].first_child, -1, b};
            t->nodes[node].first_child = c;
            if (node == 0) t->root_child[b] = c;
        }
        node = c;
    }
    if (t->nodes[node].token < 0) t->nodes[node].token = token; /* first of duplicate contents wins */
}

/* Longest token starting at s[i]: its index (and *end), or -1. */
static int32_t longest_at(const tok_trie *t, const char *s, size_t len, size_t i, size_t *end) {
    int32_t node = t->root_child[(uint8_t)s[i]], best = -1;
    size_t j = i + 1;
    while (node >= 0) {
        if (t->nodes[node].token >= 0) {
            best = t->nodes[node].token;
            *end = j;
        }
        if (j >= len) break;
        node = trie_child(t, node, (uint8_t)s[j]);
        j++;
    }
    return best;
}

static void push_seg(tok_segment **segs, size_t *cap, size_t *n, size_t start, size_t end, int32_t token) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *segs = dk_realloc(*segs, *cap * sizeof **segs);
    }
    (*segs)[(*n)++] = (tok_segment){start, end, token};
}

static uint32_t char_before(const char *s, size_t pos, size_t *start) {
    size_t b = pos - 1;
    while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
    size_t l;
    *start = b;
    return tok_utf8_decode(s + b, &l);
}

size_t tok_added_split(const dk_tokenizer *tok, const tok_trie *trie, const char *s, size_t len, tok_segment **segs,
                       size_t *cap) {
    size_t n = 0, start_offset = 0;
    if (trie->n_nodes > 1) {
        for (size_t i = 0; i < len;) {
            size_t end = 0;
            int32_t t = trie->root_child[(uint8_t)s[i]] < 0 ? -1 : longest_at(trie, s, len, i, &end);
            if (t < 0) {
                i++;
                continue;
            }
            size_t match_start = i, match_end = end;
            i = end; /* non-overlapping: the next match starts after this one, whether it is used or not */
            const tok_added_token *at = &tok->added[t];
            size_t start = match_start, stop = match_end;
            if (at->single_word) {
                size_t dummy, l;
                bool start_space = start == 0 || !tok_is_word_char(char_before(s, start, &dummy));
                bool stop_space = stop == len || !tok_is_word_char(tok_utf8_decode(s + stop, &l));
                if (!start_space || !stop_space) continue;
            }
            if (at->lstrip) {
                size_t newstart = start;
                while (newstart > 0) {
                    size_t b;
                    uint32_t cp = char_before(s, newstart, &b);
                    if (!tok_is_whitespace(cp)) break;
                    newstart = b;
                }
                start = newstart > start_offset ? newstart : start_offset;
            }
            if (at->rstrip) {
                while (stop < len) {
                    size_t l;
                    uint32_t cp = tok_utf8_decode(s + stop, &l);
                    if (!tok_is_whitespace(cp)) break;
                    stop += l;
                }
            }
            if (start_offset < start) push_seg(segs, cap, &n, start_offset, start, -1);
            push_seg(segs, cap, &n, start, stop, t);
            start_offset = stop;
        }
    }
    if (start_offset != len) push_seg(segs, cap, &n, start_offset, len, -1);
    return n;
}
