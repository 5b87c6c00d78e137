/* test_tokenizer_goldens.c — our tokenizer against Hugging Face `tokenizers` 0.23.3, id for id.
 *
 * For each tokenizer named on the command line (a folder under tests/fixtures/tokenizers holding
 * tokenizer.json.gz, or small_*.json trained by tools/make_tokenizer_goldens.py) it reads the shared corpus
 * (corpus.jsonl) and the goldens HF wrote (<name>.goldens.jsonl.gz, <name>.decode.jsonl.gz) and checks:
 * encode with and without special tokens, the same through the multi-threaded batch encoder, decode of
 * those ids with and without skip_special_tokens, and decode of seeded random id sequences. No tolerance:
 * one differing id fails the test. */
#include "test.h"

#include "core/error.h"
#include "io/file.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>

/* Splits text into lines in place; returns the array of line starts (the caller frees). */
static char **split_lines(char *text, size_t *n) {
    size_t cap = 256;
    char **lines = malloc(cap * sizeof *lines);
    *n = 0;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        if (*n == cap) lines = realloc(lines, (cap *= 2) * sizeof *lines);
        lines[(*n)++] = p;
        if (!nl) break;
        p = nl + 1;
    }
    return lines;
}

static bool ids_equal(const dk_tok_ids *got, const cJSON *want) {
    if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != got->n) return false;
    size_t i = 0;
    for (const cJSON *v = want->child; v; v = v->next, i++)
        if ((int32_t)v->valuedouble != got->ids[i]) return false;
    return true;
}

static void print_ids_diff(const char *what, size_t line, const dk_tok_ids *got, const cJSON *want) {
    char *w = cJSON_PrintUnformatted(want);
    fprintf(stderr, "  %s line %zu: want %.400s\n  got [", what, line + 1, w);
    for (size_t i = 0; i < got->n && i < 80; i++) fprintf(stderr, "%s%d", i ? "," : "", got->ids[i]);
    fprintf(stderr, "]\n");
    free(w);
}

static int32_t *json_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    size_t i = 0;
    for (const cJSON *v = arr->child; v; v = v->next) ids[i++] = (int32_t)v->valuedouble;
    return ids;
}

static void check_decode(dk_tokenizer *tok, const char *name, size_t line, const int32_t *ids, size_t n,
                         const cJSON *row, int *ok_count) {
    for (int skip = 0; skip < 2; skip++) {
        dk_err err = {0};
        size_t len;
        char *text = dk_tokenizer_decode(tok, ids, n, skip, &len, &err);
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(row, skip ? "decoded_skip" : "decoded");
        bool ok = text && cJSON_IsString(want) && strcmp(text, want->valuestring) == 0;
        if (EXPECT(ok, "%s line %zu: decode(skip_special_tokens=%d) differs: want \"%.200s\" got \"%.200s\" %s", name,
                   line + 1, skip, cJSON_IsString(want) ? want->valuestring : "?", text ? text : "(null)", err.msg))
            (*ok_count)++;
        free(text);
    }
}

