/* tok_bpe.c — the BPE model on one word, exactly HF models/bpe (model.rs merge_word, word.rs merge_all):
 * chars -> initial symbols (vocab, else byte fallback "<0xHH>", else unk, fused if fuse_unk), then a
 * min-heap of candidate merges ordered by (rank, position), skipping stale entries. A small per-worker
 * cache maps recently seen words to their ids (words repeat a lot in real text). */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

/* ---- word cache: direct-mapped, cleared wholesale when its arenas fill up ---- */
enum { CACHE_SLOTS = 1 << 15, CACHE_MAX_WORD = 256, CACHE_KEY_BYTES = 4 << 20, CACHE_IDS = 1 << 20 };

typedef struct cache_slot {
    uint64_t hash;  /* 0 = empty */
    uint32_t key_off, key_len, ids_off, n_ids;
} cache_slot;

struct tok_word_cache {
    cache_slot *slots;  /* [CACHE_SLOTS] */
    char *keys;         /* [CACHE_KEY_BYTES] */
    size_t keys_len;
    int32_t *ids;       /* [CACHE_IDS] */
    size_t ids_len;
};

tok_word_cache *tok_word_cache_new(void) {
    tok_word_cache *c = dk_calloc(1, sizeof *c);
    c->slots = dk_calloc(CACHE_SLOTS, sizeof *c->slots);
    c->keys = dk_malloc(CACHE_KEY_BYTES);
    c->ids = dk_malloc(CACHE_IDS * sizeof *c->ids);
    return c;
}

void tok_word_cache_free(tok_word_cache *c) {
    if (!c) return;
    free(c->slots);
    free(c->keys);
    free(c->ids);
    free(c);
}

static bool cache_get(const tok_word_cache *c, const char *w, size_t len, uint64_t h, dk_tok_ids *out) {
    const cache_slot *s = &c->slots[h & (CACHE_SLOTS - 1)];
    if (s->hash != h || s->key_len != len || memcmp(c->keys + s->key_off, w, len) != 0) return false;
    for (uint32_t i = 0; i < s->n_ids; i++) dk_tok_ids_push(out, c->ids[s->ids_off + i]);
    return true;
}

static void cache_put(tok_word_cache *c, const char *w, size_t len, uint64_t h, const int32_t *ids, size_t n) {
    if (c->keys_len + len > CACHE_KEY_BYTES || c->ids_len + n > CACHE_IDS) {
        memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
        c->keys_len = c->ids_len = 0;
    }
    cache_slot *s = &c->slots[h & (CACHE_SLOTS - 1)];
    memcpy(c->keys + c->keys_len, w, len);
    if (n) memcpy(c->ids + c->ids_len, ids, n * sizeof *ids);
    *s = (cache_slot){h, (uint32_t)c->keys_len, (uint32_t)len, (uint32_t)c->ids_len, (uint32_t)n};
    c->keys_len += len;
    c->ids_len += n;
}

/* ---- merge loop ---- */
typedef struct symbol {
    int32_t id;
    int32_t prev, next;  /* neighbours, -1 at the ends */
    uint32_t len;        /* bytes of the word it covers; 0 once merged into its left neighbour */
} symbol;

typedef struct merge_entry {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
} merge_entry;

struct tok_bpe_scratch {
    symbol *syms;  /* [syms_cap] */
    size_t syms_cap;
    merge_entry *heap;  /* [heap_cap] binary min-heap on (rank, pos) */
    size_t heap_n, heap_cap;
    char *tmp;  /* [tmp_cap] bytes for prefix/suffix-decorated chars */
    size_t tmp_cap;
};

tok_bpe_scratch *tok_bpe_scratch_new(void) { return dk_calloc(1, sizeof(tok_bpe_scratch)); }

void tok_bpe_scratch_free(tok_bpe_scratch *s) {
    if (!s) return;
    free(s->syms);
    free(s->heap);
    free(s->tmp);
    free(s);
}

