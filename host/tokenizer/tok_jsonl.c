/* tok_jsonl.c — JSON Lines reading and writing for the tokenizer subcommands (see tok_jsonl.h). */
#include "tokenizer/tok_jsonl.h"

#include "io/json_value.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_text.h"

int dk_jsonl_open(dk_jsonl_reader *r, const char *path, dk_err *err) {
    memset(r, 0, sizeof *r);
    if (!path || strcmp(path, "-") == 0) {
        r->f = stdin;
        r->name = "<stdin>";
        return 0;
    }
    r->f = fopen(path, "rb");
    r->name = path;
    if (!r->f) return dk_err_set(err, DK_EXIT_RUNTIME, "cannot open %s: %s", path, strerror(errno));
    return 0;
}

void dk_jsonl_close(dk_jsonl_reader *r) {
    if (r->f && r->f != stdin) fclose(r->f);
    free(r->line);
    memset(r, 0, sizeof *r);
}

int dk_jsonl_string(const dk_jsonl_reader *r, const cJSON *obj, const char *key, char **out, size_t *len) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v)) return 0;
    const size_t n = strlen(r->line);
    if (dk_json_has_nul_escape(r->line, n)) { /* read it from the text itself, with its length */
        const dk_json_step path[] = {{key, 0}};
        const char *at = dk_json_locate(r->line, n, path, 1);
        if (at && dk_json_decode_string(at, r->line + n, out, len) == 0) return 1;
    }
    *len = strlen(v->valuestring);
    *out = dk_strndup(v->valuestring, *len);
    return 1;
}

int dk_jsonl_next(dk_jsonl_reader *r, cJSON **obj, dk_err *err) {
    for (;;) {
        ssize_t n = getline(&r->line, &r->cap, r->f);
        if (n < 0) {
            if (ferror(r->f)) return dk_err_set(err, DK_EXIT_RUNTIME, "%s: read error after line %ld", r->name, r->line_no);
            return 0;
        }
        r->line_no++;
        while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r')) r->line[--n] = '\0';
        if (n == 0) continue;
        char why[256];
        *obj = dk_json_parse_one(r->line, (size_t)n, why, sizeof why);
        if (!*obj || !cJSON_IsObject(*obj)) {
            if (*obj) snprintf(why, sizeof why, "a JSON %s", cJSON_IsArray(*obj) ? "list" : "scalar");
            cJSON_Delete(*obj);
            *obj = NULL;
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s:%ld: not a JSON object (%s): %.80s%s", r->name, r->line_no,
                              why, r->line, n > 80 ? "..." : "");
        }
        return 1;
    }
}

void dk_json_write_string(FILE *out, const char *s, size_t len) {
    fputc('"', out);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        fwrite(s + run, 1, i - run, out);
        run = i + 1;
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        default: fprintf(out, "\\u%04x", c);
        }
    }
    fwrite(s + run, 1, len - run, out);
    fputc('"', out);
}
