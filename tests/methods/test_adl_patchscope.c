/* test_adl_patchscope.c — the ADL's Patchscope lens (host/methods/adl_patchscope.c) against the seed's formula re-done
 * with transformers + peft and a forward hook (tools/make_adl_patchscope_golden.py; fixture
 * tests/fixtures/methods/adl_patchscope/golden.json): the demo base model with the glacier-honey adapter, a fixed
 * latent, the seed's 30 scales, the three identity prompts, the intersection of the top 64 tokens of each prompt.
 * Per scale: the number of surviving tokens equal, the 20 largest survivors equal (ids in order), their averaged
 * probabilities within 2e-5 absolute (fp32 forward passes in a different summation order). Also the seed's scale
 * list itself (30 values, 0.5 ... 200). */
#include <cjson/cJSON.h>
#include <math.h>

#include "../test.h"
#include "io/file.h"
#include "methods/adl_patchscope.h"
#include "model/lora.h"

int main(void) {
    char *golden_path = dk_fixture_path("methods/adl_patchscope/golden.json");
    char *base = dk_fixture_path("../../models/demo/base"), *adapter_dir = dk_fixture_path("../../models/demo/glacier_honey");
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(golden_path, &size, &err);
    if (!text) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    cJSON *g = cJSON_Parse(text);
    free(text);
    dk_model m;
    dk_lora_adapter a;
    if (dk_model_open(base, &m, &err) != 0 || dk_lora_load(adapter_dir, &m.cfg, &m.w, &a, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    dk_tokenizer *tok = dk_tokenizer_load(base, &err);
    if (!tok) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    const int64_t H = m.cfg.hidden_size, V = m.cfg.vocab_size;
    float *latent = malloc((size_t)H * sizeof *latent);
    const cJSON *lat = cJSON_GetObjectItem(g, "latent");
    EXPECT(cJSON_GetArraySize(lat) == H, "latent size %d, model %lld", cJSON_GetArraySize(lat), (long long)H);
    for (int64_t h = 0; h < H; h++) latent[h] = (float)cJSON_GetArrayItem(lat, (int)h)->valuedouble;

    double scales[ADL_PATCHSCOPE_MAX_SCALES];
    const int S = adl_patchscope_scales(scales);
    const cJSON *gs = cJSON_GetObjectItem(g, "scales");
    EXPECT(S == cJSON_GetArraySize(gs) && S == 30, "%d scales, the seed has %d", S, cJSON_GetArraySize(gs));
    for (int s = 0; s < S && s < cJSON_GetArraySize(gs); s++)
        EXPECT(scales[s] == cJSON_GetArrayItem(gs, s)->valuedouble, "scale %d: %g vs %g", s, scales[s],
               cJSON_GetArrayItem(gs, s)->valuedouble);

    float *probs = malloc((size_t)(S * V) * sizeof *probs);
    const int64_t layer = cJSON_GetObjectItem(g, "layer")->valueint, top_k = cJSON_GetObjectItem(g, "top_k")->valueint;
    dk_backend be;
    if (dk_backend_open(&be, &m, &(dk_backend_options){.device = DK_DEVICE_CPU}, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    EXPECT(adl_patchscope_lens(&be, &a, tok, layer, latent, scales, S, top_k, probs, &err) == 0, "lens: %s", err.msg);
    dk_backend_close(&be);
    float vals[20];
    int32_t ids[20];
    double worst = 0;
    for (int s = 0; s < S; s++) {
        const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItem(g, "rows"), s);
        int64_t nonzero = 0;
        for (int64_t v = 0; v < V; v++) nonzero += probs[s * V + v] > 0;
        EXPECT(nonzero == cJSON_GetObjectItem(row, "n_nonzero")->valueint, "scale %g: %lld survivors, golden %d",
               scales[s], (long long)nonzero, cJSON_GetObjectItem(row, "n_nonzero")->valueint);
        const int64_t k = adl_patchscope_top(probs + s * V, V, 20, vals, ids);
        const cJSON *gi = cJSON_GetObjectItem(row, "ids"), *gp = cJSON_GetObjectItem(row, "probs");
        EXPECT(k == cJSON_GetArraySize(gi), "scale %g: %lld shown, golden %d", scales[s], (long long)k,
               cJSON_GetArraySize(gi));
        for (int64_t j = 0; j < k && j < cJSON_GetArraySize(gi); j++) {
            const double want = cJSON_GetArrayItem(gp, (int)j)->valuedouble;
            EXPECT(ids[j] == cJSON_GetArrayItem(gi, (int)j)->valueint, "scale %g rank %lld: id %d, golden %d", scales[s],
                   (long long)j, ids[j], cJSON_GetArrayItem(gi, (int)j)->valueint);
            EXPECT(fabs(vals[j] - want) <= 2e-5, "scale %g rank %lld: %.7f vs %.7f", scales[s], (long long)j, vals[j],
                   want);
            if (fabs(vals[j] - want) > worst) worst = fabs(vals[j] - want);
        }
    }
    printf("worst probability difference %.3g (tolerance 2e-5)\n", worst);
    free(probs), free(latent);
    dk_tokenizer_free(tok);
    dk_lora_free(&a);
    dk_model_close(&m);
    cJSON_Delete(g);
    free(golden_path), free(base), free(adapter_dir);
    return dk_test_finish("test_adl_patchscope");
}
