/* pp_dataset.c — dataset resolution, JSON Lines records to texts, tokenization (see pp_dataset.h). */
#define _GNU_SOURCE /* memmem */
#include "pipeline/pp_dataset.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/act_store.h"
#include "io/file.h"
#include "io/json_text.h"
#include "io/json_value.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static const char *const KNOWN_SPLITS[] = {"train", "validation", "test", NULL};

int dk_pp_resolve_dataset(const char *id, const char *split, const char *config_key, char **path, char **name,
                          dk_err *err) {
    *path = *name = NULL;
    if (dk_is_dir(id)) {
        const char *exts[] = {".jsonl", ".jsonl.gz"};
        for (int e = 0; e < 2; e++) {
            char *file = dk_sprintf("%s/%s%s", id, split, exts[e]);
            if (dk_is_file(file)) {
                *path = file;
                const char *base = strrchr(id, '/');
                char *trimmed = dk_strdup(base && base[1] ? base + 1 : id);
                *name = trimmed;
                return 0;
            }
            free(file);
        }
        return dk_err_set(err, DK_EXIT_USAGE, "%s=%s: the folder holds no %s.jsonl or %s.jsonl.gz for split '%s'",
                          config_key, id, split, split, split);
    }
    const char *ext = ends_with(id, ".jsonl.gz") ? ".jsonl.gz" : ends_with(id, ".jsonl") ? ".jsonl" : NULL;
    if (!ext)
        return dk_err_set(err, DK_EXIT_USAGE,
                          "%s=%s is not a local .jsonl/.jsonl.gz file or a folder of <split>.jsonl(.gz) files; "
                          "datasets are not downloaded: give a local path, e.g. %s=/path/to/folder",
                          config_key, id, config_key);
    /* NAME.<split>.jsonl(.gz): swap the split; otherwise the file serves the first split only */
    size_t stem_len = strlen(id) - strlen(ext);
    char *stem = dk_strndup(id, stem_len);
    char *dot = strrchr(stem, '.');
    char *slash = strrchr(stem, '/');
    bool has_split = false;
    if (dot && (!slash || dot > slash))
        for (int i = 0; KNOWN_SPLITS[i]; i++)
            if (strcmp(dot + 1, KNOWN_SPLITS[i]) == 0) has_split = true;
    char *file;
    if (has_split) {
        *dot = 0;
        file = dk_sprintf("%s.%s%s", stem, split, ext);
    } else {
        file = dk_strdup(id);
    }
    const char *base = strrchr(stem, '/');
    *name = dk_strdup(base ? base + 1 : stem);
    free(stem);
    if (!has_split && strcmp(split, "train") != 0) {
        free(file);
        free(*name);
        *name = NULL;
        return dk_err_set(err, DK_EXIT_USAGE, "%s=%s names one file without a split in its name, so there is no "
                          "'%s' split: name files NAME.train.jsonl.gz / NAME.%s.jsonl.gz, or give a folder of "
                          "<split>.jsonl(.gz) files", config_key, id, split, split);
    }
    if (!dk_is_file(file)) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: the dataset file %s for split '%s' does not exist (from %s=%s)",
                   config_key, file, split, config_key, id);
        free(file);
        free(*name);
        *name = NULL;
        return -1;
    }
    *path = file;
    return 0;
}

/* ---- records -> texts ------------------------------------------------------------------------------- */

static void push_text(dk_pp_texts *t, int64_t *cap, char *text, size_t len, int64_t line, bool add_special) {
    if (t->n == *cap) {
        *cap = *cap ? 2 * *cap : 1024;
        t->texts = dk_realloc(t->texts, (size_t)*cap * sizeof *t->texts);
        t->lens = dk_realloc(t->lens, (size_t)*cap * sizeof *t->lens);
        t->line_no = dk_realloc(t->line_no, (size_t)*cap * sizeof *t->line_no);
        t->add_special = dk_realloc(t->add_special, (size_t)*cap * sizeof *t->add_special);
    }
    t->texts[t->n] = text;
    t->lens[t->n] = len;
    t->line_no[t->n] = line;
    t->add_special[t->n] = add_special;
    t->n++;
}

/* Whether cJSON's copy of a string (v) is all of it: false when the JSON text of line[0..n) at `path` holds
 * U+0000, where cJSON's string ends. */
