/* agent_eval_settings.c — diffing.evaluation.* read once, checked, with messages that name the key; the pieces of
 * the seed's folder names (config hash, hints hash, agent LLM id); the configuration as JSON.
 *
 * Why a file of its own: agent_eval.c is the run loop; this is everything it needs to know before the first run,
 * so a wrong value stops diff_agent before any model is loaded or any LLM asked. */
#include "agent/agent_eval_internal.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/pyjson.h"
#include "config/node.h"
#include "core/log.h"

void dk_agent_md5_hex(const char *text, char out[33]) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), digest, &n, EVP_md5(), NULL);
    for (unsigned int i = 0; i < n && i < 16; i++) snprintf(out + 2 * i, 3, "%02x", digest[i]);
    out[32] = 0;
}

static cJSON *node_json(const dk_cfg_node *node) {
    if (!node) return cJSON_CreateNull();
    switch (dk_cfg_node_type(node)) {
    case DK_CFG_TYPE_NULL: return cJSON_CreateNull();
    case DK_CFG_TYPE_BOOL: {
        bool b = false;
        dk_cfg_parse_bool(node->text, &b);
        return cJSON_CreateBool(b);
    }
    case DK_CFG_TYPE_INT: {
        int64_t v = 0;
        dk_cfg_parse_int(node->text, &v);
        return dk_pyjson_int(v);
    }
    case DK_CFG_TYPE_FLOAT: {
        double v = 0;
        dk_cfg_parse_float(node->text, &v);
        return cJSON_CreateNumber(v);
    }
    case DK_CFG_TYPE_SEQ: {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; i < node->n; i++) cJSON_AddItemToArray(a, node_json(node->items[i]));
        return a;
    }
    case DK_CFG_TYPE_MAP: {
        cJSON *o = cJSON_CreateObject();
        for (size_t i = 0; i < node->n; i++) cJSON_AddItemToObject(o, node->keys[i], node_json(node->items[i]));
        return o;
    }
    default: return cJSON_CreateString(node->text ? node->text : "");
    }
}

cJSON *dk_agent_cfg_json(const dk_cfg *cfg, const char *path) {
    const dk_cfg_node *node = (!path || !path[0]) ? cfg->root : dk_cfg_get(cfg, path);
    return node ? node_json(node) : NULL;
}

/* A positive integer at key (or >= min). */
static int read_int(const dk_cfg *cfg, const char *key, int64_t min, int64_t *out, dk_err *err) {
    if (dk_cfg_try_int(cfg, key, out, err) != 0) return -1;
    if (*out < min) return dk_err_set(err, DK_EXIT_USAGE, "config key %s = %lld: must be at least %lld", key, (long long)*out, (long long)min);
    return 0;
}

static int read_budgets(const dk_cfg *cfg, const char *key, int64_t **out, size_t *n, dk_err *err) {
    if (dk_cfg_try_int_list(cfg, key, out, n, err) != 0) return -1;
    if (*n == 0) return dk_err_set(err, DK_EXIT_USAGE, "config key %s is empty: give at least one model-interaction budget, e.g. [50]", key);
    for (size_t i = 0; i < *n; i++)
        if ((*out)[i] < 0)
            return dk_err_set(err, DK_EXIT_USAGE, "config key %s: budget %lld is negative (0 = the agent may not ask the models)",
                              key, (long long)(*out)[i]);
    return 0;
}

#define EV "diffing.evaluation."

