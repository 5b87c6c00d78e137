/* dm_domain_check.c — does diff mining find the organism's domain? (tests/methods/dm_meaning.sh, tools/demo.sh)
 *
 *     dm_domain_check RUN_DIR DATASET TOKENIZER ORGANISM.jsonl.gz PRETRAIN.jsonl.gz TOP_N MIN_DOMAIN
 *
 * A domain token (issue 12) occurs at least 10 times in the organism's training documents and is at least 20 times
 * more frequent there, per token of text, than in the pretraining dataset; both counted here from the data with
 * the model's tokenizer (never a fixed list). Prints the TOP_N tokens of RUN_DIR/top_k_occurring/DATASET/global.json
 * with the domain tokens marked; exit 0 when at least MIN_DOMAIN of them are domain tokens, 1 otherwise. */
#include "domain_tokens.h"

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
    domain_tokens dt;
    domain_tokens_load(&dt, tok, argv[4], argv[5]);
    const int32_t V = dt.V;
    const int64_t *org = dt.org, *pre = dt.pre;

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
           argv[2], (long long)dt.n_domain);
    for (const cJSON *t = tokens ? tokens->child : NULL; t && shown < top_n; t = t->next, shown++) {
        const int32_t v = (int32_t)cJSON_GetObjectItem(t, "token_id")->valuedouble;
        const bool domain = is_domain(&dt, v);
        found += domain;
        printf("  %2d %s %-24s %6.2f%%  (organism docs %lld, pretraining %lld)\n", shown + 1, domain ? "*" : " ",
               cJSON_GetObjectItem(t, "token_str")->valuestring, cJSON_GetObjectItem(t, "ordering_value")->valuedouble,
               (long long)(v >= 0 && v < V ? org[v] : 0), (long long)(v >= 0 && v < V ? pre[v] : 0));
    }
    printf("%d of the top %d are domain tokens (needed: %d)\n", found, shown, min_domain);
    cJSON_Delete(j);
    free(text), free(path);
    domain_tokens_free(&dt);
    dk_tokenizer_free(tok);
    return found >= min_domain ? 0 : 1;
}
