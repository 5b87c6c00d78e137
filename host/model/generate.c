/* generate.c — see generate.h. One generation loop (dk_generate_backend) for every device: the forward calls go
 * through the backend (backend.h) with a KV cache where it runs; sampling is on the host from the last-position
 * logits. */
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

/* Sampling walks the candidates in the order (scaled logit descending, id ascending): top-k keeps a prefix,
 * top-p the smallest prefix reaching its mass, and the draw picks where the prefix sums pass u. Only as much of
 * that order as the walk reaches is ever sorted: the first candidates are selected (a quickselect, O(V)) and
 * sorted in growing chunks, so a peaked distribution over a 150k vocabulary costs O(V) instead of a full sort
 * (which took ~50 ms per token); a flat one still ends in a full sort. The result is the full sort's. */
typedef struct {
    float logit;
    int64_t id;
} candidate;

static bool comes_before(const candidate *a, const candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int by_logit_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    return comes_before(x, y) ? -1 : comes_before(y, x) ? 1 : 0;
}

static void swap_candidates(candidate *a, candidate *b) {
    candidate t = *a;
    *a = *b;
    *b = t;
}

/* Reorders c[lo, hi) so that c[lo, target) holds the candidates that come first in that order (unsorted). */
static void select_first(candidate *c, int64_t lo, int64_t hi, int64_t target) {
    while (hi - lo > 1 && target > lo && target < hi) {
        const int64_t mid = lo + (hi - lo) / 2; /* pivot: the median of first, middle and last */
        candidate a = c[lo], b = c[mid], z = c[hi - 1], pivot;
        if (comes_before(&a, &b))
            pivot = comes_before(&b, &z) ? b : comes_before(&a, &z) ? z : a;
        else
            pivot = comes_before(&a, &z) ? a : comes_before(&b, &z) ? z : b;
        int64_t i = lo, j = hi - 1;
        while (i <= j) { /* Hoare: [lo, i) not after the pivot, (j, hi) not before it */
            while (comes_before(&c[i], &pivot)) i++;
            while (comes_before(&pivot, &c[j])) j--;
            if (i <= j) swap_candidates(&c[i++], &c[j--]);
        }
        if (target <= j + 1) hi = j + 1;
        else if (target >= i) lo = i;
        else return; /* the boundary falls on the pivot itself */
    }
}

/* The candidates of one draw: c[0, sorted) in final order, the rest unordered and all after them. */
typedef struct sampler {
    candidate *c;
    int64_t n, sorted;
} sampler;

/* Makes c[0, need) sorted, in chunks that grow geometrically (at least 256, then x4). */
static void sort_prefix(sampler *sp, int64_t need) {
    if (need <= sp->sorted) return;
    int64_t upto = sp->sorted * 4 > 256 ? sp->sorted * 4 : 256;
    if (upto < need) upto = need;
    if (upto > sp->n) upto = sp->n;
    select_first(sp->c, sp->sorted, sp->n, upto);
    qsort(sp->c + sp->sorted, (size_t)(upto - sp->sorted), sizeof *sp->c, by_logit_desc);
    sp->sorted = upto;
}

int64_t dk_sample_token_seq(const float *logits, int64_t V, const dk_seq_options *so, uint64_t *rng_state) {
    if (so->temperature <= 0.0f) return argmax(logits, V);
    sampler sp = {.c = malloc((size_t)V * sizeof *sp.c), .n = V}; /* (V) */
    if (!sp.c) abort();
    float top = -INFINITY;
    for (int64_t i = 0; i < V; i++) {
        sp.c[i] = (candidate){logits[i] / so->temperature, i};
        if (sp.c[i].logit > top) top = sp.c[i].logit;
    }
    int64_t keep = V;
    double total = 0;
    if (so->top_k > 0 && so->top_k < V) { /* the top_k first, sorted; the softmax over them */
        keep = so->top_k;
        sort_prefix(&sp, keep);
        for (int64_t i = 0; i < keep; i++) total += exp((double)sp.c[i].logit - (double)top);
    } else {
        for (int64_t i = 0; i < V; i++) total += exp((double)sp.c[i].logit - (double)top);
    }
    if (so->top_p > 0.0f && so->top_p < 1.0f) { /* smallest prefix whose mass reaches top_p */
        double mass = 0;
        int64_t n = 0;
        while (n < keep && mass < so->top_p * total) {
            sort_prefix(&sp, n + 1);
            mass += exp((double)sp.c[n++].logit - (double)top);
        }
        keep = n > 0 ? n : 1;
        sort_prefix(&sp, keep);
        total = 0;
        for (int64_t i = 0; i < keep; i++) total += exp((double)sp.c[i].logit - (double)top);
    }
    double u = next_uniform(rng_state) * total, acc = 0;
    int64_t chosen = -1;
    for (int64_t i = 0; i < keep; i++) {
        sort_prefix(&sp, i + 1);
        acc += exp((double)sp.c[i].logit - (double)top);
        if (u < acc) {
            chosen = sp.c[i].id;
            break;
        }
    }
    if (chosen < 0) { /* rounding left u past the last sum: the last kept candidate */
        sort_prefix(&sp, keep);
        chosen = sp.c[keep - 1].id;
    }
    free(sp.c);
    return chosen;
}

