/* lora.c — see lora.h. Layout: 1. adapter_config.json; 2. tensors -> (layer, module) slots with shape
 * checks against the base; 3. the runtime product. */
#include "lora.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "kernels/cpu/gemm.h"

/* ---------------------------------------------------------------------------------------------------
 * 1. adapter_config.json */

static bool json_is_empty(const cJSON *v) {
    return !v || cJSON_IsNull(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0) ||
           (cJSON_IsObject(v) && v->child == NULL) || cJSON_IsFalse(v);
}

static int read_adapter_config(const char *path, dk_lora_adapter *a, dk_err *err) {
    size_t size;
    char *text = dk_read_file(path, &size, err);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: not a JSON object (a PEFT adapter_config.json was expected)", path);
        goto done;
    }
    const cJSON *peft_type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (!cJSON_IsString(peft_type) || strcmp(peft_type->valuestring, "LORA") != 0) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: peft_type is %s; only \"LORA\" adapters are supported", path,
                   cJSON_IsString(peft_type) ? peft_type->valuestring : "missing");
        goto done;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != floor(r->valuedouble) || !cJSON_IsNumber(alpha)) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: \"r\" (a positive integer) and \"lora_alpha\" (a number) are required",
                   path);
        goto done;
    }
    a->r = (int64_t)r->valuedouble;
    a->lora_alpha = alpha->valuedouble;
    a->use_rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "use_rslora"));
    /* Settings that change the math in ways this engine does not implement: refuse them by name. */
    static const char *const unsupported[][2] = {
        {"use_dora", "DoRA (weight-decomposed LoRA)"},
        {"rank_pattern", "per-module ranks"},
        {"alpha_pattern", "per-module alphas"},
        {"modules_to_save", "fully trained modules saved next to the adapter"},
        {"fan_in_fan_out", "transposed (Conv1D) weights"},
        {"lora_bias", "a bias on lora_B"},
        {"layer_replication", "layer replication"},
        {"trainable_token_indices", "trainable token embeddings"},
    };
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, unsupported[i][0]);
        if (!json_is_empty(v)) {
            char *shown = cJSON_PrintUnformatted(v);
            dk_err_set(err, DK_EXIT_USAGE, "%s: \"%s\": %s is set (%s), which diffkit cannot apply; use an adapter "
                       "without it, or merge it into a full checkpoint", path, unsupported[i][0], shown,
                       unsupported[i][1]);
            free(shown);
            goto done;
        }
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (cJSON_IsString(bias) && strcmp(bias->valuestring, "none") != 0) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: \"bias\": \"%s\" (trained biases) is not supported; only \"none\"", path,
                   bias->valuestring);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * 2. Tensors */

/* "base_model.model.<prefix>layers.<l>.<block>.<module>.lora_<A|B>.weight" -> layer, module, A/B.
 * 0 on success; -1 with err naming the tensor otherwise. */
static int parse_name(const char *name, const char *prefix, int64_t n_layers, int64_t *layer, dk_module *module,
                      bool *is_a, const char *file, dk_err *err) {
    const char *p = name;
    static const char head[] = "base_model.model.";
    if (strncmp(p, head, sizeof head - 1) != 0) goto foreign;
    p += sizeof head - 1;
    size_t plen = strlen(prefix);
    if (strncmp(p, prefix, plen) != 0 || strncmp(p + plen, "layers.", 7) != 0) goto foreign;
    p += plen + 7;
    char *end;
    long long l = strtoll(p, &end, 10);
    if (end == p || *end != '.') goto foreign;
    if (l < 0 || l >= n_layers)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor %s adapts layer %lld, but the base model has %lld layers "
                          "(0..%lld): the adapter was made for another base model", file, name, l,
                          (long long)n_layers, (long long)n_layers - 1);
    *layer = l;
    p = end + 1;
    for (int m = 0; m < DK_N_MODULES; m++) {
        const char *block = m <= DK_MOD_O ? "self_attn." : "mlp.";
        size_t blen = strlen(block), mlen = strlen(dk_module_name((dk_module)m));
        if (strncmp(p, block, blen) == 0 && strncmp(p + blen, dk_module_name((dk_module)m), mlen) == 0) {
            const char *rest = p + blen + mlen;
            if (strcmp(rest, ".lora_A.weight") == 0 || strcmp(rest, ".lora_B.weight") == 0) {
                *module = (dk_module)m;
                *is_a = rest[6] == 'A';
                return 0;
            }
        }
    }
foreign:
    return dk_err_set(err, DK_EXIT_RUNTIME,
                      "%s: tensor %s is not a LoRA A/B of a decoder projection (%s) of this base (expected "
                      "base_model.model.%slayers.<l>.{self_attn,mlp}.<module>.lora_{A,B}.weight); embedding LoRA, "
                      "DoRA and adapters for another architecture are not supported",
                      file, name, "q/k/v/o/gate/up/down_proj", prefix);
}

