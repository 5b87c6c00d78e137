/* amplification_run.c — weight amplification (diff_amplification; seed_spec §12, the seed's weight_amplification
 * run()): samples of the base model, the organism and the organism with its LoRA delta scaled per layer and module
 * (amplification configs: host/model/amplification.h), for every prompt of a prompts file; and, beyond the seed,
 * logit-difference amplification: tokens drawn from logits_ft + α·(logits_ft − logits_base), both models stepping
 * together (model/generate.h).
 *
 * Why it exists: turning a narrow finetune up makes what it learned obvious in plain text (and turning it negative
 * shows what it suppressed); the seed does this with a patched vLLM. Here one mapping of the base weights serves
 * every variant: the adapter's per-(layer, module) multipliers are set for each config in turn, and all samples of
 * one variant (prompts × n) are generated as one batched generation (methods/chat_generate.h).
 *
 * Outputs: ${results_dir}/amplification/completions/generations.jsonl — one record per prompt, the seed's fields:
 * {prompt, prompt_hash (sha256[:8] of the prompt), sampling_params, base_samples, ft_samples, amplified_samples
 * {config name: [...]}} plus logit_amplified_samples {"~alpha": [...]}; completions/run_config.json; results.h5
 * (the harness's record: configuration, inputs, fingerprint). Sample i of a variant draws from seed + i, the same
 * for every variant, so variants differ by the model only. Runs on rank 0 (other ranks wait). */
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strutil.h"
#include "io/file.h"
#include "methods/chat_generate.h"
#include "methods/methods.h"
#include "model/amplification.h"

enum { VARIANT_BASE = 1, VARIANT_FT = 2, VARIANT_AMPLIFIED = 4, VARIANT_LOGIT = 8 };

typedef struct amp_state {
    char **prompts;
    int n_prompts;
    bool chat;
    int variants;                 /* VARIANT_* bits */
    dk_amp_config *configs;       /* (n_configs) */
    int n_configs;
    double *alphas;               /* (n_alphas) logit amplification */
    size_t n_alphas;
    int64_t max_batch, max_tokens, n;
    double temperature, top_p;
    uint64_t seed;
} amp_state;

static int read_models(dk_method_job *job, amp_state *st, dk_err *err) {
    const dk_cfg_node *list = dk_cfg_get(job->cfg, "diffing.method.run.models");
    if (!list || list->kind != DK_CFG_SEQ || list->n == 0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.run.models must list some of base, ft, amplified, "
                          "logit_amplified");
    static const struct { const char *name; int bit; } NAMES[] = {
        {"base", VARIANT_BASE}, {"ft", VARIANT_FT}, {"amplified", VARIANT_AMPLIFIED}, {"logit_amplified", VARIANT_LOGIT}};
    for (size_t i = 0; i < list->n; i++) {
        int bit = 0;
        for (size_t j = 0; j < 4 && list->items[i]->kind == DK_CFG_SCALAR; j++)
            if (strcmp(list->items[i]->text, NAMES[j].name) == 0) bit = NAMES[j].bit;
        if (!bit)
            return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.run.models[%zu] = %s: expected base, ft, amplified or "
                              "logit_amplified", i, list->items[i]->kind == DK_CFG_SCALAR ? list->items[i]->text : "?");
        st->variants |= bit;
    }
    return 0;
}