/* An odd constant other than splitmix64's increment: the streams of seed + s·C and seed do not overlap within
 * any realistic number of draws. */
#define SEQ_SEED_STRIDE 0xD1B54A32D192ED03ull

uint64_t dk_generate_seq_seed(uint64_t seed, int64_t s) { return seed + (uint64_t)s * SEQ_SEED_STRIDE; }

dk_seq_options dk_generate_seq_options(const dk_generate_options *opt, int64_t s) {
    if (opt->per_seq) return opt->per_seq[s];
    return (dk_seq_options){.temperature = opt->temperature, .top_p = opt->top_p, .top_k = opt->top_k,
                            .seed = dk_generate_seq_seed(opt->seed, s), .max_new_tokens = opt->max_new_tokens,
                            .stop_ids = opt->stop_ids, .n_stop = opt->n_stop};
}

int64_t dk_sample_token(const float *logits, int64_t V, const dk_generate_options *opt, uint64_t *rng_state) {
    dk_seq_options so = {.temperature = opt->temperature, .top_p = opt->top_p, .top_k = opt->top_k};
    return dk_sample_token_seq(logits, V, &so, rng_state);
}

bool dk_steer_set_mode(dk_steer *st, const char *mode, int64_t decay_steps) {
    if (strcmp(mode, "all") == 0 || strcmp(mode, "all_tokens") == 0) {
        st->prompt_only = false;
        st->linear_decay_steps = 0;
    } else if (strcmp(mode, "prompt_only") == 0) {
        st->prompt_only = true;
        st->linear_decay_steps = 0;
    } else if (strcmp(mode, "linear_decay") == 0) {
        st->prompt_only = false;
        st->linear_decay_steps = decay_steps > 0 ? decay_steps : DK_STEER_DEFAULT_DECAY_STEPS;
    } else {
        return false;
    }
    return true;
}

static bool is_stop(const dk_seq_options *so, int64_t id) {
    for (int i = 0; i < so->n_stop; i++)
        if (so->stop_ids[i] == id) return true;
    return false;
}

/* The cache first holds the prompts and this many new positions; it grows (doubling) as generation goes on,
 * so --max-new-tokens is a limit, not an allocation: a huge value costs nothing until tokens are generated. */
enum { FIRST_NEW_POSITIONS = 256 };

/* One model stepping through the generation: the organism, or (logit amplification) the reference. */
typedef struct stepper {
    const dk_lora_adapter *adapter;
    dk_backend_cache cache;
    float *logits; /* (S, V) last position of each sequence */
} stepper;