int dk_lora_load(const char *folder, const dk_hf_config *cfg, const dk_model_weights *w, dk_lora_adapter *a,
                 dk_err *err) {
    memset(a, 0, sizeof *a);
    char *config_path = dk_path_join(folder, "adapter_config.json");
    char *tensors_path = dk_path_join(folder, "adapter_model.safetensors");
    dk_st_checkpoint *ck = NULL;
    int rc = -1;
    if (read_adapter_config(config_path, a, err) != 0) goto done;
    ck = dk_st_open(tensors_path, err);
    if (!ck) goto done;
    a->path = dk_strdup(folder);
    a->n_layers = cfg->num_hidden_layers;
    a->modules = dk_calloc((size_t)(a->n_layers * DK_N_MODULES), sizeof *a->modules);
    a->multiplier = dk_malloc((size_t)(a->n_layers * DK_N_MODULES) * sizeof *a->multiplier);
    dk_lora_set_multiplier(a, 1.0f);
    const float scale = (float)(a->use_rslora ? a->lora_alpha / sqrt((double)a->r) : a->lora_alpha / (double)a->r);
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const dk_st_tensor *t = &ck->tensors[i];
        int64_t layer = 0;
        dk_module m = DK_MOD_Q;
        bool is_a = false;
        if (parse_name(t->name, w->prefix, a->n_layers, &layer, &m, &is_a, tensors_path, err) != 0) goto done;
        const dk_linear_weight *base = &w->layers[layer].proj[m];
        int64_t shape[2] = {is_a ? a->r : base->out_features, is_a ? base->in_features : a->r};
        if (dk_st_check_shape(t, 2, shape, err) != 0 || dk_st_check_readable(t, err) != 0) {
            dk_err_prefix(err, "adapter %s does not fit the base model %s (r = %lld): ", folder, cfg->path,
                          (long long)a->r);
            goto done;
        }
        dk_lora_module *mod = dk_lora_at(a, layer, m);
        float **slot = is_a ? &mod->A : &mod->B;
        *slot = dk_st_load_f32(t, err);
        if (!*slot) goto done;
        mod->r = a->r;
        mod->in_features = base->in_features;
        mod->out_features = base->out_features;
        mod->scale = scale;
    }
    for (int64_t k = 0; k < a->n_layers * DK_N_MODULES; k++) {
        dk_lora_module *mod = &a->modules[k];
        if (!mod->A != !mod->B) {
            dk_err_set(err, DK_EXIT_RUNTIME, "%s: layer %lld %s has lora_%s but not lora_%s", tensors_path,
                       (long long)(k / DK_N_MODULES), dk_module_name((dk_module)(k % DK_N_MODULES)),
                       mod->A ? "A" : "B", mod->A ? "B" : "A");
            goto done;
        }
        if (mod->A) a->n_adapted++;
    }
    if (a->n_adapted == 0) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s holds no LoRA tensors", tensors_path);
        goto done;
    }
    static atomic_uint_fast64_t next_load_id = 1;
    a->load_id = atomic_fetch_add(&next_load_id, 1);
    rc = 0;
done:
    if (ck) dk_st_close(ck);
    free(config_path);
    free(tensors_path);
    if (rc != 0) dk_lora_free(a);
    return rc;
}

void dk_lora_free(dk_lora_adapter *a) {
    if (a->modules)
        for (int64_t k = 0; k < a->n_layers * DK_N_MODULES; k++) {
            free(a->modules[k].A);
            free(a->modules[k].B);
        }
    free(a->modules);
    free(a->multiplier);
    free(a->path);
    memset(a, 0, sizeof *a);
}

void dk_lora_set_multiplier(dk_lora_adapter *a, float w) {
    for (int64_t k = 0; k < a->n_layers * DK_N_MODULES; k++) a->multiplier[k] = w;
}

/* ---------------------------------------------------------------------------------------------------
 * 3. Runtime product */

void dk_lora_apply(float *y, const float *x, int64_t M, const dk_lora_module *mod, float w, float *tmp) {
    if (w == 0.0f || !mod->A) return;
    dk_cpu_linear(tmp, x, mod->A, NULL, M, mod->r, mod->in_features); /* (M, r) = x Aᵀ */
    /* PEFT computes lora_B(lora_A(x)) * scaling; the multiplier scales the same term. */
    const float s = w * mod->scale;
    for (int64_t i = 0; i < M * mod->r; i++) tmp[i] *= s;
    /* y += tmp Bᵀ: accumulate onto y through a strided GEMM with beta = 1 */
    dk_cpu_linear_accumulate(y, tmp, mod->B, M, mod->out_features, mod->r);
}
