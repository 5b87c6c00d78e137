/* tok_load.c — reads tokenizer.json into the component structs (tok_internal.h). Every component type
 * we do not implement is an error naming it and the file; defaults follow HF's serde defaults. The GPT-2
 * regex of ByteLevel(use_regex) is compiled here, like every Split regex. */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include "core/error.h"
#include "core/strutil.h"
#include "io/file.h"
#include "io/json_value.h"

#include <cjson/cJSON.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_VOCAB_ID = 1 << 24 }; /* far above any real vocabulary; bounds allocations on corrupt files */

static const char *GPT2_RE =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- small JSON helpers ---- */
static const char *type_of(const cJSON *obj) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static bool get_bool(const cJSON *obj, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static const char *get_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* First char of a UTF-8 string as a code point; -1 when it is not exactly one char. */
static int64_t single_char(const char *s) {
    if (!s || !*s) return -1;
    size_t n = strlen(s);
    if (tok_utf8_first_invalid(s, n) != n) return -1;
    size_t l;
    uint32_t cp = tok_utf8_decode(s, &l);
    return l == n ? (int64_t)cp : -1;
}

static int parse_pattern(const cJSON *obj, const char *where, const char *name, tok_pattern *pat, dk_err *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
    const char *lit = get_str(p, "String"), *re = get_str(p, "Regex");
    if (lit) {
        if (!*lit)
            return dk_err_set(err, DK_EXIT_USAGE, "%s: %s has an empty String pattern, which is not supported", name,
                              where);
        pat->literal = dk_strdup(lit);
        pat->literal_len = strlen(lit);
        return 0;
    }
    if (re) {
        if (tok_regex_compile(re, strlen(re), &pat->regex, err) < 0) {
            dk_err_prefix(err, "%s: %s: ", name, where);
            return -1;
        }
        return 0;
    }
    return dk_err_set(err, DK_EXIT_USAGE, "%s: %s needs \"pattern\": {\"String\": ...} or {\"Regex\": ...}", name, where);
}

static int parse_prepend_scheme(const cJSON *obj, tok_prepend_scheme *out, const char *name, dk_err *err) {
    const char *s = get_str(obj, "prepend_scheme");
    if (s) {
        if (strcmp(s, "always") == 0) *out = TOK_PREPEND_ALWAYS;
        else if (strcmp(s, "first") == 0) *out = TOK_PREPEND_FIRST;
        else if (strcmp(s, "never") == 0) *out = TOK_PREPEND_NEVER;
        else return dk_err_set(err, DK_EXIT_USAGE, "%s: Metaspace prepend_scheme '%s' is not always/first/never", name, s);
    } else {
        *out = get_bool(obj, "add_prefix_space", true) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    }
    return 0;
}

/* ---- normalizers ---- */
void tok_normalizer_free(tok_normalizer *n) {
    if (!n) return;
    tok_pattern_free(&n->pattern);
    free(n->content);
    for (size_t i = 0; i < n->n_children; i++) tok_normalizer_free(&n->children[i]);
    free(n->children);
}

static int parse_normalizer(const cJSON *j, tok_normalizer *n, const char *name, dk_err *err) {
    memset(n, 0, sizeof *n);
    const char *t = type_of(j);
    if (!t) return dk_err_set(err, DK_EXIT_USAGE, "%s: a normalizer has no \"type\"", name);
    if (strcmp(t, "NFC") == 0) n->type = TOK_NORM_NFC;
    else if (strcmp(t, "NFD") == 0) n->type = TOK_NORM_NFD;
    else if (strcmp(t, "NFKC") == 0) n->type = TOK_NORM_NFKC;
    else if (strcmp(t, "NFKD") == 0) n->type = TOK_NORM_NFKD;
    else if (strcmp(t, "Lowercase") == 0) n->type = TOK_NORM_LOWERCASE;
    else if (strcmp(t, "Strip") == 0) {
        n->type = TOK_NORM_STRIP;
        n->strip_left = get_bool(j, "strip_left", true);
        n->strip_right = get_bool(j, "strip_right", true);
    } else if (strcmp(t, "Replace") == 0) {
        n->type = TOK_NORM_REPLACE;
        const char *c = get_str(j, "content");
        if (!c) return dk_err_set(err, DK_EXIT_USAGE, "%s: Replace normalizer without \"content\"", name);
        n->content = dk_strdup(c);
        return parse_pattern(j, "Replace normalizer", name, &n->pattern, err);
    } else if (strcmp(t, "Prepend") == 0) {
        n->type = TOK_NORM_PREPEND;
        const char *c = get_str(j, "prepend");
        if (!c) return dk_err_set(err, DK_EXIT_USAGE, "%s: Prepend normalizer without \"prepend\"", name);
        n->content = dk_strdup(c);
    } else if (strcmp(t, "Sequence") == 0) {
        n->type = TOK_NORM_SEQUENCE;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(list)) return dk_err_set(err, DK_EXIT_USAGE, "%s: Sequence normalizer without a \"normalizers\" list", name);
        n->n_children = (size_t)cJSON_GetArraySize(list);
        n->children = dk_calloc(n->n_children ? n->n_children : 1, sizeof *n->children);
        size_t i = 0;
        for (const cJSON *c = list->child; c; c = c->next, i++)
            if (parse_normalizer(c, &n->children[i], name, err) < 0) return -1;
    } else {
        return dk_err_set(err, DK_EXIT_USAGE,
                          "%s: normalizer type '%s' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, "
                          "Strip, Replace, Prepend, Sequence)", name, t);
    }
    return 0;
}