static int amp_prepare(dk_method_job *job, dk_err *err) {
    amp_state *st = dk_calloc(1, sizeof *st);
    job->state = st;
    const dk_cfg *cfg = job->cfg;
    const char *prompts = NULL;
    if (dk_cfg_try_str(cfg, "diffing.method.run.prompts_file", true, &prompts, err) != 0) return -1;
    if (!prompts)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.run.prompts_file is null: give a file of prompts, one per "
                          "line (e.g. diffing.method.run.prompts_file=resources/amplification_prompts.txt)");
    if (!job->pair.ft_is_adapter)
        return dk_err_set(err, DK_EXIT_USAGE, "diff_amplification runs a LoRA organism on the base weights (its delta "
                          "scaled, or stepped against the base); organism %s is a full finetune (%s): only LoRA organisms "
                          "are supported", dk_cfg_str(cfg, "organism.name"), job->pair.ft_dir);
    double temperature = 1.0, top_p = 0.9;
    int64_t max_tokens = 0, n = 0, max_batch = 0;
    if (dk_read_prompts(prompts, "diffing.method.run.prompts_file", &st->prompts, &st->n_prompts, err) != 0 ||
        read_models(job, st, err) != 0 ||
        dk_cfg_try_bool(cfg, "diffing.method.run.use_chat_template", &st->chat, err) != 0 ||
        dk_cfg_try_int(cfg, "diffing.method.run.sampling.max_tokens", &max_tokens, err) != 0 ||
        dk_cfg_try_int(cfg, "diffing.method.run.sampling.n", &n, err) != 0 ||
        dk_cfg_try_int(cfg, "diffing.method.run.max_batch_size", &max_batch, err) != 0 ||
        dk_cfg_try_float(cfg, "diffing.method.run.sampling.temperature", &temperature, err) != 0 ||
        dk_cfg_try_float(cfg, "diffing.method.run.sampling.top_p", &top_p, err) != 0)
        return -1;
    if (max_tokens < 1 || n < 1 || max_batch < 1 || !(temperature >= 0) || !(top_p > 0 && top_p <= 1))
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.run: sampling.max_tokens (%lld), sampling.n (%lld) and "
                          "max_batch_size (%lld) must be at least 1, sampling.temperature (%g) >= 0 and sampling.top_p "
                          "(%g) in (0, 1]", (long long)max_tokens, (long long)n, (long long)max_batch, temperature, top_p);
    st->max_tokens = max_tokens, st->n = n, st->max_batch = max_batch, st->temperature = temperature, st->top_p = top_p;
    st->seed = (uint64_t)job->seed;
    if (dk_cfg_has(cfg, "diffing.method.run.sampling.seed")) {
        int64_t seed = 0;
        if (dk_cfg_try_int(cfg, "diffing.method.run.sampling.seed", &seed, err) != 0) return -1;
        st->seed = (uint64_t)seed;
    }
    if (st->variants & VARIANT_AMPLIFIED) {
        const dk_cfg_node *list = dk_cfg_get(cfg, "diffing.method.run.amplification_configs");
        if (!list || list->kind != DK_CFG_SEQ || list->n == 0)
            return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.run.models has amplified but "
                              "diffing.method.run.amplification_configs is empty: list config files or presets");
        st->configs = dk_calloc(list->n, sizeof *st->configs);
        for (size_t i = 0; i < list->n; i++) {
            if (list->items[i]->kind != DK_CFG_SCALAR || dk_amp_load(list->items[i]->text, NULL, &st->configs[i], err) != 0) {
                if (list->items[i]->kind != DK_CFG_SCALAR)
                    dk_err_set(err, DK_EXIT_USAGE, "diffing.method.run.amplification_configs[%zu]: expected a file or "
                               "preset name", i);
                dk_err_prefix(err, "diffing.method.run.amplification_configs[%zu]: ", i);
                return -1;
            }
            st->n_configs++;
            /* resolved now, so that a config for another organism or a bad layer fails before any sampling */
            float *weights = dk_malloc((size_t)(job->pair.n_layers * DK_AMP_N_GROUPS) * sizeof *weights);
            int rc = dk_amp_resolve(&st->configs[i], dk_cfg_str(cfg, "organism.name"), job->pair.n_layers, weights, err);
            free(weights);
            if (rc != 0) {
                dk_err_prefix(err, "diffing.method.run.amplification_configs[%zu]: ", i);
                return -1;
            }
            dk_method_input(job, "amplification", "%s (%s)", st->configs[i].name, st->configs[i].source);
        }
    }
    if (st->variants & VARIANT_LOGIT) {
        if (dk_cfg_try_float_list(cfg, "diffing.method.run.logit_amplification", &st->alphas, &st->n_alphas, err) != 0)
            return -1;
        if (st->n_alphas == 0)
            return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.run.models has logit_amplified but "
                              "diffing.method.run.logit_amplification is empty: list alphas (e.g. [1.0, 2.0])");
        for (size_t i = 0; i < st->n_alphas; i++) dk_method_input(job, "logit_amplification", "%g", st->alphas[i]);
    }
    dk_method_input(job, "run", "%d prompts from %s, models %d, chat %d, %lld samples of %lld tokens, T=%g, top_p=%g, "
                    "seed %llu", st->n_prompts, prompts, st->variants, st->chat, (long long)n, (long long)max_tokens,
                    temperature, top_p, (unsigned long long)st->seed);
    for (int i = 0; i < st->n_prompts; i++) dk_method_input(job, "prompt", "%s", st->prompts[i]);
    return 0;
}

/* The prompting of every variant: the base model's backend (the organism is its adapter), the run's chat setting. */
static int open_generator(dk_method_job *job, const amp_state *st, dk_chat_gen *g, dk_err *err) {
    if (dk_chat_gen_init(g, job->cfg, dk_model_pair_backend(&job->pair, false), job->pair.base_dir, NULL, job->tok,
                         st->max_batch, err) != 0)
        return -1;
    if (!st->chat && g->has_family) {
        dk_chat_format_free(&g->format);
        g->has_family = false;
    }
    g->format.enable_thinking = -1; /* the seed applies the tokenizer's template with its defaults */
    return 0;
}

