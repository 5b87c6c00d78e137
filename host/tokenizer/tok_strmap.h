/* tok_strmap.h — the two hash maps the tokenizer lives on: token string -> id (vocab, added tokens) and
 * (left id, right id) -> (rank, merged id) (BPE merges). Open addressing with linear probing; the tables
 * only grow, keys are copied into one arena per map. Lookups are read-only and thread-safe. */
#ifndef DK_TOK_STRMAP_H
#define DK_TOK_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tok_strmap_slot {
    uint64_t hash;     /* 0 = empty slot */
    uint32_t key_off;  /* offset of the key in keys */
    uint32_t key_len;
    int32_t value;
} tok_strmap_slot;

typedef struct tok_strmap {
    tok_strmap_slot *slots;  /* [cap], cap a power of two */
    size_t cap, count;
    char *keys;              /* [keys_cap] NUL-separated copies of the keys */
    size_t keys_len, keys_cap;
} tok_strmap;

uint64_t tok_hash_bytes(const void *data, size_t len);
/* Inserts or overwrites key -> value. */
void tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t value);
/* Value of key, or -1. */
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len);
/* The stored copy of the key of a found entry (NUL-terminated), or NULL. */
const char *tok_strmap_key(const tok_strmap *m, const char *key, size_t len);
void tok_strmap_free(tok_strmap *m);

typedef struct tok_pair_slot {
    uint64_t key;     /* (left << 32 | right) + 1; 0 = empty */
    int32_t rank;
    int32_t merged;
} tok_pair_slot;

typedef struct tok_pairmap {
    tok_pair_slot *slots;  /* [cap], power of two */
    size_t cap, count;
} tok_pairmap;

void tok_pairmap_put(tok_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
/* Looks up (left, right); false when there is no merge. */
static inline bool tok_pairmap_get(const tok_pairmap *m, int32_t left, int32_t right, int32_t *rank, int32_t *merged) {
    if (m->cap == 0) return false;
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->cap - 1, i = (size_t)(h >> 20) & mask;
    for (;;) {
        const tok_pair_slot *s = &m->slots[i];
        if (s->key == key) {
            *rank = s->rank;
            *merged = s->merged;
            return true;
        }
        if (s->key == 0) return false;
        i = (i + 1) & mask;
    }
}
void tok_pairmap_free(tok_pairmap *m);

#endif