/* ---- pre-tokenizers ---- */
void tok_pretokenizer_free(tok_pretokenizer *p) {
    if (!p) return;
    tok_pattern_free(&p->pattern);
    for (size_t i = 0; i < p->n_children; i++) tok_pretokenizer_free(&p->children[i]);
    free(p->children);
}

static int parse_pretokenizer(const cJSON *j, tok_pretokenizer *p, const char *name, dk_err *err) {
    memset(p, 0, sizeof *p);
    const char *t = type_of(j);
    if (!t) return dk_err_set(err, DK_EXIT_USAGE, "%s: a pre_tokenizer has no \"type\"", name);
    if (strcmp(t, "Split") == 0) {
        p->type = TOK_PRE_SPLIT;
        const char *b = get_str(j, "behavior");
        if (!b) return dk_err_set(err, DK_EXIT_USAGE, "%s: Split pre_tokenizer without \"behavior\"", name);
        if (strcmp(b, "Isolated") == 0) p->behavior = TOK_SPLIT_ISOLATED;
        else if (strcmp(b, "Removed") == 0) p->behavior = TOK_SPLIT_REMOVED;
        else if (strcmp(b, "MergedWithPrevious") == 0) p->behavior = TOK_SPLIT_MERGED_WITH_PREVIOUS;
        else if (strcmp(b, "MergedWithNext") == 0) p->behavior = TOK_SPLIT_MERGED_WITH_NEXT;
        else if (strcmp(b, "Contiguous") == 0) p->behavior = TOK_SPLIT_CONTIGUOUS;
        else return dk_err_set(err, DK_EXIT_USAGE, "%s: Split behavior '%s' is unknown (Isolated, Removed, "
                               "MergedWithPrevious, MergedWithNext, Contiguous)", name, b);
        if (parse_pattern(j, "Split pre_tokenizer", name, &p->pattern, err) < 0) return -1;
        p->pattern.invert = get_bool(j, "invert", false);
    } else if (strcmp(t, "ByteLevel") == 0) {
        p->type = TOK_PRE_BYTE_LEVEL;
        p->add_prefix_space = get_bool(j, "add_prefix_space", true);
        p->use_regex = get_bool(j, "use_regex", true);
        if (p->use_regex && tok_regex_compile(GPT2_RE, strlen(GPT2_RE), &p->pattern.regex, err) < 0) return -1;
    } else if (strcmp(t, "Metaspace") == 0) {
        p->type = TOK_PRE_METASPACE;
        const char *r = get_str(j, "replacement");
        int64_t cp = single_char(r ? r : "\xE2\x96\x81");
        if (cp < 0) return dk_err_set(err, DK_EXIT_USAGE, "%s: Metaspace replacement must be one character", name);
        p->replacement_cp = (uint32_t)cp;
        p->replacement[tok_utf8_encode((uint32_t)cp, p->replacement)] = '\0';
        p->split = get_bool(j, "split", true);
        if (parse_prepend_scheme(j, &p->prepend_scheme, name, err) < 0) return -1;
    } else if (strcmp(t, "Digits") == 0) {
        p->type = TOK_PRE_DIGITS;
        p->individual_digits = get_bool(j, "individual_digits", false);
    } else if (strcmp(t, "Whitespace") == 0) {
        p->type = TOK_PRE_WHITESPACE;
    } else if (strcmp(t, "WhitespaceSplit") == 0) {
        p->type = TOK_PRE_WHITESPACE_SPLIT;
    } else if (strcmp(t, "Sequence") == 0) {
        p->type = TOK_PRE_SEQUENCE;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(list)) return dk_err_set(err, DK_EXIT_USAGE, "%s: Sequence pre_tokenizer without a \"pretokenizers\" list", name);
        p->n_children = (size_t)cJSON_GetArraySize(list);
        p->children = dk_calloc(p->n_children ? p->n_children : 1, sizeof *p->children);
        size_t i = 0;
        for (const cJSON *c = list->child; c; c = c->next, i++)
            if (parse_pretokenizer(c, &p->children[i], name, err) < 0) return -1;
    } else {
        return dk_err_set(err, DK_EXIT_USAGE,
                          "%s: pre_tokenizer type '%s' is not supported (supported: Split, ByteLevel, Metaspace, "
                          "Digits, Whitespace, WhitespaceSplit, Sequence)", name, t);
    }
    return 0;
}

