/* llm_client.c — the transfers of llm_client.h: one curl multi handle drives up to max_in_flight requests;
 * each request is a small state machine (waiting -> in flight -> done, or back to waiting for a retry after
 * its backoff), so a slow or dead endpoint costs at most max_attempts bounded attempts per request and never
 * blocks the others. */
#include "llm_internal.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/strutil.h"
#include "core/timer.h"

enum { LLM_MAX_ANSWER_BYTES = 32 << 20 };

struct dk_llm_client {
    dk_llm_config cfg;           /* own copy */
    llm_key key;
    char *url;                   /* <base_url>/chat/completions */
    struct curl_slist *headers;  /* Content-Type, Authorization (the key), an empty Expect */
    CURLM *multi;
    dk_llm_usage usage;
    uint64_t rng;                /* backoff jitter */
};

/* One request of a dk_llm_chat_many call. */
typedef struct transfer {
    int index, count;                /* for log lines: request index+1 of count */
    const dk_llm_request *req;
    dk_llm_response *resp;
    char *body;                      /* request JSON, alive while an attempt is in flight */
    CURL *easy;                      /* non-NULL while an attempt is in flight */
    dk_strbuf answer;                /* bytes of the current attempt's answer */
    bool answer_too_big;
    double retry_after_s;            /* Retry-After of the current attempt's answer, < 0 when none */
    double first_start, next_start;  /* dk_time_now() of the first attempt; when the next may start */
    bool done;
    char curl_error[CURL_ERROR_SIZE];
} transfer;

/* ---- opening and closing ------------------------------------------------------------------------------ */

static char *dup_or_null(const char *s) { return s ? dk_strdup(s) : NULL; }

dk_llm_client *dk_llm_client_open(const dk_llm_config *cfg, dk_err *err) {
    if (!cfg->base_url || !cfg->model_id) {
        dk_err_set(err, DK_EXIT_USAGE, "the LLM configuration (%s) needs base_url and model_id",
                   cfg->section ? cfg->section : "llm");
        return NULL;
    }
    static bool curl_ready = false;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            dk_err_set(err, DK_EXIT_RUNTIME, "libcurl could not be initialised (curl_global_init failed)");
            return NULL;
        }
        curl_ready = true;
    }
    dk_llm_client *c = dk_calloc(1, sizeof *c);
    c->cfg = *cfg;
    c->cfg.base_url = dk_strdup(cfg->base_url);
    c->cfg.model_id = dk_strdup(cfg->model_id);
    c->cfg.api_key_file = dup_or_null(cfg->api_key_file);
    c->cfg.api_key_env = dup_or_null(cfg->api_key_env);
    c->cfg.section = dk_strdup(cfg->section ? cfg->section : "llm");
    if (c->cfg.max_attempts < 1) c->cfg.max_attempts = 1;
    if (c->cfg.max_in_flight < 1) c->cfg.max_in_flight = 1;
    if (llm_key_load(&c->cfg, &c->key, err) != 0) {
        dk_llm_client_close(c);
        return NULL;
    }
    c->url = dk_sprintf("%s/chat/completions", c->cfg.base_url);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:");  /* no 100-continue round trip */
    if (c->key.value) {
        char *auth = dk_sprintf("Authorization: Bearer %s", c->key.value);
        c->headers = curl_slist_append(c->headers, auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    c->multi = curl_multi_init();
    c->rng = (uint64_t)(dk_time_now() * 1e9) ^ (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ULL;
    if (!c->multi) {
        dk_err_set(err, DK_EXIT_RUNTIME, "libcurl could not create a transfer handle (out of memory?)");
        dk_llm_client_close(c);
        return NULL;
    }
    return c;
}

void dk_llm_client_close(dk_llm_client *c) {
    if (!c) return;
    if (c->multi) curl_multi_cleanup(c->multi);
    for (struct curl_slist *h = c->headers; h; h = h->next) explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(c->headers);
    llm_key_free(&c->key);
    free(c->url);
    dk_llm_config_free(&c->cfg);
    free(c);
}

dk_llm_usage dk_llm_client_usage(const dk_llm_client *c) { return c->usage; }
const char *dk_llm_client_url(const dk_llm_client *c) { return c->url; }
const char *dk_llm_client_model(const dk_llm_client *c) { return c->cfg.model_id; }

void dk_llm_response_free(dk_llm_response *resp) {
    for (int i = 0; i < resp->n_choices; i++) {
        free(resp->choices[i].content);
        free(resp->choices[i].finish_reason);
    }
    free(resp->choices);
    resp->choices = NULL;
    resp->n_choices = 0;
}

/* ---- one attempt ------------------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *user) {
    transfer *t = user;
    size_t n = size * nmemb;
    if (t->answer.len + n > LLM_MAX_ANSWER_BYTES) {
        t->answer_too_big = true;
        return 0;  /* ends the transfer with CURLE_WRITE_ERROR */
    }
    dk_strbuf_append_n(&t->answer, data, n);
    return n;
}

