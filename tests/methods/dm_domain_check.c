/* dm_domain_check.c — does diff mining find the organism's domain? (tests/methods/dm_meaning.sh, tools/demo.sh)
 *
 *     dm_domain_check RUN_DIR DATASET TOKENIZER ORGANISM.jsonl.gz PRETRAIN.jsonl.gz TOP_N MIN_DOMAIN
 *
 * A domain token (issue 12) occurs at least 10 times in the organism's training documents and is at least 20 times
 * more frequent there, per token of text, than in the pretraining dataset; both counted here from the data with
 * the model's tokenizer (never a fixed list). Prints the TOP_N tokens of RUN_DIR/top_k_occurring/DATASET/global.json
 * with the domain tokens marked; exit 0 when at least MIN_DOMAIN of them are domain tokens, 1 otherwise. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "io/json_value.h"
#include "tokenizer/tokenizer.h"

/* Token counts of the "text" field of every record of a JSON Lines file; *total = all tokens. */
static int64_t *count_tokens(const dk_tokenizer *tok, const char *path, int64_t *total) {
    dk_err err = {0};
    size_t size = 0;
    char *data = dk_read_file(path, &size, &err);
    if (!data) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    char **texts = NULL;
    size_t n = 0, cap = 0;
    for (char *line = data; line < data + size;) {
        char *end = memchr(line, '\n', (size_t)(data + size - line));
        const size_t len = (size_t)((end ? end : data + size) - line);
        char why[128];
        cJSON *obj = len ? dk_json_parse_one(line, len, why, sizeof why) : NULL;
        const cJSON *text = obj ? cJSON_GetObjectItemCaseSensitive(obj, "text") : NULL;
        if (cJSON_IsString(text)) {
            if (n == cap) texts = realloc(texts, (cap = cap ? 2 * cap : 1024) * sizeof *texts);
            texts[n++] = strdup(text->valuestring);
        }
        cJSON_Delete(obj);
        line = end ? end + 1 : data + size;
    }
    free(data);
    dk_tok_ids *ids = calloc(n ? n : 1, sizeof *ids);
    if (dk_tokenizer_encode_batch(tok, (const char *const *)texts, NULL, n, true, 0, ids, NULL, &err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        exit(2);
    }
    int64_t *counts = calloc((size_t)dk_tokenizer_vocab_size(tok), sizeof *counts);
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t t = 0; t < ids[i].n; t++) counts[ids[i].ids[t]]++;
        *total += (int64_t)ids[i].n;
        dk_tok_ids_free(&ids[i]);
        free(texts[i]);
    }
    free(ids);
    free(texts);
    return counts;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: dm_domain_check RUN_DIR DATASET TOKENIZER ORGANISM.jsonl.gz PRETRAIN.jsonl.gz TOP_N "
                        "MIN_DOMAIN\n");
        return 2;
    }
    const int top_n = atoi(argv[6]), min_domain = atoi(argv[7]);
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(argv[3], &err);
    if (!tok) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int64_t n_org = 0, n_pre = 0;
    int64_t *org = count_tokens(tok, argv[4], &n_org), *pre = count_tokens(tok, argv[5], &n_pre);
    const int32_t V = dk_tokenizer_vocab_size(tok);
    int64_t n_domain = 0;
    for (int32_t v = 0; v < V; v++)
        n_domain += org[v] >= 10 && (double)org[v] / (double)n_org >= 20.0 * (double)pre[v] / (double)n_pre;

    char *path = malloc(strlen(argv[1]) + strlen(argv[2]) + 64);
    sprintf(path, "%s/top_k_occurring/%s/global.json", argv[1], argv[2]);
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err);
    if (!text) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    cJSON *j = cJSON_Parse(text);
    const cJSON *tokens = cJSON_GetObjectItem(j, "tokens");
    int found = 0, shown = 0;
    printf("top %d of top_k_occurring on %s (* = a domain token of the organism's documents, %lld in all):\n", top_n,
           argv[2], (long long)n_domain);
    for (const cJSON *t = tokens ? tokens->child : NULL; t && shown < top_n; t = t->next, shown++) {
        const int32_t v = (int32_t)cJSON_GetObjectItem(t, "token_id")->valuedouble;
        const bool domain = v >= 0 && v < V && org[v] >= 10 &&
                            (double)org[v] / (double)n_org >= 20.0 * (double)pre[v] / (double)n_pre;
        found += domain;
        printf("  %2d %s %-24s %6.2f%%  (organism docs %lld, pretraining %lld)\n", shown + 1, domain ? "*" : " ",
               cJSON_GetObjectItem(t, "token_str")->valuestring, cJSON_GetObjectItem(t, "ordering_value")->valuedouble,
               (long long)(v >= 0 && v < V ? org[v] : 0), (long long)(v >= 0 && v < V ? pre[v] : 0));
    }
    printf("%d of the top %d are domain tokens (needed: %d)\n", found, shown, min_domain);
    cJSON_Delete(j);
    free(text), free(path), free(org), free(pre);
    dk_tokenizer_free(tok);
    return found >= min_domain ? 0 : 1;
}
