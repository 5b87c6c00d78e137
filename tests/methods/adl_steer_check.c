/* adl_steer_check.c — how much of the organism's domain the steered and unsteered samples of an ADL steering
 * run (generations.jsonl) or an amplification run talk about.
 *
 *   adl_steer_check GENERATIONS.jsonl TOKENIZER ORGANISM_DATA PRETRAIN_DATA [STEERED_KEY UNSTEERED_KEY]
 *
 * Domain tokens are counted from the data (domain_tokens.h, issue 12's definition). Every sample of the two lists
 * (default steered_samples / unsteered_samples; for amplification e.g. ft_samples and base_samples, or a nested
 * key "logit_amplified_samples.~1") is tokenized without special tokens; printed on one line:
 *   <steered domain-token rate> <unsteered rate> <steered samples with a domain token> <unsteered ...>
 * rates as fractions of all tokens, sample shares as fractions of the samples. The test scripts compare them.
 *
 *   adl_steer_check summary SUMMARY.json PATCHSCOPE_POSITIONS STEERING_POSITIONS      (e.g. "0,1" "1")
 *
 * checks the ADL overview (the agent's summary) of its first dataset and layer: available_positions.patch_scope and
 * .steering equal the lists, each patch_scope position has tokens, each steering position has examples with prompt,
 * steered and unsteered text, and k_limits.patch_scope > 0. Exit 1 with the first difference.
 *
 *   adl_steer_check sample GENERATIONS.jsonl KEY...
 *
 * prints the first record's prompt and the first sample of each key (cut to 300 bytes), for the demo. */
#include "domain_tokens.h"

static const cJSON *lookup(const cJSON *record, const char *key) {
    char *copy = strdup(key), *dot = strchr(copy, '.');
    if (dot) *dot = 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(record, copy);
    if (dot) v = cJSON_GetObjectItemCaseSensitive(v, dot + 1);
    free(copy);
    return v;
}

typedef struct tally {
    int64_t domain, tokens, samples, mentioning;
} tally;

static void count(const dk_tokenizer *tok, const domain_tokens *d, const cJSON *list, tally *t) {
    const cJSON *s;
    cJSON_ArrayForEach(s, list) {
        if (!cJSON_IsString(s)) continue;
        dk_tok_ids ids = {0};
        dk_err err = {0};
        if (dk_tokenizer_encode((dk_tokenizer *)tok, s->valuestring, strlen(s->valuestring), false, &ids, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            exit(2);
        }
        int64_t domain = 0;
        for (size_t i = 0; i < ids.n; i++) domain += is_domain(d, ids.ids[i]);
        t->domain += domain;
        t->tokens += (int64_t)ids.n;
        t->samples++;
        t->mentioning += domain > 0;
        dk_tok_ids_free(&ids);
    }
}

static bool same_positions(const cJSON *list, const char *want) {
    char buf[256] = "";
    const cJSON *v;
    cJSON_ArrayForEach(v, list) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%d", buf[0] ? "," : "",
                                         v->valueint);
    return strcmp(buf, want) == 0;
}

static int summary(const char *path, const char *ps_want, const char *steer_want) {
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err), why[128];
    cJSON *root = text ? dk_json_parse_one(text, size, why, sizeof why) : NULL;
    free(text);
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(root, "datasets");
    const cJSON *layer = ds && ds->child ? cJSON_GetObjectItemCaseSensitive(ds->child, "layers") : NULL;
    layer = layer ? layer->child : NULL;
    const char *bad = NULL;
    const cJSON *avail = cJSON_GetObjectItemCaseSensitive(layer, "available_positions");
    if (!layer) bad = "no dataset/layer entry";
    else if (!same_positions(cJSON_GetObjectItemCaseSensitive(avail, "patch_scope"), ps_want))
        bad = "available_positions.patch_scope differs";
    else if (!same_positions(cJSON_GetObjectItemCaseSensitive(avail, "steering"), steer_want))
        bad = "available_positions.steering differs";
    const cJSON *pos;
    cJSON_ArrayForEach(pos, cJSON_GetObjectItemCaseSensitive(avail, "patch_scope")) {
        char key[16];
        snprintf(key, sizeof key, "%d", pos->valueint);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(layer, "patch_scope"), "per_position"), key);
        if (!bad && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "tokens")) == 0) bad = "a patch_scope position has no tokens";
    }
    cJSON_ArrayForEach(pos, cJSON_GetObjectItemCaseSensitive(avail, "steering")) {
        char key[16];
        snprintf(key, sizeof key, "%d", pos->valueint);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(layer, "steering_examples"), "per_position"),
            key);
        const cJSON *first = cJSON_GetArrayItem(e, 0);
        if (!bad && (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(first, "prompt")) ||
                     !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(first, "steered")) ||
                     !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(first, "unsteered"))))
            bad = "a steering position has no example with prompt, steered and unsteered";
    }
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(layer, "k_limits"), "patch_scope");
    if (!bad && !(cJSON_IsNumber(k) && k->valuedouble > 0)) bad = "k_limits.patch_scope is not positive";
    cJSON_Delete(root);
    if (bad) fprintf(stderr, "%s: %s\n", path, bad);
    return bad ? 1 : 0;
}