static bool whole_string(const char *line, size_t n, const dk_json_step *path, size_t depth, const cJSON *v) {
    if (!dk_json_has_nul_escape(line, n)) return true;
    char *s = NULL;
    size_t len = 0;
    const char *at = dk_json_locate(line, n, path, depth);
    bool whole = !at || dk_json_decode_string(at, line + n, &s, &len) != 0 || len == strlen(v->valuestring);
    free(s);
    return whole;
}

/* One record (the JSON line[0..n), obj its parse) to a text of *len bytes: 1 = text made, 0 = skipped (the
 * template refuses the conversation), -1 = malformed. */
static int record_text(const char *line, size_t n, const cJSON *obj, const dk_pp_read_options *opt, char **text,
                       size_t *len, bool *add_special, char *why, size_t why_cap) {
    if (!opt->is_chat) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, opt->text_column);
        if (!cJSON_IsString(v)) {
            snprintf(why, why_cap, "no string field \"%s\"", opt->text_column);
            return -1;
        }
        const dk_json_step path[] = {{opt->text_column, 0}};
        const char *at = dk_json_has_nul_escape(line, n) ? dk_json_locate(line, n, path, 1) : NULL;
        if (!at || dk_json_decode_string(at, line + n, text, len) != 0) { /* no U+0000: cJSON's string is all of it */
            *len = strlen(v->valuestring);
            *text = dk_strndup(v->valuestring, *len);
        }
        /* seed: add_special_tokens = (bos_token not in text) */
        *add_special = !(opt->bos_token && opt->bos_token[0] && memmem(*text, *len, opt->bos_token, strlen(opt->bos_token)));
        return 1;
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, opt->messages_column);
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        snprintf(why, why_cap, "no non-empty list field \"%s\"", opt->messages_column);
        return -1;
    }
    int n_msgs = cJSON_GetArraySize(msgs);
    dk_chat_message *m = dk_calloc((size_t)n_msgs, sizeof *m);
    for (int i = 0; i < n_msgs; i++) {
        const cJSON *it = cJSON_GetArrayItem(msgs, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            snprintf(why, why_cap, "message %d of \"%s\" lacks a string \"role\" or \"content\"", i,
                     opt->messages_column);
            free(m);
            return -1;
        }
        const dk_json_step path[] = {{opt->messages_column, 0}, {NULL, i}, {"content", 0}};
        if (!whole_string(line, n, path, 3, content)) {
            snprintf(why, why_cap, "message %d of \"%s\" holds U+0000 (\\u0000), which diffkit's chat templates do "
                     "not render (plain text records encode it)", i, opt->messages_column);
            free(m);
            return -1;
        }
        m[i].role = role->valuestring;
        m[i].content = content->valuestring;
    }
    dk_chat_options co = {.add_generation_prompt = false, .enable_thinking = -1, .bos_token = opt->bos_token};
    dk_err render_err = {0};
    *text = dk_chat_render(opt->family, m, (size_t)n_msgs, &co, &render_err);
    free(m);
    *add_special = false; /* the template holds the BOS */
    if (!*text) {
        snprintf(why, why_cap, "%s", render_err.msg);
        return 0;
    }
    *len = strlen(*text);
    return 1;
}

int dk_pp_read_texts(const char *path, const dk_pp_read_options *opt, dk_pp_texts *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    size_t size = 0;
    char *data = dk_read_file(path, &size, err);
    if (!data) return -1;
    out->content_hash = dk_fnv1a(DK_FNV_OFFSET, data, size);
    int64_t cap = 0, line_no = 0, n_records = 0;
    char *line = data;
    while (line < data + size && n_records < opt->max_samples) {
        char *end = memchr(line, '\n', (size_t)(data + size - line));
        if (end) *end = 0;
        line_no++;
        char *next = end ? end + 1 : data + size;
        const char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (*p == 0) {
            line = next;
            continue;
        }
        n_records++;
        char why[2048] = "";
        const size_t line_len = (size_t)((end ? end : data + size) - line);
        char parse_why[256];
        cJSON *obj = dk_json_parse_one(line, line_len, parse_why, sizeof parse_why);
        int r = -1;
        char *text = NULL;
        size_t text_len = 0;
        bool add_special = false;
        if (!obj) snprintf(why, sizeof why, "not a JSON object: %s", parse_why);
        else if (!cJSON_IsObject(obj)) snprintf(why, sizeof why, "not a JSON object");
        else r = record_text(line, line_len, obj, opt, &text, &text_len, &add_special, why, sizeof why);
        cJSON_Delete(obj);
        if (r == 1) {
            push_text(out, &cap, text, text_len, line_no, add_special);
        } else if (r == 0) {
            out->n_chat_skipped++;
            LOG_DEBUG("%s:%lld: conversation skipped: %s", path, (long long)line_no, why);
        } else if (opt->skip_bad) {
            out->n_bad++;
            LOG_WARN("%s:%lld: malformed record skipped (preprocessing.on_bad_record=skip): %s", path,
                     (long long)line_no, why);
        } else {
            dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: malformed record: %s (set preprocessing.on_bad_record=skip "
                       "to skip such lines)", path, (long long)line_no, why);
            free(data);
            dk_pp_texts_free(out);
            return -1;
        }
        line = next;
    }
    free(data);
    if (out->n == 0) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s: the dataset is empty (no usable records among %lld lines)", path,
                   (long long)line_no);
        dk_pp_texts_free(out);
        return -1;
    }
    return 0;
}