/* ---- decoders ---- */
void tok_decoder_free(tok_decoder *d) {
    if (!d) return;
    tok_pattern_free(&d->pattern);
    free(d->content);
    for (size_t i = 0; i < d->n_children; i++) tok_decoder_free(&d->children[i]);
    free(d->children);
}

static int parse_decoder(const cJSON *j, tok_decoder *d, const char *name, dk_err *err) {
    memset(d, 0, sizeof *d);
    const char *t = type_of(j);
    if (!t) return dk_err_set(err, DK_EXIT_USAGE, "%s: a decoder has no \"type\"", name);
    if (strcmp(t, "ByteLevel") == 0) d->type = TOK_DEC_BYTE_LEVEL;
    else if (strcmp(t, "ByteFallback") == 0) d->type = TOK_DEC_BYTE_FALLBACK;
    else if (strcmp(t, "Fuse") == 0) d->type = TOK_DEC_FUSE;
    else if (strcmp(t, "Metaspace") == 0) {
        d->type = TOK_DEC_METASPACE;
        const char *r = get_str(j, "replacement");
        int64_t cp = single_char(r ? r : "\xE2\x96\x81");
        if (cp < 0) return dk_err_set(err, DK_EXIT_USAGE, "%s: Metaspace decoder replacement must be one character", name);
        d->replacement_cp = (uint32_t)cp;
        return parse_prepend_scheme(j, &d->prepend_scheme, name, err);
    } else if (strcmp(t, "Replace") == 0) {
        d->type = TOK_DEC_REPLACE;
        const char *c = get_str(j, "content");
        if (!c) return dk_err_set(err, DK_EXIT_USAGE, "%s: Replace decoder without \"content\"", name);
        d->content = dk_strdup(c);
        return parse_pattern(j, "Replace decoder", name, &d->pattern, err);
    } else if (strcmp(t, "Strip") == 0) {
        d->type = TOK_DEC_STRIP;
        int64_t cp = single_char(get_str(j, "content"));
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(j, "start"), *stop = cJSON_GetObjectItemCaseSensitive(j, "stop");
        if (cp < 0 || !cJSON_IsNumber(start) || !cJSON_IsNumber(stop) || start->valuedouble < 0 || stop->valuedouble < 0 ||
            start->valuedouble > 1e6 || stop->valuedouble > 1e6)
            return dk_err_set(err, DK_EXIT_USAGE, "%s: Strip decoder needs a one-char \"content\" and counts \"start\", \"stop\"", name);
        d->strip_content = (uint32_t)cp;
        d->strip_start = (size_t)start->valuedouble;
        d->strip_stop = (size_t)stop->valuedouble;
    } else if (strcmp(t, "Sequence") == 0) {
        d->type = TOK_DEC_SEQUENCE;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(list)) return dk_err_set(err, DK_EXIT_USAGE, "%s: Sequence decoder without a \"decoders\" list", name);
        d->n_children = (size_t)cJSON_GetArraySize(list);
        d->children = dk_calloc(d->n_children ? d->n_children : 1, sizeof *d->children);
        size_t i = 0;
        for (const cJSON *c = list->child; c; c = c->next, i++)
            if (parse_decoder(c, &d->children[i], name, err) < 0) return -1;
    } else {
        return dk_err_set(err, DK_EXIT_USAGE,
                          "%s: decoder type '%s' is not supported (supported: ByteLevel, Metaspace, Replace, "
                          "ByteFallback, Fuse, Strip, Sequence)", name, t);
    }
    return 0;
}

