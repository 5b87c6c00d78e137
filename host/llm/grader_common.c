/* grader_common.c — what every grader needs: the grader id, the seed's answer patterns (Oniguruma), the
 * seed's parsers, token-string normalisation and the generic-token rule, and sending a batch of requests
 * whose answers are checked inside the client's retry loop. */
#include <math.h>
#include <oniguruma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"
#include "core/log.h"
#include "llm/grader_internal.h"

dk_grader dk_grader_llm(dk_llm_client *llm, const char *model_id) {
    dk_grader g = {.mode = DK_GRADER_LLM, .llm = llm, .model_id = model_id};
    return g;
}

dk_grader dk_grader_offline(void) {
    dk_grader g = {.mode = DK_GRADER_OFFLINE};
    return g;
}

const char *dk_grader_id(const dk_grader *g, char *buf, size_t cap) {
    const char *model = g->mode == DK_GRADER_OFFLINE ? "offline"
                        : g->model_id                ? g->model_id
                        : g->llm                     ? dk_llm_client_model(g->llm)
                                                     : "";
    snprintf(buf, cap, "%s", model);
    for (char *p = buf; *p; p++)
        if (*p == '/') *p = '_';
    return buf;
}

/* ---- patterns ------------------------------------------------------------------------------------------ */

char *grader_utf8_sanitize(const char *s) {
    size_t len = strlen(s);
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "");
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n > 0) {
            dk_strbuf_append_n(&b, s + i, (size_t)n);
            i += (size_t)n;
        } else {
            dk_strbuf_append(&b, "\xef\xbf\xbd");  /* U+FFFD for each byte that starts no valid character */
            i++;
        }
    }
    return dk_strbuf_take(&b);
}

static const char *const pattern_text[GRADER_RE_COUNT] = {
    [GRADER_RE_COHERENCE] = "^\\s*answer\\s*:\\s*(coherent|incoherent)\\s*[.!]?\\s*$",
    [GRADER_RE_BEST_SCALE] = "^\\s*best_scaler\\s*:\\s*([-+]?[0-9]*\\.?[0-9]+)\\s*$",
    [GRADER_RE_TOP_TOKENS] = "^\\s*top_tokens\\s*:\\s*(.+)$",
    [GRADER_RE_RELEVANCE] = "^\\s*answer\\[(\\d+)\\]\\s*:\\s*(relevant|irrelevant)\\s*[.!]?\\s*$",
    [GRADER_RE_SCORE] = "^\\s*score\\s*:\\s*([1-5])\\s*$",
};
static regex_t *patterns[GRADER_RE_COUNT];
static pthread_once_t patterns_once = PTHREAD_ONCE_INIT;

static void compile_patterns(void) {
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    onig_initialize(&enc, 1);
    for (int i = 0; i < GRADER_RE_COUNT; i++) {
        const UChar *p = (const UChar *)pattern_text[i];
        OnigErrorInfo einfo;
        int r = onig_new(&patterns[i], p, p + strlen(pattern_text[i]),
                         ONIG_OPTION_IGNORECASE | ONIG_OPTION_DIGIT_IS_ASCII, ONIG_ENCODING_UTF8, ONIG_SYNTAX_RUBY,
                         &einfo);
        CHECK(r == ONIG_NORMAL, "grader pattern %d does not compile (Oniguruma error %d)", i, r);
    }
}

bool grader_re_next(grader_re re, const char *text, size_t *from, grader_match *m) {
    pthread_once(&patterns_once, compile_patterns);
    size_t len = strlen(text);
    if (*from > len) return false;
    const UChar *start = (const UChar *)text, *end = start + len;
    OnigRegion *region = onig_region_new();
    int r = onig_search(patterns[re], start, end, start + *from, end, region, ONIG_OPTION_NONE);
    bool found = r >= 0;
    if (found) {
        for (int g = 0; g < 3; g++) {
            bool has = g < region->num_regs && region->beg[g] >= 0;
            m->begin[g] = has ? region->beg[g] : -1;
            m->end[g] = has ? region->end[g] : -1;
        }
        /* None of the patterns matches an empty string, so the next search starts after this match. */
        *from = (size_t)region->end[0] > *from ? (size_t)region->end[0] : *from + 1;
    }
    onig_region_free(region, 1);
    return found;
}

dk_coherence_label grader_parse_coherence(const char *answer) {
    char *text = grader_utf8_sanitize(answer);
    dk_coherence_label label = DK_COHERENCE_UNKNOWN;
    grader_match m;
    size_t from = 0;
    while (grader_re_next(GRADER_RE_COHERENCE, text, &from, &m))  /* the last one wins */
        label = (text[m.begin[1]] == 'i' || text[m.begin[1]] == 'I') ? DK_INCOHERENT : DK_COHERENT;
    free(text);
    return label;
}

