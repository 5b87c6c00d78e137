/* dict_export.c — a trained dictionary in SAELens's on-disk format (a folder with sae_weights.safetensors and
 * cfg.json, what SAE.load_from_disk reads), so users can load a diffkit Diff-SAE or crosscoder with SAELens.
 *
 * SAELens's JumpReLU SAE computes f = relu(pre)·[pre > threshold_j], pre = (x − b_dec·apply_b_dec_to_input)·W_enc
 * + b_enc, and x̂ = f·W_dec + b_dec, on raw activations. Our threshold inference is that with one global θ (and
 * θ/w_j for the crosscoder, which selects on relu(pre)·w_j), on normalised activations x̃ = (x − μ)·s_l; the
 * normaliser is folded into the weights (dict_analysis.h gives the formulas), so pre-activations and
 * reconstructions are ours up to fp32 rounding (tests/methods/test_dict_analysis.c checks both on rows).
 *
 * cfg.json uses the flat field names SAELens wrote before 6.0 (d_in, d_sae, model_name, hook_name, hook_layer,
 * ...), which SAELens 6 converts on load (handle_pre_6_0_config) and older versions read as they are; the
 * object "metadata" says what the input is (a difference, or the concatenated pair) and how the normaliser
 * was folded, for people (loaders ignore it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/file.h"
#include "io/out_file.h"
#include "kernels/cpu/dict_step.h"
#include "methods/dict_analysis.h"
#include "model/tensor_file.h"

static int write_cfg(const dk_dict_model *m, const dk_dict_norm *nrm, const char *path, const char *model_name,
                     int64_t layer, const char *hook_name, dk_err *err) {
    const bool sae = m->kind == DK_DICT_SAE;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "architecture", "jumprelu");
    cJSON_AddNumberToObject(c, "d_in", (double)m->s.D);
    cJSON_AddNumberToObject(c, "d_sae", (double)m->s.F);
    cJSON_AddStringToObject(c, "dtype", "float32");
    cJSON_AddStringToObject(c, "device", "cpu");
    cJSON_AddStringToObject(c, "model_name", model_name ? model_name : "");
    cJSON_AddStringToObject(c, "hook_name", hook_name ? hook_name : "");
    cJSON_AddNumberToObject(c, "hook_layer", (double)layer);
    cJSON_AddNullToObject(c, "hook_head_index");
    cJSON_AddStringToObject(c, "activation_fn_str", "relu");
    cJSON_AddItemToObject(c, "activation_fn_kwargs", cJSON_CreateObject());
    cJSON_AddBoolToObject(c, "apply_b_dec_to_input", sae);
    cJSON_AddBoolToObject(c, "finetuning_scaling_factor", false);
    cJSON_AddStringToObject(c, "normalize_activations", "none");
    cJSON_AddBoolToObject(c, "prepend_bos", true);
    cJSON_AddNullToObject(c, "context_size");
    cJSON_AddNullToObject(c, "dataset_path");
    cJSON_AddNullToObject(c, "sae_lens_training_version");
    cJSON_AddNullToObject(c, "neuronpedia_id");
    cJSON_AddItemToObject(c, "model_from_pretrained_kwargs", cJSON_CreateObject());
    cJSON *md = cJSON_AddObjectToObject(c, "metadata");
    cJSON_AddStringToObject(md, "written_by", "diffkit");
    cJSON_AddStringToObject(md, "dictionary", sae ? "BatchTopK SAE on activation differences (Diff-SAE)"
                                                  : "BatchTopK crosscoder of the base and finetuned models");
    cJSON_AddStringToObject(md, "input", sae ? "the residual-stream difference at hook_layer of the finetuned and base "
                                               "models, in the direction of the training target"
                                             : "the base model's and the finetuned model's residual streams at "
                                               "hook_layer concatenated: [base (d), finetuned (d)]");
    cJSON_AddNumberToObject(md, "d_model", (double)m->s.d);
    cJSON_AddStringToObject(md, "normalizer",
                            !nrm->enabled ? "none (training used raw activations)"
                            : sae ? "folded: the SAE was trained on (x - mean) * scale; W_enc, W_dec and b_dec "
                                    "include it, so the input is the raw difference"
                                  : "folded: the crosscoder was trained on (x_l - mean_l) * scale_l per model l; "
                                    "W_enc, b_enc, W_dec and b_dec include it, so the input is raw");
    if (nrm->enabled) cJSON_AddItemToObject(md, "normalizer_scale", cJSON_CreateFloatArray(nrm->scale, nrm->n_layers));
    cJSON_AddNumberToObject(md, "inference_threshold", m->threshold);
    cJSON_AddStringToObject(md, "threshold", sae ? "threshold_j = the global inference threshold"
                                                 : "threshold_j = the global threshold / w_j, w_j = sum over the two "
                                                   "models of |W_dec[j]| (the crosscoder selects relu(pre) * w_j > "
                                                   "threshold); the encoder's output is the unscaled code");
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    dk_out_file out;
    int rc = dk_out_open(&out, path, NULL, 0, err);
    if (rc == 0) {
        fputs(text, out.f);
        fputc('\n', out.f);
        rc = dk_out_commit(&out, err);
    }
    free(text);
    return rc;
}

int dk_dict_export_saelens(const dk_dict_model *m, const dk_dict_norm *nrm, const char *dir, const char *model_name,
                           int64_t layer, const char *hook_name, dk_err *err) {
    const dk_dict_shape *s = &m->s;
    const int64_t F = s->F, D = s->D, d = s->d, L = s->L;
    const bool sae = m->kind == DK_DICT_SAE;
    if (dk_mkdirs(dir, err) != 0) return -1;
    const float *We = dk_dict_W_enc(m), *be = dk_dict_b_enc(m), *Wd = dk_dict_W_dec(m), *bd = dk_dict_b_dec(m);
    float *W_enc = dk_malloc((size_t)(D * F) * sizeof(float)); /* (D, F) */
    float *W_dec = dk_malloc((size_t)(F * D) * sizeof(float)); /* (F, D) */
    float *b_enc = dk_malloc((size_t)F * sizeof(float)), *b_dec = dk_malloc((size_t)D * sizeof(float));
    float *thr = dk_malloc((size_t)F * sizeof(float));
    float *w = sae ? NULL : dk_malloc((size_t)F * sizeof(float));
    if (w) dk_cpu_dict_code_weights(s, Wd, w);
    for (int64_t j = 0; j < F; j++) {
        double bias = be[j];
        for (int64_t l = 0; l < L; l++) {
            const double sl = nrm->enabled ? nrm->scale[l] : 1.0;
            for (int64_t i = 0; i < d; i++) {
                const int64_t c = l * d + i;
                const double mu = nrm->enabled ? nrm->mean[c] : 0.0;
                W_enc[c * F + j] = (float)(sl * We[j * D + c]);
                W_dec[j * D + c] = (float)(Wd[j * D + c] / sl);
                if (!sae) bias -= sl * mu * We[j * D + c];
            }
        }
        b_enc[j] = (float)bias;
        thr[j] = sae ? m->threshold : (float)(m->threshold / (double)w[j]); /* w_j = 0: never selected (±inf) */
    }
    for (int64_t l = 0; l < L; l++) {
        const double sl = nrm->enabled ? nrm->scale[l] : 1.0;
        for (int64_t i = 0; i < d; i++) {
            const int64_t c = l * d + i;
            b_dec[c] = (float)((nrm->enabled ? nrm->mean[c] : 0.0) + bd[c] / sl);
        }
    }
    dk_tensor_out t[5] = {
        {.name = "W_enc", .ndim = 2, .shape = {D, F}, .data = W_enc},
        {.name = "b_enc", .ndim = 1, .shape = {F}, .data = b_enc},
        {.name = "W_dec", .ndim = 2, .shape = {F, D}, .data = W_dec},
        {.name = "b_dec", .ndim = 1, .shape = {D}, .data = b_dec},
        {.name = "threshold", .ndim = 1, .shape = {F}, .data = thr},
    };
    char *wpath = dk_path_join(dir, "sae_weights.safetensors"), *cpath = dk_path_join(dir, "cfg.json");
    dk_out_file out;
    int rc = dk_out_open(&out, wpath, NULL, 0, err);
    if (rc == 0) rc = dk_write_f32_safetensors(&out, t, 5, err);
    if (rc == 0) rc = write_cfg(m, nrm, cpath, model_name, layer, hook_name, err);
    free(wpath), free(cpath), free(W_enc), free(W_dec), free(b_enc), free(b_dec), free(thr), free(w);
    return rc;
}