int dk_eval_settings_read(const dk_cfg *cfg, dk_eval_settings *s, dk_err *err) {
    memset(s, 0, sizeof *s);
    int64_t v;
    if (dk_cfg_try_bool(cfg, EV "overwrite", &s->overwrite, err) != 0) return -1;
    if (dk_cfg_try_str(cfg, EV "prompts_dir", false, &s->prompts_dir, err) != 0) return -1;
    /* grader */
    if (dk_cfg_try_bool(cfg, EV "grader.enabled", &s->grader_enabled, err) != 0) return -1;
    if (dk_cfg_try_str(cfg, EV "grader.mode", false, &s->grader_mode, err) != 0) return -1;
    if (strcmp(s->grader_mode, "auto") != 0 && strcmp(s->grader_mode, "llm") != 0 && strcmp(s->grader_mode, "offline") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "config key " EV "grader.mode = %s: must be auto, llm or offline", s->grader_mode);
    if (dk_cfg_try_str(cfg, EV "grader.model_id", false, &s->grader_model, err) != 0) return -1;
    if (read_int(cfg, EV "grader.max_tokens", 1, &v, err) != 0) return -1;
    s->grader_max_tokens = (int)v;
    if (read_int(cfg, EV "grader.num_repeat", 1, &v, err) != 0) return -1;
    s->grader_repeat = (int)v;
    if (dk_cfg_try_str(cfg, EV "grader.rubrics", false, &s->rubrics_path, err) != 0) return -1;
    /* agent */
    if (read_int(cfg, EV "agent.num_repeat", 1, &v, err) != 0) return -1;
    s->num_repeat = (int)v;
    if (read_int(cfg, EV "agent.parallel", 1, &v, err) != 0) return -1;
    s->parallel = (int)v;
    if (dk_cfg_try_float(cfg, EV "agent.llm.temperature", &s->temperature, err) != 0) return -1;
    if (read_int(cfg, EV "agent.llm.max_tokens_per_call", 1, &v, err) != 0) return -1;
    s->max_tokens_per_call = (int)v;
    if (read_int(cfg, EV "agent.budgets.agent_llm_calls", 1, &s->agent_calls, err) != 0) return -1;
    if (read_budgets(cfg, EV "agent.budgets.model_interactions", &s->budgets, &s->n_budgets, err) != 0) return -1;
    if (read_int(cfg, EV "agent.budgets.token_budget_generated", -1, &s->token_budget, err) != 0) return -1;
    if (read_int(cfg, EV "agent.ask_model.max_new_tokens", 1, &v, err) != 0) return -1;
    s->ask_max_new_tokens = (int)v;
    if (dk_cfg_try_float(cfg, EV "agent.ask_model.temperature", &s->ask_temperature, err) != 0) return -1;
    if (read_int(cfg, EV "agent.ask_model.max_prompts", 1, &v, err) != 0) return -1;
    s->ask_max_prompts = (int)v;
    if (read_int(cfg, EV "agent.ask_model.max_prompt_chars", 1, &v, err) != 0) return -1;
    s->ask_max_prompt_chars = (int)v;
    if (dk_cfg_try_bool(cfg, EV "agent.ask_model.disable_thinking", &s->disable_thinking, err) != 0) return -1;
    if (dk_cfg_try_str(cfg, EV "agent.hints", true, &s->hints, err) != 0) return -1;
    if (!s->hints) s->hints = "";
    if (dk_cfg_try_bool(cfg, EV "agent.baselines.enabled", &s->baselines, err) != 0) return -1;
    if (s->baselines) {
        if (read_budgets(cfg, EV "agent.baselines.budgets.model_interactions", &s->baseline_budgets, &s->n_baseline_budgets, err) != 0)
            return -1;
        if (read_int(cfg, EV "agent.baselines.budgets.token_budget_generated", -1, &s->baseline_token_budget, err) != 0) return -1;
    }
    if (dk_cfg_try_str(cfg, EV "agent.llm.base_url", true, &s->agent_base_url, err) != 0) return -1;
    if (dk_cfg_try_str(cfg, EV "agent.llm.model_id", false, &s->agent_model, err) != 0) return -1;
    /* models */
    if (dk_cfg_try_str(cfg, EV "models.base_url", true, &s->models_url, err) != 0) return -1;
    if (dk_cfg_try_str(cfg, EV "models.base_model", false, &s->base_model, err) != 0) return -1;
    if (dk_cfg_try_str(cfg, EV "models.finetuned_model", false, &s->ft_model, err) != 0) return -1;
    if (dk_cfg_try_str(cfg, EV "models.api_key_file", true, &s->models_key_file, err) != 0) return -1;
    if (dk_cfg_try_str(cfg, EV "models.api_key_env", true, &s->models_key_env, err) != 0) return -1;
    if (dk_cfg_try_float(cfg, EV "models.request_timeout_s", &s->models_timeout_s, err) != 0) return -1;
    if (read_int(cfg, EV "models.max_attempts", 1, &v, err) != 0) return -1;
    s->models_attempts = (int)v;
    if (dk_cfg_try_float(cfg, EV "models.start_timeout_s", &s->start_timeout_s, err) != 0) return -1;
    if (!(s->models_timeout_s > 0) || !(s->start_timeout_s > 0))
        return dk_err_set(err, DK_EXIT_USAGE, "config keys " EV "models.request_timeout_s and start_timeout_s must be positive");
    if (dk_cfg_try_str(cfg, EV "null_control.organism", true, &s->null_organism, err) != 0) return -1;
    /* the organism */
    s->organism = dk_cfg_has(cfg, "organism.name") ? dk_cfg_str(cfg, "organism.name") : NULL;
    if (s->organism && strcmp(s->organism, "None") == 0) s->organism = NULL;
    s->organism_type = s->organism && dk_cfg_has(cfg, "organism.type") ? dk_cfg_str(cfg, "organism.type") : NULL;
    s->is_null_pair = s->organism_type && strcmp(s->organism_type, DK_NULL_ORGANISM_TYPE) == 0;
    /* a null pair's "finetuned" model is the base itself: ask the base under both names */
    if (s->is_null_pair) s->ft_model = s->base_model;
    return 0;
}

void dk_eval_settings_free(dk_eval_settings *s) {
    free(s->budgets);
    free(s->baseline_budgets);
    memset(s, 0, sizeof *s);
}

char *dk_eval_llm_id(const char *model_id) {
    char *id = dk_strdup(model_id);
    for (char *p = id; *p; p++)
        if (*p == '/') *p = '_';
    return id;
}

/* The seed's agent_cfg_hash: md5(str({"agent": <diffing.method.agent, resolved>})), "" when the method has no
 * agent settings. */
void dk_eval_cfg_hash(const dk_cfg *cfg, char out[33]) {
    out[0] = 0;
    cJSON *agent = dk_agent_cfg_json(cfg, "diffing.method.agent");
    if (!agent) return;
    cJSON *wrap = cJSON_CreateObject();
    cJSON_AddItemToObject(wrap, "agent", agent);
    char *text = dk_pyjson_repr(wrap);
    dk_agent_md5_hex(text, out);
    free(text);
    cJSON_Delete(wrap);
}

char *dk_eval_run_group_name(const char *agent_name, const char *cfg_hash, const char *llm_id, int64_t budget,
                             const char *hints) {
    /* name = agent.name + "_" + ("_" + hash if hash) + llm_id (run()); folder = name + "_mi{budget}" + hints + config
     * suffix (run_agent()) */
    char hints_suffix[48] = "";
    if (hints && hints[0]) {
        char h[33];
        dk_agent_md5_hex(hints, h);
        snprintf(hints_suffix, sizeof hints_suffix, "_hints%s", h);
    }
    return dk_sprintf("%s_%s%s%s_mi%lld%s%s%s", agent_name, cfg_hash[0] ? "_" : "", cfg_hash, llm_id, (long long)budget,
                      hints_suffix, cfg_hash[0] ? "_c" : "", cfg_hash);
}
