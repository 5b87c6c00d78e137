/* adl_inputs.c — see adl_inputs.h. Records are read in file order and tokenized in chunks (multi-threaded),
 * so a dataset of millions of records is only tokenized as far as max_samples needs. */
#include "methods/adl_inputs.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strutil.h"
#include "io/act_store.h"
#include "io/file.h"
#include "io/json_value.h"
#include "io/json_text.h"

/* ---- text helpers --------------------------------------------------------------------------------------- */

/* Python's str.isspace for one code point (Unicode White_Space with bidi class WS/B/S, and the separators). */
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decodes the code point at s (valid or not: an invalid byte counts as one code point of its own value). */
static uint32_t next_code_point(const unsigned char *s, size_t *len) {
    const unsigned char c = s[0];
    int extra = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 0;
    uint32_t cp = extra == 0 ? c : extra == 1 ? (c & 0x1fu) : extra == 2 ? (c & 0x0fu) : (c & 0x07u);
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = 1;
            return c;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    *len = (size_t)extra + 1;
    return cp;
}

/* `not text or len(text.strip()) == 0` of the seed. */
static bool blank(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t len = 1;
        if (!py_space(next_code_point(p, &len))) return false;
        p += len;
    }
    return true;
}

/* A copy of s cut to its first max_chars code points (Python's text[:max_chars]). */
static char *cut_chars(const char *s, int64_t max_chars) {
    const unsigned char *p = (const unsigned char *)s;
    int64_t count = 0;
    while (*p && count < max_chars) {
        size_t len = 1;
        next_code_point(p, &len);
        for (size_t i = 0; i < len && *p; i++) p++;
        count++;
    }
    return dk_strndup(s, (size_t)((const char *)p - s));
}

/* ---- the collected sequences ---------------------------------------------------------------------------- */

typedef struct collector {
    adl_inputs *out;
    int64_t cap_seqs, cap_ids;
} collector;

static void keep(collector *c, const int32_t *ids, int64_t len, const int64_t *positions, int64_t line) {
    adl_inputs *o = c->out;
    if (o->n_seqs == c->cap_seqs) {
        c->cap_seqs = c->cap_seqs ? 2 * c->cap_seqs : 256;
        o->offsets = dk_realloc(o->offsets, (size_t)(c->cap_seqs + 1) * sizeof *o->offsets);
        o->positions = dk_realloc(o->positions, (size_t)(c->cap_seqs * o->n_pos) * sizeof *o->positions);
        o->line = dk_realloc(o->line, (size_t)c->cap_seqs * sizeof *o->line);
    }
    const int64_t at = o->offsets[o->n_seqs];
    while (at + len > c->cap_ids) {
        c->cap_ids = c->cap_ids ? 2 * c->cap_ids : 4096;
        o->ids = dk_realloc(o->ids, (size_t)c->cap_ids * sizeof *o->ids);
    }
    memcpy(o->ids + at, ids, (size_t)len * sizeof *ids);
    memcpy(o->positions + o->n_seqs * o->n_pos, positions, (size_t)o->n_pos * sizeof *positions);
    o->line[o->n_seqs] = line;
    o->offsets[++o->n_seqs] = at + len;
}

/* ---- records ---------------------------------------------------------------------------------------------- */

/* Records read but not yet tokenized, in file order: their texts (a pretraining text, or the (user prompt, full
 * conversation) pair of a chat record), or NULL texts for a record the rules skip (blank, not a user turn first),
 * so that the counts stop exactly where max_samples is reached. */
typedef struct pending {
    char **texts;     /* (n · per_record) */
    int64_t *line;    /* (n) */
    int64_t n, cap;
} pending;

static void pending_push(pending *p, int per_record, char **texts, int64_t line) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->texts = dk_realloc(p->texts, (size_t)(p->cap * per_record) * sizeof *p->texts);
        p->line = dk_realloc(p->line, (size_t)p->cap * sizeof *p->line);
    }
    for (int i = 0; i < per_record; i++) p->texts[p->n * per_record + i] = texts ? texts[i] : NULL;
    p->line[p->n++] = line;
}

static void pending_clear(pending *p, int per_record) {
    for (int64_t i = 0; i < p->n * per_record; i++) free(p->texts[i]);
    p->n = 0;
}

