/* serve_queue.c — batching for `diffkit serve`: HTTP threads enqueue a checked request and wait; one engine thread
 * takes the oldest waiting request and every other waiting request for the same model and the same steering (up to
 * serve.max_batch sequences: n choices count n), and runs them as one dk_generate call with per-sequence settings
 * (dk_generate_options.per_seq: temperature, top_p, seed, max_tokens, stop ids; the steering strength as the
 * steer's seq_strength). Requests that arrive while a batch runs form the next one, so a busy server batches by
 * itself; an idle one waits serve.batch_wait_ms after the first request for others sent at the same time.
 *
 * Everything that touches the tokenizer or the model runs here, on the engine thread: the chat template, encoding,
 * the context check, generation and decoding. Choice i of a request draws from dk_generate_seq_seed(seed, i), so
 * a request's answer depends on the request alone, never on what it was batched with.
 *
 * Stop strings: the text is cut at the first occurrence of any of them (finish_reason "stop"); a stop string that
 * is one token is also a stop id, so generation ends there without running on to max_tokens. */
#include "serve/serve_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/timer.h"
#include "model/generate.h"

enum { MAX_SEQ_STOP = DK_MAX_STOP_IDS + SERVE_MAX_STOP };

/* One request of a batch, prepared for the engine. */
typedef struct prepared {
    serve_job *job;
    int64_t *ids;                /* (n_ids) the prompt */
    int64_t n_ids;
    int64_t max_new;
    int64_t stop_ids[MAX_SEQ_STOP];
    int n_stop;
    bool failed;                 /* answered with an error already */
} prepared;

static void answer_error(serve_job *job, const serve_error *e) {
    LOG_INFO("serve: %d %s: %s", e->status, job->req.kind == SERVE_CHAT ? "chat completion" : "completion", e->message);
    job->status = e->status;
    job->answer = serve_error_json(e);
}

/* Whether b may join a batch started by a: the same model and the same steering (serve_same_steering: a steer is
 * global to a dk_generate call, its strength per sequence); dk_generate takes every sampling setting per sequence. */
static bool same_batch(const serve_queue *q, const serve_request *a, const serve_request *b) {
    return a->model == b->model && serve_same_steering(a, b, q->reg->base.cfg.hidden_size);
}

/* Unlinks the oldest job and every waiting job that may join it, up to max_batch sequences. Called locked. */
static int take_batch(serve_queue *q, serve_job **batch, int cap) {
    int n = 0;
    int64_t seqs = 0;
    serve_job **link = &q->head, *prev = NULL;
    const serve_request *first = &q->head->req;
    while (*link && n < cap) {
        serve_job *job = *link;
        if (same_batch(q, first, &job->req) && seqs + job->req.n <= q->sc->max_batch) {
            *link = job->next;
            if (q->tail == job) q->tail = prev;
            job->next = NULL;
            batch[n++] = job;
            seqs += job->req.n;
            q->n_waiting--;
        } else {
            prev = job;
            link = &job->next;
        }
    }
    return n;
}

/* The prompt's ids, the context check, max_new and the stop ids of one request; false when it was answered with an
 * error. */