/* ---- post-processor ---- */
static int parse_template(const cJSON *j, tok_post *post, const char *name, dk_err *err) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    if (!cJSON_IsArray(single))
        return dk_err_set(err, DK_EXIT_USAGE, "%s: TemplateProcessing without a \"single\" list", name);
    bool seen_a = false;
    post->present = true;
    for (const cJSON *piece = single->child; piece; piece = piece->next) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(piece, "Sequence");
        if (seq) {
            const char *id = get_str(seq, "id");
            if (!id || strcmp(id, "A") != 0 || seen_a)
                return dk_err_set(err, DK_EXIT_USAGE, "%s: TemplateProcessing \"single\" must hold $A exactly once", name);
            seen_a = true;
            continue;
        }
        const char *id = sp ? get_str(sp, "id") : NULL;
        if (!id) return dk_err_set(err, DK_EXIT_USAGE, "%s: TemplateProcessing piece is neither SpecialToken nor Sequence", name);
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(specials, id);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids");
        if (!cJSON_IsArray(ids))
            return dk_err_set(err, DK_EXIT_USAGE, "%s: TemplateProcessing special token '%s' is missing from \"special_tokens\"", name, id);
        for (const cJSON *v = ids->child; v; v = v->next) {
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_VOCAB_ID)
                return dk_err_set(err, DK_EXIT_USAGE, "%s: TemplateProcessing special token '%s' has a bad id", name, id);
            int32_t **arr = seen_a ? &post->after : &post->before;
            size_t *n = seen_a ? &post->n_after : &post->n_before;
            *arr = dk_realloc(*arr, (*n + 1) * sizeof **arr);
            (*arr)[(*n)++] = (int32_t)v->valuedouble;
        }
    }
    if (!seen_a) return dk_err_set(err, DK_EXIT_USAGE, "%s: TemplateProcessing \"single\" has no $A", name);
    return 0;
}

static int parse_post(const cJSON *j, tok_post *post, const char *name, dk_err *err) {
    const char *t = type_of(j);
    if (!t) return dk_err_set(err, DK_EXIT_USAGE, "%s: a post_processor has no \"type\"", name);
    if (strcmp(t, "ByteLevel") == 0) return 0; /* offsets only */
    if (strcmp(t, "TemplateProcessing") == 0) {
        if (post->present) return dk_err_set(err, DK_EXIT_USAGE, "%s: more than one TemplateProcessing", name);
        return parse_template(j, post, name, err);
    }
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "processors");
        if (!cJSON_IsArray(list)) return dk_err_set(err, DK_EXIT_USAGE, "%s: Sequence post_processor without \"processors\"", name);
        for (const cJSON *c = list->child; c; c = c->next)
            if (parse_post(c, post, name, err) < 0) return -1;
        return 0;
    }
    return dk_err_set(err, DK_EXIT_USAGE,
                      "%s: post_processor type '%s' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)",
                      name, t);
}

