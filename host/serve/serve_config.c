/* serve_config.c — the `serve:` section of the configuration (configs/config.yaml lists every key with its
 * default) read into a dk_serve_config, with range checks whose messages name the key and the file that set it. */
#include "serve/serve.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strutil.h"

static int bad_value(const dk_cfg *cfg, const char *path, const char *expected, dk_err *err) {
    char where[PATH_MAX + 32];
    dk_cfg_node_where(dk_cfg_get(cfg, path), where, sizeof where);
    return dk_err_set(err, DK_EXIT_USAGE, "config key %s (%s) must be %s", path, where, expected);
}

static int read_int(const dk_cfg *cfg, const char *path, int64_t lo, int64_t hi, int64_t *out, dk_err *err) {
    if (dk_cfg_try_int(cfg, path, out, err) != 0) return -1;
    if (*out < lo || *out > hi) {
        char expected[96];
        snprintf(expected, sizeof expected, "an integer from %lld to %lld", (long long)lo, (long long)hi);
        return bad_value(cfg, path, expected, err);
    }
    return 0;
}

/* A string that may be null (then *out stays NULL). */
static int read_str(const dk_cfg *cfg, const char *path, char **out, dk_err *err) {
    const char *s = NULL;
    if (dk_cfg_try_str(cfg, path, true, &s, err) != 0) return -1;
    *out = s && s[0] ? dk_strdup(s) : NULL;
    return 0;
}

/* serve.models: null, or a list of names (strings). */
static int read_models(const dk_cfg *cfg, dk_serve_config *out, dk_err *err) {
    const dk_cfg_node *list = dk_cfg_get(cfg, "serve.models");
    if (!list || list->kind == DK_CFG_NULL) return 0;
    if (list->kind != DK_CFG_SEQ || list->n == 0)
        return bad_value(cfg, "serve.models", "null or a list of model names ([demo, demo_glacier_honey@2.5])", err);
    out->models = calloc(list->n, sizeof *out->models);
    for (size_t i = 0; i < list->n; i++) {
        const dk_cfg_node *item = list->items[i];
        if (item->kind != DK_CFG_SCALAR || !item->text[0])
            return bad_value(cfg, "serve.models", "a list of model names (strings)", err);
        out->models[out->n_models++] = dk_strdup(item->text);
    }
    return 0;
}

int dk_serve_config_read(const dk_cfg *cfg, dk_serve_config *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    int64_t port = 0;
    if (dk_cfg_try_str(cfg, "serve.host", false, (const char **)&out->host, err) != 0) return -1;
    out->host = dk_strdup(out->host);
    if (read_int(cfg, "serve.port", 0, 65535, &port, err) != 0) return -1;
    out->port = (int)port;
    if (read_models(cfg, out, err) != 0 || read_str(cfg, "serve.api_key_file", &out->api_key_file, err) != 0 ||
        read_str(cfg, "serve.api_key_env", &out->api_key_env, err) != 0)
        return -1;
    if (read_int(cfg, "serve.max_body_bytes", 1024, INT64_C(1) << 32, &out->max_body_bytes, err) != 0 ||
        read_int(cfg, "serve.max_tokens", 1, INT64_C(1) << 24, &out->max_tokens, err) != 0 ||
        read_int(cfg, "serve.max_n", 1, 1024, &out->max_n, err) != 0 ||
        read_int(cfg, "serve.max_batch", 1, 4096, &out->max_batch, err) != 0 ||
        read_int(cfg, "serve.max_queue", 1, 1 << 20, &out->max_queue, err) != 0 ||
        read_int(cfg, "serve.max_connections", 1, 1 << 16, &out->max_connections, err) != 0 ||
        read_int(cfg, "serve.timeout_s", 1, 86400, &out->timeout_s, err) != 0)
        return -1;
    if (out->max_n > out->max_batch)
        return bad_value(cfg, "serve.max_n", "at most serve.max_batch (the choices of one request are generated "
                         "together)", err);
    return 0;
}

void dk_serve_config_free(dk_serve_config *c) {
    free(c->host);
    dk_free_strings(c->models, c->n_models);
    free(c->api_key_file);
    free(c->api_key_env);
    memset(c, 0, sizeof *c);
}
