/* tok_encode.c — the encoding pipeline (HF TokenizerImpl::encode_single_sequence + post_process):
 * added tokens on the raw text, normalizer, added tokens on the normalized text, pre-tokenizer, BPE per
 * word, then the post-processor's `single` template. A dk_tok_worker owns every scratch buffer and the word
 * cache, so each thread encodes with its own; dk_tokenizer_encode_batch runs one worker per thread. */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include "core/error.h"
#include "core/strutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dk_tok_worker {
    const dk_tokenizer *tok;
    tok_segment *segs, *subsegs;  /* added-token splits of the raw text / of one normalized segment */
    size_t segs_cap, subsegs_cap;
    dk_strbuf normalized;             /* one segment after the normalizer */
    tok_pieces pieces;            /* words of one segment */
    tok_pre_scratch pre;
    tok_word_cache *cache;
    tok_bpe_scratch *bpe;
};

void dk_tok_ids_push(dk_tok_ids *l, int32_t id) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->ids = dk_realloc(l->ids, l->cap * sizeof *l->ids);
    }
    l->ids[l->n++] = id;
}

void dk_tok_ids_free(dk_tok_ids *l) {
    free(l->ids);
    memset(l, 0, sizeof *l);
}

dk_tok_worker *dk_tok_worker_new(const dk_tokenizer *tok) {
    dk_tok_worker *w = dk_calloc(1, sizeof *w);
    w->tok = tok;
    w->cache = tok_word_cache_new();
    w->bpe = tok_bpe_scratch_new();
    return w;
}

void dk_tok_worker_free(dk_tok_worker *w) {
    if (!w) return;
    free(w->segs);
    free(w->subsegs);
    dk_strbuf_free(&w->normalized);
    tok_pieces_free(&w->pieces);
    tok_pre_scratch_free(&w->pre);
    tok_word_cache_free(w->cache);
    tok_bpe_scratch_free(w->bpe);
    free(w);
}

/* Pre-tokenizes and BPE-encodes one stretch of normalized text with no added tokens in it. */
static void encode_plain(dk_tok_worker *w, const char *s, size_t len, bool at_start, dk_tok_ids *out) {
    const dk_tokenizer *tok = w->tok;
    tok_pieces_clear(&w->pieces);
    tok_pieces_add(&w->pieces, s, len, at_start);
    if (tok->pretokenizer) tok_pretokenize(tok->pretokenizer, &w->pieces, &w->pre);
    if (tok_pattern_failed()) return; /* the text is refused: no BPE over the unsplit rest (millions of bytes) */
    for (size_t i = 0; i < w->pieces.n; i++)
        tok_bpe_word(&tok->bpe, tok_piece_text(&w->pieces, i), w->pieces.items[i].len, w->cache, w->bpe, out);
}

int dk_tok_worker_encode(dk_tok_worker *w, const char *text, size_t len, bool add_special_tokens, dk_tok_ids *out,
                         dk_err *err) {
    const dk_tokenizer *tok = w->tok;
    size_t bad = tok_utf8_first_invalid(text, len);
    if (bad != len)
        return dk_err_set(err, DK_EXIT_USAGE, "text is not valid UTF-8 (byte %zu is 0x%02X); encode valid UTF-8 only",
                          bad, (unsigned char)text[bad]);
    tok_pattern_take_error(NULL, 0);
    if (add_special_tokens)
        for (size_t i = 0; i < tok->post.n_before; i++) dk_tok_ids_push(out, tok->post.before[i]);
    size_t n = tok_added_split(tok, &tok->trie_raw, text, len, &w->segs, &w->segs_cap);
    for (size_t i = 0; i < n && !tok_pattern_failed(); i++) {
        tok_segment seg = w->segs[i];
        if (seg.token >= 0) {
            dk_tok_ids_push(out, tok->added[seg.token].id);
            continue;
        }
        const char *s = text + seg.start;
        size_t sl = seg.end - seg.start;
        if (tok->normalizer) {
            tok_normalize(tok->normalizer, s, sl, &w->normalized);
            s = w->normalized.data;
            sl = w->normalized.len;
        }
        if (tok->trie_normalized.n_nodes <= 1) {
            encode_plain(w, s, sl, seg.start == 0, out);
            continue;
        }
        size_t m = tok_added_split(tok, &tok->trie_normalized, s, sl, &w->subsegs, &w->subsegs_cap);
        for (size_t k = 0; k < m; k++) {
            tok_segment sub = w->subsegs[k];
            if (sub.token >= 0) dk_tok_ids_push(out, tok->added[sub.token].id);
            else encode_plain(w, s + sub.start, sub.end - sub.start, seg.start == 0 && sub.start == 0, out);
        }
    }
    if (add_special_tokens)
        for (size_t i = 0; i < tok->post.n_after; i++) dk_tok_ids_push(out, tok->post.after[i]);
    char why[ONIG_MAX_ERROR_MESSAGE_LEN];
    if (tok_pattern_take_error(why, sizeof why))
        return dk_err_set(err, DK_EXIT_RUNTIME, "the tokenizer's regex gave up on this text (Oniguruma: %s); a run of "
                          "millions of repeated characters such as whitespace causes this, and Hugging Face tokenizers "
                          "fails on it the same way: shorten or split the text", why);
    return 0;
}