/* Room in the caches and the id lists for one more token of every sequence. */
static int grow_for_step(const dk_backend *be, stepper *models, int n_models, dk_generation *out, int64_t *ids_cap,
                         int64_t step, int64_t longest_new, dk_err *err) {
    const dk_model *m = be->model;
    const int64_t *length = dk_backend_cache_length(&models[0].cache), capacity = dk_backend_cache_capacity(&models[0].cache);
    int64_t need = 0;
    for (int64_t s = 0; s < out->n_seqs; s++)
        if (length[s] + 1 > need) need = length[s] + 1;
    int64_t ctx = m->cfg.max_position_embeddings;
    if (ctx > 0 && need == ctx + 1 && step > 0)
        LOG_WARN("generation passes the model's context (max_position_embeddings %lld): later positions are outside "
                 "what the model was trained on", (long long)ctx);
    if (need > capacity) {
        int64_t grown = capacity * 2 > need ? capacity * 2 : need;
        char what[200];
        snprintf(what, sizeof what, "generating past %lld new tokens (%d KV cache(s) of %lld positions for %lld "
                 "sequence(s))", (long long)step, n_models, (long long)grown, (long long)out->n_seqs);
        /* host caches: check the memory first (a device allocation that fails says so itself) */
        if (be->device == DK_DEVICE_CPU &&
            dk_host_memory_check((uint64_t)n_models * dk_kv_cache_bytes(m, out->n_seqs, grown), what,
                                 "lower --max-new-tokens (or generate for fewer prompts at once)", err) != 0)
            return -1;
        for (int k = 0; k < n_models; k++)
            if (dk_backend_cache_reserve(&models[k].cache, grown, err) != 0) return -1;
    }
    if (step + 1 > *ids_cap) {
        *ids_cap = *ids_cap * 2 > step + 1 ? *ids_cap * 2 : step + 1;
        if (*ids_cap > longest_new) *ids_cap = longest_new;
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

static int check_options(const dk_generate_options *opt, const dk_seq_options *so, int64_t S, dk_err *err) {
    for (int64_t s = 0; s < S; s++)
        if (so[s].max_new_tokens < 0)
            return dk_err_set(err, DK_EXIT_USAGE, "generation: max_new_tokens %lld (sequence %lld) is negative",
                              (long long)so[s].max_new_tokens, (long long)s);
    for (int64_t i = 0; i < opt->n_steer; i++)
        if (opt->steers[i].linear_decay_steps < 0)
            return dk_err_set(err, DK_EXIT_USAGE, "steering %lld: linear_decay_steps %lld is negative (0 = off)",
                              (long long)i, (long long)opt->steers[i].linear_decay_steps);
    if (opt->logit_amp && !isfinite(opt->logit_amp_alpha))
        return dk_err_set(err, DK_EXIT_USAGE, "logit amplification: alpha is not a finite number");
    return 0;
}

/* The steers of forward call `call` (0 = the prefill): a linear-decay steer at (N - call)·strength/N (computed
 * as the seed does: the factor in double, stored as float), dropped from call N on. Returns how many. */
static int64_t steers_of_call(const dk_generate_options *opt, int64_t call, dk_steer *out) {
    int64_t n = 0;
    for (int64_t i = 0; i < opt->n_steer; i++) {
        dk_steer st = opt->steers[i];
        const int64_t N = st.linear_decay_steps;
        if (N > 0) {
            if (call >= N) continue;
            st.strength = (float)((double)(N - call) * ((double)st.strength / (double)N));
            st.prompt_only = false;
        }
        out[n++] = st;
    }
    return n;
}

/* One forward call of every model; with logit amplification the organism's logits become
 * ft + alpha·(ft − ref). */
static int step_models(dk_backend *be, stepper *models, int n_models, const dk_batch *b, dk_hook_plan *plan,
                       const dk_generate_options *opt, dk_err *err) {
    const dk_model *m = be->model;
    for (int k = 0; k < n_models; k++) {
        plan->logits_out = models[k].logits;
        if (dk_backend_forward_cached(be, models[k].adapter, b, plan, &models[k].cache, err) != 0) return -1;
    }
    if (n_models == 2) {
        const float alpha = opt->logit_amp_alpha;
        float *ft = models[0].logits;
        const float *ref = models[1].logits;
        for (int64_t i = 0; i < b->n_seqs * m->cfg.vocab_size; i++) ft[i] = ft[i] + alpha * (ft[i] - ref[i]);
    }
    return 0;
}

int dk_generate(const dk_model *m, const dk_lora_adapter *adapter, const dk_batch *prompts,
                const dk_generate_options *opt, dk_generation *out, dk_err *err) {
    dk_backend cpu;
    if (dk_backend_open(&cpu, m, &(dk_backend_options){.device = DK_DEVICE_CPU}, err) != 0) return -1;
    const int rc = dk_generate_backend(&cpu, adapter, prompts, opt, out, err);
    dk_backend_close(&cpu);
    return rc;
}

int dk_generate_backend(dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *prompts,
                        const dk_generate_options *opt, dk_generation *out, dk_err *err) {
    const dk_model *m = be->model;
    const int64_t S = prompts->n_seqs, V = m->cfg.vocab_size;
    memset(out, 0, sizeof *out);
    dk_seq_options *so = dk_malloc((size_t)(S > 0 ? S : 1) * sizeof *so); /* (S) settings of each sequence */
    int64_t longest = 0, longest_new = 0;
    for (int64_t s = 0; s < S; s++) {
        so[s] = dk_generate_seq_options(opt, s);
        int64_t n = prompts->seq_start[s + 1] - prompts->seq_start[s];
        if (n > longest) longest = n;
        if (so[s].max_new_tokens > longest_new) longest_new = so[s].max_new_tokens;
    }
    if (check_options(opt, so, S, err) != 0) {
        free(so);
        return -1;
    }
    const int64_t first_new = longest_new < FIRST_NEW_POSITIONS ? longest_new : FIRST_NEW_POSITIONS;
    stepper models[2] = {{.adapter = adapter}, {.adapter = opt->logit_amp_reference}};
    const int n_models = opt->logit_amp ? 2 : 1;
    int rc = 0;
    for (int k = 0; k < n_models; k++) {
        models[k].logits = dk_malloc((size_t)(S * V) * sizeof(float));
        if (rc == 0 && dk_backend_cache_open(be, S, longest + first_new, &models[k].cache, err) != 0) rc = -1;
    }
    int64_t ids_cap = first_new > 0 ? first_new : 1;
    out->n_seqs = S;
    out->ids = dk_calloc((size_t)S, sizeof *out->ids);
    out->n_ids = dk_calloc((size_t)S, sizeof *out->n_ids);
    out->stopped = dk_calloc((size_t)(S > 0 ? S : 1), sizeof *out->stopped);
    for (int64_t s = 0; s < S; s++) out->ids[s] = dk_malloc((size_t)ids_cap * sizeof(int64_t));
    bool *done = dk_calloc((size_t)(S > 0 ? S : 1), sizeof *done);
    uint64_t *rng = dk_malloc((size_t)(S > 0 ? S : 1) * sizeof *rng); /* (S) each sequence's generator */
    int64_t *step_ids = dk_malloc((size_t)(S > 0 ? S : 1) * sizeof *step_ids); /* (S) one token per sequence */
    int64_t *step_starts = dk_malloc((size_t)(S + 1) * sizeof *step_starts);
    dk_steer *steers = dk_malloc((size_t)(opt->n_steer > 0 ? opt->n_steer : 1) * sizeof *steers);
    for (int64_t s = 0; s <= S; s++) step_starts[s] = s;
    for (int64_t s = 0; s < S; s++) {
        rng[s] = so[s].seed;
        done[s] = so[s].max_new_tokens == 0;
    }
    if (rc != 0) goto cleanup;

    dk_hook_plan plan = {.steers = steers, .n_steer = steers_of_call(opt, 0, steers), .patches = opt->patches,
                         .n_patch = opt->n_patch, .logits = DK_LOGITS_LAST};
    dk_batch prefill = *prompts;
    prefill.is_prompt = true;
    if (step_models(be, models, n_models, &prefill, &plan, opt, err) != 0) {
        rc = -1;
        goto cleanup;
    }
    plan.n_patch = 0; /* patches act in the prefill only */
    const float *logits = models[0].logits;
    for (int64_t step = 0; step < longest_new; step++) {
        if (check_logits(logits, S, V, done, step, err) != 0 ||
            grow_for_step(be, models, n_models, out, &ids_cap, step, longest_new, err) != 0) {
            rc = -1;
            goto cleanup;
        }
        int64_t active = 0;
        for (int64_t s = 0; s < S; s++) {
            if (done[s]) continue;
            int64_t id = dk_sample_token_seq(logits + s * V, V, &so[s], &rng[s]);
            out->ids[s][out->n_ids[s]++] = id;
            step_ids[s] = id;
            if (is_stop(&so[s], id)) done[s] = out->stopped[s] = true;
            else if (out->n_ids[s] == so[s].max_new_tokens) done[s] = true;
            else active++;
        }
        if (active == 0) break;
        for (int64_t s = 0; s < S; s++) /* a finished sequence is fed its last token; its output is ignored */
            if (done[s]) step_ids[s] = out->n_ids[s] ? out->ids[s][out->n_ids[s] - 1] : prompts->ids[prompts->seq_start[s + 1] - 1];
        dk_batch decode = {step_ids, S, step_starts, S, false};
        plan.n_steer = steers_of_call(opt, step + 1, steers);
        if (step_models(be, models, n_models, &decode, &plan, opt, err) != 0) {
            rc = -1;
            goto cleanup;
        }
    }
cleanup:
    free(steers);
    free(step_starts);
    free(step_ids);
    free(rng);
    free(done);
    free(so);
    for (int k = 0; k < n_models; k++) {
        free(models[k].logits);
        dk_backend_cache_free(&models[k].cache);
    }
    if (rc != 0) dk_generation_free(out);
    return rc;
}

void dk_generation_free(dk_generation *g) {
    for (int64_t s = 0; s < g->n_seqs && g->ids; s++) free(g->ids[s]);
    free(g->ids);
    free(g->n_ids);
    free(g->stopped);
    memset(g, 0, sizeof *g);
}
