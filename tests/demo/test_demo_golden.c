/* test_demo_golden.c — our engine on the bundled demo pair (models/demo/) against what transformers 5.24 +
 * peft computed on the same files when tools/make_demo_models.py made them (models/demo/golden/: fp32 eager
 * logits and hidden states of three sequences, base and organism).
 *
 * Compared: the residual after blocks 0..L-2 (transformers' hidden_states[1..L-1]; hidden_states[L] is after
 * the final norm, which our capture of the last block is not) and the logits at every position, for the
 * base (no adapter) and the organism (LoRA at multiplier 1). Bound: max |ours - ref| <= 5e-5 * max |ref| per
 * tensor, as in tests/engine/test_forward.c (fp32 with a different summation order gives ~1e-6 here), and
 * the argmax of the logits equal at every position. */
#include "test.h"

#include "io/file.h"
#include "model/forward.h"
#include "model/lora.h"

#include <cjson/cJSON.h>
#include <math.h>

static const double REL_BOUND = 5e-5;

static float *read_f32(const char *dir, const char *name, size_t count) {
    char *path = dk_sprintf("%s/%s", dir, name);
    size_t size = 0;
    dk_err err = {0};
    char *bytes = dk_read_file(path, &size, &err);
    float *out = NULL;
    if (EXPECT(bytes && size == count * sizeof(float), "%s: %s (size %zu, want %zu)", path, err.msg, size,
               count * sizeof(float))) {
        out = malloc(count * sizeof(float));
        memcpy(out, bytes, count * sizeof(float));
    }
    free(bytes);
    free(path);
    return out;
}

static void compare(const char *what, const float *ours, const float *ref, size_t n) {
    double max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < n; i++) {
        max_ref = fmax(max_ref, fabs(ref[i]));
        max_diff = fmax(max_diff, fabs((double)ours[i] - ref[i]));
    }
    EXPECT(max_diff <= REL_BOUND * max_ref, "%s: max |diff| %.3g > %.0e * max |ref| %.3g", what, max_diff, REL_BOUND, max_ref);
    printf("%-32s max |diff| / max |ref| = %.2e\n", what, max_ref > 0 ? max_diff / max_ref : 0);
}

static void check_sequence(const dk_model *m, const dk_lora_adapter *adapter, const char *golden_dir,
                           const cJSON *seq, const char *which) {
    const char *name = cJSON_GetObjectItem(seq, "name")->valuestring;
    const cJSON *ids_json = cJSON_GetObjectItem(seq, "token_ids");
    const cJSON *files = cJSON_GetObjectItem(cJSON_GetObjectItem(seq, "files"), which);
    int64_t T = cJSON_GetArraySize(ids_json), H = m->cfg.hidden_size, V = m->cfg.vocab_size,
            L = m->cfg.num_hidden_layers;
    int64_t *ids = malloc((size_t)T * sizeof *ids);
    for (int64_t t = 0; t < T; t++) ids[t] = (int64_t)cJSON_GetArrayItem(ids_json, (int)t)->valuedouble;
    int64_t starts[2] = {0, T};
    dk_batch batch = {.ids = ids, .n_tokens = T, .seq_start = starts, .n_seqs = 1, .is_prompt = true};
    int64_t layers[16];
    float *captures[16];
    for (int64_t l = 0; l < L - 1; l++) {
        layers[l] = l;
        captures[l] = malloc((size_t)(T * H) * sizeof(float));
    }
    float *logits = malloc((size_t)(T * V) * sizeof(float));
    dk_hook_plan plan = {.n_capture = L - 1, .capture_layers = layers, .captures = captures,
                         .logits = DK_LOGITS_ALL, .logits_out = logits};
    dk_err err = {0};
    if (EXPECT(dk_forward(m, adapter, &batch, &plan, NULL, &err) == 0, "%s/%s forward: %s", name, which, err.msg)) {
        float *ref_logits = read_f32(golden_dir, cJSON_GetObjectItem(files, "logits")->valuestring, (size_t)(T * V));
        float *ref_hidden = read_f32(golden_dir, cJSON_GetObjectItem(files, "hidden_states")->valuestring,
                                     (size_t)((L + 1) * T * H));
        char what[96];
        for (int64_t l = 0; ref_hidden && l < L - 1; l++) {
            snprintf(what, sizeof what, "%s/%s block %lld", name, which, (long long)l);
            compare(what, captures[l], ref_hidden + (l + 1) * T * H, (size_t)(T * H));
        }
        if (ref_logits) {
            snprintf(what, sizeof what, "%s/%s logits", name, which);
            compare(what, logits, ref_logits, (size_t)(T * V));
            int mismatches = 0;
            for (int64_t t = 0; t < T; t++) {
                int64_t a = 0, b = 0;
                for (int64_t v = 1; v < V; v++) {
                    if (logits[t * V + v] > logits[t * V + a]) a = v;
                    if (ref_logits[t * V + v] > ref_logits[t * V + b]) b = v;
                }
                mismatches += a != b;
            }
            EXPECT(mismatches == 0, "%s/%s: argmax differs at %d positions", name, which, mismatches);
        }
        free(ref_logits);
        free(ref_hidden);
    }
    for (int64_t l = 0; l < L - 1; l++) free(captures[l]);
    free(logits);
    free(ids);
}

int main(void) {
    const char *root = getenv("DIFFKIT_SOURCE_DIR");
    if (!root) {
        fprintf(stderr, "DIFFKIT_SOURCE_DIR is not set: run this test through ctest\n");
        return 2;
    }
    char *base_dir = dk_sprintf("%s/models/demo/base", root), *adapter_dir = dk_sprintf("%s/models/demo/glacier_honey", root);
    char *golden_dir = dk_sprintf("%s/models/demo/golden", root), *index_path = dk_sprintf("%s/index.json", golden_dir);
    dk_err err = {0};
    size_t len = 0;
    char *index_text = dk_read_file(index_path, &len, &err);
    cJSON *index = index_text ? cJSON_Parse(index_text) : NULL;
    dk_model m;
    dk_lora_adapter adapter;
    if (EXPECT(index != NULL, "cannot read %s: %s", index_path, err.msg) &&
        EXPECT(dk_model_open(base_dir, &m, &err) == 0, "open %s: %s", base_dir, err.msg)) {
        EXPECT(m.cfg.num_hidden_layers <= 16, "the demo model has at most 16 layers");
        if (EXPECT(dk_lora_load(adapter_dir, &m.cfg, &m.w, &adapter, &err) == 0, "load %s: %s", adapter_dir, err.msg)) {
            const cJSON *seq;
            cJSON_ArrayForEach(seq, cJSON_GetObjectItem(index, "sequences")) {
                check_sequence(&m, NULL, golden_dir, seq, "base");
                check_sequence(&m, &adapter, golden_dir, seq, "organism");
            }
            dk_lora_free(&adapter);
        }
        dk_model_close(&m);
    }
    cJSON_Delete(index);
    free(index_text);
    free(base_dir), free(adapter_dir), free(golden_dir), free(index_path);
    return dk_test_finish("test_demo_golden");
}