double grader_round_scale(double x) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.1f", x);  /* glibc prints the exact binary value rounded, ties to even */
    return strtod(buf, NULL);
}

bool grader_parse_patchscope(const char *answer, double *best, char ***tokens, int *n_tokens) {
    *tokens = NULL;
    *n_tokens = 0;
    char *text = grader_utf8_sanitize(answer);
    grader_match m;
    size_t from = 0;
    if (!grader_re_next(GRADER_RE_BEST_SCALE, text, &from, &m)) {
        free(text);
        return false;
    }
    char *number = dk_strndup(text + m.begin[1], (size_t)(m.end[1] - m.begin[1]));
    *best = grader_round_scale(strtod(number, NULL));
    free(number);
    from = 0;
    if (!grader_re_next(GRADER_RE_TOP_TOKENS, text, &from, &m)) {
        free(text);
        return true;
    }
    const char *p = text + m.begin[1], *line_end = text + m.end[1];
    int cap = 0;
    while (p <= line_end) {
        const char *bar = memchr(p, '|', (size_t)(line_end - p));
        const char *piece_end = bar ? bar : line_end;
        char *piece = grader_strip(p, (size_t)(piece_end - p));
        if (piece[0]) {
            if (*n_tokens == cap) {
                cap = cap ? 2 * cap : 16;
                *tokens = dk_realloc(*tokens, (size_t)cap * sizeof **tokens);
            }
            (*tokens)[(*n_tokens)++] = piece;
        } else {
            free(piece);
        }
        if (!bar) break;
        p = bar + 1;
    }
    free(text);
    return true;
}

int grader_parse_relevance(const char *answer, int n, dk_relevance_label *labels) {
    char *text = grader_utf8_sanitize(answer);
    for (int i = 0; i < n; i++) labels[i] = DK_RELEVANCE_UNKNOWN;
    grader_match m;
    size_t from = 0;
    while (grader_re_next(GRADER_RE_RELEVANCE, text, &from, &m)) {
        /* The index as Python's int(): any number of digits; one beyond n is ignored. */
        long long index = 0;
        bool in_range = true;
        for (int k = m.begin[1]; k < m.end[1]; k++) {
            index = index * 10 + (text[k] - '0');
            if (index > n) {
                in_range = false;
                break;
            }
        }
        if (!in_range || index < 1) continue;
        bool irrelevant = text[m.begin[2]] == 'i' || text[m.begin[2]] == 'I';
        labels[index - 1] = irrelevant ? DK_IRRELEVANT : DK_RELEVANT; /* the last one for an index wins */
    }
    free(text);
    int unknown = 0;
    for (int i = 0; i < n; i++) unknown += labels[i] == DK_RELEVANCE_UNKNOWN;
    return unknown;
}

int grader_parse_score(const char *answer) {
    char *text = grader_utf8_sanitize(answer);
    int score = 0;
    grader_match m;
    size_t from = 0;
    while (grader_re_next(GRADER_RE_SCORE, text, &from, &m)) score = text[m.begin[1]] - '0';
    free(text);
    return score;
}

/* ---- text ---------------------------------------------------------------------------------------------- */

bool grader_is_space(int32_t cp) {
    if (cp < 0) return false;
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

/* The code point at s[0..len) and its byte length (an invalid byte: -1, length 1). */
static int32_t next_cp(const char *s, size_t len, size_t *bytes) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &cp);
    if (n <= 0) {
        *bytes = 1;
        return -1;
    }
    *bytes = (size_t)n;
    return cp;
}

char *grader_strip(const char *s, size_t len) {
    size_t begin = 0, end = len;
    while (begin < end) {
        size_t n;
        int32_t cp = next_cp(s + begin, end - begin, &n);
        if (!grader_is_space(cp)) break;
        begin += n;
    }
    /* From the end: find the last code point that is not whitespace, walking forward (UTF-8 is short). */
    size_t last_end = begin;
    for (size_t i = begin; i < end;) {
        size_t n;
        int32_t cp = next_cp(s + i, end - i, &n);
        i += n;
        if (!grader_is_space(cp)) last_end = i;
    }
    return dk_strndup(s + begin, last_end - begin);
}

bool grader_is_blank(const char *s) {
    char *t = grader_strip(s, strlen(s));
    bool blank = t[0] == '\0';
    free(t);
    return blank;
}

