/* adl_causal.c — the ADL's optional causal effect step (seed_spec §5.7, the seed's causal_effect.py), off by default.
 *
 * Does the difference direction carry what the finetune changed? For each task (diff_source_dataset, eval dataset,
 * layer, positions) and position p, v̂ = mean_diff_p / ‖mean_diff_p‖ (the means adl_means.c computed on the source
 * dataset). On the eval texts the target model (finetuned for patch_direction base_to_ft, base for ft_to_base) runs
 * with its component along v̂ set to the source model's (or removed: zero_ablate) at every token (adl_causal.h);
 * its per-token loss is compared with both models' clean losses and with the same intervention along baselines:
 * num_random_vectors Gaussian directions (torch.randn(H) after torch.manual_seed(seed); the seed does not seed) and
 * num_random_diff_vectors differences of two random base activations at the layer (the seed's
 * _sample_activation_diff_vectors: the first 128 conversations of dataset.chat's train split, longest first, in
 * forwards of 16 until 2K tokens are pooled; 2K distinct tokens drawn (our Fisher-Yates, not torch.randperm) and
 * paired).
 *
 * Eval texts, encoded as the seed does: a text dataset with special tokens, cut to max_total_tokens, every token
 * counted; a chat dataset (non-system messages alternating user/assistant from the user's; others skipped) rendered
 * with the model's chat template, only tokens of assistant messages counted (spans from rendering each prefix of the
 * conversation). Targets: token t+1 predicted at t; "all" = every counted target, "after_k" = those at t > after_k,
 * "exclude_pos" = all but the target at t = p + 1. Texts are sorted longest first and packed batch_size · (longest)
 * tokens per forward (the seed pads batch_size sequences and grows the batch for shorter ones). Statistics as the
 * seed's StreamingCEStats: exact min and max, the median of a reservoir of 8192 per-token losses.
 *
 * Output per position: layer_{L}/{ds}/causal_effect/direction_{dir}/eval_{eval}/position_{p}/results.json (the
 * seed's payload; NaN is written as null) and attributes of the results.h5 group of the same path. */
#include "methods/adl_causal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_memory.h"
#include "core/log.h"
#include "core/strutil.h"
#include "io/file.h"
#include "io/json_value.h"
#include "methods/adl_steps.h"
#include "methods/torch_rng.h"
#include "pipeline/pp_dataset.h"

enum { RESERVOIR = 8192, RDIFF_MAX_CHATS = 128, RDIFF_BATCH = 16 };

/* ---------------------------------------------------------------------------------------------------
 * The intervened forward (adl_causal.h) */

