/* dm_data.c — see dm_data.h. */
#include "methods/dm_data.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/act_store.h"
#include "io/file.h"
#include "io/json_value.h"

enum { MAX_USER_TOKENS = 512 }; /* the seed's load_and_tokenize_chat_dataset: longer user turns are skipped */

/* Next code point of UTF-8 s at *i (valid UTF-8: the tokenizer refuses anything else later). */
static uint32_t next_cp(const char *s, size_t len, size_t *i) {
    const unsigned char c = (unsigned char)s[*i];
    int extra = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    uint32_t cp = extra == 0 ? c : extra == 1 ? c & 0x1F : extra == 2 ? c & 0x0F : c & 0x07;
    (*i)++;
    for (int k = 0; k < extra && *i < len; k++) cp = (cp << 6) | ((unsigned char)s[(*i)++] & 0x3F);
    return cp;
}

/* Bytes of the first max_chars code points of s: Python's s[:max_chars]. */
static size_t prefix_bytes(const char *s, int64_t max_chars) {
    size_t len = strlen(s), i = 0;
    for (int64_t c = 0; c < max_chars && i < len; c++) next_cp(s, len, &i);
    return i;
}

/* Python's str.isspace for one code point. */
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* not text or len(text.strip()) == 0 */
static bool blank(const char *s) {
    size_t len = strlen(s), i = 0;
    while (i < len)
        if (!py_space(next_cp(s, len, &i))) return false;
    return true;
}

typedef struct sample_list {
    int64_t cap_samples, cap_tokens;
} sample_list;

static void push_sample(dm_dataset *ds, sample_list *l, const int32_t *ids, int64_t len, int64_t first_pos,
                        int64_t line_no) {
    if (ds->n + 1 >= l->cap_samples) {
        l->cap_samples = l->cap_samples ? 2 * l->cap_samples : 256;
        ds->offsets = dk_realloc(ds->offsets, (size_t)l->cap_samples * sizeof *ds->offsets);
        ds->first_pos = dk_realloc(ds->first_pos, (size_t)l->cap_samples * sizeof *ds->first_pos);
        ds->line_no = dk_realloc(ds->line_no, (size_t)l->cap_samples * sizeof *ds->line_no);
    }
    if (ds->n_tokens + len > l->cap_tokens) {
        while (ds->n_tokens + len > l->cap_tokens) l->cap_tokens = l->cap_tokens ? 2 * l->cap_tokens : 4096;
        ds->ids = dk_realloc(ds->ids, (size_t)l->cap_tokens * sizeof *ds->ids);
    }
    memcpy(ds->ids + ds->n_tokens, ids, (size_t)len * sizeof *ids);
    ds->offsets[ds->n] = ds->n_tokens;
    ds->first_pos[ds->n] = first_pos;
    ds->line_no[ds->n] = line_no;
    ds->n++;
    ds->n_tokens += len;
    ds->offsets[ds->n] = ds->n_tokens;
}

/* One text record: 1 = a sample, 0 = skipped, -1 = error. */
static int text_record(dm_dataset *ds, sample_list *l, const cJSON *obj, int64_t line_no, dk_tok_worker *w,
                       const dm_load_options *o, char *why, size_t why_cap, dk_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, ds->column);
    if (cJSON_IsNull(v) || !v) return 0; /* `not text`: the seed skips it */
    if (!cJSON_IsString(v)) {
        snprintf(why, why_cap, "field \"%s\" is not a string", ds->column);
        return -1;
    }
    if (blank(v->valuestring)) return 0;
    if (ds->n < o->debug_print) LOG_INFO("diff_mining %s sample %lld (line %lld): %.300s", ds->name, (long long)ds->n,
                                         (long long)line_no, v->valuestring);
    dk_tok_ids ids = {0};
    if (dk_tok_worker_encode(w, v->valuestring, prefix_bytes(v->valuestring, 10 * o->n), true, &ids, err) != 0) {
        dk_err_prefix(err, "%s:%lld: ", ds->path, (long long)line_no);
        return -1;
    }
    int r = 0;
    if ((int64_t)ids.n >= o->n) {
        push_sample(ds, l, ids.ids, o->n, 0, line_no);
        r = 1;
    }
    dk_tok_ids_free(&ids);
    return r;
}

/* Renders and encodes messages[0..n) (no special tokens: the template holds them). 0 or -1 + err. */
static int render_ids(const dm_load_options *o, dk_tok_worker *w, const dk_chat_message *m, size_t n, bool gen,
                      dk_tok_ids *out, dk_err *err) {
    dk_chat_options co = {.add_generation_prompt = gen, .enable_thinking = -1, .bos_token = o->bos_token};
    char *text = dk_chat_render(o->family, m, n, &co, err);
    if (!text) return -1;
    int rc = dk_tok_worker_encode(w, text, strlen(text), false, out, err);
    free(text);
    return rc;
}