char *grader_token_core(const char *token, bool fold) {
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "");
    size_t len = strlen(token);
    for (size_t i = 0; i < len;) {
        if (strncmp(token + i, "\xe2\x96\x81", 3) == 0) { i += 3; continue; }  /* ▁ U+2581 */
        if (strncmp(token + i, "\xc4\xa0", 2) == 0) { i += 2; continue; }      /* Ġ U+0120 */
        size_t n;
        int32_t cp = next_cp(token + i, len - i, &n);
        if (fold && cp >= 0) {
            utf8proc_uint8_t enc[8];
            utf8proc_ssize_t k = utf8proc_encode_char(utf8proc_tolower(cp), enc);
            dk_strbuf_append_n(&b, (const char *)enc, (size_t)k);
        } else {
            dk_strbuf_append_n(&b, token + i, n);
        }
        i += n;
    }
    char *stripped = grader_strip(b.data, b.len);
    dk_strbuf_free(&b);
    return stripped;
}

size_t grader_utf8_length(const char *s) {
    size_t len = strlen(s), count = 0;
    for (size_t i = 0; i < len; count++) {
        size_t n;
        next_cp(s + i, len - i, &n);
        i += n;
    }
    return count;
}

size_t grader_utf8_prefix_bytes(const char *s, size_t k) {
    size_t len = strlen(s), i = 0;
    for (size_t c = 0; c < k && i < len; c++) {
        size_t n;
        next_cp(s + i, len - i, &n);
        i += n;
    }
    return i;
}

/* ---- generic tokens ------------------------------------------------------------------------------------ */

/* Words that say nothing about a domain: articles, the common prepositions and conjunctions, forms of be /
 * have / do, the modal verbs, demonstratives and pronouns. Our own selection (the seed keeps a similar list); tokens
 * are compared lowercased. */
static const char *const stopwords[] = {
    /* articles and demonstratives */
    "a", "an", "the", "this", "that", "these", "those",
    /* conjunctions */
    "and", "or", "but", "nor", "so", "yet", "if", "than", "as",
    /* prepositions */
    "of", "in", "on", "at", "to", "for", "with", "by", "from", "up", "about", "into", "onto", "over", "under",
    "through", "during", "before", "after", "above", "below", "between", "among", "within", "without",
    /* be, have, do */
    "is", "are", "was", "were", "be", "been", "being", "am", "have", "has", "had", "having", "do", "does", "did",
    /* modal verbs */
    "will", "would", "shall", "should", "can", "could", "may", "might", "must",
    /* personal and possessive pronouns */
    "i", "you", "he", "she", "it", "we", "they", "me", "him", "her", "us", "them", "my", "your", "his", "its",
    "our", "their",
    /* the suffix piece the seed lists with its stopwords */
    "ing",
};

/* Contraction and suffix pieces, compared exactly (the seed's list). */
static const char *const trivial_pieces[] = {"'s", "'t", "'re", "'ve", "'ll", "'d", "'m", "ing"};

/* Python's \w: letters, numbers, underscore. */
static bool is_word_cp(int32_t cp) {
    if (cp == '_') return true;
    if (cp < 0) return false;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return true;
    default:
        return false;
    }
}

bool dk_token_is_generic(const char *token) {
    char *clean = grader_token_core(token, false);
    bool generic = false;
    size_t len = strlen(clean);
    if (grader_utf8_length(clean) <= 1) {
        generic = true;
    } else {
        bool only_symbols = true;  /* ^[^\w\s]+$ */
        for (size_t i = 0; i < len && only_symbols;) {
            size_t n;
            int32_t cp = next_cp(clean + i, len - i, &n);
            if (is_word_cp(cp) || grader_is_space(cp)) only_symbols = false;
            i += n;
        }
        generic = only_symbols;
        for (size_t k = 0; !generic && k < sizeof trivial_pieces / sizeof *trivial_pieces; k++)
            generic = strcmp(clean, trivial_pieces[k]) == 0;
    }
    if (!generic) {
        char *lower = grader_token_core(token, true);
        for (size_t k = 0; !generic && k < sizeof stopwords / sizeof *stopwords; k++)
            generic = strcmp(lower, stopwords[k]) == 0;
        free(lower);
    }
    free(clean);
    return generic;
}

/* A token as the offline grader compares it: without ▁/Ġ, lowercased, and without the byte-level vocabulary's
 * stand-ins for newline, tab and carriage return (Ċ ĉ č, lowercased ċ ĉ č), which the seed's generic rule
 * keeps ("ĊĊ", ".ĊĊ" count as words there) but which say nothing about a domain. NULL when what is left is
 * generic (at most one character, or only punctuation). */