/* The samples of every prompt (n each) from one variant (adapter NULL: the base): a JSON array per prompt, in out
 * (n_prompts). */
static int sample_variant(dk_chat_gen *g, const amp_state *st, const dk_lora_adapter *adapter, bool logit_amp,
                          double alpha, cJSON **out, dk_err *err) {
    g->adapter = adapter;
    const int64_t total = st->n_prompts * st->n;
    const char **prompts = dk_malloc((size_t)total * sizeof *prompts);
    for (int64_t i = 0; i < total; i++) prompts[i] = st->prompts[i / st->n];
    char **texts = dk_calloc((size_t)total, sizeof *texts);
    dk_chat_gen_request req = {.prompts = prompts, .n = total, .max_new_tokens = st->max_tokens,
                               .temperature = (float)st->temperature, .top_p = (float)st->top_p, .seed = st->seed,
                               .logit_amp = logit_amp, .logit_amp_alpha = (float)alpha, .plain_text = true};
    int rc = dk_chat_gen_run(g, &req, texts, NULL, NULL, err);
    for (int p = 0; rc == 0 && p < st->n_prompts; p++) {
        out[p] = cJSON_CreateArray();
        for (int64_t i = 0; i < st->n; i++) cJSON_AddItemToArray(out[p], cJSON_CreateString(texts[p * st->n + i]));
    }
    for (int64_t i = 0; i < total; i++) free(texts[i]);
    free(texts);
    free(prompts);
    return rc;
}