/* Tokenizes the pending records and keeps those that qualify, in order, up to max_samples. */
static int flush(const adl_input_options *opt, const dk_tokenizer *tok, pending *p, collector *c, dk_err *err) {
    const int per = opt->is_chat ? 2 : 1;
    if (p->n == 0) return 0;
    const char **texts = dk_malloc((size_t)(p->n * per) * sizeof *texts);
    int64_t *where = dk_malloc((size_t)(p->n * per) * sizeof *where), m = 0; /* texts to encode, and their slots */
    for (int64_t i = 0; i < p->n * per; i++)
        if (p->texts[i]) texts[m] = p->texts[i], where[m++] = i;
    dk_tok_ids *enc = dk_calloc((size_t)(m ? m : 1), sizeof *enc), **ids = dk_calloc((size_t)(p->n * per), sizeof *ids);
    size_t failed = 0;
    /* pretraining: special tokens as the tokenizer adds them; chat: the template holds them */
    int rc = m ? dk_tokenizer_encode_batch(tok, texts, NULL, (size_t)m, !opt->is_chat, opt->n_threads, enc, &failed, err)
               : 0;
    if (rc != 0) dk_err_prefix(err, "%s:%lld: ", opt->path, (long long)p->line[where[failed] / per]);
    for (int64_t i = 0; i < m; i++) ids[where[i]] = &enc[i];
    adl_inputs *o = c->out;
    const int64_t P = o->n_pos, k = opt->pre_assistant_k, n = opt->n;
    int64_t *positions = dk_malloc((size_t)P * sizeof *positions);
    for (int64_t r = 0; r < p->n && rc == 0 && o->n_seqs < opt->max_samples; r++) {
        o->n_records++;
        if (!ids[r * per]) {
            o->n_skipped++;
            continue;
        }
        if (!opt->is_chat) {
            const dk_tok_ids *t = ids[r];
            if ((int64_t)t->n < n) {
                o->n_short++;
                continue;
            }
            for (int64_t j = 0; j < n; j++) positions[j] = j;
            keep(c, t->ids, n, positions, p->line[r]);
        } else {
            const dk_tok_ids *user = ids[2 * r], *full = ids[2 * r + 1];
            const int64_t a = (int64_t)user->n; /* where the assistant starts */
            if (a > opt->max_user_tokens) {
                o->n_skipped++;
                continue;
            }
            if ((int64_t)full->n - a < n) {
                o->n_short++;
                continue;
            }
            if (a < k) {
                rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: the user turn renders to %lld tokens, fewer than "
                                "diffing.method.pre_assistant_k = %lld positions before the assistant's reply",
                                opt->path, (long long)p->line[r], (long long)a, (long long)k);
                break;
            }
            for (int64_t j = 0; j < P; j++) positions[j] = a - k + j;
            keep(c, full->ids, a + n, positions, p->line[r]);
        }
        if (o->n_seqs <= opt->debug_print_samples)
            LOG_INFO("[DEBUG Sample %lld] %s:%lld: %.300s", (long long)(o->n_seqs - 1), opt->path,
                     (long long)p->line[r], p->texts[r * per + per - 1]);
    }
    free(positions);
    for (int64_t i = 0; i < m; i++) dk_tok_ids_free(&enc[i]);
    free(enc);
    free(ids);
    free(texts);
    free(where);
    pending_clear(p, per);
    return rc;
}

/* One record to its pending text(s): 1 queued, 0 queued as skipped, -1 error (err names the line). */
static int record(const adl_input_options *opt, const cJSON *obj, int64_t line, pending *p, dk_err *err) {
    const int64_t max_chars = opt->n * 10;
    if (!opt->is_chat) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, opt->text_column);
        if (!v)
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: the record has no field \"%s\" (the dataset's "
                              "text_column)", opt->path, (long long)line, opt->text_column);
        if (cJSON_IsNull(v) || (cJSON_IsString(v) && blank(v->valuestring))) {
            pending_push(p, 1, NULL, line);
            return 0;
        }
        if (!cJSON_IsString(v))
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: field \"%s\" is not a string", opt->path,
                              (long long)line, opt->text_column);
        char *text = cut_chars(v->valuestring, max_chars);
        pending_push(p, 1, &text, line);
        return 1;
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, opt->messages_column);
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) < 2)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: field \"%s\" must be a list of at least 2 messages (a "
                          "user turn and the assistant's reply)", opt->path, (long long)line, opt->messages_column);
    const char *role[2], *content[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *it = cJSON_GetArrayItem(msgs, i);
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(it, "role"), *t = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(r) || !cJSON_IsString(t))
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: message %d of \"%s\" lacks a string \"role\" or "
                              "\"content\"", opt->path, (long long)line, i, opt->messages_column);
        role[i] = r->valuestring;
        content[i] = t->valuestring;
    }
    if (strcmp(role[0], "user") != 0) {
        pending_push(p, 2, NULL, line);
        return 0;
    }
    if (strcmp(role[1], "assistant") != 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: the second message has role \"%s\"; the ADL reads the "
                          "assistant's reply to the first user turn there", opt->path, (long long)line, role[1]);
    char *reply = cut_chars(content[1], max_chars);
    dk_chat_message m[2] = {{.role = "user", .content = content[0]}, {.role = "assistant", .content = reply}};
    dk_chat_options with_prompt = {.add_generation_prompt = true, .enable_thinking = -1, .bos_token = opt->bos_token};
    dk_chat_options plain = {.add_generation_prompt = false, .enable_thinking = -1, .bos_token = opt->bos_token};
    char *texts[2];
    texts[0] = dk_chat_render(opt->family, m, 1, &with_prompt, err);
    texts[1] = texts[0] ? dk_chat_render(opt->family, m, 2, &plain, err) : NULL;
    free(reply);
    if (!texts[0] || !texts[1]) {
        free(texts[0]);
        dk_err_prefix(err, "%s:%lld: ", opt->path, (long long)line);
        return -1;
    }
    pending_push(p, 2, texts, line);
    return 1;
}