int adl_ce_token_nll(dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *b, const adl_ce_intervention *iv,
                     int64_t capture_layer, float *capture, double *nll, dk_err *err) {
    const int64_t T = b->n_tokens, H = be->model->cfg.hidden_size, V = be->model->cfg.vocab_size;
    float *logits = dk_malloc((size_t)(T * V) * sizeof *logits);   /* (T, V) */
    float *resid = NULL;                                            /* (T, H) the new residual */
    dk_patch *patches = NULL;                                       /* (T) */
    dk_hook_plan plan = {.logits = DK_LOGITS_ALL, .logits_out = logits};
    if (iv) {
        resid = dk_malloc((size_t)(T * H) * sizeof *resid);
        patches = dk_malloc((size_t)T * sizeof *patches);
        const float *v = iv->direction;
        for (int64_t t = 0; t < T; t++) {
            const float *h = iv->h_target + t * H, *hs = iv->h_source ? iv->h_source + t * H : NULL;
            float own = 0, src = 0;
            for (int64_t k = 0; k < H; k++) own += h[k] * v[k];
            if (!iv->zero_ablate)
                for (int64_t k = 0; k < H; k++) src += hs[k] * v[k];
            const float shift = iv->zero_ablate ? -own : src - own;
            for (int64_t k = 0; k < H; k++) resid[t * H + k] = h[k] + shift * v[k];
            patches[t] = (dk_patch){.layer = iv->layer, .token = t, .vector = resid + t * H};
        }
        plan.n_patch = T;
        plan.patches = patches;
    } else if (capture_layer >= 0) {
        plan.n_capture = 1;
        plan.capture_layers = &capture_layer;
        plan.captures = &capture;
    }
    int rc = dk_backend_forward(be, adapter, b, &plan, NULL, err);
    for (int64_t s = 0; rc == 0 && s < b->n_seqs; s++)
        for (int64_t t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) {
            if (t + 1 == b->seq_start[s + 1]) {
                nll[t] = 0;
                continue;
            }
            const float *z = logits + t * V;
            float mx = z[0];
            for (int64_t k = 1; k < V; k++) mx = z[k] > mx ? z[k] : mx;
            double sum = 0;
            for (int64_t k = 0; k < V; k++) sum += exp((double)z[k] - mx);
            nll[t] = log(sum) + mx - (double)z[b->ids[t + 1]];
        }
    free(logits), free(resid), free(patches);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Eval texts */

typedef struct ce_texts {
    int64_t n;                   /* sequences, longest first */
    int64_t *ids;                /* (offsets[n]) packed */
    int64_t *offsets;            /* (n + 1) */
    unsigned char *counted;      /* (offsets[n]) 1: the token is a counted target (all, or the assistant's) */
    int64_t n_skipped;           /* conversations that do not alternate, blank texts */
} ce_texts;

static void texts_free(ce_texts *t) {
    free(t->ids), free(t->offsets), free(t->counted);
    memset(t, 0, sizeof *t);
}

static void texts_push(ce_texts *t, int64_t *cap, const int32_t *ids, const unsigned char *counted, int64_t len) {
    if (!t->offsets) t->offsets = dk_calloc(1, sizeof *t->offsets);
    const int64_t at = t->offsets[t->n];
    if (at + len > *cap) {
        while (at + len > *cap) *cap = *cap ? 2 * *cap : 4096;
        t->ids = dk_realloc(t->ids, (size_t)*cap * sizeof *t->ids);
        t->counted = dk_realloc(t->counted, (size_t)*cap);
    }
    for (int64_t i = 0; i < len; i++) t->ids[at + i] = ids[i];
    memcpy(t->counted + at, counted, (size_t)len);
    t->offsets = dk_realloc(t->offsets, (size_t)(t->n + 2) * sizeof *t->offsets);
    t->offsets[++t->n] = at + len;
}

/* The seed's _encode_chat of one record: 1 kept, 0 skipped (roles do not alternate), -1 error. */
static int encode_chat(dk_tokenizer *tok, const cJSON *msgs, const dk_chat_family family, const char *bos,
                       int64_t max_tokens, dk_tok_ids *ids, unsigned char **counted, dk_err *err) {
    const int n = cJSON_GetArraySize(msgs);
    dk_chat_message *m = dk_calloc((size_t)(n ? n : 1), sizeof *m);
    int64_t *ends = dk_calloc((size_t)(n ? n : 1), sizeof *ends);
    int kept = 1, turn = 0;
    for (int i = 0; i < n && kept == 1; i++) {
        const cJSON *it = cJSON_GetArrayItem(msgs, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role"), *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) kept = -1;
        else if (strcmp(role->valuestring, "system") != 0 &&
                 strcmp(role->valuestring, turn++ % 2 ? "assistant" : "user") != 0) kept = 0;
        else m[i] = (dk_chat_message){.role = role->valuestring, .content = content->valuestring};
    }
    if (kept == 1 && turn == 0) kept = 0;
    if (kept == -1) dk_err_set(err, DK_EXIT_RUNTIME, "a message lacks a string \"role\" or \"content\"");
    const dk_chat_options co = {.add_generation_prompt = false, .enable_thinking = -1, .bos_token = bos};
    for (int i = 0; i < n && kept == 1; i++) { /* token length of each prefix: the message spans */
        char *text = dk_chat_render(family, m, (size_t)i + 1, &co, err);
        ids->n = 0;
        if (!text || dk_tokenizer_encode(tok, text, strlen(text), false, ids, err) != 0) kept = -1;
        ends[i] = (int64_t)ids->n;
        free(text);
    }
    if (kept == 1) {
        if ((int64_t)ids->n > max_tokens) ids->n = (size_t)max_tokens;
        *counted = dk_calloc(ids->n ? ids->n : 1, 1);
        for (int i = 0; i < n; i++)
            if (strcmp(m[i].role, "assistant") == 0)
                for (int64_t t = i ? ends[i - 1] : 0; t < ends[i] && t < (int64_t)ids->n; t++) (*counted)[t] = 1;
    }
    free(m), free(ends);
    return kept;
}

typedef struct eval_source {
    const char *path, *name;
    bool is_chat;
    const char *text_column, *messages_column;
    int64_t max_samples, max_tokens;
} eval_source;

/* Reads and encodes the first max_samples usable records of src, sorted longest first (stable). */
static int read_texts(dk_method_job *job, const eval_source *src, ce_texts *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    dk_chat_family family = DK_CHAT_GEMMA2;
    if (src->is_chat) {
        const char *name = dk_cfg_str_or_null(job->cfg, "model.chat_template");
        if (!name)
            return dk_err_set(err, DK_EXIT_USAGE, "causal_effect: %s is a chat dataset and model.chat_template is null: "
                              "name the model's chat template family", src->name);
        if (dk_chat_family_from_name(name, &family, err) != 0) return -1;
    }
    size_t size = 0;
    char *data = dk_read_file(src->path, &size, err);
    if (!data) return -1;
    ce_texts raw = {0};
    int64_t cap = 0, line_no = 0;
    int rc = 0;
    for (char *line = data; rc == 0 && line < data + size && raw.n < src->max_samples;) {
        char *end = memchr(line, '\n', (size_t)(data + size - line));
        char *next = end ? end + 1 : data + size;
        const size_t len = (size_t)((end ? end : data + size) - line);
        line_no++;
        char why[256] = "";
        cJSON *obj = len ? dk_json_parse_one(line, len, why, sizeof why) : NULL;
        line = next;
        if (!len) continue;
        dk_tok_ids ids = {0};
        unsigned char *counted = NULL;
        int kept = 0;
        if (!cJSON_IsObject(obj)) {
            rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: not a JSON object%s%s", src->path, (long long)line_no,
                            why[0] ? ": " : "", why);
        } else if (src->is_chat) {
            const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, src->messages_column);
            kept = cJSON_IsArray(msgs) ? encode_chat(job->tok, msgs, family, job->pair.bos_token, src->max_tokens,
                                                     &ids, &counted, err) : -1;
            if (kept < 0 && !cJSON_IsArray(msgs))
                dk_err_set(err, DK_EXIT_RUNTIME, "no list field \"%s\"", src->messages_column);
            if (kept < 0) rc = -1, dk_err_prefix(err, "%s:%lld: ", src->path, (long long)line_no);
        } else {
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, src->text_column);
            if (!cJSON_IsString(text))
                rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: no string field \"%s\"", src->path, (long long)line_no,
                                src->text_column);
            else if (text->valuestring[0] &&
                     (rc = dk_tokenizer_encode(job->tok, text->valuestring, strlen(text->valuestring), true, &ids, err)) == 0 &&
                     ids.n > 0) {
                if ((int64_t)ids.n > src->max_tokens) ids.n = (size_t)src->max_tokens;
                counted = dk_malloc(ids.n);
                memset(counted, 1, ids.n);
                kept = 1;
            }
        }
        cJSON_Delete(obj);
        if (rc == 0 && kept == 1 && ids.n >= 2) texts_push(&raw, &cap, ids.ids, counted, (int64_t)ids.n);
        else if (rc == 0) raw.n_skipped++;
        dk_tok_ids_free(&ids);
        free(counted);
    }
    free(data);
    if (rc == 0 && raw.n == 0)
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "causal_effect: %s (%s) gives no usable %s", src->name, src->path,
                        src->is_chat ? "conversation (user/assistant alternating)" : "text of 2 tokens or more");
    if (rc != 0) {
        texts_free(&raw);
        return -1;
    }
    /* longest first, stable (Python's sort) */
    int64_t *order = dk_malloc((size_t)raw.n * sizeof *order);
    for (int64_t i = 0; i < raw.n; i++) order[i] = i;
    for (int64_t i = 1; i < raw.n; i++) { /* insertion sort: stable, and the lists are short */
        const int64_t o = order[i], len = raw.offsets[o + 1] - raw.offsets[o];
        int64_t j = i;
        while (j > 0 && raw.offsets[order[j - 1] + 1] - raw.offsets[order[j - 1]] < len) order[j] = order[j - 1], j--;
        order[j] = o;
    }
    int64_t cap2 = 0;
    out->n_skipped = raw.n_skipped;
    for (int64_t i = 0; i < raw.n; i++) {
        const int64_t a = raw.offsets[order[i]], len = raw.offsets[order[i] + 1] - a;
        int32_t *tmp = dk_malloc((size_t)len * sizeof *tmp);
        for (int64_t k = 0; k < len; k++) tmp[k] = (int32_t)raw.ids[a + k];
        texts_push(out, &cap2, tmp, raw.counted + a, len);
        free(tmp);
    }
    free(order);
    texts_free(&raw);
    return 0;
}