/* One chat record: 1 = a sample, 0 = skipped, -1 = error (why or err). */
static int chat_record(dm_dataset *ds, sample_list *l, const cJSON *obj, int64_t line_no, dk_tok_worker *w,
                       const dm_load_options *o, char *why, size_t why_cap, dk_err *err) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, ds->column);
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) < 2) {
        snprintf(why, why_cap, "\"%s\" must be a list of at least 2 messages (the seed asserts it)", ds->column);
        return -1;
    }
    dk_chat_message m[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *it = cJSON_GetArrayItem(msgs, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            snprintf(why, why_cap, "message %d of \"%s\" lacks a string \"role\" or \"content\"", i, ds->column);
            return -1;
        }
        m[i] = (dk_chat_message){role->valuestring, content->valuestring, NULL};
    }
    if (strcmp(m[0].role, "user") != 0) return 0;
    if (strcmp(m[1].role, "assistant") != 0) {
        snprintf(why, why_cap, "the message after the first user message is a \"%s\" message, not the assistant's "
                 "(the seed asserts it)", m[1].role);
        return -1;
    }
    if (ds->n < o->debug_print)
        LOG_INFO("diff_mining %s sample %lld (line %lld): user: %.150s | assistant: %.150s", ds->name, (long long)ds->n,
                 (long long)line_no, m[0].content, m[1].content);
    char *assistant = dk_strndup(m[1].content, prefix_bytes(m[1].content, 10 * o->n));
    m[1].content = assistant;
    dk_tok_ids user = {0}, full = {0};
    int r = render_ids(o, w, m, 1, true, &user, err);
    if (r == 0 && (int64_t)user.n <= MAX_USER_TOKENS) {
        r = render_ids(o, w, m, 2, false, &full, err);
        const int64_t start = (int64_t)user.n;
        if (r == 0 && (int64_t)full.n - start >= o->n) {
            if (start < o->pre_assistant_k) {
                snprintf(why, why_cap, "the assistant starts at token %lld, before pre_assistant_k = %lld tokens "
                         "(the seed asserts it)", (long long)start, (long long)o->pre_assistant_k);
                r = -1;
            } else {
                push_sample(ds, l, full.ids, start + o->n, start - o->pre_assistant_k, line_no);
                r = 1;
            }
        }
    }
    if (r < 0 && dk_err_is_set(err)) dk_err_prefix(err, "%s:%lld: ", ds->path, (long long)line_no);
    free(assistant);
    dk_tok_ids_free(&user);
    dk_tok_ids_free(&full);
    return r;
}

int dm_dataset_load(dm_dataset *ds, const dk_tokenizer *tok, const dm_load_options *o, dk_err *err) {
    size_t size = 0;
    char *data = dk_read_file(ds->path, &size, err);
    if (!data) return -1;
    ds->content_hash = dk_fnv1a(DK_FNV_OFFSET, data, size);
    ds->n_pos = o->n;
    dk_tok_worker *w = dk_tok_worker_new(tok);
    sample_list l = {0};
    int64_t line_no = 0, records = 0;
    int rc = 0;
    char *line = data;
    while (rc == 0 && line < data + size && ds->n < o->max_samples) {
        char *end = memchr(line, '\n', (size_t)(data + size - line));
        char *next = end ? end + 1 : data + size;
        const size_t len = (size_t)((end ? end : data + size) - line);
        line_no++;
        size_t skip = 0;
        while (skip < len && (line[skip] == ' ' || line[skip] == '\t' || line[skip] == '\r')) skip++;
        if (skip < len) {
            records++;
            char why[512] = "", parse_why[256];
            cJSON *obj = dk_json_parse_one(line, len, parse_why, sizeof parse_why);
            int r = -1;
            if (!obj || !cJSON_IsObject(obj))
                snprintf(why, sizeof why, "not a JSON object%s%s", obj ? "" : ": ", obj ? "" : parse_why);
            else if (ds->is_chat)
                r = chat_record(ds, &l, obj, line_no, w, o, why, sizeof why, err);
            else
                r = text_record(ds, &l, obj, line_no, w, o, why, sizeof why, err);
            cJSON_Delete(obj);
            if (r < 0) {
                if (!dk_err_is_set(err))
                    dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: %s", ds->path, (long long)line_no, why);
                rc = -1;
            }
        }
        line = next;
    }
    dk_tok_worker_free(w);
    free(data);
    if (rc == 0 && ds->n == 0)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s (%s): no sample among its %lld record(s): a sample needs %s at least "
                        "diffing.method.max_tokens_per_sample = %lld tokens%s; use a longer dataset or lower "
                        "max_tokens_per_sample", ds->name, ds->path, (long long)records,
                        ds->is_chat ? "a user message first and an assistant reply of" : "a text of",
                        (long long)o->n, ds->is_chat ? "" : " (after cutting it to 10 characters per token)");
    if (rc == 0 && ds->n < o->max_samples)
        LOG_INFO("diff_mining %s: %lld samples (max_samples = %lld: the dataset has no more of >= %lld tokens)",
                 ds->name, (long long)ds->n, (long long)o->max_samples, (long long)o->n);
    return rc;
}

void dm_dataset_free(dm_dataset *ds) {
    free(ds->name), free(ds->id), free(ds->path), free(ds->column);
    free(ds->ids), free(ds->offsets), free(ds->first_pos), free(ds->line_no);
    memset(ds, 0, sizeof *ds);
}