int dk_tokenizer_encode(dk_tokenizer *tok, const char *text, size_t len, bool add_special_tokens, dk_tok_ids *out,
                        dk_err *err) {
    if (!tok->default_worker) tok->default_worker = dk_tok_worker_new(tok);
    return dk_tok_worker_encode(tok->default_worker, text, len, add_special_tokens, out, err);
}

/* ---- batch: threads take texts from a shared counter, in chunks to keep the counter cold ---- */
enum { BATCH_CHUNK = 16 };

typedef struct batch_job {
    const dk_tokenizer *tok;
    const char *const *texts;
    const size_t *lens;       /* (n), or NULL: NUL-terminated texts */
    size_t n;
    bool add_special_tokens;
    dk_tok_ids *outs;
    atomic_size_t next;
    pthread_mutex_t lock;
    size_t failed_index;  /* smallest failing index, n when none */
    dk_err first_err;
} batch_job;

static void *batch_thread(void *arg) {
    batch_job *job = arg;
    dk_tok_worker *w = dk_tok_worker_new(job->tok);
    for (;;) {
        size_t start = atomic_fetch_add(&job->next, BATCH_CHUNK);
        if (start >= job->n) break;
        size_t end = start + BATCH_CHUNK < job->n ? start + BATCH_CHUNK : job->n;
        for (size_t i = start; i < end; i++) {
            dk_err e = {0};
            const size_t len = job->lens ? job->lens[i] : strlen(job->texts[i]);
            if (dk_tok_worker_encode(w, job->texts[i], len, job->add_special_tokens, &job->outs[i], &e) < 0) {
                pthread_mutex_lock(&job->lock);
                if (i < job->failed_index) {
                    job->failed_index = i;
                    job->first_err = e;
                }
                pthread_mutex_unlock(&job->lock);
            }
        }
    }
    dk_tok_worker_free(w);
    return NULL;
}

int dk_tokenizer_encode_batch(const dk_tokenizer *tok, const char *const *texts, const size_t *lens, size_t n,
                              bool add_special_tokens, int n_threads, dk_tok_ids *outs, size_t *failed, dk_err *err) {
    if (n_threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cores > 0 ? (int)cores : 1;
    }
    size_t max_useful = (n + BATCH_CHUNK - 1) / BATCH_CHUNK;
    if ((size_t)n_threads > max_useful) n_threads = max_useful ? (int)max_useful : 1;
    batch_job job = {.tok = tok, .texts = texts, .lens = lens, .n = n, .add_special_tokens = add_special_tokens, .outs = outs,
                     .failed_index = n};
    atomic_init(&job.next, 0);
    pthread_mutex_init(&job.lock, NULL);
    pthread_t *threads = dk_malloc((size_t)n_threads * sizeof *threads);
    for (int t = 1; t < n_threads; t++)
        CHECK(pthread_create(&threads[t], NULL, batch_thread, &job) == 0, "could not start tokenizer thread %d", t);
    batch_thread(&job);
    for (int t = 1; t < n_threads; t++) pthread_join(threads[t], NULL);
    free(threads);
    pthread_mutex_destroy(&job.lock);
    if (job.failed_index == n) return 0;
    if (failed) {
        *failed = job.failed_index;
        return dk_err_set(err, job.first_err.code, "%s", job.first_err.msg);
    }
    return dk_err_set(err, job.first_err.code, "text %zu: %s", job.failed_index, job.first_err.msg);
}
