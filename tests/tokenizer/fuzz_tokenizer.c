/* fuzz_tokenizer.c — the fuzz target for the tokenizer.json loader, the encoder and the decoder.
 *
 * The first input byte picks what the rest is:
 *   0: a tokenizer.json. Load it; when it loads, encode a few short texts and decode a few ids with it.
 *   1: a text, encoded with each preloaded tokenizer (tests/fixtures/tokenizers: small_* and llama3_1,
 *      gemma3). Invalid UTF-8 must give an error, never a crash. For llama3_1 (byte-level, no normalizer)
 *      decode(encode(text)) must give the text back, and the batch encoder must agree with the single one.
 *   2: token ids (little-endian int32), decoded with each preloaded tokenizer; ids out of range must give
 *      an error.
 * Built two ways: with libFuzzer (clang, -DDIFFKIT_FUZZ=ON: fuzz_tokenizer) and as a plain program
 * (fuzz_driver.c: tok_fuzz_smoke) that replays the seed corpus plus seeded random mutations under ctest. */
#include "fuzz_tokenizer.h"

#include "core/error.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *PRELOADED[] = {"small_metaspace.json", "small_digits_split.json", "small_split_behaviors.json",
                                  "small_whitespace.json", "small_bytelevel_regex.json", "llama3_1", "gemma3"};
enum { N_PRELOADED = sizeof PRELOADED / sizeof PRELOADED[0], LLAMA_INDEX = 5 };
static dk_tokenizer *preloaded[N_PRELOADED];

static void preload(void) {
    static int done = 0;
    if (done) return;
    done = 1;
    const char *root = getenv("DIFFKIT_FIXTURES");
    if (!root) {
        fprintf(stderr, "fuzz_tokenizer: set DIFFKIT_FIXTURES to tests/fixtures\n");
        exit(2);
    }
    for (int i = 0; i < N_PRELOADED; i++) {
        char *path = dk_sprintf("%s/tokenizers/%s", root, PRELOADED[i]);
        dk_err err = {0};
        preloaded[i] = dk_tokenizer_load(path, &err);
        if (!preloaded[i]) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
            exit(2);
        }
        free(path);
    }
}

static void fuzz_json(const uint8_t *data, size_t size) {
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_from_json((const char *)data, size, "fuzz.json", &err);
    if (!tok) {
        if (!dk_err_is_set(&err) || err.msg[0] == '\0') abort(); /* a failure must say why */
        return;
    }
    static const char *texts[] = {"", "Hello world", "  a\tb\r\n", "<s>x</s> [RS] word", "éé 123 ☃"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        dk_tok_ids ids = {0};
        if (dk_tokenizer_encode(tok, texts[i], strlen(texts[i]), true, &ids, &err) == 0) {
            char *text = dk_tokenizer_decode(tok, ids.ids, ids.n, false, NULL, &err);
            free(text);
        }
        dk_tok_ids_free(&ids);
    }
    int32_t some[] = {0, 1, 2, dk_tokenizer_vocab_size(tok) - 1};
    free(dk_tokenizer_decode(tok, some, 4, true, NULL, &err));
    dk_tokenizer_free(tok);
}

static void fuzz_text(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    bool valid = dk_utf8_first_invalid(text, size) == size;
    char *copy = malloc(size + 1); /* NUL-terminated for the batch API */
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (int i = 0; i < N_PRELOADED; i++) {
        dk_err err = {0};
        dk_tok_ids ids = {0};
        int rc = dk_tokenizer_encode(preloaded[i], text, size, false, &ids, &err);
        if (rc != (valid ? 0 : -1)) abort();
        if (rc == 0) {
            size_t len;
            char *back = dk_tokenizer_decode(preloaded[i], ids.ids, ids.n, false, &len, &err);
            if (!back) abort(); /* every id we produce decodes */
            if (i == LLAMA_INDEX && (len != size || memcmp(back, text, size) != 0)) abort(); /* byte-level round trip */
            free(back);
            if (strlen(copy) == size) { /* the batch encoder gives the same ids */
                const char *one[1] = {copy};
                dk_tok_ids batch = {0};
                if (dk_tokenizer_encode_batch(preloaded[i], one, NULL, 1, false, 1, &batch, NULL, &err) != 0) abort();
                if (batch.n != ids.n || (ids.n && memcmp(batch.ids, ids.ids, ids.n * sizeof *ids.ids) != 0)) abort();
                dk_tok_ids_free(&batch);
            }
        }
        dk_tok_ids_free(&ids);
    }
    free(copy);
}

static void fuzz_ids(const uint8_t *data, size_t size) {
    size_t n = size / 4;
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    for (size_t k = 0; k < n; k++)
        ids[k] = (int32_t)((uint32_t)data[4 * k] | (uint32_t)data[4 * k + 1] << 8 | (uint32_t)data[4 * k + 2] << 16 |
                           (uint32_t)data[4 * k + 3] << 24);
    for (int i = 0; i < N_PRELOADED; i++) {
        int32_t vocab = dk_tokenizer_vocab_size(preloaded[i]);
        bool in_range = true;
        for (size_t k = 0; k < n; k++) {
            /* fold most ids into range so the decoders get exercised; keep a few wild ones */
            int32_t id = ids[k];
            if ((id & 0x70000000) != 0x70000000) id = (int32_t)((uint32_t)id % (uint32_t)vocab);
            in_range = in_range && dk_tokenizer_id_to_token(preloaded[i], id) != NULL;
            ids[k] = id;
        }
        for (int skip = 0; skip < 2; skip++) {
            dk_err err = {0};
            char *text = dk_tokenizer_decode(preloaded[i], ids, n, skip, NULL, &err);
            if ((text != NULL) != in_range) abort();
            if (text && dk_utf8_first_invalid(text, strlen(text)) != strlen(text)) abort(); /* decode gives UTF-8 */
            free(text);
        }
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    preload();
    switch (data[0] % 3) {
    case 0: fuzz_json(data + 1, size - 1); break;
    case 1: fuzz_text(data + 1, size - 1); break;
    default: fuzz_ids(data + 1, size - 1); break;
    }
    return 0;
}