char *grader_offline_core(const char *token) {
    if (dk_token_is_generic(token)) return NULL;
    char *core = grader_token_core(token, true);
    static const char *const byte_level_space[] = {"\xc4\x8b", "\xc4\x89", "\xc4\x8d"};  /* ċ ĉ č */
    for (size_t k = 0; k < sizeof byte_level_space / sizeof *byte_level_space; k++) {
        for (char *hit = strstr(core, byte_level_space[k]); hit; hit = strstr(hit, byte_level_space[k]))
            memmove(hit, hit + 2, strlen(hit + 2) + 1);
    }
    if (dk_token_is_generic(core)) {
        free(core);
        return NULL;
    }
    return core;
}

/* ---- requests ------------------------------------------------------------------------------------------ */

int grader_check_llm(const dk_grader *g, dk_err *err) {
    if (g->mode != DK_GRADER_LLM)
        return dk_err_set(err, DK_EXIT_USAGE, "grader mode %d is neither LLM nor offline", (int)g->mode);
    if (!g->llm)
        return dk_err_set(err, DK_EXIT_USAGE, "an LLM grader needs an LLM client (configure llm.base_url and "
                                              "llm.model_id, or use the offline graders)");
    const char *sent = dk_llm_client_model(g->llm);
    if (g->model_id && strcmp(g->model_id, sent) != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "the grader is for model %s but its client sends %s: open a client "
                                              "whose model_id is %s", g->model_id, sent, g->model_id);
    return 0;
}

static bool accept_answer(const dk_llm_response *resp, void *ctx, char *why, size_t why_cap) {
    grader_call *call = ctx;
    const char *content = resp->n_choices > 0 && resp->choices[0].content ? resp->choices[0].content : "";
    free(call->answer);
    call->answer = grader_utf8_sanitize(content);
    if (call->parse(content, call->item, why, why_cap)) return true;
    call->n_rejected++;
    return false;
}

int grader_send(const dk_grader *g, grader_call *calls, int n, int default_max_tokens, int *n_requests, dk_err *err) {
    if (n <= 0) return 0;
    dk_llm_message *msgs = dk_calloc((size_t)n * 2, sizeof *msgs);
    dk_llm_request *reqs = dk_calloc((size_t)n, sizeof *reqs);
    dk_llm_response *resps = dk_calloc((size_t)n, sizeof *resps);
    for (int i = 0; i < n; i++) {
        msgs[2 * i] = (dk_llm_message){.role = "system", .content = calls[i].system};
        msgs[2 * i + 1] = (dk_llm_message){.role = "user", .content = calls[i].user};
        reqs[i] = dk_llm_request_init(&msgs[2 * i], 2);
        reqs[i].max_tokens = g->max_tokens > 0 ? g->max_tokens : default_max_tokens;
        reqs[i].temperature = calls[i].temperature;
        if (calls[i].parse) {
            reqs[i].accept = accept_answer;
            reqs[i].accept_ctx = &calls[i];
        }
        free(calls[i].answer);
        calls[i].answer = NULL;
        calls[i].n_rejected = 0;
        calls[i].ok = false;
    }
    dk_llm_chat_many(g->llm, reqs, n, resps);
    *n_requests += n;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (resps[i].err.code == 0) {
            calls[i].ok = true;
            if (!calls[i].parse) {
                const dk_llm_choice *c = resps[i].n_choices > 0 ? &resps[i].choices[0] : NULL;
                calls[i].answer = grader_utf8_sanitize(c && c->content ? c->content : "");
            }
        } else if (calls[i].n_rejected == 0 && rc == 0) {
            /* No answer at all: the endpoint is down or failing. An answer that never parsed is the caller's
             * UNKNOWN, not an error. */
            dk_err_set(err, resps[i].err.code, "%s", resps[i].err.msg);
            rc = -1;
        } else if (calls[i].n_rejected > 0) {
            LOG_WARN("LLM grader: request %d of %d never gave an answer that parses (%d answers): %s", i + 1, n,
                     calls[i].n_rejected, resps[i].err.msg);
        }
        dk_llm_response_free(&resps[i]);
    }
    free(msgs);
    free(reqs);
    free(resps);
    return rc;
}

void grader_calls_free(grader_call *calls, int n) {
    for (int i = 0; i < n; i++) {
        free(calls[i].user);
        free(calls[i].answer);
        calls[i].user = calls[i].answer = NULL;
    }
}

char **grader_strings_dup(const char *const *strings, int n) {
    if (n <= 0) return NULL;
    char **out = dk_calloc((size_t)n, sizeof *out);
    for (int i = 0; i < n; i++) out[i] = dk_strdup(strings[i]);
    return out;
}