/* Records tokenized at once: a little more than are still missing (most records qualify), at most 4096. */
static int64_t chunk_size(int64_t missing) {
    const int64_t n = missing + missing / 4 + 16;
    return n < 4096 ? n : 4096;
}

int adl_inputs_read(const adl_input_options *opt, const dk_tokenizer *tok, adl_inputs *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    out->n_pos = opt->is_chat ? opt->pre_assistant_k + opt->n : opt->n;
    out->labels = dk_malloc((size_t)out->n_pos * sizeof *out->labels);
    for (int64_t j = 0; j < out->n_pos; j++) out->labels[j] = opt->is_chat ? j - opt->pre_assistant_k : j;
    out->offsets = dk_calloc(1, sizeof *out->offsets);
    size_t size = 0;
    char *data = dk_read_file(opt->path, &size, err);
    if (!data) {
        adl_inputs_free(out);
        return -1;
    }
    out->content_hash = dk_fnv1a(DK_FNV_OFFSET, data, size);
    collector c = {.out = out};
    pending p = {0};
    const int per = opt->is_chat ? 2 : 1;
    int rc = 0;
    int64_t line_no = 0;
    char *line = data;
    while (rc == 0 && line < data + size && out->n_seqs < opt->max_samples) {
        char *end = memchr(line, '\n', (size_t)(data + size - line));
        char *next = end ? end + 1 : data + size;
        if (end) *end = 0;
        line_no++;
        const char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        line = next;
        if (*s == 0) continue;
        char why[256];
        dk_err bad = {0};
        cJSON *obj = dk_json_parse_one(s, strlen(s), why, sizeof why);
        if (!obj || !cJSON_IsObject(obj))
            dk_err_set(&bad, DK_EXIT_RUNTIME, "%s:%lld: malformed record: %s", opt->path, (long long)line_no,
                       obj ? "not a JSON object" : why);
        else if (dk_json_has_nul_escape(s, strlen(s))) /* cJSON's strings end at U+0000: never cut a text silently */
            dk_err_set(&bad, DK_EXIT_RUNTIME, "%s:%lld: the record holds U+0000 (\\u0000), which diff_adl does not "
                       "read yet; remove it from the dataset (diff_preprocess and diff_kl accept it)", opt->path,
                       (long long)line_no);
        else
            record(opt, obj, line_no, &p, &bad);
        cJSON_Delete(obj);
        if (dk_err_is_set(&bad)) {
            /* an error only if the records before it leave max_samples unreached (the seed stops there) */
            rc = flush(opt, tok, &p, &c, err);
            if (rc == 0 && out->n_seqs < opt->max_samples) rc = dk_err_set(err, bad.code, "%s", bad.msg);
            break;
        }
        if (p.n >= chunk_size(opt->max_samples - out->n_seqs)) rc = flush(opt, tok, &p, &c, err);
    }
    if (rc == 0) rc = flush(opt, tok, &p, &c, err);
    pending_clear(&p, per);
    free(p.texts);
    free(p.line);
    free(data);
    if (rc == 0 && out->n_seqs == 0) {
        if (out->n_records == 0)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: the dataset is empty (no records): nothing to run the ADL on",
                            opt->path);
        else
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: none of its %lld records gives a sequence of diffing.method.n = "
                            "%lld tokens%s (%lld too short, %lld skipped%s): lower diffing.method.n or use a dataset "
                            "with longer texts", opt->path, (long long)out->n_records, (long long)opt->n,
                            opt->is_chat ? " in the assistant's reply" : "", (long long)out->n_short,
                            (long long)out->n_skipped,
                            opt->is_chat ? ": blank, not starting with a user turn, or a user turn over "
                                           "512 tokens" : ": blank texts");
    }
    if (rc != 0) adl_inputs_free(out);
    return rc;
}

void adl_inputs_free(adl_inputs *in) {
    free(in->ids);
    free(in->offsets);
    free(in->positions);
    free(in->labels);
    free(in->line);
    memset(in, 0, sizeof *in);
}
