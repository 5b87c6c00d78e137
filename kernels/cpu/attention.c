/* attention.c — see attention.h. Work items are (segment, head) pairs handed out by an atomic counter to
 * n_threads pthreads; each item loops over its queries with one fp32 score row (n_k) on the stack of the
 * worker (heap for long rows). */
#include "attention.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    const dk_attn_segment *segments;
    int64_t n_segments;
    const dk_attn_params *p;
    int64_t max_keys;
    atomic_llong next; /* next work item: segment * n_heads + head */
} attn_job;

static void attend_one_head(const dk_attn_segment *s, int64_t h, const dk_attn_params *p, float *scores) {
    const int64_t D = p->head_dim, nh = p->n_heads, nkv = p->n_kv_heads;
    const int64_t kvh = h / (nh / nkv);
    for (int64_t i = 0; i < s->n_q; i++) {
        const int64_t pos = s->n_k - s->n_q + i;
        const int64_t first = p->window > 0 && pos - p->window + 1 > 0 ? pos - p->window + 1 : 0;
        const float *q = s->q + (i * nh + h) * D; /* (D) */
        float max = -INFINITY;
        for (int64_t j = first; j <= pos; j++) {
            const float *k = s->k + (j * nkv + kvh) * D;
            float dot = 0.0f;
            for (int64_t d = 0; d < D; d++) dot += q[d] * k[d];
            float sc = dot * p->scale;
            if (p->softcap > 0.0f) sc = tanhf(sc / p->softcap) * p->softcap;
            scores[j] = sc;
            if (sc > max) max = sc;
        }
        float sum = 0.0f;
        for (int64_t j = first; j <= pos; j++) {
            scores[j] = expf(scores[j] - max);
            sum += scores[j];
        }
        float *o = s->out + (i * nh + h) * D; /* (D) */
        memset(o, 0, (size_t)D * sizeof *o);
        for (int64_t j = first; j <= pos; j++) {
            const float pj = scores[j] / sum;
            const float *v = s->v + (j * nkv + kvh) * D;
            for (int64_t d = 0; d < D; d++) o[d] += pj * v[d];
        }
    }
}

static void *attn_worker(void *arg) {
    attn_job *job = arg;
    const int64_t n_items = job->n_segments * job->p->n_heads;
    float *scores = malloc((size_t)(job->max_keys > 0 ? job->max_keys : 1) * sizeof *scores); /* (max n_k) */
    if (!scores) abort();
    for (;;) {
        int64_t item = atomic_fetch_add(&job->next, 1);
        if (item >= n_items) break;
        attend_one_head(&job->segments[item / job->p->n_heads], item % job->p->n_heads, job->p, scores);
    }
    free(scores);
    return NULL;
}

void dk_cpu_attention(const dk_attn_segment *segments, int64_t n_segments, const dk_attn_params *p) {
    /* preconditions (checked by the caller against config.json): n_heads % n_kv_heads == 0, n_q <= n_k */
    attn_job job = {.segments = segments, .n_segments = n_segments, .p = p};
    atomic_init(&job.next, 0);
    int64_t work = 0;
    for (int64_t s = 0; s < n_segments; s++) {
        if (segments[s].n_k > job.max_keys) job.max_keys = segments[s].n_k;
        work += segments[s].n_q * segments[s].n_k;
    }
    int n_threads = p->n_threads > 1 ? p->n_threads : 1;
    work *= p->n_heads * p->head_dim;
    if (work < 200000) n_threads = 1; /* below ~0.1 ms of work a thread start costs more than it saves */
    if (n_threads == 1) {
        attn_worker(&job);
        return;
    }
    enum { MAX_THREADS = 256 };
    pthread_t threads[MAX_THREADS];
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    int started = 0;
    while (started < n_threads && pthread_create(&threads[started], NULL, attn_worker, &job) == 0) started++;
    if (started == 0) attn_worker(&job); /* no thread could start: do the work here */
    for (int t = 0; t < started; t++) pthread_join(threads[t], NULL);
}