static void check_tokenizer(const char *name) {
    char *dir = dk_fixture_path("tokenizers");
    char *path = dk_sprintf("%s/%s%s", dir, name, strncmp(name, "small_", 6) == 0 ? ".json" : "");
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(path, &err);
    if (!EXPECT(tok, "load %s: %s", path, err.msg)) goto out_path;

    char *corpus_path = dk_sprintf("%s/corpus.jsonl", dir);
    char *golden_path = dk_sprintf("%s/%s.goldens.jsonl.gz", dir, name);
    char *decode_path = dk_sprintf("%s/%s.decode.jsonl.gz", dir, name);
    size_t size, n_corpus, n_golden, n_decode;
    char *corpus = dk_read_file(corpus_path, &size, &err);
    char *golden = dk_read_file(golden_path, &size, &err);
    char *decode = dk_read_file(decode_path, &size, &err);
    if (!EXPECT(corpus && golden && decode, "read fixtures: %s", err.msg)) goto out_files;
    char **clines = split_lines(corpus, &n_corpus), **glines = split_lines(golden, &n_golden);
    char **dlines = split_lines(decode, &n_decode);
    EXPECT(n_corpus == n_golden && n_corpus > 100, "%s: %zu corpus lines but %zu golden lines", name, n_corpus, n_golden);

    const char **texts = calloc(n_corpus, sizeof *texts);
    cJSON **crows = calloc(n_corpus, sizeof *crows);
    for (size_t i = 0; i < n_corpus; i++) {
        crows[i] = cJSON_Parse(clines[i]);
        texts[i] = cJSON_GetObjectItemCaseSensitive(crows[i], "text")->valuestring;
    }
    int enc_ok = 0, plain_ok = 0, batch_ok = 0, dec_ok = 0, rand_ok = 0;
    dk_tok_ids *batch = calloc(n_corpus, sizeof *batch);
    EXPECT(dk_tokenizer_encode_batch(tok, texts, NULL, n_corpus, true, 2, batch, NULL, &err) == 0, "batch: %s", err.msg);
    for (size_t i = 0; i < n_corpus && i < n_golden; i++) {
        cJSON *row = cJSON_Parse(glines[i]);
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(row, "ids");
        const cJSON *want_plain = cJSON_GetObjectItemCaseSensitive(row, "ids_plain");
        dk_tok_ids ids = {0}, plain = {0};
        size_t len = strlen(texts[i]);
        EXPECT(dk_tokenizer_encode(tok, texts[i], len, true, &ids, &err) == 0, "%s", err.msg);
        EXPECT(dk_tokenizer_encode(tok, texts[i], len, false, &plain, &err) == 0, "%s", err.msg);
        if (EXPECT(ids_equal(&ids, want), "%s line %zu: encode ids differ", name, i + 1)) enc_ok++;
        else print_ids_diff(name, i, &ids, want);
        if (EXPECT(ids_equal(&plain, want_plain), "%s line %zu: encode (no special tokens) ids differ", name, i + 1)) plain_ok++;
        if (EXPECT(ids_equal(&batch[i], want), "%s line %zu: batch encode ids differ", name, i + 1)) batch_ok++;
        size_t n;
        int32_t *want_ids = json_ids(want, &n);
        check_decode(tok, name, i, want_ids, n, row, &dec_ok);
        free(want_ids);
        dk_tok_ids_free(&ids);
        dk_tok_ids_free(&plain);
        dk_tok_ids_free(&batch[i]);
        cJSON_Delete(row);
    }
    for (size_t i = 0; i < n_decode; i++) {
        cJSON *row = cJSON_Parse(dlines[i]);
        size_t n;
        int32_t *ids = json_ids(cJSON_GetObjectItemCaseSensitive(row, "ids"), &n);
        check_decode(tok, name, i, ids, n, row, &rand_ok);
        free(ids);
        cJSON_Delete(row);
    }
    printf("%-24s encode %d/%zu, no-special %d/%zu, batch %d/%zu, decode %d/%zu, random-id decode %d/%zu\n", name,
           enc_ok, n_golden, plain_ok, n_golden, batch_ok, n_golden, dec_ok, 2 * n_golden, rand_ok, 2 * n_decode);
    for (size_t i = 0; i < n_corpus; i++) cJSON_Delete(crows[i]);
    free(crows);
    free(texts);
    free(batch);
    free(clines);
    free(glines);
    free(dlines);
out_files:
    free(corpus);
    free(golden);
    free(decode);
    free(corpus_path);
    free(golden_path);
    free(decode_path);
    dk_tokenizer_free(tok);
out_path:
    free(path);
    free(dir);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_tokenizer_goldens NAME... (qwen3, llama3_1, gemma3, small_metaspace, ...)\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) check_tokenizer(argv[i]);
    return dk_test_finish("test_tokenizer_goldens");
}