/* Sequences [first, first + n) of t as a packed batch (views into t). */
static dk_batch batch_of(const ce_texts *t, int64_t first, int64_t n, int64_t *starts) {
    for (int64_t s = 0; s <= n; s++) starts[s] = t->offsets[first + s] - t->offsets[first];
    return (dk_batch){.ids = t->ids + t->offsets[first], .n_tokens = starts[n], .seq_start = starts, .n_seqs = n,
                      .is_prompt = true};
}

/* ---------------------------------------------------------------------------------------------------
 * Baseline directions */

/* The seed's _sample_activation_diff_vectors: K differences of two random base activations at `layer`. */
static int random_diff_vectors(dk_method_job *job, const adl_causal_settings *cs, int64_t layer, dk_torch_rng *g,
                               float *out, dk_err *err) {
    const int64_t K = cs->num_random_diff, H = job->pair.d_model;
    char *path = NULL, *name = NULL;
    ce_texts chats = {0};
    int rc = dk_pp_resolve_dataset(cs->rdiff_dataset, "train", "dataset.chat.id", &path, &name, err);
    eval_source src = {.path = path, .name = name, .is_chat = true, .messages_column = "messages",
                       .max_samples = RDIFF_MAX_CHATS, .max_tokens = cs->max_total_tokens};
    if (rc == 0) rc = read_texts(job, &src, &chats, err);
    float *pool = NULL;                          /* (n_pool, H) */
    int64_t n_pool = 0, starts[RDIFF_BATCH + 1];
    for (int64_t i = 0; rc == 0 && i < chats.n && n_pool < 2 * K; i += RDIFF_BATCH) {
        const int64_t n = chats.n - i < RDIFF_BATCH ? chats.n - i : RDIFF_BATCH;
        dk_batch b = batch_of(&chats, i, n, starts);
        pool = dk_realloc(pool, (size_t)((n_pool + b.n_tokens) * H) * sizeof *pool);
        float *cap = pool + n_pool * H;
        dk_hook_plan plan = {.n_capture = 1, .capture_layers = &layer, .captures = &cap};
        rc = dk_model_pair_forward(&job->pair, false, &b, &plan, err);
        n_pool += b.n_tokens;
    }
    if (rc == 0 && n_pool < 2 * K)
        rc = dk_err_set(err, DK_EXIT_USAGE, "causal_effect: %s gives %lld tokens, fewer than the %lld that "
                        "num_random_diff_vectors = %lld needs: lower it", name, (long long)n_pool, (long long)(2 * K),
                        (long long)K);
    if (rc == 0) {
        int64_t *perm = dk_malloc((size_t)n_pool * sizeof *perm);
        for (int64_t i = 0; i < n_pool; i++) perm[i] = i;
        for (int64_t i = 0; i < 2 * K; i++) { /* partial Fisher-Yates: 2K distinct tokens */
            const int64_t j = i + (int64_t)(((uint64_t)dk_torch_rng_next(g) << 32 | dk_torch_rng_next(g)) %
                                            (uint64_t)(n_pool - i));
            const int64_t tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
        }
        for (int64_t k = 0; k < K; k++)
            for (int64_t h = 0; h < H; h++) out[k * H + h] = pool[perm[2 * k] * H + h] - pool[perm[2 * k + 1] * H + h];
        free(perm);
    }
    if (rc != 0) dk_err_prefix(err, "causal_effect random difference vectors (%s = %s): ", "dataset.chat.id",
                               cs->rdiff_dataset);
    free(pool), free(path), free(name);
    texts_free(&chats);
    return rc;
}