static bool prepare(serve_queue *q, prepared *p) {
    const serve_registry *r = q->reg;
    serve_request *req = &p->job->req;
    serve_error e;
    dk_err err = {0};
    dk_chat_format format = r->chat; /* the template opened once, with this request's thinking switch */
    format.enable_thinking = req->enable_thinking;
    int rc = req->kind == SERVE_CHAT
                 ? dk_prompt_encode_chat(r->tok, &format, req->messages, req->n_messages, &p->ids, &p->n_ids, &err)
                 : dk_prompt_encode_text(r->tok, req->prompt, strlen(req->prompt), &p->ids, &p->n_ids, &err);
    if (rc != 0) {
        serve_error_set(&e, 400, "invalid_request_error", req->kind == SERVE_CHAT ? "messages" : "prompt",
                        "invalid_prompt", "%s", err.msg);
    } else if (p->n_ids == 0) {
        rc = serve_error_set(&e, 400, "invalid_request_error", "prompt", "invalid_prompt", "the prompt is empty and the "
                             "tokenizer adds no BOS token: there is nothing to continue");
    } else {
        int64_t room = r->context - p->n_ids;
        p->max_new = req->max_tokens ? req->max_tokens : (room < q->sc->max_tokens ? room : q->sc->max_tokens);
        if (room < 1 || p->n_ids + p->max_new > r->context)
            rc = serve_error_set(&e, 400, "invalid_request_error", req->kind == SERVE_CHAT ? "messages" : "prompt",
                                 "context_length_exceeded", "this model's context is %lld tokens; the prompt has %lld "
                                 "and %lld more were asked (max_tokens): shorten the prompt or ask fewer tokens",
                                 (long long)r->context, (long long)p->n_ids,
                                 (long long)(req->max_tokens ? req->max_tokens : 1));
    }
    if (rc != 0) {
        answer_error(p->job, &e);
        return false;
    }
    memcpy(p->stop_ids, r->stop_ids, (size_t)r->n_stop * sizeof *p->stop_ids);
    p->n_stop = r->n_stop;
    for (int i = 0; i < req->n_stop; i++) { /* a one-token stop string is also a stop id */
        dk_tok_ids one = {0};
        dk_err ignored = {0};
        if (dk_tokenizer_encode(r->tok, req->stop[i], strlen(req->stop[i]), false, &one, &ignored) == 0 && one.n == 1)
            p->stop_ids[p->n_stop++] = one.ids[0];
        dk_tok_ids_free(&one);
    }
    return true;
}

static bool is_stop_id(const prepared *p, int64_t id) {
    for (int i = 0; i < p->n_stop; i++)
        if (p->stop_ids[i] == id) return true;
    return false;
}

/* The decoded text of one choice, cut at its first stop string; *cut tells whether one was found. */
static char *choice_text(const serve_registry *r, const serve_request *req, const int64_t *ids, int64_t n, bool *cut) {
    int32_t *ids32 = dk_malloc((size_t)(n + 1) * sizeof *ids32);
    for (int64_t i = 0; i < n; i++) ids32[i] = (int32_t)ids[i];
    dk_err err = {0};
    char *text = dk_tokenizer_decode(r->tok, ids32, (size_t)n, true, NULL, &err);
    free(ids32);
    if (!text) text = dk_strdup(""); /* ids come from the model's own vocabulary: cannot happen */
    char *first = NULL;
    for (int i = 0; i < req->n_stop; i++) {
        char *at = strstr(text, req->stop[i]);
        if (at && (!first || at < first)) first = at;
    }
    *cut = first != NULL;
    if (first) *first = '\0';
    return text;
}

