/* serve_run.c — `diffkit serve` put together (serve.h): the models, the bearer token, the engine thread and the
 * listener, and the order they stop in on SIGINT/SIGTERM: the queue first (waiting requests are answered 503, the
 * running batch finishes and is answered), then the listener (which waits for the connections' threads). */
#include "serve/serve_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strutil.h"
#include "llm/llm_internal.h" /* the API key reader: the same file-or-variable rule and care as the LLM client's */

/* The bearer token of serve.api_key_file / serve.api_key_env (key->value NULL: none configured). */
static int load_token(const dk_serve_config *sc, llm_key *key, dk_err *err) {
    dk_llm_config kc;
    dk_llm_config_defaults(&kc);
    kc.api_key_file = sc->api_key_file;
    kc.api_key_env = sc->api_key_env;
    kc.section = "serve";
    return llm_key_load(&kc, key, err);
}

int dk_serve_run(const dk_cfg *cfg, const dk_serve_config *sc, const char *config_dir, const char *const *overrides,
                 size_t n_overrides, int threads, int wake_fd, dk_err *err) {
    llm_key key;
    if (load_token(sc, &key, err) != 0) return -1;
    serve_registry reg;
    if (serve_registry_open(&reg, cfg, sc, config_dir, overrides, n_overrides, threads, err) != 0) {
        serve_registry_close(&reg);
        llm_key_free(&key);
        return -1;
    }
    serve_queue queue;
    int port = 0;
    serve_http *http = NULL;
    int rc = serve_queue_start(&queue, &reg, sc, err);
    if (rc == 0) {
        http = serve_http_start(sc, &queue, &reg, key.value, &port, err);
        if (!http) {
            serve_queue_stop(&queue);
            serve_queue_free(&queue);
            rc = -1;
        }
    }
    if (rc == 0) {
        dk_strbuf names = {0};
        for (int i = 0; i < reg.n_models; i++) dk_strbuf_printf(&names, "%s%s", i ? ", " : "", reg.models[i].id);
        LOG_INFO("serve: listening on http://%s:%d/v1 (models: %s; bearer token: %s; context %lld tokens)",
                 strchr(sc->host, ':') ? "[::1]" : sc->host, port, names.data,
                 key.value ? key.source : "none", (long long)reg.context);
        dk_strbuf_free(&names);
        char byte;
        while (read(wake_fd, &byte, 1) < 0 && errno == EINTR) {
        }
        LOG_INFO("serve: stopping: %lld batches served (the largest: %lld requests)", (long long)queue.batches,
                 (long long)queue.largest_batch);
        serve_queue_stop(&queue);
        serve_http_stop(http);
        serve_queue_free(&queue);
    }
    serve_registry_close(&reg);
    llm_key_free(&key);
    return rc;
}
