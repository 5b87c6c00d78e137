/* engine_test.c — see engine_test.h. */
#include "engine_test.h"

#include <dirent.h>
#include <unistd.h>

static char scratch[4096];

const char *engine_scratch_dir(void) {
    if (scratch[0]) return scratch;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/dk_engine_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        exit(2);
    }
    return scratch;
}

static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *child = dk_sprintf("%s/%s", path, e->d_name);
        remove_tree(child);
        free(child);
    }
    closedir(d);
    rmdir(path);
}

void engine_scratch_cleanup(void) {
    if (scratch[0]) remove_tree(scratch);
    scratch[0] = '\0';
}

unsigned char *engine_read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open fixture %s (regenerate with tools/make_engine_fixtures.py)\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = dk_malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    buf[n] = 0;
    *size = (size_t)n;
    return buf;
}

void engine_write_all(const char *path, const void *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(bytes, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Deterministic mutations for the fuzz ctests */

/* xorshift64*: the same mutations on every machine. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
uint64_t engine_rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
size_t engine_rng_below(size_t n) { return n ? (size_t)(engine_rng() % n) : 0; }

static void set_header_len(uint8_t *buf, size_t size, uint64_t n) {
    for (int i = 0; i < 8 && (size_t)i < size; i++) buf[i] = (uint8_t)(n >> (8 * i));
}

size_t engine_mutate(const uint8_t *seed, size_t size, uint8_t *out, size_t cap, bool length_prefixed) {
    static const char *tokens[] = {"{", "}", "[", "]", ",", ":", "\"", "0", "-1", "1e400", "4294967296",
                                   "18446744073709551616", "\"BF16\"", "\"F4\"", "\"F8_E4M3\"", "\"__metadata__\"",
                                   "\"shape\"", "\"data_offsets\"", "\"dtype\"", "null", "[]", "{}", "\\u0000",
                                   "\xc3\xa9", "\xff", " ",
                                   /* config.json vocabulary */
                                   "\"rope_type\"", "\"yarn\"", "\"llama3\"", "\"layer_types\"", "\"text_config\"",
                                   "\"sliding_attention\"", "\"rope_parameters\"", "true", "1e308", "-0.0", "0.5"};
    enum { N_TOKENS = sizeof tokens / sizeof tokens[0] };
    size_t n = size < cap ? size : cap;
    memcpy(out, seed, n);
    size_t start = length_prefixed ? 8 : 0; /* where the text to mutate begins */
    uint64_t header_len = 0;
    for (int i = 7; i >= 0 && n >= 8 && length_prefixed; i--) header_len = (header_len << 8) | out[i];
    size_t header_end = length_prefixed && n >= 8 && header_len <= n - 8 ? 8 + (size_t)header_len : n;
    int rounds = 1 + (int)engine_rng_below(4);
    /* keep the length field consistent (half the time) so that the JSON parser is reached */
    bool fix_length = length_prefixed && engine_rng_below(2) == 0;
    for (int r = 0; r < rounds && n > 0; r++) {
        size_t at = start + engine_rng_below(header_end > start ? header_end - start : 1); 
        if (at >= n) at = engine_rng_below(n);
        switch (engine_rng_below(8)) {
        case 0: out[at] ^= (uint8_t)(1u << engine_rng_below(8)); break;
        case 1: out[at] = (uint8_t)engine_rng(); break;
        case 2: /* a digit becomes another digit: keeps the JSON valid, breaks shapes and offsets */
            for (size_t k = 0; k < 64; k++) {
                size_t p = start + engine_rng_below(header_end > start ? header_end - start : 1);
                if (p < n && out[p] >= '0' && out[p] <= '9') {
                    out[p] = (uint8_t)('0' + engine_rng_below(10));
                    break;
                }
            }
            break;
        case 3:
        case 4: { /* insert a token */
            const char *tok = tokens[engine_rng_below(N_TOKENS)];
            size_t len = strlen(tok);
            if (n + len > cap) break;
            memmove(out + at + len, out + at, n - at);
            memcpy(out + at, tok, len);
            n += len;
            if (at < header_end) header_end += len;
            break;
        }
        case 5: { /* delete a few bytes */
            size_t len = 1 + engine_rng_below(8);
            if (at + len > n) len = n - at;
            memmove(out + at, out + at + len, n - at - len);
            n -= len;
            if (at < header_end) header_end = header_end > len ? header_end - len : 0;
            break;
        }
        case 6: n = engine_rng_below(n + 1); break; /* truncate */
        case 7:
            if (length_prefixed) {
                set_header_len(out, n, engine_rng_below(2) ? engine_rng() : engine_rng_below(n + 16));
                fix_length = false;
            } else {
                out[at] = (uint8_t)"{}[]\",:0"[engine_rng_below(8)];
            }
            break;
        }
    }
    if (fix_length && n >= 8 && header_end >= 8 && header_end <= n) set_header_len(out, n, header_end - 8);
    return n;
}


size_t engine_replay_corpus(const char *path, int (*fn)(const uint8_t *data, size_t size)) {
    size_t size, at = 0, count = 0;
    unsigned char *packed = engine_read_all(path, &size);
    while (at < size) {
        if (size - at < 4) {
            fprintf(stderr, "%s: truncated record at byte %zu\n", path, at);
            exit(2);
        }
        size_t len = (size_t)packed[at] | (size_t)packed[at + 1] << 8 | (size_t)packed[at + 2] << 16 |
                     (size_t)packed[at + 3] << 24;
        at += 4;
        if (len > size - at) {
            fprintf(stderr, "%s: record %zu runs past the end\n", path, count);
            exit(2);
        }
        uint8_t *input = dk_malloc(len ? len : 1);
        memcpy(input, packed + at, len);
        fn(input, len);
        free(input);
        at += len;
        count++;
    }
    free(packed);
    return count;
}