/* ---- model ---- */
static int parse_bpe(const cJSON *m, tok_bpe *bpe, const char *name, dk_err *err) {
    const char *t = type_of(m);
    if (t && strcmp(t, "BPE") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: model type '%s' is not supported (only BPE)", name, t);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0.0)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: BPE dropout %g is not supported (needs null or 0)", name, dropout->valuedouble);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return dk_err_set(err, DK_EXIT_USAGE, "%s: the BPE model needs a \"vocab\" object and a \"merges\" list", name);
    bpe->fuse_unk = get_bool(m, "fuse_unk", false);
    bpe->byte_fallback = get_bool(m, "byte_fallback", false);
    bpe->ignore_merges = get_bool(m, "ignore_merges", false);
    const char *p = get_str(m, "continuing_subword_prefix"), *s = get_str(m, "end_of_word_suffix");
    bpe->continuing_subword_prefix = p && *p ? dk_strdup(p) : NULL;
    bpe->end_of_word_suffix = s && *s ? dk_strdup(s) : NULL;

    int32_t max_id = -1;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_VOCAB_ID || v->valuedouble != (double)(int32_t)v->valuedouble)
            return dk_err_set(err, DK_EXIT_USAGE, "%s: vocab entry \"%.100s\" has an invalid id (expected an integer in [0, %d))",
                              name, v->string, MAX_VOCAB_ID);
        int32_t id = (int32_t)v->valuedouble;
        tok_strmap_put(&bpe->vocab, v->string, strlen(v->string), id);
        if (id > max_id) max_id = id;
    }
    bpe->n_ids = max_id + 1;
    bpe->id_to_token = dk_calloc((size_t)bpe->n_ids + 1, sizeof *bpe->id_to_token);
    for (const cJSON *v = vocab->child; v; v = v->next)
        bpe->id_to_token[(int32_t)v->valuedouble] = (char *)tok_strmap_key(&bpe->vocab, v->string, strlen(v->string));

    const char *unk = get_str(m, "unk_token");
    bpe->unk_id = -1;
    if (unk) {
        bpe->unk_id = tok_strmap_get(&bpe->vocab, unk, strlen(unk));
        if (bpe->unk_id < 0) return dk_err_set(err, DK_EXIT_USAGE, "%s: unk_token \"%.100s\" is not in the vocab", name, unk);
    }
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        bpe->byte_ids[b] = tok_strmap_get(&bpe->vocab, hex, strlen(hex));
    }
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        bpe->char_ids_ascii[c] = tok_strmap_get(&bpe->vocab, &ch, 1);
    }

    size_t prefix_len = bpe->continuing_subword_prefix ? strlen(bpe->continuing_subword_prefix) : 0;
    int32_t rank = 0;
    char *joined = NULL;
    size_t joined_cap = 0;
    int rc = 0;
    for (const cJSON *mg = merges->child; mg; mg = mg->next, rank++) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (cJSON_IsString(mg)) {
            const char *sp = strchr(mg->valuestring, ' ');
            if (dk_str_starts_with(mg->valuestring, "#version")) {
                rank--;
                continue;
            }
            if (!sp) {
                rc = dk_err_set(err, DK_EXIT_USAGE, "%s: merge %d \"%.100s\" is not two tokens separated by a space", name, rank, mg->valuestring);
                break;
            }
            a = mg->valuestring;
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(mg) && cJSON_GetArraySize(mg) == 2 && cJSON_IsString(mg->child) && cJSON_IsString(mg->child->next)) {
            a = mg->child->valuestring;
            b = mg->child->next->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", name, rank);
            break;
        }
        int32_t ia = tok_strmap_get(&bpe->vocab, a, al), ib = tok_strmap_get(&bpe->vocab, b, bl);
        size_t skip = (prefix_len && bl >= prefix_len) ? prefix_len : 0;
        if (joined_cap < al + bl + 1) {
            joined_cap = (al + bl + 1) * 2;
            joined = dk_realloc(joined, joined_cap);
        }
        memcpy(joined, a, al);
        memcpy(joined + al, b + skip, bl - skip);
        int32_t ij = tok_strmap_get(&bpe->vocab, joined, al + bl - skip);
        if (ia < 0 || ib < 0 || ij < 0) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: merge %d (\"%.*s\" + \"%.*s\") uses a token that is not in the vocab",
                            name, rank, (int)(al > 100 ? 100 : al), a, (int)(bl > 100 ? 100 : bl), b);
            break;
        }
        tok_pairmap_put(&bpe->merges, ia, ib, rank, ij);
    }
    free(joined);
    return rc;
}

/* ---- the whole file ---- */
static char *read_optional(const char *dir, const char *base, dk_err *err) {
    const char *suffixes[] = {"", ".gz"};
    for (int i = 0; i < 2; i++) {
        char *name = dk_sprintf("%s%s", base, suffixes[i]);
        char *path = dk_path_join(dir, name);
        free(name);
        if (dk_is_file(path)) {
            size_t size;
            char *text = dk_read_file(path, &size, err);
            free(path);
            return text;
        }
        free(path);
    }
    return NULL;
}