/* v / ‖v‖ in place; false when v is zero or not finite. */
static bool normalize(float *v, int64_t H) {
    double n2 = 0;
    for (int64_t h = 0; h < H; h++) n2 += (double)v[h] * v[h];
    if (!(n2 > 0) || !isfinite(n2)) return false;
    const double inv = 1.0 / sqrt(n2);
    for (int64_t h = 0; h < H; h++) v[h] = (float)(v[h] * inv);
    return true;
}

/* ---------------------------------------------------------------------------------------------------
 * Sums and streaming statistics */

typedef struct ce_stats {
    int64_t count, n_res;
    double min, max;
    float *res;                  /* (RESERVOIR) */
} ce_stats;

static void stats_add(ce_stats *s, double v, dk_torch_rng *g) {
    if (!s->res) s->res = dk_malloc(RESERVOIR * sizeof *s->res);
    if (s->count == 0 || v < s->min) s->min = v;
    if (s->count == 0 || v > s->max) s->max = v;
    s->count++;
    if (s->n_res < RESERVOIR) {
        s->res[s->n_res++] = (float)v;
    } else {
        const uint64_t i = (uint64_t)dk_torch_rng_next(g) % (uint64_t)s->count;
        if (i < RESERVOIR) s->res[i] = (float)v;
    }
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static double stats_median(const ce_stats *s) {
    if (s->n_res == 0) return NAN;
    float *c = dk_malloc((size_t)s->n_res * sizeof *c);
    memcpy(c, s->res, (size_t)s->n_res * sizeof *c);
    qsort(c, (size_t)s->n_res, sizeof *c, cmp_float);
    const int64_t mid = s->n_res / 2;
    const double m = s->n_res % 2 ? c[mid] : 0.5 * ((double)c[mid - 1] + c[mid]);
    free(c);
    return m;
}

/* One model variant's losses: the clean models, each baseline direction, each position's direction. */
typedef struct ce_acc {
    double sum_all, sum_after;
    double *sum_at;              /* (n_positions) sum at target t = p + 1 */
    ce_stats all, after;
} ce_acc;

typedef struct ce_counts {
    int64_t all, after;
    int64_t *at;                 /* (n_positions) */
} ce_counts;

/* Adds the counted targets of batch b (losses nll) to a; counts too when c is given. */
static void accumulate(ce_acc *a, ce_counts *c, const double *nll, const dk_batch *b, const unsigned char *counted,
                       int64_t after_k, const int64_t *positions, int64_t n_positions, dk_torch_rng *g) {
    for (int64_t s = 0; s < b->n_seqs; s++)
        for (int64_t j = 0; b->seq_start[s] + j + 1 < b->seq_start[s + 1]; j++) {
            const int64_t t = b->seq_start[s] + j;
            if (!counted[t + 1]) continue;
            if (c) c->all++, c->after += j > after_k;
            if (a) {
                a->sum_all += nll[t];
                stats_add(&a->all, nll[t], g);
                if (j > after_k) a->sum_after += nll[t], stats_add(&a->after, nll[t], g);
            }
            for (int64_t i = 0; i < n_positions; i++)
                if (j == positions[i] + 1) {
                    if (c) c->at[i]++;
                    if (a) a->sum_at[i] += nll[t];
                }
        }
}

static void acc_free(ce_acc *a) {
    free(a->sum_at), free(a->all.res), free(a->after.res);
}

/* ---------------------------------------------------------------------------------------------------
 * The results file */

enum { SEL_ALL, SEL_AFTER, SEL_EXCL };
static const char *const SEL_NAME[] = {"all", "after_k", "exclude_pos"};

typedef struct ce_value {
    double ce, ppl;
    int64_t count;
} ce_value;

static ce_value finalize(double sum, int64_t count) {
    if (count == 0) return (ce_value){NAN, NAN, 0};
    const double ce = sum / (double)count;
    return (ce_value){ce, exp(ce), count};
}

static ce_value acc_value(const ce_acc *a, const ce_counts *c, int sel, int64_t pi) {
    return sel == SEL_ALL ? finalize(a->sum_all, c->all) : sel == SEL_AFTER ? finalize(a->sum_after, c->after)
                          : finalize(a->sum_all - a->sum_at[pi], c->all - c->at[pi]);
}

static cJSON *value_json(ce_value v, const ce_acc *stats_of, int sel) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "ce", v.ce);
    cJSON_AddNumberToObject(j, "ppl", v.ppl);
    cJSON_AddNumberToObject(j, "count", (double)v.count);
    if (stats_of && sel != SEL_EXCL) {
        const ce_stats *s = sel == SEL_ALL ? &stats_of->all : &stats_of->after;
        cJSON_AddNumberToObject(j, "min_ce", s->count ? s->min : NAN);
        cJSON_AddNumberToObject(j, "max_ce", s->count ? s->max : NAN);
        cJSON_AddNumberToObject(j, "median_ce", stats_median(s));
    }
    return j;
}

