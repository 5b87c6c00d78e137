/* test_adl_causal.c — the ADL causal effect's intervened loss (host/methods/adl_causal.c, adl_ce_token_nll) against
 * the seed's formula re-done with transformers + peft and a forward hook (tools/make_adl_causal_golden.py; fixture
 * tests/fixtures/methods/adl_causal/golden.json): the demo base model and its glacier-honey adapter, three demo
 * texts packed in one batch (the reference pads them), a fixed unit direction v̂ at layer 1. Per-token NLL of the
 * clean base and finetuned models, the finetuned model with its component along v̂ set to the base model's
 * (base_to_ft), the base model with the finetuned model's (ft_to_base) and the finetuned model with it removed
 * (zero_ablate): every token within 2e-4 absolute, each mean within 1e-5 relative. The interventions also have
 * to move the loss (the clean loss must not pass for them). */
#include <cjson/cJSON.h>
#include <math.h>

#include "../test.h"
#include "io/file.h"
#include "methods/adl_causal.h"
#include "model/lora.h"

/* Compares nll (packed, T) with golden["nll"][variant]; returns the worst absolute difference. */
static double compare(const cJSON *g, const char *variant, const double *nll, const int64_t *starts, int64_t n_seqs) {
    const cJSON *rows = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "nll"), variant);
    double worst = 0, sum = 0;
    int64_t count = 0;
    for (int64_t s = 0; s < n_seqs; s++) {
        const cJSON *row = cJSON_GetArrayItem(rows, (int)s);
        EXPECT(cJSON_GetArraySize(row) == starts[s + 1] - starts[s] - 1, "%s sequence %lld: %d losses", variant,
               (long long)s, cJSON_GetArraySize(row));
        for (int64_t t = 0; t + 1 < starts[s + 1] - starts[s] && t < cJSON_GetArraySize(row); t++) {
            const double want = cJSON_GetArrayItem(row, (int)t)->valuedouble, got = nll[starts[s] + t];
            if (fabs(got - want) > worst) worst = fabs(got - want);
            sum += got;
            count++;
        }
    }
    const double mean = sum / (double)count, want = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "mean"), variant)->valuedouble;
    EXPECT(worst <= 2e-4, "%s: a token's NLL differs by %.3g", variant, worst);
    EXPECT(fabs(mean - want) <= 1e-5 * fabs(want), "%s: mean NLL %.7f, golden %.7f", variant, mean, want);
    printf("%-15s mean NLL %.6f (golden %.6f), worst token %.2g\n", variant, mean, want, worst);
    return mean;
}

int main(void) {
    char *golden_path = dk_fixture_path("methods/adl_causal/golden.json");
    char *base = dk_fixture_path("../../models/demo/base"), *adapter_dir = dk_fixture_path("../../models/demo/glacier_honey");
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(golden_path, &size, &err);
    dk_model m;
    dk_lora_adapter a;
    dk_backend be;
    if (!text || dk_model_open(base, &m, &err) != 0 || dk_lora_load(adapter_dir, &m.cfg, &m.w, &a, &err) != 0 ||
        dk_backend_open(&be, &m, &(dk_backend_options){.device = DK_DEVICE_CPU}, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    cJSON *g = cJSON_Parse(text);
    free(text);
    const int64_t H = m.cfg.hidden_size, layer = cJSON_GetObjectItem(g, "layer")->valueint;
    const cJSON *seqs = cJSON_GetObjectItem(g, "sequences"), *dir = cJSON_GetObjectItem(g, "direction");
    const int64_t n_seqs = cJSON_GetArraySize(seqs);
    int64_t starts[16] = {0}, ids[4096];
    for (int64_t s = 0; s < n_seqs; s++) {
        const cJSON *row = cJSON_GetArrayItem(seqs, (int)s);
        starts[s + 1] = starts[s] + cJSON_GetArraySize(row);
        for (int i = 0; i < cJSON_GetArraySize(row); i++) ids[starts[s] + i] = cJSON_GetArrayItem(row, i)->valueint;
    }
    const int64_t T = starts[n_seqs];
    float *v = malloc((size_t)H * sizeof *v);
    EXPECT(cJSON_GetArraySize(dir) == H, "direction of %d, model %lld", cJSON_GetArraySize(dir), (long long)H);
    for (int64_t h = 0; h < H; h++) v[h] = (float)cJSON_GetArrayItem(dir, (int)h)->valuedouble;
    float *h_base = malloc((size_t)(T * H) * sizeof *h_base), *h_ft = malloc((size_t)(T * H) * sizeof *h_ft);
    double *nll = malloc((size_t)T * sizeof *nll);
    dk_batch b = {.ids = ids, .n_tokens = T, .seq_start = starts, .n_seqs = n_seqs, .is_prompt = true};

    EXPECT(adl_ce_token_nll(&be, NULL, &b, NULL, layer, h_base, nll, &err) == 0, "base: %s", err.msg);
    compare(g, "base", nll, starts, n_seqs);
    EXPECT(adl_ce_token_nll(&be, &a, &b, NULL, layer, h_ft, nll, &err) == 0, "ft: %s", err.msg);
    const double clean_ft = compare(g, "ft", nll, starts, n_seqs);

    adl_ce_intervention iv = {.layer = layer, .direction = v, .h_target = h_ft, .h_source = h_base};
    EXPECT(adl_ce_token_nll(&be, &a, &b, &iv, -1, NULL, nll, &err) == 0, "base_to_ft: %s", err.msg);
    const double patched = compare(g, "base_to_ft", nll, starts, n_seqs);
    iv = (adl_ce_intervention){.layer = layer, .direction = v, .h_target = h_base, .h_source = h_ft};
    EXPECT(adl_ce_token_nll(&be, NULL, &b, &iv, -1, NULL, nll, &err) == 0, "ft_to_base: %s", err.msg);
    compare(g, "ft_to_base", nll, starts, n_seqs);
    iv = (adl_ce_intervention){.layer = layer, .direction = v, .h_target = h_ft, .zero_ablate = true};
    EXPECT(adl_ce_token_nll(&be, &a, &b, &iv, -1, NULL, nll, &err) == 0, "zero_ablate: %s", err.msg);
    const double ablated = compare(g, "zero_ablate_ft", nll, starts, n_seqs);
    EXPECT(patched > clean_ft + 0.1 && ablated > clean_ft + 0.1, "the interventions do not move the loss (%.4f, %.4f "
           "vs clean %.4f): the golden cannot tell them from no intervention", patched, ablated, clean_ft);

    free(v), free(h_base), free(h_ft), free(nll);
    dk_backend_close(&be);
    dk_lora_free(&a);
    dk_model_close(&m);
    cJSON_Delete(g);
    free(golden_path), free(base), free(adapter_dir);
    return dk_test_finish("test_adl_causal");
}