/* Generates every prepared request of a batch in one dk_generate call and answers them. */
static void generate_batch(serve_queue *q, prepared *ps, int n_jobs, const serve_model *model) {
    const serve_registry *r = q->reg;
    int64_t n_seqs = 0, n_tokens = 0;
    for (int j = 0; j < n_jobs; j++)
        if (!ps[j].failed) n_seqs += ps[j].job->req.n, n_tokens += ps[j].job->req.n * ps[j].n_ids;
    if (n_seqs == 0) return;
    int64_t *ids = dk_malloc((size_t)n_tokens * sizeof *ids), *starts = dk_malloc((size_t)(n_seqs + 1) * sizeof *starts);
    dk_seq_options *per_seq = dk_calloc((size_t)n_seqs, sizeof *per_seq);
    float *seq_strength = dk_malloc((size_t)n_seqs * sizeof *seq_strength); /* (n_seqs) each request's strength */
    const serve_request *steered = NULL; /* the batch's steering (same_batch: all alike but the strength) */
    int64_t s = 0, t = 0;
    for (int j = 0; j < n_jobs; j++) {
        if (ps[j].failed) continue;
        const serve_request *req = &ps[j].job->req;
        if (req->steered) steered = req;
        for (int64_t c = 0; c < req->n; c++, s++) {
            seq_strength[s] = req->steer.strength;
            starts[s] = t;
            memcpy(ids + t, ps[j].ids, (size_t)ps[j].n_ids * sizeof *ids);
            t += ps[j].n_ids;
            per_seq[s] = (dk_seq_options){.temperature = req->temperature, .top_p = req->top_p, .top_k = 0,
                                          .seed = dk_generate_seq_seed(req->seed, c), .max_new_tokens = ps[j].max_new,
                                          .stop_ids = ps[j].stop_ids, .n_stop = ps[j].n_stop};
        }
    }
    starts[n_seqs] = t;
    dk_batch batch = {ids, n_tokens, starts, n_seqs, true};
    dk_generate_options opt = {.max_new_tokens = per_seq[0].max_new_tokens, .temperature = per_seq[0].temperature,
                               .top_p = per_seq[0].top_p, .seed = per_seq[0].seed, .per_seq = per_seq,
                               .logit_amp = model->logit_amp, .logit_amp_alpha = model->logit_amp_alpha};
    dk_steer steer;
    if (steered) { /* as `diffkit generate --steer-*`: strength·vector after the block; linear_decay batches share
                    * their strength (same_batch), the other modes carry it per sequence (1·S is S exactly) */
        steer = steered->steer;
        if (steer.linear_decay_steps == 0) {
            steer.strength = 1.0f;
            steer.seq_strength = seq_strength;
        }
        opt.steers = &steer;
        opt.n_steer = 1;
    }
    dk_generation gen;
    memset(&gen, 0, sizeof gen);
    dk_err err = {0};
    double t0 = dk_time_now();
    int rc = dk_generate(&r->base, model->organism >= 0 ? &model->variant : NULL, &batch, &opt, &gen, &err);
    double seconds = dk_time_now() - t0;
    int64_t new_tokens = 0;
    s = 0;
    for (int j = 0; j < n_jobs; j++) {
        if (ps[j].failed) continue;
        serve_job *job = ps[j].job;
        const serve_request *req = &job->req;
        if (rc != 0) {
            serve_error e;
            serve_error_set(&e, 500, "server_error", NULL, "generation_failed", "generation failed: %s", err.msg);
            answer_error(job, &e);
            continue;
        }
        serve_choice *choices = dk_calloc((size_t)req->n, sizeof *choices);
        int64_t completion_tokens = 0;
        for (int64_t c = 0; c < req->n; c++, s++) {
            bool cut = false;
            bool stopped = gen.stopped ? gen.stopped[s] : gen.n_ids[s] > 0 && is_stop_id(&ps[j], gen.ids[s][gen.n_ids[s] - 1]);
            choices[c].text = choice_text(r, req, gen.ids[s], gen.n_ids[s], &cut);
            choices[c].finish_reason = stopped || cut ? "stop" : "length";
            completion_tokens += gen.n_ids[s];
        }
        new_tokens += completion_tokens;
        pthread_mutex_lock(&q->mu);
        uint64_t serial = ++q->serial;
        pthread_mutex_unlock(&q->mu);
        job->status = 200;
        job->answer = serve_completion_json(req, r, choices, ps[j].n_ids, completion_tokens, serial, (int64_t)time(NULL));
        for (int64_t c = 0; c < req->n; c++) free(choices[c].text);
        free(choices);
    }
    if (rc == 0) {
        dk_generation_free(&gen);
        LOG_INFO("serve: batch of %d requests, %lld sequences (model %s%s): %lld prompt + %lld completion tokens in "
                 "%.2f s (%.1f completion tokens/s)", n_jobs, (long long)n_seqs, model->id,
                 steered ? ", steered" : "", (long long)n_tokens, (long long)new_tokens, seconds,
                 seconds > 0 ? (double)new_tokens / seconds : 0.0);
    } else {
        LOG_WARN("serve: batch of %d requests (model %s) failed: %s", n_jobs, model->id, err.msg);
    }
    free(seq_strength);
    free(per_seq);
    free(starts);
    free(ids);
}

