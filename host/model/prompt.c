/* prompt.c — see prompt.h. */
#include "model/prompt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "io/json_value.h"

/* The family recognised from the template in tokenizer_config.json or, when it has none, chat_template.jinja. */
static int detect_family(const dk_tokenizer *tok, const char *model_dir, dk_chat_family *family, dk_err *err) {
    const char *config = dk_tokenizer_config_json(tok);
    cJSON *root = config ? cJSON_Parse(config) : NULL;
    int rc;
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "chat_template"))) {
        rc = dk_chat_family_detect(config, family, err);
    } else {
        char *path = dk_path_join(model_dir, "chat_template.jinja");
        size_t size;
        char *jinja = dk_is_file(path) ? dk_read_file(path, &size, err) : NULL;
        if (!jinja) {
            rc = dk_err_is_set(err) ? -1 : dk_err_set(err, DK_EXIT_USAGE, "%s has no chat template (tokenizer_config.json "
                                                      "\"chat_template\" or chat_template.jinja): name its chat family "
                                                      "(--chat-family)", model_dir);
        } else { /* the detector reads a tokenizer_config.json text: hand it one holding the template */
            cJSON *wrapped = cJSON_CreateObject();
            cJSON_AddStringToObject(wrapped, "chat_template", jinja);
            char *text = cJSON_PrintUnformatted(wrapped);
            rc = dk_chat_family_detect(text, family, err);
            free(text);
            cJSON_Delete(wrapped);
        }
        free(jinja);
        free(path);
    }
    cJSON_Delete(root);
    return rc;
}

int dk_chat_format_open(const dk_tokenizer *tok, const char *model_dir, const char *family_name, int enable_thinking,
                        dk_chat_format *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    out->enable_thinking = enable_thinking;
    int rc = family_name ? dk_chat_family_from_name(family_name, &out->family, err)
                         : detect_family(tok, model_dir, &out->family, err);
    if (rc != 0) return -1;
    if (dk_chat_family_fits(out->family, tok, out->warning, sizeof out->warning)) out->warning[0] = '\0';
    const char *config = dk_tokenizer_config_json(tok);
    out->bos_token = config ? dk_chat_config_bos_token(config) : NULL;
    return 0;
}

void dk_chat_format_free(dk_chat_format *f) {
    free(f->bos_token);
    memset(f, 0, sizeof *f);
}

static void take_ids(dk_tok_ids *l, int64_t **ids, int64_t *n_ids) {
    *ids = dk_malloc((l->n ? l->n : 1) * sizeof **ids);
    for (size_t i = 0; i < l->n; i++) (*ids)[i] = l->ids[i];
    *n_ids = (int64_t)l->n;
    dk_tok_ids_free(l);
}

int dk_prompt_encode_chat(dk_tokenizer *tok, const dk_chat_format *f, const dk_chat_message *messages, size_t n,
                          int64_t **ids, int64_t *n_ids, dk_err *err) {
    dk_chat_options opt = {.add_generation_prompt = true, .enable_thinking = f->enable_thinking,
                           .bos_token = f->bos_token};
    char *rendered = dk_chat_render(f->family, messages, n, &opt, err);
    if (!rendered) return -1;
    dk_tok_ids out = {0};
    int rc = dk_tokenizer_encode(tok, rendered, strlen(rendered), false, &out, err);
    free(rendered);
    if (rc != 0) {
        dk_tok_ids_free(&out);
        return -1;
    }
    take_ids(&out, ids, n_ids);
    return 0;
}

int dk_prompt_encode_text(dk_tokenizer *tok, const char *text, size_t len, int64_t **ids, int64_t *n_ids, dk_err *err) {
    dk_tok_ids out = {0};
    if (dk_tokenizer_encode(tok, text, len, true, &out, err) != 0) {
        dk_tok_ids_free(&out);
        return -1;
    }
    take_ids(&out, ids, n_ids);
    return 0;
}

static void add_stop(int64_t *stops, int *n, int64_t id) {
    if (id < 0 || *n >= DK_MAX_STOP_IDS) return;
    for (int i = 0; i < *n; i++)
        if (stops[i] == id) return;
    stops[(*n)++] = id;
}

/* generation_config.json of model_dir parsed, or NULL when there is none (or it cannot be read: then `warning`
 * says so, with what is not used). */
static cJSON *read_generation_config(const char *model_dir, const char *unused, char *warning, size_t cap) {
    char *path = dk_path_join(model_dir, "generation_config.json");
    dk_err err = {0};
    size_t size;
    char *text = dk_is_file(path) ? dk_read_file(path, &size, &err) : NULL;
    cJSON *root = text ? dk_json_parse_document(text, size, path, DK_EXIT_USAGE, unused, &err) : NULL;
    if (dk_err_is_set(&err) && cap) snprintf(warning, cap, "%s", err.msg);
    free(path);
    free(text);
    return root;
}

/* eos_token_id (a number or a list) of generation_config.json, when the folder has one. */
static void add_generation_config_stops(const char *model_dir, int64_t *stops, int *n, char *warning, size_t cap) {
    cJSON *root = read_generation_config(model_dir, "its eos_token_id is not used", warning, cap);
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (cJSON_IsNumber(eos)) add_stop(stops, n, (int64_t)eos->valuedouble);
    const cJSON *v;
    if (cJSON_IsArray(eos)) cJSON_ArrayForEach(v, eos) if (cJSON_IsNumber(v)) add_stop(stops, n, (int64_t)v->valuedouble);
    cJSON_Delete(root);
}

void dk_model_sampling_defaults(const char *model_dir, int64_t *top_k, float *top_p, char *warning, size_t cap) {
    if (cap) warning[0] = '\0';
    *top_k = 50;   /* transformers' GenerationConfig defaults */
    *top_p = 1.0f;
    cJSON *root = read_generation_config(model_dir, "its top_k / top_p are not used", warning, cap);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "top_k"), *p = cJSON_GetObjectItemCaseSensitive(root, "top_p");
    if (cJSON_IsNumber(k)) *top_k = k->valuedouble > 0 ? (int64_t)k->valuedouble : 0;
    if (cJSON_IsNumber(p)) *top_p = (float)p->valuedouble;
    cJSON_Delete(root);
}

int dk_model_stop_ids(const dk_model *m, const char *model_dir, const dk_tokenizer *tok, int64_t *stops,
                      char *warning, size_t warning_cap) {
    int n = 0;
    if (warning_cap) warning[0] = '\0';
    for (int i = 0; i < m->cfg.n_eos_token_ids; i++) add_stop(stops, &n, m->cfg.eos_token_ids[i]);
    add_generation_config_stops(model_dir, stops, &n, warning, warning_cap);
    static const char *const end_of_turn[] = {"<end_of_turn>", "<|eot_id|>", "<|im_end|>"};
    for (size_t i = 0; tok && i < sizeof end_of_turn / sizeof end_of_turn[0]; i++)
        add_stop(stops, &n, dk_tokenizer_token_to_id(tok, end_of_turn[i]));
    return n;
}
