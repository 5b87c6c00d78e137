/* domain_tokens.h — the organism's domain tokens, counted from the data with the model's tokenizer (never a fixed
 * list): a token occurs at least 10 times in the organism's training documents and is at least 20 times more
 * frequent there, per token of text, than in the pretraining dataset (issue 12's definition). Shared by the
 * meaning checks of diff mining (dm_domain_check.c) and the dictionary methods (dict_meaning_check.c). */
#ifndef DK_TESTS_DOMAIN_TOKENS_H
#define DK_TESTS_DOMAIN_TOKENS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "io/json_value.h"
#include "tokenizer/tokenizer.h"

/* Token counts of the "text" field of every record of a JSON Lines file; *total = all tokens. */
static inline int64_t *count_tokens(const dk_tokenizer *tok, const char *path, int64_t *total) {
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

typedef struct domain_tokens {
    int32_t V;
    int64_t n_org, n_pre, n_domain;
    int64_t *org, *pre;      /* (V) counts in the organism's documents and in the pretraining texts */
} domain_tokens;

static inline bool is_domain(const domain_tokens *d, int64_t v) {
    return v >= 0 && v < d->V && d->org[v] >= 10 &&
           (double)d->org[v] / (double)d->n_org >= 20.0 * (double)d->pre[v] / (double)d->n_pre;
}

static inline void domain_tokens_load(domain_tokens *d, const dk_tokenizer *tok, const char *org_path,
                                      const char *pre_path) {
    d->org = count_tokens(tok, org_path, &d->n_org);
    d->pre = count_tokens(tok, pre_path, &d->n_pre);
    d->V = dk_tokenizer_vocab_size(tok);
    d->n_domain = 0;
    for (int32_t v = 0; v < d->V; v++) d->n_domain += is_domain(d, v);
}

static inline void domain_tokens_free(domain_tokens *d) { free(d->org), free(d->pre); }

#endif
