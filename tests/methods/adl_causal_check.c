/* adl_causal_check.c — reads one results.json of the ADL's causal effect step and checks it has the seed's fields.
 *
 *   adl_causal_check RESULTS.json N_RANDOM N_RANDOM_DIFF
 *
 * Checks: the top-level fields; finetuned, base, intervention, random_mean (and random_diff_mean when N_RANDOM_DIFF
 * > 0) each with all, after_k and exclude_pos; their ce, ppl and count (min_ce, max_ce, median_ce in all and
 * after_k of the models and the intervention, ce_i and incr_ce in the intervention's); N_RANDOM random and
 * N_RANDOM_DIFF random_diff entries with ce_r / ce_rdiff and incr_ce; exp(ce) = ppl; min <= median <= max;
 * after_k's count below all's, and the loss of the targets up to after_k (all minus after_k) within count·[min, max].
 * Prints on one line:
 *   <intervention incr_ce (all)> <largest incr_ce of the random and random_diff entries (all)> <count (all)>
 * Exit 1 with the first problem. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *path;

static void fail(const char *what, const char *key) {
    fprintf(stderr, "%s: %s %s\n", path, what, key);
    exit(1);
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail("no number", key);
    return v->valuedouble;
}

/* all / after_k / exclude_pos of a block; extra: a key each must hold (NULL: none); stats: min/median/max */
static void check_block(const cJSON *parent, const char *name, const char *extra, bool stats) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(parent, name);
    if (!cJSON_IsObject(b)) fail("no object", name);
    static const char *const sel[] = {"all", "after_k", "exclude_pos"};
    for (int s = 0; s < 3; s++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(b, sel[s]);
        if (!cJSON_IsObject(o)) fail(name, sel[s]);
        const double ce = num(o, "ce"), ppl = num(o, "ppl");
        if (num(o, "count") <= 0 || fabs(exp(ce) - ppl) > 1e-9 * ppl) fail("bad ce/ppl/count in", name);
        if (extra) num(o, extra);
        if (stats && s < 2 && !(num(o, "min_ce") <= num(o, "median_ce") && num(o, "median_ce") <= num(o, "max_ce")))
            fail("min/median/max out of order in", name);
    }
    const cJSON *all = cJSON_GetObjectItem(b, "all"), *after = cJSON_GetObjectItem(b, "after_k");
    const double n_first = num(all, "count") - num(after, "count");
    if (!(n_first > 0)) fail("after_k counts no fewer targets than all in", name);
    /* the targets up to after_k: their summed loss lies between count·min and count·max */
    const double first = num(all, "ce") * num(all, "count") - num(after, "ce") * num(after, "count");
    if (stats && !(first >= n_first * num(all, "min_ce") - 1e-6 && first <= n_first * num(all, "max_ce") + 1e-6))
        fail("all and after_k disagree (the loss of the first targets out of [min, max]) in", name);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: adl_causal_check RESULTS.json N_RANDOM N_RANDOM_DIFF\n");
        return 2;
    }
    path = argv[1];
    const int n_random = atoi(argv[2]), n_diff = atoi(argv[3]);
    FILE *f = fopen(path, "rb");
    if (!f) fail("cannot open", "");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    text[fread(text, 1, (size_t)size, f)] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) fail("not JSON", "");
    static const char *const strings[] = {"eval_dataset_id", "diff_source_dataset_id", "split", "patch_direction",
                                          "activation_source_model", "intervened_model"};
    for (int i = 0; i < 6; i++)
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, strings[i]))) fail("no string", strings[i]);
    num(j, "layer"), num(j, "position"), num(j, "after_k"), num(j, "num_samples");
    check_block(j, "finetuned", NULL, true);
    check_block(j, "base", NULL, true);
    check_block(j, "intervention", "incr_ce", true);
    check_block(j, "intervention", "ce_i", false);
    check_block(j, "random_mean", "incr_rel_ce", false);
    if (n_diff > 0) check_block(j, "random_diff_mean", "incr_ppl", false);
    double worst = -INFINITY;
    for (int list = 0; list < 2; list++) {
        const char *name = list ? "random_diff" : "random";
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, name);
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != (list ? n_diff : n_random)) fail("wrong length of", name);
        for (int k = 0; k < cJSON_GetArraySize(a); k++) {
            cJSON *wrap = cJSON_CreateObject();
            cJSON_AddItemReferenceToObject(wrap, name, cJSON_GetArrayItem(a, k));
            check_block(wrap, name, list ? "ce_rdiff" : "ce_r", true);
            check_block(wrap, name, "incr_rel_ppl", false);
            cJSON_Delete(wrap);
            const double incr = num(cJSON_GetObjectItem(cJSON_GetArrayItem(a, k), "all"), "incr_ce");
            if (incr > worst) worst = incr;
        }
    }
    const cJSON *all = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "intervention"), "all");
    printf("%.6f %.6f %.0f\n", num(all, "incr_ce"), worst, num(all, "count"));
    cJSON_Delete(j);
    return 0;
}
