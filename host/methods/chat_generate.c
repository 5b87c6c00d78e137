/* chat_generate.c — see chat_generate.h. */
#include "methods/chat_generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_memory.h"
#include "core/log.h"
#include "core/strutil.h"
#include "io/file.h"

int dk_chat_gen_init(dk_chat_gen *g, const dk_cfg *cfg, dk_backend *be, const char *model_dir,
                     const dk_lora_adapter *adapter, dk_tokenizer *tok, int64_t max_batch, dk_err *err) {
    memset(g, 0, sizeof *g);
    const dk_model *m = be->model;
    g->be = be;
    g->model = m;
    g->adapter = adapter;
    g->tok = tok;
    g->max_batch = max_batch > 0 ? max_batch : 1;
    const char *family = dk_cfg_str_or_null(cfg, "model.chat_template");
    if (family) {
        if (dk_chat_format_open(tok, model_dir, family, 0, &g->format, err) != 0) {
            dk_err_prefix(err, "model.chat_template: ");
            return -1;
        }
        g->has_family = true;
        if (g->format.warning[0])
            return dk_err_set(err, DK_EXIT_USAGE, "model.chat_template = %s: %s", family, g->format.warning);
    }
    char warning[512] = "";
    g->n_stops = dk_model_stop_ids(m, model_dir, tok, g->stops, warning, sizeof warning);
    if (warning[0]) LOG_WARN("%s", warning);
    const char *eot = dk_cfg_str_or_null(cfg, "model.end_of_turn_token");
    if (eot) {
        int32_t id = dk_tokenizer_token_to_id(tok, eot);
        if (id < 0)
            return dk_err_set(err, DK_EXIT_USAGE, "model.end_of_turn_token = %s is not one token of the model's "
                              "tokenizer: give the token that ends an assistant turn, or null", eot);
        bool known = false;
        for (int i = 0; i < g->n_stops; i++) known |= g->stops[i] == id;
        if (!known && g->n_stops < DK_MAX_STOP_IDS) g->stops[g->n_stops++] = id;
    }
    dk_model_sampling_defaults(model_dir, &g->hf_top_k, &g->hf_top_p, warning, sizeof warning);
    if (warning[0]) LOG_WARN("%s", warning);
    if (g->n_stops > 0) {
        int32_t first = (int32_t)g->stops[0];
        g->eos_text = dk_tokenizer_decode(tok, &first, 1, false, NULL, err);
        if (!g->eos_text) return -1;
    }
    return 0;
}

void dk_chat_gen_free(dk_chat_gen *g) {
    if (g->has_family) dk_chat_format_free(&g->format);
    free(g->eos_text);
    memset(g, 0, sizeof *g);
}

int dk_chat_gen_prompt_ids(const dk_chat_gen *g, const char *prompt, int64_t **ids, int64_t *n, dk_err *err) {
    if (!g->has_family) return dk_prompt_encode_text(g->tok, prompt, strlen(prompt), ids, n, err);
    dk_chat_message msg = {"user", prompt, NULL};
    return dk_prompt_encode_chat(g->tok, &g->format, &msg, 1, ids, n, err);
}

