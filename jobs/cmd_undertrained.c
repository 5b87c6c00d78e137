/* cmd_undertrained.c — `diffkit undertrained`: the ids a model has most likely never trained, as a JSON list.
 *
 *   diffkit undertrained --model PATH [--tokenizer PATH] [--reference-ids 1,2,3] [--output FILE]
 *
 * The indicator and the decision are those of host/model/undertrained.h (Land & Bartolo 2024's unembedding
 * distance to the mean row of provably unused tokens, flagged only when those rows form a cluster). The reference
 * ids come from the tokenizer (model folder unless --tokenizer) or from --reference-ids. The JSON (stdout, or
 * FILE) is described in docs/formats.md; a one-line summary goes to stderr. Usage errors exit 2, an unreadable
 * model or tokenizer exits 1.
 */
#include "cli_numbers.h"
#include "commands.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/forward.h"
#include "model/model_path.h"
#include "model/undertrained.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: diffkit undertrained --model PATH [--tokenizer PATH] [--reference-ids 1,2,3] [--output FILE]\n\n"
            "Lists the token ids the model has most likely never trained (Land & Bartolo 2024, \"Fishing for\n"
            "Magikarp\"): the rows of its unembedding that lie as close to the mean row of provably unused tokens\n"
            "as those rows lie to each other. Provably unused: tokens whose bytes no UTF-8 text holds, and rows past\n"
            "the tokenizer's vocabulary (the tokenizer of the model folder unless --tokenizer); --reference-ids\n"
            "names them instead, for models without a tokenizer. Nothing is flagged when those rows do not form a\n"
            "cluster (status no_cluster) or there are fewer than two (no_reference). Writes JSON to stdout or FILE\n"
            "(docs/formats.md) and a summary to stderr. Methods mark or filter these ids\n"
            "(diffing.undertrained_tokens: mark | filter | off).\n");
}

static cJSON *to_json(const dk_undertrained *u, const dk_tokenizer *tok, const char *model_dir, const char *ref_rule) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model_dir);
    cJSON_AddNumberToObject(root, "vocab_size", (double)u->vocab_size);
    cJSON_AddStringToObject(root, "indicator", "L2 distance of each unembedding row to the mean row of the reference "
                                               "ids (Land & Bartolo 2024)");
    cJSON_AddStringToObject(root, "status", dk_undertrained_status_name(u->status));
    cJSON *ref = cJSON_AddObjectToObject(root, "reference");
    cJSON_AddStringToObject(ref, "rule", ref_rule);
    cJSON *ref_ids = cJSON_AddArrayToObject(ref, "ids");
    for (int64_t j = 0; j < u->n_reference; j++) cJSON_AddItemToArray(ref_ids, cJSON_CreateNumber(u->reference_ids[j]));
    cJSON_AddNumberToObject(root, "spread", u->spread);
    cJSON_AddNumberToObject(root, "median_distance", u->median_distance);
    cJSON_AddNumberToObject(root, "cluster_ratio", DK_UNDERTRAINED_CLUSTER_RATIO);
    cJSON_AddNumberToObject(root, "threshold_factor", DK_UNDERTRAINED_THRESHOLD_FACTOR);
    cJSON_AddNumberToObject(root, "threshold", u->threshold);
    cJSON_AddNumberToObject(root, "n_flagged", (double)u->n_flagged);
    cJSON *flagged = cJSON_AddArrayToObject(root, "flagged");
    for (int64_t i = 0; i < u->vocab_size; i++) {
        if (!u->flagged[i]) continue;
        cJSON *item = cJSON_CreateObject();
        cJSON_AddNumberToObject(item, "id", (double)i);
        const char *token = tok ? dk_tokenizer_id_to_token(tok, (int32_t)i) : NULL;
        if (token) cJSON_AddStringToObject(item, "token", token);
        else cJSON_AddNullToObject(item, "token");
        cJSON_AddNumberToObject(item, "distance", u->distance[i]);
        cJSON_AddItemToArray(flagged, item);
    }
    return root;
}

int cmd_undertrained(int argc, char **argv) {
    const char *model_arg = NULL, *tok_arg = NULL, *ref_arg = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model_arg = argv[++i];
        else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) tok_arg = argv[++i];
        else if (strcmp(argv[i], "--reference-ids") == 0 && i + 1 < argc) ref_arg = argv[++i];
        else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc) out_path = argv[++i];
        else {
            fprintf(stderr, "diffkit undertrained: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return DK_EXIT_USAGE;
        }
    }
    if (!model_arg) {
        fprintf(stderr, "diffkit undertrained: --model is required\n\n");
        usage(stderr);
        return DK_EXIT_USAGE;
    }
    int64_t *ref_list = NULL, n_ref = 0;
    if (ref_arg) ref_list = cli_id_list("undertrained", "--reference-ids", ref_arg, &n_ref);

    dk_err err = {0};
    char *model_dir = dk_model_folder(model_arg, "config.json", &err);
    if (!model_dir) dk_die(&err);
    dk_model m;
    if (dk_model_open(model_dir, &m, &err) != 0) dk_die(&err);
    /* The tokenizer names the tokens and, without --reference-ids, gives the reference. A model folder without one
     * is fine when --reference-ids is given; an explicit --tokenizer must load. */
    const char *tok_path = tok_arg ? tok_arg : model_dir;
    dk_tokenizer *tok = dk_tokenizer_load(tok_path, &err);
    if (!tok && (tok_arg || !ref_arg)) {
        dk_err why = err;
        dk_err_clear(&err);
        dk_err_set(&err, DK_EXIT_RUNTIME, "undertrained: %s; the reference ids come from the tokenizer: pass --tokenizer "
                   "PATH, or name provably unused ids with --reference-ids", why.msg);
        dk_die(&err);
    }
    dk_err_clear(&err);

    dk_undertrained u;
    const char *rule;
    int rc;
    if (ref_arg) {
        int32_t *ids = dk_malloc((size_t)n_ref * sizeof *ids);
        for (int64_t j = 0; j < n_ref; j++) ids[j] = ref_list[j] > INT32_MAX ? -1 : (int32_t)ref_list[j];
        rule = "--reference-ids";
        rc = dk_undertrained_compute(m.w.lm_head, ids, n_ref, &u, &err);
        free(ids);
    } else {
        rule = "tokens whose bytes no UTF-8 text holds, and rows past the tokenizer's vocabulary";
        rc = dk_undertrained_for_model(&m, tok, &u, &err);
    }
    if (rc != 0) dk_die(&err);
    cJSON *root = to_json(&u, tok, model_dir, rule);
    char *text = cJSON_Print(root);
    FILE *out = out_path ? fopen(out_path, "w") : stdout;
    if (!out || fprintf(out, "%s\n", text) < 0 || (out_path && fclose(out) != 0)) {
        dk_err_set(&err, DK_EXIT_RUNTIME, "undertrained: cannot write %s: %s", out_path ? out_path : "stdout",
                   strerror(errno));
        dk_die(&err);
    }
    fprintf(stderr, "%s: %lld of %lld ids flagged as never trained (status %s; %lld reference ids, spread %.4g, median "
                    "distance %.4g, threshold %.4g)\n", model_dir, (long long)u.n_flagged, (long long)u.vocab_size,
            dk_undertrained_status_name(u.status), (long long)u.n_reference, u.spread, u.median_distance, u.threshold);
    free(text);
    cJSON_Delete(root);
    dk_undertrained_free(&u);
    if (tok) dk_tokenizer_free(tok);
    dk_model_close(&m);
    free(model_dir);
    free(ref_list);
    return 0;
}
