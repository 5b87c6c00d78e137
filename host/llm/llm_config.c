/* llm_config.c — reads an LLM endpoint section of the configuration (configs/config.yaml `llm:`, or a
 * grader's section with the same keys) into a dk_llm_config, with the defaults llm_client.h lists and range
 * checks whose messages name the key and the file that set it. */
#include "llm_client.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strutil.h"

void dk_llm_config_defaults(dk_llm_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->connect_timeout_s = 10.0;
    cfg->request_timeout_s = 300.0;
    cfg->max_attempts = 3;  /* the seed's max_retries (attempts in all) */
    cfg->backoff_initial_s = 0.5;
    cfg->backoff_max_s = 8.0;
    cfg->max_in_flight = 8;
}

void dk_llm_config_free(dk_llm_config *cfg) {
    free(cfg->base_url);
    free(cfg->model_id);
    free(cfg->api_key_file);
    free(cfg->api_key_env);
    free(cfg->section);
    memset(cfg, 0, sizeof *cfg);
}

/* "<section>.<key>" in a fixed buffer (section names are short config paths). */
static const char *key_path(char *buf, size_t cap, const char *section, const char *key) {
    snprintf(buf, cap, "%s.%s", section, key);
    return buf;
}

static int out_of_range(const dk_cfg *cfg, const char *path, const char *expected, dk_err *err) {
    char where[PATH_MAX + 32];
    dk_cfg_node_where(dk_cfg_get(cfg, path), where, sizeof where);
    return dk_err_set(err, DK_EXIT_USAGE, "config key %s (%s) must be %s", path, where, expected);
}

/* Optional string: absent or null leaves *out NULL. */
static int read_opt_str(const dk_cfg *cfg, const char *section, const char *key, char **out, dk_err *err) {
    char path[256];
    key_path(path, sizeof path, section, key);
    if (!dk_cfg_get(cfg, path)) return 0;
    const char *s = NULL;
    if (dk_cfg_try_str(cfg, path, true, &s, err) != 0) return -1;
    free(*out);
    *out = s && s[0] ? dk_strdup(s) : NULL;
    return 0;
}

/* Optional number in [lo, hi]: absent keeps *out. */
static int read_opt_float(const dk_cfg *cfg, const char *section, const char *key, double lo, double hi,
                          double *out, dk_err *err) {
    char path[256];
    key_path(path, sizeof path, section, key);
    if (!dk_cfg_get(cfg, path)) return 0;
    double v = 0.0;
    if (dk_cfg_try_float(cfg, path, &v, err) != 0) return -1;
    if (!(v >= lo && v <= hi)) {
        char expected[96];
        snprintf(expected, sizeof expected, "a number of seconds in [%g, %g], got %g", lo, hi, v);
        return out_of_range(cfg, path, expected, err);
    }
    *out = v;
    return 0;
}

static int read_opt_int(const dk_cfg *cfg, const char *section, const char *key, int lo, int hi, int *out,
                        dk_err *err) {
    char path[256];
    key_path(path, sizeof path, section, key);
    if (!dk_cfg_get(cfg, path)) return 0;
    int64_t v = 0;
    if (dk_cfg_try_int(cfg, path, &v, err) != 0) return -1;
    if (v < lo || v > hi) {
        char expected[96];
        snprintf(expected, sizeof expected, "an integer in [%d, %d], got %lld", lo, hi, (long long)v);
        return out_of_range(cfg, path, expected, err);
    }
    *out = (int)v;
    return 0;
}

int dk_llm_config_read(const dk_cfg *cfg, const char *section, dk_llm_config *out, dk_err *err) {
    dk_llm_config_defaults(out);
    out->section = dk_strdup(section);
    char path[256];
    const char *s = NULL;
    if (dk_cfg_try_str(cfg, key_path(path, sizeof path, section, "base_url"), false, &s, err) != 0) goto fail;
    if (!dk_str_starts_with(s, "http://") && !dk_str_starts_with(s, "https://")) {
        out_of_range(cfg, path, "an http:// or https:// URL such as https://openrouter.ai/api/v1", err);
        goto fail;
    }
    out->base_url = dk_strdup(s);
    size_t len = strlen(out->base_url);
    while (len > 0 && out->base_url[len - 1] == '/') out->base_url[--len] = '\0';
    if (dk_cfg_try_str(cfg, key_path(path, sizeof path, section, "model_id"), false, &s, err) != 0) goto fail;
    if (!s[0]) {
        out_of_range(cfg, path, "the name of a model the endpoint serves, such as openai/gpt-5-mini", err);
        goto fail;
    }
    out->model_id = dk_strdup(s);
    /* The seed's grader sections name the key file api_key_path and fall back to $OPENROUTER_API_KEY: a
     * section written for the seed reads the same key here. */
    char alias[256];
    if (dk_cfg_get(cfg, key_path(path, sizeof path, section, "api_key_file")) &&
        dk_cfg_get(cfg, key_path(alias, sizeof alias, section, "api_key_path"))) {
        out_of_range(cfg, alias, "left out when api_key_file is given (api_key_path is the seed's name for it)", err);
        goto fail;
    }
    if (!dk_cfg_get(cfg, key_path(path, sizeof path, section, "api_key_env")))
        out->api_key_env = dk_strdup("OPENROUTER_API_KEY");
    if (read_opt_str(cfg, section, "api_key_file", &out->api_key_file, err) != 0 ||
        read_opt_str(cfg, section, "api_key_path", &out->api_key_file, err) != 0 ||
        read_opt_str(cfg, section, "api_key_env", &out->api_key_env, err) != 0 ||
        read_opt_float(cfg, section, "connect_timeout_s", 0.001, 3600.0, &out->connect_timeout_s, err) != 0 ||
        read_opt_float(cfg, section, "request_timeout_s", 0.001, 86400.0, &out->request_timeout_s, err) != 0 ||
        read_opt_int(cfg, section, "max_attempts", 1, 100, &out->max_attempts, err) != 0 ||
        read_opt_float(cfg, section, "backoff_initial_s", 0.0, 3600.0, &out->backoff_initial_s, err) != 0 ||
        read_opt_float(cfg, section, "backoff_max_s", 0.0, 3600.0, &out->backoff_max_s, err) != 0 ||
        read_opt_int(cfg, section, "max_in_flight", 1, 1024, &out->max_in_flight, err) != 0)
        goto fail;
    return 0;
fail:
    dk_llm_config_free(out);
    return -1;
}