static void run_batch(serve_queue *q, serve_job **jobs, int n_jobs) {
    prepared *ps = dk_calloc((size_t)n_jobs, sizeof *ps);
    for (int j = 0; j < n_jobs; j++) {
        ps[j].job = jobs[j];
        ps[j].failed = !prepare(q, &ps[j]);
    }
    generate_batch(q, ps, n_jobs, &q->reg->models[jobs[0]->req.model]);
    for (int j = 0; j < n_jobs; j++) free(ps[j].ids);
    free(ps);
}

static void *engine_main(void *arg) {
    serve_queue *q = arg;
    serve_job **batch = dk_malloc((size_t)q->sc->max_batch * sizeof *batch);
    pthread_mutex_lock(&q->mu);
    for (;;) {
        bool was_idle = !q->head;
        while (!q->head && !q->closing) pthread_cond_wait(&q->work_cv, &q->mu);
        if (!q->head) break; /* closing, nothing left */
        if (was_idle && q->sc->batch_wait_ms > 0) { /* requests sent together arrive a little apart: wait for them */
            struct timespec deadline;
            clock_gettime(CLOCK_REALTIME, &deadline);
            deadline.tv_nsec += (long)(q->sc->batch_wait_ms % 1000) * 1000000L;
            deadline.tv_sec += (time_t)(q->sc->batch_wait_ms / 1000) + deadline.tv_nsec / 1000000000L;
            deadline.tv_nsec %= 1000000000L;
            while (!q->closing && q->n_waiting < q->sc->max_batch &&
                   pthread_cond_timedwait(&q->work_cv, &q->mu, &deadline) == 0) {
            }
        }
        int n = take_batch(q, batch, (int)q->sc->max_batch);
        pthread_mutex_unlock(&q->mu);
        run_batch(q, batch, n);
        pthread_mutex_lock(&q->mu);
        q->batches++;
        if (n > q->largest_batch) q->largest_batch = n;
        for (int i = 0; i < n; i++) {
            batch[i]->done = true;
            pthread_cond_signal(&batch[i]->done_cv);
        }
    }
    pthread_mutex_unlock(&q->mu);
    free(batch);
    return NULL;
}

int serve_queue_start(serve_queue *q, serve_registry *r, const dk_serve_config *sc, dk_err *err) {
    memset(q, 0, sizeof *q);
    q->reg = r;
    q->sc = sc;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work_cv, NULL);
    if (pthread_create(&q->engine, NULL, engine_main, q) != 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "serve: cannot start the engine thread");
    return 0;
}

void serve_queue_submit(serve_queue *q, serve_job *job) {
    pthread_cond_init(&job->done_cv, NULL);
    job->done = false;
    job->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->closing || q->n_waiting >= q->sc->max_queue) {
        serve_error e;
        if (q->closing)
            serve_error_set(&e, 503, "server_error", NULL, "shutting_down", "the server is shutting down");
        else
            serve_error_set(&e, 503, "server_error", NULL, "queue_full", "%lld requests are waiting already "
                            "(serve.max_queue): try again later", (long long)q->n_waiting);
        answer_error(job, &e);
        job->done = true;
    } else {
        if (q->tail) q->tail->next = job;
        else q->head = job;
        q->tail = job;
        q->n_waiting++;
        pthread_cond_signal(&q->work_cv);
    }
    while (!job->done) pthread_cond_wait(&job->done_cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
    pthread_cond_destroy(&job->done_cv);
}

void serve_queue_stop(serve_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    serve_error e;
    serve_error_set(&e, 503, "server_error", NULL, "shutting_down", "the server is shutting down");
    for (serve_job *job = q->head, *next; job; job = next) {
        next = job->next;
        answer_error(job, &e);
        job->done = true;
        pthread_cond_signal(&job->done_cv);
    }
    q->head = q->tail = NULL;
    q->n_waiting = 0;
    pthread_cond_signal(&q->work_cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->engine, NULL);
}

void serve_queue_free(serve_queue *q) {
    pthread_cond_destroy(&q->work_cv);
    pthread_mutex_destroy(&q->mu);
}
