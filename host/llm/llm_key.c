/* llm_key.c — where the API key comes from, and keeping it out of every message.
 *
 * The seed reads the key from a file when the file exists (openrouter_api_key.txt) and from an environment
 * variable otherwise (OPENROUTER_API_KEY); so do we, with both names configurable. The key is kept in one
 * buffer, zeroed when the client closes; messages say where it came from, never what it is, and text a
 * server sends back (which may quote the key: "Incorrect API key provided: sk-...") is redacted before it
 * reaches a message. */
#include "llm_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strutil.h"
#include "io/file.h"

/* Whitespace around the key is dropped (a key file ends with a newline); inside it, only printable ASCII is
 * allowed, since it goes into an HTTP header. */
static int take_key(char *text, llm_key *key, dk_err *err) {
    size_t len = strlen(text), start = 0;
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\r' || text[len - 1] == '\n'))
        len--;
    while (start < len && (text[start] == ' ' || text[start] == '\t' || text[start] == '\r' || text[start] == '\n'))
        start++;
    if (start == len)
        return dk_err_set(err, DK_EXIT_USAGE, "%s is empty: put the API key there, or set the config's api_key_file "
                          "and api_key_env to null for an endpoint that needs no key", key->source);
    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c >= 0x7f)
            return dk_err_set(err, DK_EXIT_USAGE, "%s holds a character that is not printable ASCII (byte %zu of "
                              "the key, code %u): an API key is one line of plain characters; check the file or "
                              "variable", key->source, i - start, (unsigned)c);
    }
    key->value = dk_strndup(text + start, len - start);
    return 0;
}

int llm_key_load(const dk_llm_config *cfg, llm_key *key, dk_err *err) {
    memset(key, 0, sizeof *key);
    snprintf(key->source, sizeof key->source, "no key");
    const char *file = cfg->api_key_file, *env = cfg->api_key_env;
    if (file && dk_is_file(file)) {
        snprintf(key->source, sizeof key->source, "the key in %s", file);
        size_t size = 0;
        char *text = dk_read_file(file, &size, err);
        if (!text) return -1;
        int rc = take_key(text, key, err);
        explicit_bzero(text, size);
        free(text);
        return rc;
    }
    if (env) {
        snprintf(key->source, sizeof key->source, "the key from $%s", env);
        const char *value = getenv(env);
        if (value) {
            char *copy = dk_strdup(value);
            int rc = take_key(copy, key, err);
            explicit_bzero(copy, strlen(copy));
            free(copy);
            return rc;
        }
    }
    if (!file && !env) return 0;  /* an endpoint without a key */
    const char *section = cfg->section ? cfg->section : "llm";
    if (file && env)
        return dk_err_set(err, DK_EXIT_USAGE, "no API key for %s: the key file %s does not exist and the environment "
                          "variable %s is not set; put the key in one of them (%s.api_key_file, %s.api_key_env)",
                          cfg->base_url ? cfg->base_url : section, file, env, section, section);
    if (file)
        return dk_err_set(err, DK_EXIT_USAGE, "no API key for %s: the key file %s does not exist; create it, or "
                          "name an environment variable in %s.api_key_env", cfg->base_url ? cfg->base_url : section,
                          file, section);
    return dk_err_set(err, DK_EXIT_USAGE, "no API key for %s: the environment variable %s is not set; export it, "
                      "or name a key file in %s.api_key_file", cfg->base_url ? cfg->base_url : section, env, section);
}

void llm_key_free(llm_key *key) {
    if (key->value) {
        explicit_bzero(key->value, strlen(key->value));
        free(key->value);
    }
    key->value = NULL;
}

char *llm_redact(const char *text, size_t len, const llm_key *key) {
    dk_strbuf out = {0};
    dk_strbuf_append(&out, "");
    size_t key_len = key && key->value ? strlen(key->value) : 0;
    for (size_t i = 0; i < len && text[i] != '\0';) {
        if (key_len > 0 && len - i >= key_len && memcmp(text + i, key->value, key_len) == 0) {
            dk_strbuf_append(&out, "[api key]");
            i += key_len;
            continue;
        }
        unsigned char c = (unsigned char)text[i];
        char ch = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
        dk_strbuf_append_n(&out, &ch, 1);
        i++;
    }
    return dk_strbuf_take(&out);
}
