/* generate.c — see generate.h. */
#include "generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/finite.h"
#include "core/host_memory.h"
#include "core/log.h"

/* splitmix64: a uniform double in [0, 1) */
static double next_uniform(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct {
    float logit;
    int64_t id;
} candidate;

static int by_logit_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int64_t dk_sample_token(const float *logits, int64_t V, const dk_generate_options *opt, uint64_t *rng_state) {
    if (opt->temperature <= 0.0f) return argmax(logits, V);
    candidate *c = malloc((size_t)V * sizeof *c); /* (V) sorted by logit, descending */
    if (!c) abort();
    for (int64_t i = 0; i < V; i++) c[i] = (candidate){logits[i] / opt->temperature, i};
    qsort(c, (size_t)V, sizeof *c, by_logit_desc);
    int64_t keep = V;
    if (opt->top_k > 0 && opt->top_k < keep) keep = opt->top_k;
    double total = 0;
    double *p = malloc((size_t)keep * sizeof *p); /* (keep) softmax over the kept candidates */
    if (!p) abort();
    for (int64_t i = 0; i < keep; i++) total += (p[i] = exp((double)c[i].logit - (double)c[0].logit));
    if (opt->top_p > 0.0f && opt->top_p < 1.0f) { /* smallest prefix whose mass reaches top_p */
        double mass = 0;
        int64_t n = 0;
        while (n < keep && mass < opt->top_p * total) mass += p[n++];
        keep = n > 0 ? n : 1;
        total = 0;
        for (int64_t i = 0; i < keep; i++) total += p[i];
    }
    double u = next_uniform(rng_state) * total, acc = 0;
    int64_t chosen = c[keep - 1].id;
    for (int64_t i = 0; i < keep; i++) {
        acc += p[i];
        if (u < acc) {
            chosen = c[i].id;
            break;
        }
    }
    free(p);
    free(c);
    return chosen;
}

static bool is_stop(const dk_generate_options *opt, int64_t id) {
    for (int i = 0; i < opt->n_stop; i++)
        if (opt->stop_ids[i] == id) return true;
    return false;
}

/* The cache first holds the prompts and this many new positions; it grows (doubling) as generation goes on,
 * so --max-new-tokens is a limit, not an allocation: a huge value costs nothing until tokens are generated. */
enum { FIRST_NEW_POSITIONS = 256 };

/* Room in the cache and the id lists for one more token of every sequence. */
static int grow_for_step(const dk_model *m, dk_kv_cache *cache, dk_generation *out, int64_t *ids_cap,
                         int64_t step, const dk_generate_options *opt, dk_err *err) {
    int64_t need = 0;
    for (int64_t s = 0; s < cache->n_seqs; s++)
        if (cache->length[s] + 1 > need) need = cache->length[s] + 1;
    int64_t ctx = m->cfg.max_position_embeddings;
    if (ctx > 0 && need == ctx + 1 && step > 0)
        LOG_WARN("generation passes the model's context (max_position_embeddings %lld): later positions are outside "
                 "what the model was trained on", (long long)ctx);
    if (need > cache->capacity) {
        int64_t grown = cache->capacity * 2 > need ? cache->capacity * 2 : need;
        char what[160];
        snprintf(what, sizeof what, "generating past %lld new tokens (a KV cache of %lld positions for %lld "
                 "sequence(s))", (long long)step, (long long)grown, (long long)cache->n_seqs);
        if (dk_host_memory_check(dk_kv_cache_bytes(m, cache->n_seqs, grown), what,
                                 "lower --max-new-tokens (or generate for fewer prompts at once)", err) != 0 ||
            dk_kv_cache_reserve(cache, grown, err) != 0)
            return -1;
    }
    if (step + 1 > *ids_cap) {
        *ids_cap = *ids_cap * 2 > step + 1 ? *ids_cap * 2 : step + 1;
        if (*ids_cap > opt->max_new_tokens) *ids_cap = opt->max_new_tokens;
        for (int64_t s = 0; s < out->n_seqs; s++) out->ids[s] = dk_realloc(out->ids[s], (size_t)*ids_cap * sizeof(int64_t));
    }
    return 0;
}

/* Non-finite logits (a NaN adapter weight, an absurd scale) would be sampled as if they were numbers. */
static int check_logits(const float *logits, int64_t S, int64_t V, const bool *done, int64_t step, dk_err *err) {
    for (int64_t s = 0; s < S; s++) {
        int64_t bad = done[s] ? -1 : dk_first_nonfinite_f32(logits + s * V, (size_t)V);
        if (bad >= 0)
            return dk_err_set(err, DK_EXIT_RUNTIME, "the model's logits are not finite (%s at token id %lld) %s, "
                              "sequence %lld: the weights, the adapter or its scale give NaN/Inf; check them",
                              dk_nonfinite_name(logits[s * V + bad]), (long long)bad,
                              step == 0 ? "after the prompt" : "at a generation step", (long long)s);
    }
    return 0;
}

int dk_generate(const dk_model *m, const dk_lora_adapter *adapter, const dk_batch *prompts,
                const dk_generate_options *opt, dk_generation *out, dk_err *err) {
    const int64_t S = prompts->n_seqs, V = m->cfg.vocab_size;
    memset(out, 0, sizeof *out);
    int64_t longest = 0;
    for (int64_t s = 0; s < S; s++) {
        int64_t n = prompts->seq_start[s + 1] - prompts->seq_start[s];
        if (n > longest) longest = n;
    }
    int64_t first_new = opt->max_new_tokens < FIRST_NEW_POSITIONS ? opt->max_new_tokens : FIRST_NEW_POSITIONS;
    dk_kv_cache cache;
    dk_kv_cache_init(&cache, m, S, longest + first_new);
    float *logits = dk_malloc((size_t)(S * V) * sizeof(float)); /* (S, V) last position of each sequence */
    int64_t ids_cap = first_new > 0 ? first_new : 1;
    out->n_seqs = S;
    out->ids = dk_calloc((size_t)S, sizeof *out->ids);
    out->n_ids = dk_calloc((size_t)S, sizeof *out->n_ids);
    for (int64_t s = 0; s < S; s++) out->ids[s] = dk_malloc((size_t)ids_cap * sizeof(int64_t));
    bool *done = dk_calloc((size_t)S, sizeof *done);
    int64_t *step_ids = dk_malloc((size_t)S * sizeof *step_ids);       /* (S) one token per sequence */
    int64_t *step_starts = dk_malloc((size_t)(S + 1) * sizeof *step_starts);
    for (int64_t s = 0; s <= S; s++) step_starts[s] = s;
    uint64_t rng = opt->seed;
    int rc = 0;

    dk_hook_plan plan = {.n_steer = opt->n_steer, .steers = opt->steers, .logits = DK_LOGITS_LAST,
                         .logits_out = logits};
    dk_batch prefill = *prompts;
    prefill.is_prompt = true;
    if (dk_forward(m, adapter, &prefill, &plan, &cache, err) != 0) {
        rc = -1;
        goto cleanup;
    }
    for (int64_t step = 0; step < opt->max_new_tokens; step++) {
        if (check_logits(logits, S, V, done, step, err) != 0 ||
            grow_for_step(m, &cache, out, &ids_cap, step, opt, err) != 0) {
            rc = -1;
            goto cleanup;
        }
        int64_t active = 0;
        for (int64_t s = 0; s < S; s++) {
            if (done[s]) continue;
            int64_t id = dk_sample_token(logits + s * V, V, opt, &rng);
            out->ids[s][out->n_ids[s]++] = id;
            step_ids[s] = id;
            if (is_stop(opt, id)) done[s] = true;
            else active++;
        }
        if (active == 0 || step + 1 == opt->max_new_tokens) break;
        for (int64_t s = 0; s < S; s++) /* a finished sequence is fed its last token; its output is ignored */
            if (done[s]) step_ids[s] = out->n_ids[s] ? out->ids[s][out->n_ids[s] - 1] : 0;
        dk_batch decode = {step_ids, S, step_starts, S, false};
        if (dk_forward(m, adapter, &decode, &plan, &cache, err) != 0) {
            rc = -1;
            goto cleanup;
        }
    }
cleanup:
    free(step_starts);
    free(step_ids);
    free(done);
    free(logits);
    dk_kv_cache_free(&cache);
    if (rc != 0) dk_generation_free(out);
    return rc;
}

void dk_generation_free(dk_generation *g) {
    for (int64_t s = 0; s < g->n_seqs && g->ids; s++) free(g->ids[s]);
    free(g->ids);
    free(g->n_ids);
    memset(g, 0, sizeof *g);
}