/* The seed's comparison fields of an intervention x ("i", "r", "rdiff") against the clean models. */
static void add_compare(cJSON *j, const char *tag, ce_value x, ce_value base, ce_value ft, bool ft_is_target,
                        bool with_values) {
    if (with_values) {
        char key[16];
        cJSON_AddNumberToObject(j, "ce_b", base.ce);
        cJSON_AddNumberToObject(j, "ce_ft", ft.ce);
        snprintf(key, sizeof key, "ce_%s", tag);
        cJSON_AddNumberToObject(j, key, x.ce);
        cJSON_AddNumberToObject(j, "ppl_b", base.ppl);
        cJSON_AddNumberToObject(j, "ppl_ft", ft.ppl);
        snprintf(key, sizeof key, "ppl_%s", tag);
        cJSON_AddNumberToObject(j, key, x.ppl);
    }
    const ce_value target = ft_is_target ? ft : base, other = ft_is_target ? base : ft;
    const bool ok = !isnan(target.ce) && !isnan(x.ce);
    cJSON_AddNumberToObject(j, "incr_ce", ok ? x.ce - target.ce : NAN);
    cJSON_AddNumberToObject(j, "incr_ppl", ok ? x.ppl - target.ppl : NAN);
    cJSON_AddNumberToObject(j, "incr_rel_ce", ok ? (x.ce - target.ce) / (other.ce - target.ce) : NAN);
    cJSON_AddNumberToObject(j, "incr_rel_ppl", ok ? (x.ppl - target.ppl) / (other.ppl - target.ppl) : NAN);
}