static inline bool entry_less(merge_entry a, merge_entry b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(tok_bpe_scratch *s, merge_entry e) {
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 64;
        s->heap = dk_realloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!entry_less(e, s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = e;
}

static merge_entry heap_pop(tok_bpe_scratch *s) {
    merge_entry top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        merge_entry best = last;
        if (l < n && entry_less(s->heap[l], best)) {
            m = l;
            best = s->heap[l];
        }
        if (r < n && entry_less(s->heap[r], best)) m = r;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n) s->heap[i] = last;
    return top;
}

static void add_symbol(tok_bpe_scratch *s, size_t *n, int32_t id, size_t len) {
    if (*n == s->syms_cap) {
        s->syms_cap = s->syms_cap ? s->syms_cap * 2 : 256;
        s->syms = dk_realloc(s->syms, s->syms_cap * sizeof *s->syms);
    }
    s->syms[*n] = (symbol){id, (int32_t)*n - 1, (int32_t)*n + 1, (uint32_t)len};
    (*n)++;
}

static const char *decorate(tok_bpe_scratch *s, const tok_bpe *bpe, const char *c, size_t l, bool first, bool last,
                            size_t *out_len) {
    size_t pl = (!first && bpe->continuing_subword_prefix) ? strlen(bpe->continuing_subword_prefix) : 0;
    size_t sl = (last && bpe->end_of_word_suffix) ? strlen(bpe->end_of_word_suffix) : 0;
    if (pl == 0 && sl == 0) {
        *out_len = l;
        return c;
    }
    if (s->tmp_cap < pl + l + sl) {
        s->tmp_cap = pl + l + sl + 64;
        s->tmp = dk_realloc(s->tmp, s->tmp_cap);
    }
    if (pl) memcpy(s->tmp, bpe->continuing_subword_prefix, pl);
    memcpy(s->tmp + pl, c, l);
    if (sl) memcpy(s->tmp + pl + l, bpe->end_of_word_suffix, sl);
    *out_len = pl + l + sl;
    return s->tmp;
}

static void merge_word(const tok_bpe *bpe, const char *w, size_t len, tok_bpe_scratch *s, dk_tok_ids *out) {
    size_t n = 0;
    int32_t unk_pending = -1; /* unk id waiting to be added (fused), or -1 */
    size_t unk_len = 0;
    bool plain = !bpe->continuing_subword_prefix && !bpe->end_of_word_suffix;
    for (size_t i = 0; i < len;) {
        size_t l = tok_utf8_char_len((unsigned char)w[i]);
        if (l > len - i) l = len - i;
        int32_t id;
        size_t dl = l;
        const char *d = w + i;
        if (plain && l == 1 && (unsigned char)w[i] < 128) {
            id = bpe->char_ids_ascii[(unsigned char)w[i]];
        } else {
            d = decorate(s, bpe, w + i, l, i == 0, i + l == len, &dl);
            id = tok_strmap_get(&bpe->vocab, d, dl);
        }
        if (id < 0 && bpe->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < dl; k++) all = all && bpe->byte_ids[(unsigned char)d[k]] >= 0;
            if (all) { /* note: HF does not flush a pending unk here */
                for (size_t k = 0; k < dl; k++) add_symbol(s, &n, bpe->byte_ids[(unsigned char)d[k]], 1);
                i += l;
                continue;
            }
        }
        if (id >= 0) {
            if (unk_pending >= 0) {
                add_symbol(s, &n, unk_pending, unk_len);
                unk_pending = -1;
            }
            add_symbol(s, &n, id, l);
        } else if (bpe->unk_id >= 0) {
            if (unk_pending >= 0 && bpe->fuse_unk) {
                unk_len += l;
            } else {
                if (unk_pending >= 0) add_symbol(s, &n, unk_pending, unk_len);
                unk_pending = bpe->unk_id;
                unk_len = l;
            }
        } /* else: the char is dropped, as HF does without an unk token */
        i += l;
    }
    if (unk_pending >= 0) add_symbol(s, &n, unk_pending, unk_len);
    if (n == 0) return;
    s->syms[n - 1].next = -1;

    s->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t rank, new_id;
        if (tok_pairmap_get(&bpe->merges, s->syms[i].id, s->syms[i + 1].id, &rank, &new_id))
            heap_push(s, (merge_entry){rank, (int32_t)i, new_id});
    }
    symbol *sy = s->syms;
    while (s->heap_n) {
        merge_entry top = heap_pop(s);
        symbol *cur = &sy[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        int32_t next_pos = cur->next;
        symbol right = sy[next_pos];
        int32_t rank, new_id;
        if (!tok_pairmap_get(&bpe->merges, cur->id, right.id, &rank, &new_id) || new_id != top.new_id) continue;
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        sy[next_pos].len = 0;
        if (right.next >= 0) sy[right.next].prev = top.pos;
        if (cur->prev >= 0 && tok_pairmap_get(&bpe->merges, sy[cur->prev].id, cur->id, &rank, &new_id))
            heap_push(s, (merge_entry){rank, cur->prev, new_id});
        if (cur->next >= 0 && tok_pairmap_get(&bpe->merges, cur->id, sy[cur->next].id, &rank, &new_id))
            heap_push(s, (merge_entry){rank, top.pos, new_id});
    }
    for (size_t i = 0; i < n; i++)
        if (sy[i].len) dk_tok_ids_push(out, sy[i].id);
}

void tok_bpe_word(const tok_bpe *bpe, const char *word, size_t len, tok_word_cache *cache, tok_bpe_scratch *scratch,
                  dk_tok_ids *out) {
    if (len == 0) return;
    if (bpe->ignore_merges) {
        int32_t id = tok_strmap_get(&bpe->vocab, word, len);
        if (id >= 0) {
            dk_tok_ids_push(out, id);
            return;
        }
    }
    uint64_t h = 0;
    bool cacheable = cache && len <= CACHE_MAX_WORD;
    if (cacheable) {
        h = tok_hash_bytes(word, len);
        if (cache_get(cache, word, len, h, out)) return;
    }
    size_t before = out->n;
    merge_word(bpe, word, len, scratch, out);
    if (cacheable) cache_put(cache, word, len, h, out->n > before ? out->ids + before : NULL, out->n - before);
}
