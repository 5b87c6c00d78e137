/* tok_strmap.c — open-addressing hash maps for the vocab and the merges (see tok_strmap.h). */
#include "tokenizer/tok_strmap.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a over 8-byte words with a final mix: fast on short tokens, good enough spread for linear probing. */
uint64_t tok_hash_bytes(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    while (len--) h = (h ^ *p++) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}

static void strmap_grow(tok_strmap *m) {
    size_t new_cap = m->cap ? m->cap * 2 : 1024;
    tok_strmap_slot *slots = dk_calloc(new_cap, sizeof *slots);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash) continue;
        size_t j = (size_t)m->slots[i].hash & (new_cap - 1);
        while (slots[j].hash) j = (j + 1) & (new_cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = new_cap;
}

static tok_strmap_slot *strmap_find(const tok_strmap *m, const char *key, size_t len, uint64_t h) {
    if (m->cap == 0) return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        tok_strmap_slot *s = &m->slots[i];
        if (!s->hash) return s;
        if (s->hash == h && s->key_len == len && memcmp(m->keys + s->key_off, key, len) == 0) return s;
    }
}

void tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t value) {
    CHECK(len < UINT32_MAX, "token of %zu bytes is too long", len);
    if ((m->count + 1) * 4 >= m->cap * 3) strmap_grow(m);
    uint64_t h = tok_hash_bytes(key, len);
    tok_strmap_slot *s = strmap_find(m, key, len, h);
    if (s->hash) {
        s->value = value;
        return;
    }
    if (m->keys_len + len + 1 > m->keys_cap) {
        size_t cap = m->keys_cap ? m->keys_cap : 1 << 16;
        while (cap < m->keys_len + len + 1) cap *= 2;
        m->keys = dk_realloc(m->keys, cap);
        m->keys_cap = cap;
    }
    CHECK(m->keys_len + len + 1 < UINT32_MAX, "vocabulary larger than 4 GiB");
    memcpy(m->keys + m->keys_len, key, len);
    m->keys[m->keys_len + len] = '\0';
    s->hash = h;
    s->key_off = (uint32_t)m->keys_len;
    s->key_len = (uint32_t)len;
    s->value = value;
    m->keys_len += len + 1;
    m->count++;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    const tok_strmap_slot *s = strmap_find(m, key, len, tok_hash_bytes(key, len));
    return s && s->hash ? s->value : -1;
}

const char *tok_strmap_key(const tok_strmap *m, const char *key, size_t len) {
    const tok_strmap_slot *s = strmap_find(m, key, len, tok_hash_bytes(key, len));
    return s && s->hash ? m->keys + s->key_off : NULL;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

static void pairmap_grow(tok_pairmap *m) {
    size_t new_cap = m->cap ? m->cap * 2 : 1024;
    tok_pair_slot *slots = dk_calloc(new_cap, sizeof *slots);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        uint64_t h = m->slots[i].key * 0x9E3779B97F4A7C15ull;
        size_t j = (size_t)(h >> 20) & (new_cap - 1);
        while (slots[j].key) j = (j + 1) & (new_cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = new_cap;
}

void tok_pairmap_put(tok_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    if ((m->count + 1) * 2 >= m->cap) pairmap_grow(m);
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->cap - 1, i = (size_t)(h >> 20) & mask;
    while (m->slots[i].key && m->slots[i].key != key) i = (i + 1) & mask;
    if (!m->slots[i].key) m->count++;
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].merged = merged;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}
