/* test_demo_undertrained.c — every embedding row of the demo base is trained or neutral (issue 11).
 *
 * tools/make_demo_models.py counts the ids the base reads in training and sets the row of each id it read fewer than
 * 50 times (never, for most) to the mean of the trained rows (golden/index.json lists those ids: untrained_ids). A
 * row whose id is read gets gradient, so these are the only rows that could be left at their random
 * initialisation (the script also checks every row moved from it). Checked here on the shipped bf16 weights:
 *   - each untrained row equals the mean of the trained rows (within bf16 rounding), so none is left at its
 *     random initialisation or where the softmax denominator pushed it;
 *   - our under-trained token indicator (host/model/undertrained.h) flags exactly the untrained ids: the
 *     reference ids (bytes no UTF-8 text holds) are among them, and any untrained row left unchanged, or a
 *     trained row at the mean, would break the equality. */
#include "test.h"

#include "io/file.h"
#include "model/forward.h"
#include "model/undertrained.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>

int main(void) {
    const char *root = getenv("DIFFKIT_SOURCE_DIR");
    if (!root) {
        fprintf(stderr, "DIFFKIT_SOURCE_DIR is not set: run this test through ctest\n");
        return 2;
    }
    char *base_dir = dk_sprintf("%s/models/demo/base", root), *index_path = dk_sprintf("%s/models/demo/golden/index.json", root);
    dk_err err = {0};
    size_t size;
    char *text = dk_read_file(index_path, &size, &err);
    cJSON *index = text ? cJSON_Parse(text) : NULL;
    const cJSON *never = cJSON_GetObjectItem(index, "untrained_ids");
    dk_model m;
    dk_tokenizer *tok = NULL;
    if (!EXPECT(cJSON_IsArray(never), "%s: no untrained_ids (%s)", index_path, err.msg) ||
        !EXPECT(dk_model_open(base_dir, &m, &err) == 0, "%s: %s", base_dir, err.msg) ||
        !EXPECT((tok = dk_tokenizer_load(base_dir, &err)) != NULL, "%s: %s", base_dir, err.msg))
        return dk_test_finish("test_demo_undertrained");
    const int64_t V = m.cfg.vocab_size, H = m.cfg.hidden_size;
    bool *is_never = calloc((size_t)V, sizeof *is_never);
    const cJSON *id;
    cJSON_ArrayForEach(id, never) is_never[id->valueint] = true;
    const int n_never = cJSON_GetArraySize(never);
    EXPECT(n_never > 0 && n_never < V / 10, "%d untrained ids", n_never);

    /* untrained rows == mean of the trained rows */
    float *E = malloc((size_t)(V * H) * sizeof *E); /* (V, H) the tied embedding, widened */
    dk_weights_rows_f32(m.w.embed, 0, V, E);
    EXPECT(m.w.lm_head == m.w.embed || m.w.lm_head->data == m.w.embed->data, "the demo base ties its embeddings");
    double *mean = calloc((size_t)H, sizeof *mean);
    for (int64_t i = 0; i < V; i++)
        for (int64_t k = 0; k < H && !is_never[i]; k++) mean[k] += E[i * H + k];
    int off = 0;
    for (int64_t k = 0; k < H; k++) mean[k] /= (double)(V - n_never);
    for (int64_t i = 0; i < V; i++)
        for (int64_t k = 0; k < H && is_never[i]; k++)
            off += fabs(E[i * H + k] - mean[k]) > ldexp(fabs(mean[k]), -8) + 1e-7;
    EXPECT(off == 0, "%d entries of untrained rows differ from the mean of the trained rows by more than bf16 "
           "rounding", off);

    /* the indicator flags exactly them */
    dk_undertrained u;
    if (EXPECT(dk_undertrained_for_model(&m, tok, &u, &err) == 0, "undertrained: %s", err.msg)) {
        int missing = 0, extra = 0;
        for (int64_t i = 0; i < V; i++) {
            missing += is_never[i] && !u.flagged[i];
            extra += !is_never[i] && u.flagged[i];
        }
        EXPECT(u.status == DK_UNDERTRAINED_FLAGGED && missing == 0 && extra == 0,
               "status %s: %d untrained ids not flagged, %d trained ids flagged", dk_undertrained_status_name(u.status),
               missing, extra);
        for (int64_t j = 0; j < u.n_reference; j++)
            EXPECT(is_never[u.reference_ids[j]], "reference id %d (no UTF-8 text holds it) is not listed as untrained",
                   u.reference_ids[j]);
        printf("demo base: %d untrained ids, %lld flagged (%lld reference ids, spread %.3g, median distance %.4f)\n",
               n_never, (long long)u.n_flagged, (long long)u.n_reference, u.spread, u.median_distance);
        dk_undertrained_free(&u);
    }
    free(mean);
    free(E);
    free(is_never);
    dk_tokenizer_free(tok);
    dk_model_close(&m);
    cJSON_Delete(index);
    free(text);
    free(base_dir);
    free(index_path);
    return dk_test_finish("test_demo_undertrained");
}