void dk_pp_texts_free(dk_pp_texts *t) {
    for (int64_t i = 0; i < t->n; i++) free(t->texts[i]);
    free(t->texts);
    free(t->lens);
    free(t->line_no);
    free(t->add_special);
    memset(t, 0, sizeof *t);
}

/* ---- tokenization ----------------------------------------------------------------------------------- */

int dk_pp_tokenize(const dk_tokenizer *tok, const dk_pp_texts *texts, int64_t context_len, int64_t max_tokens,
                   bool skip_bad, const char *path, int n_threads, dk_pp_tokens *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    int64_t n = texts->n;
    dk_tok_ids *ids = dk_calloc((size_t)n, sizeof *ids);
    /* two passes, texts with and without special tokens, each multi-threaded */
    const char **batch = dk_malloc((size_t)n * sizeof *batch);
    size_t *lens = dk_malloc((size_t)n * sizeof *lens);
    int64_t *which = dk_malloc((size_t)n * sizeof *which);
    dk_tok_ids *outs = dk_calloc((size_t)n, sizeof *outs);
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        bool special = pass == 0;
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (texts->add_special[i] == special) {
                batch[m] = texts->texts[i];
                lens[m] = texts->lens[i];
                which[m++] = i;
            }
        if (m == 0) continue;
        memset(outs, 0, (size_t)m * sizeof *outs);
        size_t failed = 0;
        rc = dk_tokenizer_encode_batch(tok, batch, lens, (size_t)m, special, n_threads, outs, &failed, err);
        for (int64_t k = 0; k < m; k++) ids[which[k]] = outs[k];
        if (rc != 0) dk_err_prefix(err, "%s:%lld: ", path, (long long)texts->line_no[which[failed]]);
    }
    free(batch);
    free(lens);
    free(which);
    free(outs);
    int64_t cap_seqs = n + 1, total = 0;
    out->offsets = dk_malloc((size_t)cap_seqs * sizeof *out->offsets);
    out->offsets[0] = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) total += (int64_t)ids[i].n < context_len ? (int64_t)ids[i].n
                                                                                          : context_len;
    out->ids = dk_malloc((size_t)(total ? total : 1) * sizeof *out->ids);
    int64_t pos = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        if (pos >= max_tokens) break;
        int64_t len = (int64_t)ids[i].n < context_len ? (int64_t)ids[i].n : context_len;
        if (len < 2) {
            if (skip_bad) {
                out->n_short++;
                LOG_WARN("%s:%lld: sequence of %lld token(s) skipped (preprocessing.on_bad_record=skip)", path,
                         (long long)texts->line_no[i], (long long)len);
                continue;
            }
            rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s:%lld: the record gives a sequence of %lld token(s); at least 2 "
                            "are needed (set preprocessing.on_bad_record=skip to skip such records)", path,
                            (long long)texts->line_no[i], (long long)len);
            break;
        }
        memcpy(out->ids + pos, ids[i].ids, (size_t)len * sizeof(int32_t));
        pos += len;
        out->offsets[++out->n_seqs] = pos;
    }
    out->n_tokens = pos;
    for (int64_t i = 0; i < n; i++) dk_tok_ids_free(&ids[i]);
    free(ids);
    if (rc == 0 && out->n_seqs == 0)
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s: no sequence of at least 2 tokens is left", path);
    if (rc != 0) dk_pp_tokens_free(out);
    return rc;
}

void dk_pp_tokens_free(dk_pp_tokens *t) {
    free(t->ids);
    free(t->offsets);
    memset(t, 0, sizeof *t);
}
