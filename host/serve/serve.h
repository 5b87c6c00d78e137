/* serve.h — `diffkit serve`: an OpenAI-compatible HTTP server over the engine (POST /v1/chat/completions,
 * POST /v1/completions, GET /v1/models), so that graders, the agent runner and any OpenAI client can ask the base
 * model, its organisms and their amplified variants questions on a machine without internet.
 *
 * The pieces, one file each:
 *   serve_config.c    the `serve:` section of the configuration (limits, address, token, the models offered)
 *   serve_models.c    the model registry: one mapping of the base weights, each organism's LoRA loaded once, and
 *                     every offered name (base, ORGANISM, ORGANISM@W, ORGANISM@PRESET, ORGANISM~ALPHA) as the
 *                     adapter with its own multiplier array
 *   serve_request.c   a request body (JSON) checked and read into a serve_request, or an OpenAI-style error
 *   serve_extensions.c the fields beyond OpenAI's: chat_template_kwargs (enable_thinking) and steering
 *   serve_response.c  the JSON answers: completions, the model list, errors
 *   serve_queue.c     the batching queue: HTTP threads enqueue and wait; one engine thread takes every queued
 *                     request for the same model (up to max_batch sequences) and runs one dk_generate call
 *   serve_http.c      libmicrohttpd: routes, body size limit, bearer token, answers
 *   serve_run.c       the whole: models, engine thread, listener, shutdown on a signal
 * Threads: libmicrohttpd runs one thread per connection; they only parse, enqueue and wait. Everything that
 * touches the model or the tokenizer runs on the engine thread.
 */
#ifndef DK_SERVE_H
#define DK_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"

typedef struct dk_serve_config {
    char *host;                /* address to bind: 127.0.0.1 by default */
    int port;                  /* 0: any free port (the log says which) */
    char **models;             /* [n_models] names offered; the configured base and organism when the list is null */
    size_t n_models;
    char *api_key_file;        /* bearer token clients must send: from this file when it exists ... */
    char *api_key_env;         /* ... else this environment variable; both NULL: no token */
    int64_t max_body_bytes;    /* a larger request body is refused (413) */
    int64_t max_tokens;        /* the most max_tokens a request may ask; also the default (capped by the context) */
    int64_t max_n;             /* the most choices one request may ask */
    int64_t max_batch;         /* the most sequences generated together */
    int64_t batch_wait_ms;     /* an idle engine waits this long after a request for others to batch with it */
    int64_t max_queue;         /* requests waiting beyond this are refused (503) */
    int64_t max_connections;   /* connections open at the same time */
    int64_t timeout_s;         /* idle connection timeout */
} dk_serve_config;

/* Reads section `serve` of a composed configuration. 0, or -1 with err (code 2) naming the key. */
int dk_serve_config_read(const dk_cfg *cfg, dk_serve_config *out, dk_err *err);
void dk_serve_config_free(dk_serve_config *c);

/* Runs the server until a byte (or the end) can be read from wake_fd (a SIGINT/SIGTERM handler writes one into
 * the other end of a pipe): opens the models named in sc (organisms other than the configured one are composed again from config_dir
 * and the overrides with organism=NAME), listens, serves, and shuts down cleanly. 0, or -1 with err. */
int dk_serve_run(const dk_cfg *cfg, const dk_serve_config *sc, const char *config_dir, const char *const *overrides,
                 size_t n_overrides, int threads, int wake_fd, dk_err *err);

#endif