/* {all, after_k, exclude_pos} of one intervention, with the comparison fields. */
static cJSON *intervention_json(const ce_acc *a, const ce_acc *base, const ce_acc *ft, const ce_counts *c, int64_t pi,
                                const char *tag, bool ft_is_target) {
    cJSON *j = cJSON_CreateObject();
    for (int sel = 0; sel < 3; sel++) {
        const ce_value x = acc_value(a, c, sel, pi);
        cJSON *v = value_json(x, a, sel);
        add_compare(v, tag, x, acc_value(base, c, sel, pi), acc_value(ft, c, sel, pi), ft_is_target, true);
        cJSON_AddItemToObject(j, SEL_NAME[sel], v);
    }
    return j;
}

/* The mean over K baselines (the seed's random_mean: the mean of the sums). */
static cJSON *mean_json(const ce_acc *accs, int64_t K, const ce_acc *base, const ce_acc *ft, const ce_counts *c,
                        int64_t pi, bool ft_is_target) {
    cJSON *j = cJSON_CreateObject();
    for (int sel = 0; sel < 3; sel++) {
        double sum = 0;
        int64_t count = 0;
        for (int64_t k = 0; k < K; k++) {
            const ce_value v = acc_value(&accs[k], c, sel, pi);
            sum += v.count ? v.ce * (double)v.count : 0;
            count = v.count;
        }
        const ce_value x = finalize(sum / (double)K, count);
        cJSON *v = value_json(x, NULL, sel);
        add_compare(v, "", x, acc_value(base, c, sel, pi), acc_value(ft, c, sel, pi), ft_is_target, false);
        cJSON_AddItemToObject(j, SEL_NAME[sel], v);
    }
    return j;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median over K baselines of their CE over all targets (the log line). */
static double baseline_median(const ce_acc *accs, int64_t K, const ce_counts *c) {
    if (K == 0) return NAN;
    double *v = dk_malloc((size_t)K * sizeof *v);
    for (int64_t k = 0; k < K; k++) v[k] = finalize(accs[k].sum_all, c->all).ce;
    qsort(v, (size_t)K, sizeof *v, cmp_double);
    const double m = K % 2 ? v[K / 2] : 0.5 * (v[K / 2 - 1] + v[K / 2]);
    free(v);
    return m;
}

/* ---------------------------------------------------------------------------------------------------
 * One task */

int adl_causal_run(dk_method_job *job, const adl_state *st, const adl_steps *steps, const adl_dataset *ds,
                   const adl_means *m, int task_index, dk_err *err) {
    const adl_causal_settings *cs = &steps->causal;
    const adl_task *task = &cs->tasks[task_index];
    const adl_causal_eval *ev = &cs->evals[task_index];
    const int64_t H = job->pair.d_model, V = job->pair.vocab_size, L = task->layer, P = task->n_positions;
    const int64_t KR = cs->num_random, KD = cs->num_random_diff, n_dirs = KR + KD + P;
    const bool ft_target = cs->base_to_ft;
    const char *dir_name = ft_target ? "base_to_ft" : "ft_to_base";
    const int64_t li = adl_layer_index(st, L);

    /* directions: (n_dirs, H) random, random differences, the positions' v̂ */
    float *dirs = dk_malloc((size_t)(n_dirs * H) * sizeof *dirs);
    dk_torch_rng g;
    dk_torch_rng_seed(&g, (uint64_t)job->seed);
    for (int64_t k = 0; k < KR; k++) dk_torch_randn(&g, dirs + k * H, H);
    int rc = KD > 0 ? random_diff_vectors(job, cs, L, &g, dirs + KR * H, err) : 0;
    for (int64_t i = 0; rc == 0 && i < P; i++)
        memcpy(dirs + (KR + KD + i) * H, adl_mean_vector(m, 0, li, adl_position_index(ds, task->positions[i])),
               (size_t)H * sizeof *dirs);
    for (int64_t k = 0; rc == 0 && k < n_dirs; k++)
        if (!normalize(dirs + k * H, H))
            rc = dk_err_set(err, DK_EXIT_RUNTIME, "causal_effect %s layer %lld: the %s direction %lld is zero or not "
                            "finite", ds->name, (long long)L, k < KR ? "random" : k < KR + KD ? "random difference"
                            : "mean difference", (long long)(k < KR ? k : k < KR + KD ? k - KR : task->positions[k - KR - KD]));

    char *path = NULL, *eval_name = NULL;
    ce_texts texts = {0};
    if (rc == 0) rc = dk_pp_resolve_dataset(ev->id, cs->split, "causal_effect eval_dataset", &path, &eval_name, err);
    eval_source src = {.path = path, .name = eval_name, .is_chat = ev->is_chat, .text_column = ev->text_column,
                       .messages_column = ev->messages_column, .max_samples = cs->max_samples,
                       .max_tokens = cs->max_total_tokens};
    if (rc == 0) rc = read_texts(job, &src, &texts, err);
    const int64_t budget = texts.n ? cs->batch_size * (texts.offsets[1] - texts.offsets[0]) : 0;
    if (rc == 0)
        rc = dk_host_memory_check((uint64_t)budget * (uint64_t)(V + 5 * H + 4) * 4u,
                                  "the causal effect forwards (logits of every token)",
                                  "lower diffing.method.causal_effect.batch_size or max_total_tokens", err);
    if (rc == 0)
        LOG_INFO("diff_adl causal_effect %s layer %lld eval %s (%s, %lld texts, %lld skipped), %s: %lld positions, "
                 "%lld random and %lld random-difference directions", ds->name, (long long)L, eval_name, ev->alias,
                 (long long)texts.n, (long long)texts.n_skipped, dir_name, (long long)P, (long long)KR, (long long)KD);

    /* accumulators: [0] base, [1] ft, then one per direction */
    ce_acc *acc = dk_calloc((size_t)(2 + n_dirs), sizeof *acc);
    for (int64_t a = 0; a < 2 + n_dirs; a++) acc[a].sum_at = dk_calloc((size_t)P, sizeof(double));
    ce_counts counts = {.at = dk_calloc((size_t)P, sizeof(int64_t))};
    float *h_src = dk_malloc((size_t)(budget * H + 1) * sizeof *h_src), *h_tgt = dk_malloc((size_t)(budget * H + 1) * sizeof *h_tgt);
    double *nll = dk_malloc((size_t)(budget + 1) * sizeof *nll);
    int64_t *starts = dk_malloc((size_t)(texts.n + 1) * sizeof *starts);
    dk_backend *src_be = dk_model_pair_backend(&job->pair, !ft_target), *tgt_be = dk_model_pair_backend(&job->pair, ft_target);
    const dk_lora_adapter *src_ad = dk_model_pair_adapter(&job->pair, !ft_target),
                          *tgt_ad = dk_model_pair_adapter(&job->pair, ft_target);
    for (int64_t first = 0; rc == 0 && first < texts.n;) {
        int64_t n = 1;
        while (first + n < texts.n && texts.offsets[first + n + 1] - texts.offsets[first] <= budget) n++;
        dk_batch b = batch_of(&texts, first, n, starts);
        const unsigned char *counted = texts.counted + texts.offsets[first];
        const int64_t *pos = task->positions;
        accumulate(NULL, &counts, NULL, &b, counted, cs->after_k, pos, P, &g);
        rc = adl_ce_token_nll(src_be, src_ad, &b, NULL, L, h_src, nll, err);
        if (rc == 0) accumulate(&acc[ft_target ? 0 : 1], NULL, nll, &b, counted, cs->after_k, pos, P, &g);
        if (rc == 0) rc = adl_ce_token_nll(tgt_be, tgt_ad, &b, NULL, L, h_tgt, nll, err);
        if (rc == 0) accumulate(&acc[ft_target ? 1 : 0], NULL, nll, &b, counted, cs->after_k, pos, P, &g);
        for (int64_t k = 0; rc == 0 && k < n_dirs; k++) {
            const adl_ce_intervention iv = {.layer = L, .direction = dirs + k * H, .h_target = h_tgt,
                                            .h_source = cs->zero_ablate ? NULL : h_src, .zero_ablate = cs->zero_ablate};
            rc = adl_ce_token_nll(tgt_be, tgt_ad, &b, &iv, -1, NULL, nll, err);
            if (rc == 0) accumulate(&acc[2 + k], NULL, nll, &b, counted, cs->after_k, pos, P, &g);
        }
        first += n;
    }
    if (rc != 0) dk_err_prefix(err, "causal_effect %s layer %lld eval %s: ", ds->name, (long long)L, ev->alias);

    const ce_acc *base = &acc[0], *ft = &acc[1], *rnd = &acc[2], *rdiff = &acc[2 + KR];
    const double rnd_median = baseline_median(rnd, KR, &counts), rdiff_median = baseline_median(rdiff, KD, &counts);
    for (int64_t i = 0; rc == 0 && i < P; i++) {
        const int64_t p = task->positions[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "eval_dataset_id", ev->id);
        cJSON_AddStringToObject(j, "diff_source_dataset_id", ds->id);
        cJSON_AddStringToObject(j, "split", cs->split);
        cJSON_AddNumberToObject(j, "layer", (double)L);
        cJSON_AddNumberToObject(j, "position", (double)p);
        cJSON_AddNumberToObject(j, "after_k", (double)cs->after_k);
        cJSON_AddStringToObject(j, "patch_direction", dir_name);
        cJSON_AddStringToObject(j, "activation_source_model", ft_target ? "base" : "finetuned");
        cJSON_AddStringToObject(j, "intervened_model", ft_target ? "finetuned" : "base");
        cJSON_AddNumberToObject(j, "num_samples", (double)texts.n);
        cJSON_AddBoolToObject(j, "zero_ablate", cs->zero_ablate);
        for (int which = 0; which < 2; which++) {
            cJSON *mj = cJSON_CreateObject();
            for (int sel = 0; sel < 3; sel++)
                cJSON_AddItemToObject(mj, SEL_NAME[sel], value_json(acc_value(&acc[1 - which], &counts, sel, i),
                                                                     &acc[1 - which], sel));
            cJSON_AddItemToObject(j, which == 0 ? "finetuned" : "base", mj);
        }
        const ce_acc *iv = &acc[2 + KR + KD + i];
        cJSON_AddItemToObject(j, "intervention", intervention_json(iv, base, ft, &counts, i, "i", ft_target));
        cJSON *r = cJSON_AddArrayToObject(j, "random");
        for (int64_t k = 0; k < KR; k++) cJSON_AddItemToArray(r, intervention_json(&rnd[k], base, ft, &counts, i, "r", ft_target));
        cJSON_AddItemToObject(j, "random_mean", mean_json(rnd, KR, base, ft, &counts, i, ft_target));
        cJSON *d = cJSON_AddArrayToObject(j, "random_diff");
        for (int64_t k = 0; k < KD; k++)
            cJSON_AddItemToArray(d, intervention_json(&rdiff[k], base, ft, &counts, i, "rdiff", ft_target));
        cJSON_AddItemToObject(j, "random_diff_mean", KD ? mean_json(rdiff, KD, base, ft, &counts, i, ft_target)
                                                        : cJSON_CreateObject());
        char *group = dk_sprintf("layer_%lld/%s/causal_effect/direction_%s/eval_%s/position_%lld", (long long)L,
                                 ds->name, dir_name, eval_name, (long long)p);
        char *file = dk_sprintf("%s/results.json", group);
        dk_results_json(&job->res, file, j);
        const double ce_i = finalize(iv->sum_all, counts.all).ce, ce_tgt = finalize(acc[ft_target].sum_all, counts.all).ce;
        dk_results_attr_f64(&job->res, group, "ce_intervention", ce_i);
        dk_results_attr_f64(&job->res, group, "ce_clean", ce_tgt);
        dk_results_attr_f64(&job->res, group, "ce_other_model", finalize(acc[!ft_target].sum_all, counts.all).ce);
        dk_results_attr_f64(&job->res, group, "ce_random_median", rnd_median);
        dk_results_attr_f64(&job->res, group, "ce_random_diff_median", rdiff_median);
        dk_results_attr_i64(&job->res, group, "count", counts.all);
        char rdiff_text[64] = "";
        if (KD > 0) snprintf(rdiff_text, sizeof rdiff_text, ", random differences median %.4f", rdiff_median);
        LOG_INFO("diff_adl causal_effect %s layer %lld position %lld eval %s (%s, %lld targets): CE of the %s model "
                 "intervened %.4f vs clean %.4f (the %s model %.4f); random directions median %.4f%s", ds->name,
                 (long long)L, (long long)p, eval_name, dir_name, (long long)counts.all, ft_target ? "finetuned" : "base",
                 ce_i, ce_tgt, ft_target ? "base" : "finetuned", finalize(acc[!ft_target].sum_all, counts.all).ce,
                 rnd_median, rdiff_text);
        free(group), free(file);
    }
    for (int64_t a = 0; a < 2 + n_dirs; a++) acc_free(&acc[a]);
    free(acc), free(counts.at), free(h_src), free(h_tgt), free(nll), free(starts), free(dirs), free(path), free(eval_name);
    texts_free(&texts);
    return rc;
}