/* The seed's _clean_generated_text: runs of the EOS string become one. */
static char *collapse_repeats(char *text, const char *eos) {
    if (!eos || !*eos) return text;
    const size_t k = strlen(eos);
    char *w = text;
    for (const char *r = text; *r;) {
        if (strncmp(r, eos, k) == 0) {
            memmove(w, r, k);
            w += k;
            r += k;
            while (strncmp(r, eos, k) == 0) r += k;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
    return text;
}

/* One dk_generate call over prompts [from, to) of the request. */
static int run_batch(const dk_chat_gen *g, const dk_chat_gen_request *req, int64_t from, int64_t to,
                     int64_t **prompt_ids, const int64_t *prompt_len, char **texts, int64_t **ids, int64_t *n_ids,
                     dk_err *err) {
    const int64_t S = to - from;
    int64_t total = 0;
    for (int64_t i = from; i < to; i++) total += prompt_len[i];
    int64_t *packed = dk_malloc((size_t)(total ? total : 1) * sizeof *packed);   /* (total) */
    int64_t *starts = dk_malloc((size_t)(S + 1) * sizeof *starts);
    dk_seq_options *per_seq = dk_malloc((size_t)S * sizeof *per_seq);
    float *strength = req->steer ? dk_malloc((size_t)S * sizeof *strength) : NULL;
    int64_t at = 0;
    for (int64_t i = from; i < to; i++) {
        starts[i - from] = at;
        memcpy(packed + at, prompt_ids[i], (size_t)prompt_len[i] * sizeof *packed);
        at += prompt_len[i];
        per_seq[i - from] = (dk_seq_options){.temperature = req->temperature, .top_p = req->top_p, .top_k = req->top_k,
                                             .seed = req->seed + (uint64_t)i, .max_new_tokens = req->max_new_tokens,
                                             .stop_ids = g->stops, .n_stop = g->n_stops};
        if (strength) strength[i - from] = req->strengths ? req->strengths[i] : 1.0f;
    }
    starts[S] = at;
    dk_steer steer;
    if (req->steer) {
        steer = *req->steer;
        steer.seq_strength = strength;
    }
    dk_generate_options opt = {.max_new_tokens = req->max_new_tokens, .temperature = req->temperature,
                               .top_p = req->top_p, .top_k = req->top_k, .seed = req->seed, .stop_ids = g->stops, .n_stop = g->n_stops,
                               .steers = req->steer ? &steer : NULL, .n_steer = req->steer ? 1 : 0,
                               .per_seq = per_seq, .logit_amp = req->logit_amp,
                               .logit_amp_alpha = req->logit_amp_alpha, .logit_amp_reference = NULL};
    dk_batch batch = {packed, total, starts, S, true};
    dk_generation gen;
    int rc = dk_generate_backend(g->be, g->adapter, &batch, &opt, &gen, err);
    const bool generated = rc == 0;
    for (int64_t s = 0; rc == 0 && s < S; s++) {
        int32_t *ids32 = dk_malloc((size_t)(gen.n_ids[s] ? gen.n_ids[s] : 1) * sizeof *ids32);
        for (int64_t t = 0; t < gen.n_ids[s]; t++) ids32[t] = (int32_t)gen.ids[s][t];
        const int64_t shown = req->plain_text && gen.stopped[s] ? gen.n_ids[s] - 1 : gen.n_ids[s];
        char *text = dk_tokenizer_decode(g->tok, ids32, (size_t)shown, req->plain_text, NULL, err);
        free(ids32);
        if (!text) {
            rc = -1;
            break;
        }
        texts[from + s] = req->plain_text ? text : collapse_repeats(text, g->eos_text);
        if (ids) {
            ids[from + s] = dk_malloc((size_t)(gen.n_ids[s] ? gen.n_ids[s] : 1) * sizeof **ids);
            memcpy(ids[from + s], gen.ids[s], (size_t)gen.n_ids[s] * sizeof **ids);
            n_ids[from + s] = gen.n_ids[s];
        }
    }
    if (generated) dk_generation_free(&gen);
    free(packed), free(starts), free(per_seq), free(strength);
    return rc;
}

int dk_chat_gen_run(const dk_chat_gen *g, const dk_chat_gen_request *req, char **texts, int64_t **ids,
                    int64_t *n_ids, dk_err *err) {
    int64_t **prompt_ids = dk_calloc((size_t)(req->n ? req->n : 1), sizeof *prompt_ids);
    int64_t *prompt_len = dk_calloc((size_t)(req->n ? req->n : 1), sizeof *prompt_len);
    for (int64_t i = 0; i < req->n; i++) texts[i] = NULL;
    int rc = 0;
    for (int64_t i = 0; i < req->n && rc == 0; i++) {
        if (i > 0 && strcmp(req->prompts[i], req->prompts[i - 1]) == 0) { /* repeated samples of one prompt */
            prompt_len[i] = prompt_len[i - 1];
            prompt_ids[i] = dk_malloc((size_t)(prompt_len[i] ? prompt_len[i] : 1) * sizeof(int64_t));
            memcpy(prompt_ids[i], prompt_ids[i - 1], (size_t)prompt_len[i] * sizeof(int64_t));
        } else {
            rc = dk_chat_gen_prompt_ids(g, req->prompts[i], &prompt_ids[i], &prompt_len[i], err);
        }
    }
    for (int64_t from = 0; from < req->n && rc == 0; from += g->max_batch) {
        int64_t to = from + g->max_batch < req->n ? from + g->max_batch : req->n;
        rc = run_batch(g, req, from, to, prompt_ids, prompt_len, texts, ids, n_ids, err);
    }
    for (int64_t i = 0; i < req->n; i++) free(prompt_ids[i]);
    free(prompt_ids);
    free(prompt_len);
    if (rc != 0)
        for (int64_t i = 0; i < req->n; i++) {
            free(texts[i]);
            texts[i] = NULL;
        }
    return rc;
}

int dk_chat_gen_nll(const dk_chat_gen *g, const int64_t *prompt, int64_t n_prompt, const int64_t *completion,
                    int64_t n_completion, float *nll, dk_err *err) {
    if (n_completion == 0) return 0;
    if (n_prompt == 0) return dk_err_set(err, DK_EXIT_RUNTIME, "dk_chat_gen_nll: an empty prompt predicts nothing");
    const int64_t T = n_prompt + n_completion, V = g->model->cfg.vocab_size;
    int64_t *ids = dk_malloc((size_t)T * sizeof *ids);               /* (T) prompt then completion */
    memcpy(ids, prompt, (size_t)n_prompt * sizeof *ids);
    memcpy(ids + n_prompt, completion, (size_t)n_completion * sizeof *ids);
    float *logits = dk_malloc((size_t)(T * V) * sizeof *logits);      /* (T, V) */
    int64_t starts[2] = {0, T};
    dk_batch batch = {ids, T, starts, 1, true};
    dk_hook_plan plan = {.logits = DK_LOGITS_ALL, .logits_out = logits};
    int rc = dk_backend_forward(g->be, g->adapter, &batch, &plan, NULL, err);
    for (int64_t j = 0; rc == 0 && j < n_completion; j++) {
        const float *row = logits + (n_prompt + j - 1) * V;   /* the position that predicts completion[j] */
        double mx = row[0], z = 0;
        for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int64_t v = 0; v < V; v++) z += exp((double)row[v] - mx);
        nll[j] = (float)(mx + log(z) - (double)row[completion[j]]);
    }
    free(ids);
    free(logits);
    return rc;
}

int dk_read_prompts(const char *path, const char *key, char ***out, int *n, dk_err *err) {
    size_t size = 0;
    char *text = dk_read_file(path, &size, err);
    if (!text) {
        dk_err_prefix(err, "%s: ", key);
        return -1;
    }
    *out = NULL;
    *n = 0;
    int cap = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *s = line, *e = line + strlen(line);
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
        if (e == s) continue;
        if (*n == cap) *out = dk_realloc(*out, (size_t)(cap = cap ? 2 * cap : 16) * sizeof **out);
        (*out)[(*n)++] = dk_strndup(s, (size_t)(e - s));
    }
    free(text);
    if (*n == 0) return dk_err_set(err, DK_EXIT_USAGE, "%s = %s holds no prompt (one prompt per line)", key, path);
    return 0;
}