static void tokenizer_free_parts(dk_tokenizer *tok);

dk_tokenizer *dk_tokenizer_from_json(const char *json, size_t len, const char *name, dk_err *err) {
    /* JSON text is UTF-8 (HF's serde_json refuses anything else); checking it once here means every string
     * taken from the file (vocab, added tokens, patterns, replacements) is valid UTF-8 downstream. */
    size_t bad = tok_utf8_first_invalid(json, len);
    if (bad != len) {
        size_t line = 1;
        for (size_t i = 0; i < bad; i++) line += json[i] == '\n';
        dk_err_set(err, DK_EXIT_USAGE, "%s: not valid UTF-8 at byte %zu (line %zu); re-download tokenizer.json", name, bad,
                   line);
        return NULL;
    }
    cJSON *root = dk_json_parse_document(json, len, name, DK_EXIT_USAGE, "truncated or corrupt? re-download "
                                         "tokenizer.json", err);
    if (!root) return NULL;
    dk_tokenizer *tok = dk_calloc(1, sizeof *tok);
    tok->name = dk_strdup(name);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *trunc = cJSON_GetObjectItemCaseSensitive(root, "truncation");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "padding");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: no \"model\" object: is this a Hugging Face tokenizer.json?", name);
        goto fail;
    }
    if (trunc && !cJSON_IsNull(trunc)) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: \"truncation\" is set; it is not supported (set it to null)", name);
        goto fail;
    }
    if (pad && !cJSON_IsNull(pad)) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: \"padding\" is set; it is not supported (set it to null)", name);
        goto fail;
    }
    if (parse_bpe(model, &tok->bpe, name, err) < 0) goto fail;
    if (norm && !cJSON_IsNull(norm)) {
        tok->normalizer = dk_calloc(1, sizeof *tok->normalizer);
        if (parse_normalizer(norm, tok->normalizer, name, err) < 0) goto fail;
    }
    if (pre && !cJSON_IsNull(pre)) {
        tok->pretokenizer = dk_calloc(1, sizeof *tok->pretokenizer);
        if (parse_pretokenizer(pre, tok->pretokenizer, name, err) < 0) goto fail;
    }
    if (dec && !cJSON_IsNull(dec)) {
        tok->decoder = dk_calloc(1, sizeof *tok->decoder);
        if (parse_decoder(dec, tok->decoder, name, err) < 0) goto fail;
    }
    if (post && !cJSON_IsNull(post) && parse_post(post, &tok->post, name, err) < 0) goto fail;

    /* added tokens */
    int32_t max_id = tok->bpe.n_ids - 1;
    if (added && !cJSON_IsNull(added)) {
        if (!cJSON_IsArray(added)) {
            dk_err_set(err, DK_EXIT_USAGE, "%s: \"added_tokens\" is not a list", name);
            goto fail;
        }
        tok->added = dk_calloc((size_t)cJSON_GetArraySize(added) + 1, sizeof *tok->added);
        for (const cJSON *a = added->child; a; a = a->next) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
            const char *content = get_str(a, "content");
            if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= MAX_VOCAB_ID || !content) {
                dk_err_set(err, DK_EXIT_USAGE, "%s: added token %zu needs an integer \"id\" in [0, %d) and a \"content\"",
                           name, tok->n_added, MAX_VOCAB_ID);
                goto fail;
            }
            size_t clen = strlen(content);
            if (tok_utf8_first_invalid(content, clen) != clen) {
                dk_err_set(err, DK_EXIT_USAGE, "%s: added token %zu is not valid UTF-8", name, tok->n_added);
                goto fail;
            }
            tok_added_token *t = &tok->added[tok->n_added++];
            t->id = (int32_t)id->valuedouble;
            t->content = dk_strdup(content);
            t->content_len = clen;
            t->single_word = get_bool(a, "single_word", false);
            t->lstrip = get_bool(a, "lstrip", false);
            t->rstrip = get_bool(a, "rstrip", false);
            t->normalized = get_bool(a, "normalized", true);
            t->special = get_bool(a, "special", false);
            if (t->id > max_id) max_id = t->id;
        }
    }
    tok->vocab_size = max_id + 1;
    tok->added_by_id = dk_malloc((size_t)(tok->vocab_size + 1) * sizeof *tok->added_by_id);
    for (int32_t i = 0; i <= tok->vocab_size; i++) tok->added_by_id[i] = -1;
    tok_trie_init(&tok->trie_raw);
    tok_trie_init(&tok->trie_normalized);
    dk_strbuf normalized = {0};
    for (size_t i = 0; i < tok->n_added; i++) {
        tok_added_token *t = &tok->added[i];
        tok->added_by_id[t->id] = (int32_t)i;
        tok_strmap_put(&tok->added_by_content, t->content, t->content_len, (int32_t)i);
        if (!t->normalized || !tok->normalizer) {
            tok_trie_insert(t->normalized ? &tok->trie_normalized : &tok->trie_raw, t->content, t->content_len, (int32_t)i);
            t->token_string = dk_strdup(t->content);
        } else {
            tok_normalize(tok->normalizer, t->content, t->content_len, &normalized);
            tok_trie_insert(&tok->trie_normalized, normalized.data, normalized.len, (int32_t)i);
            t->token_string = dk_strndup(normalized.data, normalized.len);
        }
    }
    dk_strbuf_free(&normalized);
    for (size_t i = 0; i < tok->post.n_before + tok->post.n_after; i++) {
        int32_t id = i < tok->post.n_before ? tok->post.before[i] : tok->post.after[i - tok->post.n_before];
        if (id >= tok->vocab_size) {
            dk_err_set(err, DK_EXIT_USAGE, "%s: TemplateProcessing id %d is outside the vocabulary (size %d)", name, id, tok->vocab_size);
            goto fail;
        }
    }
    cJSON_Delete(root);
    return tok;
