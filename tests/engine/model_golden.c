/* model_golden.c — see model_golden.h. */
#include "model_golden.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/file.h"

void golden_tokens_read(const char *path, golden_tokens *t) {
    dk_err err = {0};
    size_t size;
    char *text = dk_read_file(path, &size, &err);
    if (!text) dk_die(&err);
    memset(t, 0, sizeof *t);
    size_t cap_seqs = 16, cap_ids = 256;
    t->ids = dk_malloc(cap_ids * sizeof *t->ids);
    t->seq_start = dk_malloc((cap_seqs + 1) * sizeof *t->seq_start);
    t->seq_start[0] = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *root = cJSON_Parse(line);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "ids");
        CHECK(cJSON_IsArray(ids), "%s: a line without \"ids\"", path);
        const cJSON *id;
        cJSON_ArrayForEach(id, ids) {
            if ((size_t)t->n_tokens == cap_ids) t->ids = dk_realloc(t->ids, (cap_ids *= 2) * sizeof *t->ids);
            t->ids[t->n_tokens++] = (int64_t)id->valuedouble;
        }
        if ((size_t)t->n_seqs == cap_seqs)
            t->seq_start = dk_realloc(t->seq_start, ((cap_seqs *= 2) + 1) * sizeof *t->seq_start);
        t->seq_start[++t->n_seqs] = t->n_tokens;
        cJSON_Delete(root);
    }
    free(text);
}

char *golden_model_dir(const char *name) {
    const char *root = getenv("DIFFKIT_FIXTURES");
    if (!root) {
        fprintf(stderr, "DIFFKIT_FIXTURES is not set: run this test through ctest\n");
        exit(2);
    }
    return dk_sprintf("%s/engine/models/%s", root, name);
}

void golden_tokens_read_model(const char *name, golden_tokens *t) {
    char *dir = golden_model_dir(strcmp(name, "llama_f32") == 0 ? "llama" : name);
    char *path = dk_path_join(dir, "tokens.jsonl");
    golden_tokens_read(path, t);
    free(path);
    free(dir);
}

void golden_open_lora(const char *name, const char *adapter_dir, dk_model *m, dk_lora_adapter *a) {
    char *dir = golden_model_dir(name);
    dk_err err = {0};
    CHECK(dk_model_open(dir, m, &err) == 0, "%s", err.msg);
    CHECK(dk_lora_load(adapter_dir, &m->cfg, &m->w, a, &err) == 0, "%s", err.msg);
    free(dir);
}

/* Appends the ids of a JSON array to ids (n of them so far, capacity cap). */
static void append_ids(const cJSON *arr, int64_t **ids, int64_t *n, size_t *cap) {
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if ((size_t)*n == *cap) *ids = dk_realloc(*ids, (*cap *= 2) * sizeof **ids);
        (*ids)[(*n)++] = (int64_t)v->valuedouble;
    }
}

void golden_generation_read(const char *name, golden_generation *g) {
    char *dir = golden_model_dir(name), *path = dk_path_join(dir, "generate.json");
    dk_err err = {0};
    size_t size;
    char *text = dk_read_file(path, &size, &err);
    if (!text) dk_die(&err);
    cJSON *root = cJSON_Parse(text);
    CHECK(cJSON_IsArray(root), "%s: not a JSON array", path);
    g->n = cJSON_GetArraySize(root);
    size_t cap_p = 64, cap_o = 64;
    int64_t np = 0, no = 0;
    g->prompt_ids = dk_malloc(cap_p * sizeof(int64_t));
    g->output_ids = dk_malloc(cap_o * sizeof(int64_t));
    g->prompt_start = dk_malloc((size_t)(g->n + 1) * sizeof(int64_t));
    g->output_start = dk_malloc((size_t)(g->n + 1) * sizeof(int64_t));
    g->prompt_start[0] = g->output_start[0] = 0;
    for (int i = 0; i < g->n; i++) {
        const cJSON *item = cJSON_GetArrayItem(root, i);
        append_ids(cJSON_GetObjectItemCaseSensitive(item, "prompt"), &g->prompt_ids, &np, &cap_p);
        append_ids(cJSON_GetObjectItemCaseSensitive(item, "output"), &g->output_ids, &no, &cap_o);
        g->prompt_start[i + 1] = np;
        g->output_start[i + 1] = no;
    }
    cJSON_Delete(root);
    free(text);
    free(path);
    free(dir);
}

void golden_generation_free(golden_generation *g) {
    free(g->prompt_ids);
    free(g->prompt_start);
    free(g->output_ids);
    free(g->output_start);
    memset(g, 0, sizeof *g);
}

void golden_tokens_free(golden_tokens *t) {
    free(t->ids);
    free(t->seq_start);
    memset(t, 0, sizeof *t);
}

float *golden_load(const dk_st_checkpoint *golden, const char *name, int64_t expect_numel) {
    dk_err err = {0};
    const dk_st_tensor *t = dk_st_get(golden, name, &err);
    if (!t) dk_die(&err);
    CHECK(t->numel == expect_numel, "golden %s has %lld values, expected %lld (regenerate the goldens)", name,
          (long long)t->numel, (long long)expect_numel);
    float *v = dk_st_load_f32(t, &err);
    if (!v) dk_die(&err);
    return v;
}

double golden_rel_error(const float *got, const float *want, int64_t n) {
    double max_diff = 0, max_want = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= max_diff)) max_diff = d; /* NaN propagates */
        if (fabs(want[i]) > max_want) max_want = fabs(want[i]);
    }
    return max_want > 0 ? max_diff / max_want : max_diff;
}

static int64_t argmax(const float *row, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

int64_t golden_argmax_mismatches(const float *got, const float *want, int64_t rows, int64_t cols) {
    int64_t bad = 0;
    for (int64_t r = 0; r < rows; r++) bad += argmax(got + r * cols, cols) != argmax(want + r * cols, cols);
    return bad;
}