/* Keeps Retry-After (seconds form; the HTTP-date form is ignored) for the backoff. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *user) {
    transfer *t = user;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char value[32];
        size_t len = n - (sizeof name - 1);
        if (len >= sizeof value) len = sizeof value - 1;
        memcpy(value, data + sizeof name - 1, len);
        value[len] = '\0';
        char *end = NULL;
        double s = strtod(value, &end);
        if (end != value && s >= 0 && isfinite(s)) t->retry_after_s = s;
    }
    return n;
}

static int start_attempt(dk_llm_client *c, transfer *t) {
    t->easy = curl_easy_init();
    if (!t->easy) return -1;
    dk_strbuf_free(&t->answer);
    dk_strbuf_append(&t->answer, "");
    t->answer_too_big = false;
    t->retry_after_s = -1.0;
    t->curl_error[0] = '\0';
    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(t->body));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->curl_error);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(c->cfg.connect_timeout_s * 1000.0));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ceil(c->cfg.request_timeout_s * 1000.0));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "diffkit-llm-client");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);  /* never carry the key to another address */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        t->easy = NULL;
        return -1;
    }
    return 0;
}

static bool curl_code_retryable(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE: case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR: case CURLE_SSL_CONNECT_ERROR: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static bool status_retryable(long status) { return status == 408 || status == 409 || status == 429 || status >= 500; }

/* What went wrong with a transfer curl could not complete, in words, and what to do. */
static void describe_curl_failure(const dk_llm_client *c, const transfer *t, CURLcode rc, char *why, size_t cap,
                                  char *hint, size_t hint_cap) {
    const char *detail = t->curl_error[0] ? t->curl_error : curl_easy_strerror(rc);
    hint[0] = '\0';
    switch (rc) {
    case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY:
        snprintf(why, cap, "could not connect (%s)", detail);
        snprintf(hint, hint_cap, "is the server running, and is %s.base_url (%s) right?", c->cfg.section,
                 c->cfg.base_url);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(why, cap, "no complete answer within the time allowed (%s; %s.connect_timeout_s = %g, "
                 "request_timeout_s = %g)", detail, c->cfg.section, c->cfg.connect_timeout_s,
                 c->cfg.request_timeout_s);
        snprintf(hint, hint_cap, "the endpoint is slow or unreachable: check it, or raise %s.request_timeout_s",
                 c->cfg.section);
        break;
    case CURLE_GOT_NOTHING:
        snprintf(why, cap, "the server closed the connection without answering");
        break;
    case CURLE_PARTIAL_FILE:
        snprintf(why, cap, "the answer was cut off (%s)", detail);
        break;
    case CURLE_WRITE_ERROR:
        if (t->answer_too_big) {
            snprintf(why, cap, "the answer is larger than %d MiB", LLM_MAX_ANSWER_BYTES >> 20);
            snprintf(hint, hint_cap, "is %s.base_url an OpenAI-compatible endpoint?", c->cfg.section);
            break;
        }
        /* fall through */
    default:
        snprintf(why, cap, "%s (libcurl error %d: %s)", detail, (int)rc, curl_easy_strerror(rc));
        break;
    }
}

static void describe_status(const dk_llm_client *c, const transfer *t, long status, char *why, size_t cap,
                            char *hint, size_t hint_cap) {
    char detail[400];
    llm_error_detail(t->answer.data, t->answer.len, detail, sizeof detail);
    snprintf(why, cap, "HTTP %ld%s%s", status, detail[0] ? ": " : "", detail);
    hint[0] = '\0';
    if (status == 401 || status == 403)
        snprintf(hint, hint_cap, "the endpoint refused %s: check that it is valid for %s", c->key.source,
                 c->cfg.base_url);
    else if (status == 404)
        snprintf(hint, hint_cap, "check %s.base_url (%s) and %s.model_id (%s)", c->cfg.section, c->cfg.base_url,
                 c->cfg.section, c->cfg.model_id);
    else if (status == 429)
        snprintf(hint, hint_cap, "the endpoint limits the request rate: lower %s.max_in_flight or try later",
                 c->cfg.section);
    else if (status == 400 || status == 413 || status == 422)
        snprintf(hint, hint_cap, "the endpoint rejected the request: check %s.model_id (%s) and the request's "
                 "settings", c->cfg.section, c->cfg.model_id);
}

/* Wait before the attempt after `attempts` attempts: exponential with up to 25% less at random, or the
 * server's Retry-After; at most backoff_max_s either way. */
static double backoff_seconds(dk_llm_client *c, int attempts, double retry_after_s) {
    double wait = c->cfg.backoff_initial_s * ldexp(1.0, attempts - 1);
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    double u = (double)(c->rng >> 11) / 9007199254740992.0; /* [0, 1) */
    wait *= 1.0 - 0.25 * u;
    if (retry_after_s >= 0) wait = retry_after_s;
    return wait < c->cfg.backoff_max_s ? wait : c->cfg.backoff_max_s;
}

/* The end of an attempt: success, a retry after a wait, or the request's final failure. */
static void finish_attempt(dk_llm_client *c, transfer *t, CURLcode rc) {
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(c->multi, t->easy);
    curl_easy_cleanup(t->easy);
    t->easy = NULL;
    dk_llm_response *resp = t->resp;
    resp->attempts++;
    c->usage.attempts++;

    char raw_why[1024], hint[1024];
    bool retryable = false;
    hint[0] = '\0';
    if (rc != CURLE_OK) {
        describe_curl_failure(c, t, rc, raw_why, sizeof raw_why, hint, sizeof hint);
        retryable = curl_code_retryable(rc);
    } else if (status < 200 || status >= 300) {
        describe_status(c, t, status, raw_why, sizeof raw_why, hint, sizeof hint);
        retryable = status_retryable(status);
    } else if (llm_parse_answer(t->answer.data, t->answer.len, resp, raw_why, sizeof raw_why) != 0) {
        retryable = true;
    } else {
        c->usage.prompt_tokens += resp->prompt_tokens;
        c->usage.completion_tokens += resp->completion_tokens;
        char reject[512] = "";
        if (!t->req->accept || t->req->accept(resp, t->req->accept_ctx, reject, sizeof reject)) {
            t->done = true;
            resp->seconds = dk_time_now() - t->first_start;
            c->usage.requests++;
            LOG_DEBUG("LLM request %d/%d: %lld prompt + %lld completion tokens, %d attempt(s), %.2f s", t->index + 1,
                      t->count, (long long)resp->prompt_tokens, (long long)resp->completion_tokens, resp->attempts,
                      resp->seconds);
            return;
        }
        snprintf(raw_why, sizeof raw_why, "the answer was not accepted: %s", reject[0] ? reject : "(no reason given)");
        dk_llm_response_free(resp);
        resp->prompt_tokens = resp->completion_tokens = resp->total_tokens = 0;
        retryable = true;
    }
    /* Text from the server or libcurl may quote the key: it is redacted before it reaches any message. */
    char *why = llm_redact(raw_why, strlen(raw_why), &c->key);
    if (retryable && resp->attempts < c->cfg.max_attempts) {
        double wait = backoff_seconds(c, resp->attempts, status == 429 || status == 503 ? t->retry_after_s : -1.0);
        LOG_WARN("LLM request %d/%d to %s: %s; attempt %d of %d, trying again in %.2f s", t->index + 1, t->count,
                 c->url, why, resp->attempts, c->cfg.max_attempts, wait);
        t->next_start = dk_time_now() + wait;
    } else {
        t->done = true;
        resp->seconds = dk_time_now() - t->first_start;
        c->usage.requests++;
        c->usage.failed++;
        char *safe_hint = llm_redact(hint, strlen(hint), &c->key);
        dk_err_set(&resp->err, DK_EXIT_RUNTIME, "LLM request to %s failed after %d attempt%s in %.1f s: %s%s%s",
                   c->url, resp->attempts, resp->attempts == 1 ? "" : "s", resp->seconds, why,
                   safe_hint[0] ? "; " : "", safe_hint);
        free(safe_hint);
    }
    free(why);
}

/* ---- the loop --------------------------------------------------------------------------------------- */

int dk_llm_chat_many(dk_llm_client *c, const dk_llm_request *reqs, int n, dk_llm_response *resps) {
    if (n <= 0) return 0;
    transfer *ts = dk_calloc((size_t)n, sizeof *ts);
    double now = dk_time_now();
    int pending = 0;
    for (int i = 0; i < n; i++) {
        memset(&resps[i], 0, sizeof resps[i]);
        ts[i] = (transfer){.index = i, .count = n, .req = &reqs[i], .resp = &resps[i], .first_start = now,
                           .next_start = now};
        if (reqs[i].n_messages < 1 || !reqs[i].messages) {
            dk_err_set(&resps[i].err, DK_EXIT_USAGE, "LLM request %d of %d has no messages", i + 1, n);
            ts[i].done = true;
            c->usage.requests++;
            c->usage.failed++;
            continue;
        }
        char why[256];
        ts[i].body = llm_request_body(c->cfg.model_id, &reqs[i], why, sizeof why);
        if (!ts[i].body) {
            dk_err_set(&resps[i].err, DK_EXIT_USAGE, "LLM request %d of %d to %s: %s", i + 1, n, c->url, why);
            ts[i].done = true;
            c->usage.requests++;
            c->usage.failed++;
            continue;
        }
        pending++;
    }
    int in_flight = 0;
    while (pending > 0) {
        now = dk_time_now();
        for (int i = 0; i < n && in_flight < c->cfg.max_in_flight; i++) {
            transfer *t = &ts[i];
            if (t->done || t->easy || t->next_start > now) continue;
            if (start_attempt(c, t) != 0) {
                t->done = true;
                pending--;
                c->usage.requests++;
                c->usage.failed++;
                dk_err_set(&t->resp->err, DK_EXIT_RUNTIME, "LLM request to %s: libcurl could not start a transfer "
                           "(out of memory?)", c->url);
                continue;
            }
            in_flight++;
        }
        int running = 0;
        curl_multi_perform(c->multi, &running);
        CURLMsg *msg;
        int left = 0;
        while ((msg = curl_multi_info_read(c->multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            transfer *t = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            CURLcode result = msg->data.result;
            finish_attempt(c, t, result);
            in_flight--;
            if (t->done) pending--;
        }
        if (pending == 0) break;
        /* Sleep until a socket is ready or the next retry is due (at most 100 ms, so timers stay accurate). */
        double wake = now + 0.1;
        if (in_flight < c->cfg.max_in_flight)
            for (int i = 0; i < n; i++)
                if (!ts[i].done && !ts[i].easy && ts[i].next_start < wake) wake = ts[i].next_start;
        int wait_ms = (int)ceil((wake - dk_time_now()) * 1000.0);
        if (wait_ms > 0) curl_multi_poll(c->multi, NULL, 0, wait_ms, NULL);
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (dk_err_is_set(&resps[i].err)) failed++;
        free(ts[i].body);
        dk_strbuf_free(&ts[i].answer);
    }
    free(ts);
    return failed;
}

int dk_llm_chat(dk_llm_client *c, const dk_llm_request *req, dk_llm_response *resp) {
    return dk_llm_chat_many(c, req, 1, resp) == 0 ? 0 : -1;
}