static void prompt_hash(const char *prompt, char hex[9]) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(prompt, strlen(prompt), digest, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 4; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

static int amp_run(dk_method_job *job, dk_err *err) {
    amp_state *st = job->state;
    int rc = 0;
    if (job->d.rank == 0) {
        cJSON **records = dk_calloc((size_t)st->n_prompts, sizeof *records);
        cJSON **samples = dk_calloc((size_t)st->n_prompts, sizeof *samples);
        cJSON **amplified = dk_calloc((size_t)st->n_prompts, sizeof *amplified);
        cJSON **logit = dk_calloc((size_t)st->n_prompts, sizeof *logit);
        cJSON *sampling = cJSON_CreateObject();
        cJSON_AddNumberToObject(sampling, "temperature", st->temperature);
        cJSON_AddNumberToObject(sampling, "top_p", st->top_p);
        cJSON_AddNumberToObject(sampling, "max_tokens", (double)st->max_tokens);
        cJSON_AddNumberToObject(sampling, "n", (double)st->n);
        cJSON_AddNumberToObject(sampling, "seed", (double)st->seed);
        for (int p = 0; p < st->n_prompts; p++) {
            records[p] = cJSON_CreateObject();
            char hex[9];
            prompt_hash(st->prompts[p], hex);
            cJSON_AddStringToObject(records[p], "prompt", st->prompts[p]);
            cJSON_AddStringToObject(records[p], "prompt_hash", hex);
            cJSON_AddItemToObject(records[p], "sampling_params", cJSON_Duplicate(sampling, true));
        }
        dk_lora_adapter *adapter = &job->pair.adapter;
        const char *organism = dk_cfg_str(job->cfg, "organism.name");
        cJSON *presets = cJSON_CreateArray(), *models_run = cJSON_CreateArray();
        dk_chat_gen g;
        rc = open_generator(job, st, &g, err);
        /* base, ft, each amplification config, each alpha: in that order */
        if (rc == 0 && (st->variants & VARIANT_BASE)) {
            rc = sample_variant(&g, st, NULL, false, 0, samples, err);
            for (int p = 0; rc == 0 && p < st->n_prompts; p++) cJSON_AddItemToObject(records[p], "base_samples", samples[p]);
            cJSON_AddItemToArray(models_run, cJSON_CreateString("base"));
            LOG_INFO("diff_amplification: base samples done");
        }
        if (rc == 0 && (st->variants & VARIANT_FT)) {
            dk_lora_set_multiplier(adapter, 1.0f);
            rc = sample_variant(&g, st, adapter, false, 0, samples, err);
            for (int p = 0; rc == 0 && p < st->n_prompts; p++) cJSON_AddItemToObject(records[p], "ft_samples", samples[p]);
            cJSON_AddItemToArray(models_run, cJSON_CreateString("ft"));
            LOG_INFO("diff_amplification: organism samples done");
        }
        for (int c = 0; rc == 0 && c < st->n_configs; c++) {
            int64_t unadapted = 0;
            rc = dk_amp_apply_config(&st->configs[c], organism, adapter, &unadapted, err);
            if (rc == 0 && unadapted > 0)
                LOG_WARN("diff_amplification: %s sets a weight on %lld (layer, attention|mlp) pairs where %s's adapter has "
                         "no module: those weights do nothing", st->configs[c].name, (long long)unadapted, organism);
            if (rc == 0) rc = sample_variant(&g, st, adapter, false, 0, samples, err);
            for (int p = 0; rc == 0 && p < st->n_prompts; p++) {
                if (!amplified[p]) amplified[p] = cJSON_CreateObject();
                cJSON_AddItemToObject(amplified[p], st->configs[c].name, samples[p]);
            }
            cJSON_AddItemToArray(presets, cJSON_CreateString(st->configs[c].name));
            LOG_INFO("diff_amplification: %s samples done", st->configs[c].name);
            dk_lora_set_multiplier(adapter, 1.0f);
        }
        if (rc == 0 && st->n_configs > 0) cJSON_AddItemToArray(models_run, cJSON_CreateString("amplified"));
        for (size_t a = 0; rc == 0 && a < st->n_alphas; a++) {
            dk_lora_set_multiplier(adapter, 1.0f);
            rc = sample_variant(&g, st, adapter, true, st->alphas[a], samples, err);
            char key[48];
            snprintf(key, sizeof key, "~%g", st->alphas[a]);
            for (int p = 0; rc == 0 && p < st->n_prompts; p++) {
                if (!logit[p]) logit[p] = cJSON_CreateObject();
                cJSON_AddItemToObject(logit[p], key, samples[p]);
            }
            LOG_INFO("diff_amplification: logit amplification %s samples done", key);
        }
        if (rc == 0 && st->n_alphas > 0) cJSON_AddItemToArray(models_run, cJSON_CreateString("logit_amplified"));
        cJSON *lines = cJSON_CreateArray();
        for (int p = 0; p < st->n_prompts; p++) {
            if (amplified[p]) cJSON_AddItemToObject(records[p], "amplified_samples", amplified[p]);
            if (logit[p]) cJSON_AddItemToObject(records[p], "logit_amplified_samples", logit[p]);
            cJSON_AddItemToArray(lines, records[p]);
        }
        if (rc == 0) {
            dk_results_json(&job->res, "completions/generations.jsonl", lines);
            cJSON *run = cJSON_CreateObject();
            cJSON_AddStringToObject(run, "request_id", job->res.fingerprint_hex);
            cJSON_AddStringToObject(run, "model_id", job->pair.base_id);
            cJSON_AddStringToObject(run, "organism", organism);
            cJSON_AddStringToObject(run, "adapter_id", job->pair.ft_id);
            cJSON_AddItemToObject(run, "amplification_presets", presets);
            cJSON *alphas = cJSON_AddArrayToObject(run, "logit_amplification");
            for (size_t a = 0; a < st->n_alphas; a++) cJSON_AddItemToArray(alphas, cJSON_CreateNumber(st->alphas[a]));
            cJSON_AddItemToObject(run, "models_run", models_run);
            cJSON_AddNumberToObject(run, "num_prompts", st->n_prompts);
            dk_results_json(&job->res, "completions/run_config.json", run);
            dk_results_attr_i64(&job->res, "/", "num_prompts", st->n_prompts);
        } else {
            cJSON_Delete(lines);
            cJSON_Delete(presets);
            cJSON_Delete(models_run);
        }
        dk_chat_gen_free(&g);
        cJSON_Delete(sampling);
        free(records), free(samples), free(amplified), free(logit);
    }
    if (dk_dist_agree_idle(&job->d, err) != 0) rc = -1;
    return rc;
}

static void amp_free(dk_method_job *job) {
    amp_state *st = job->state;
    if (!st) return;
    for (int i = 0; i < st->n_prompts; i++) free(st->prompts[i]);
    free(st->prompts);
    for (int i = 0; i < st->n_configs; i++) dk_amp_free(&st->configs[i]);
    free(st->configs);
    free(st->alphas);
    free(st);
    job->state = NULL;
}

const dk_method_spec dk_method_weight_amplification = {
    .job = "diff_amplification",
    .method = "weight_amplification",
    .results_subdir = "amplification",
    .usage = "Weight amplification: samples of the base model, the organism, the organism with its LoRA delta scaled\n"
             "per layer and module (amplification configs and presets), and logit-difference amplification, for\n"
             "every prompt of diffing.method.run.prompts_file. Settings: diffing.method.run.*\n"
             "(configs/diffing/method/weight_amplification.yaml).\n"
             "    diff_amplification organism=NAME model=NAME diffing.method.run.prompts_file=FILE\n",
    .needs_models = true,
    .prepare = amp_prepare,
    .run = amp_run,
    .free_state = amp_free,
};