fail:
    cJSON_Delete(root);
    tokenizer_free_parts(tok);
    return NULL;
}

dk_tokenizer *dk_tokenizer_load(const char *path, dk_err *err) {
    char *file = NULL, *dir = NULL;
    if (dk_is_dir(path)) {
        dir = dk_strdup(path);
        char *a = dk_path_join(path, "tokenizer.json"), *b = dk_path_join(path, "tokenizer.json.gz");
        if (dk_is_file(a)) {
            file = a;
            free(b);
        } else if (dk_is_file(b)) {
            file = b;
            free(a);
        } else {
            free(a);
            free(b);
            free(dir);
            dk_err_set(err, DK_EXIT_USAGE, "%s: folder has no tokenizer.json or tokenizer.json.gz", path);
            return NULL;
        }
    } else {
        file = dk_strdup(path);
        char *copy = dk_strdup(path);
        dir = dk_strdup(dirname(copy));
        free(copy);
    }
    size_t size;
    char *json = dk_read_file(file, &size, err);
    dk_tokenizer *tok = NULL;
    if (json) tok = dk_tokenizer_from_json(json, size, file, err);
    free(json);
    if (tok) {
        dk_err cfg_err = {0};
        tok->config_json = read_optional(dir, "tokenizer_config.json", &cfg_err);
    }
    free(file);
    free(dir);
    return tok;
}

static void tokenizer_free_parts(dk_tokenizer *tok) {
    free(tok->name);
    tok_strmap_free(&tok->bpe.vocab);
    free(tok->bpe.id_to_token);
    tok_pairmap_free(&tok->bpe.merges);
    free(tok->bpe.continuing_subword_prefix);
    free(tok->bpe.end_of_word_suffix);
    tok_normalizer_free(tok->normalizer);
    free(tok->normalizer);
    tok_pretokenizer_free(tok->pretokenizer);
    free(tok->pretokenizer);
    tok_decoder_free(tok->decoder);
    free(tok->decoder);
    free(tok->post.before);
    free(tok->post.after);
    for (size_t i = 0; i < tok->n_added; i++) {
        free(tok->added[i].content);
        free(tok->added[i].token_string);
    }
    free(tok->added);
    tok_strmap_free(&tok->added_by_content);
    free(tok->added_by_id);
    tok_trie_free(&tok->trie_raw);
    tok_trie_free(&tok->trie_normalized);
    free(tok->config_json);
    free(tok);
}

void dk_tokenizer_free(dk_tokenizer *tok) {
    if (!tok) return;
    if (tok->default_worker) dk_tok_worker_free(tok->default_worker);
    tokenizer_free_parts(tok);
}