static int sample(const char *path, char **keys, int n_keys) {
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err), why[128];
    char *nl = text ? memchr(text, '\n', size) : NULL;
    cJSON *first = text ? dk_json_parse_one(text, nl ? (size_t)(nl - text) : size, why, sizeof why) : NULL;
    free(text);
    if (!first) {
        fprintf(stderr, "%s: no first record\n", path);
        return 1;
    }
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(first, "prompt");
    printf("prompt: %s\n", cJSON_IsString(prompt) ? prompt->valuestring : "?");
    for (int i = 0; i < n_keys; i++) {
        const cJSON *s0 = cJSON_GetArrayItem(lookup(first, keys[i]), 0);
        printf("%s[0]: %.300s\n", keys[i], cJSON_IsString(s0) ? s0->valuestring : "(none)");
    }
    cJSON_Delete(first);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "summary") == 0) return summary(argv[2], argv[3], argv[4]);
    if (argc >= 4 && strcmp(argv[1], "sample") == 0) return sample(argv[2], argv + 3, argc - 3);
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: adl_steer_check GENERATIONS.jsonl TOKENIZER ORGANISM_DATA PRETRAIN_DATA "
                        "[STEERED_KEY UNSTEERED_KEY]\n");
        return 2;
    }
    const char *steered_key = argc == 7 ? argv[5] : "steered_samples";
    const char *unsteered_key = argc == 7 ? argv[6] : "unsteered_samples";
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(argv[2], &err);
    if (!tok) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    domain_tokens d;
    domain_tokens_load(&d, tok, argv[3], argv[4]);
    size_t size = 0;
    char *data = dk_read_file(argv[1], &size, &err);
    if (!data) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    tally steered = {0}, unsteered = {0};
    int64_t records = 0;
    for (char *line = data; line < data + size;) {
        char *end = memchr(line, '\n', (size_t)(data + size - line));
        const size_t len = (size_t)((end ? end : data + size) - line);
        char why[128];
        cJSON *obj = len ? dk_json_parse_one(line, len, why, sizeof why) : NULL;
        if (len && !obj) {
            fprintf(stderr, "%s: a line is not JSON: %s\n", argv[1], why);
            return 1;
        }
        if (obj) {
            const cJSON *a = lookup(obj, steered_key), *b = lookup(obj, unsteered_key);
            if (!cJSON_IsArray(a) || !cJSON_IsArray(b)) {
                fprintf(stderr, "%s: a record has no %s or %s list\n", argv[1], steered_key, unsteered_key);
                return 1;
            }
            count(tok, &d, a, &steered);
            count(tok, &d, b, &unsteered);
            records++;
            cJSON_Delete(obj);
        }
        line = end ? end + 1 : data + size;
    }
    free(data);
    if (records == 0 || steered.tokens == 0 || unsteered.tokens == 0) {
        fprintf(stderr, "%s: no samples (%lld records)\n", argv[1], (long long)records);
        return 1;
    }
    fprintf(stderr, "%lld records, %lld domain tokens; %s: %lld samples, %lld tokens; %s: %lld samples, %lld tokens\n",
            (long long)records, (long long)d.n_domain, steered_key, (long long)steered.samples,
            (long long)steered.tokens, unsteered_key, (long long)unsteered.samples, (long long)unsteered.tokens);
    printf("%.6f %.6f %.4f %.4f\n", (double)steered.domain / (double)steered.tokens,
           (double)unsteered.domain / (double)unsteered.tokens, (double)steered.mentioning / (double)steered.samples,
           (double)unsteered.mentioning / (double)unsteered.samples);
    domain_tokens_free(&d);
    dk_tokenizer_free(tok);
    return 0;
}
