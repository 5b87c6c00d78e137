/* test_graders.c — the four graders (host/llm/graders.h) against tests/llm/scripted_server and on hand-made
 * inputs: the seed's parsers' outputs on edge cases (tests/fixtures/graders/goldens.json, written by
 * tools/make_grader_goldens.py from the seed's own functions), retries as the seed does them, UNKNOWN
 * accounting, aggregation and the patchscope tournament against hand-computed expectations, dead and failing
 * endpoints, the offline modes, frequent tokens, rubrics and bad input.
 *
 *   test_graders <path of scripted_server> <configs/diffing/grading_rubrics.yaml>
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strutil.h"
#include "core/timer.h"
#include "io/file.h"
#include "llm/grader_internal.h"
#include "llm/graders.h"
#include "llm/llm_client.h"
#include "llm/server_proc.h"
#include "test.h"

static const char *server_exe;
static const char *rubrics_path;

/* ---- helpers ------------------------------------------------------------------------------------------- */

/* A rule of the scripted server: requests whose last user message contains `match` get the steps in turn. */
static cJSON *rule(const char *match, ...) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "match", match);
    cJSON *steps = cJSON_AddArrayToObject(r, "steps");
    va_list ap;
    va_start(ap, match);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        cJSON_AddItemToArray(steps, cJSON_CreateString(s));
    va_end(ap);
    return r;
}

typedef struct test_endpoint {
    scripted_server srv;
    char rules_path[64];
    dk_llm_config cfg;
    dk_llm_client *llm;
    dk_grader g;
} test_endpoint;

/* Starts a server with the rules (NULL-terminated; taken) and a client for it (3 attempts, short waits). */
static bool endpoint_start(test_endpoint *e, cJSON *first_rule, ...) {
    memset(e, 0, sizeof *e);
    cJSON *rules = cJSON_CreateArray();
    va_list ap;
    va_start(ap, first_rule);
    for (cJSON *r = first_rule; r; r = va_arg(ap, cJSON *)) cJSON_AddItemToArray(rules, r);
    va_end(ap);
    snprintf(e->rules_path, sizeof e->rules_path, "/tmp/dk_grader_rules_%d_XXXXXX", (int)getpid());
    int fd = mkstemp(e->rules_path);
    char *text = cJSON_PrintUnformatted(rules);
    bool wrote = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    if (fd >= 0) close(fd);
    free(text);
    cJSON_Delete(rules);
    const char *args[] = {"--rules", e->rules_path, NULL};
    if (!wrote || scripted_server_start(&e->srv, server_exe, args) != 0) {
        EXPECT(false, "scripted_server did not start");
        return false;
    }
    dk_llm_config_defaults(&e->cfg);
    e->cfg.base_url = dk_strdup(e->srv.base_url);
    e->cfg.model_id = dk_strdup("openai/grader-test");
    e->cfg.api_key_file = e->cfg.api_key_env = NULL;
    e->cfg.section = dk_strdup("llm");
    e->cfg.max_attempts = 3;
    e->cfg.backoff_initial_s = 0.01;
    e->cfg.backoff_max_s = 0.02;
    e->cfg.request_timeout_s = 5.0;
    dk_err err = {0};
    e->llm = dk_llm_client_open(&e->cfg, &err);
    EXPECT(e->llm != NULL, "client: %s", err.msg);
    e->g = dk_grader_llm(e->llm, "openai/grader-test");
    return e->llm != NULL;
}

static void endpoint_stop(test_endpoint *e) {
    dk_llm_client_close(e->llm);
    dk_llm_config_free(&e->cfg);
    scripted_server_cleanup(&e->srv);
    unlink(e->rules_path);
}

/* The log line of the request a rule step answered ("rule<r>.<k>"), or NULL (the caller frees). */
static char *log_line(const test_endpoint *e, const char *label) {
    char *log = scripted_server_log(&e->srv);
    char needle[64];
    snprintf(needle, sizeof needle, " %s ", label);
    char *hit = strstr(log, needle);
    char *line = NULL;
    if (hit) {
        char *end = strchr(hit, '\n');
        line = dk_strndup(hit, end ? (size_t)(end - hit) : strlen(hit));
    }
    free(log);
    return line;
}

static int count_in_log(const test_endpoint *e, const char *needle) {
    char *log = scripted_server_log(&e->srv);
    int n = 0;
    for (const char *p = strstr(log, needle); p; p = strstr(p + 1, needle)) n++;
    free(log);
    return n;
}

static bool near(double a, double b) { return fabs(a - b) < 1e-9; }

/* ---- the seed's parsers -------------------------------------------------------------------------------- */

static cJSON *load_goldens(void) {
    char *path = dk_fixture_path("graders/goldens.json");
    size_t len;
    dk_err err = {0};
    char *text = dk_read_file(path, &len, &err);
    EXPECT(text != NULL, "%s", err.msg);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    free(path);
    return root;
}

static const char *relevance_name(dk_relevance_label l) {
    return l == DK_RELEVANT ? "RELEVANT" : l == DK_IRRELEVANT ? "IRRELEVANT" : "UNKNOWN";
}

static void test_parsers_match_seed(const cJSON *goldens) {
    const cJSON *e;
    int cases = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "coherence")) {
        const char *text = cJSON_GetObjectItem(e, "text")->valuestring;
        const char *want = cJSON_GetObjectItem(e, "label")->valuestring;
        dk_coherence_label got = grader_parse_coherence(text);
        const char *name = got == DK_COHERENT ? "COHERENT" : got == DK_INCOHERENT ? "INCOHERENT" : "UNKNOWN";
        EXPECT(strcmp(name, want) == 0, "coherence of \"%s\": %s, the seed says %s", text, name, want);
        cases++;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "patchscope")) {
        const char *text = cJSON_GetObjectItem(e, "text")->valuestring;
        double best = 0;
        char **tokens;
        int n;
        bool parsed = grader_parse_patchscope(text, &best, &tokens, &n);
        bool want_parsed = cJSON_IsTrue(cJSON_GetObjectItem(e, "parsed"));
        EXPECT(parsed == want_parsed, "patchscope \"%s\": parsed %d, the seed %d", text, parsed, want_parsed);
        if (parsed && want_parsed) {
            double want_best = cJSON_GetObjectItem(e, "best")->valuedouble;
            EXPECT(best == want_best, "patchscope \"%s\": best %.17g, the seed %.17g", text, best, want_best);
            const cJSON *want_tokens = cJSON_GetObjectItem(e, "tokens");
            EXPECT(n == cJSON_GetArraySize(want_tokens), "patchscope \"%s\": %d tokens, the seed %d", text, n,
                   cJSON_GetArraySize(want_tokens));
            for (int i = 0; i < n && i < cJSON_GetArraySize(want_tokens); i++)
                EXPECT(strcmp(tokens[i], cJSON_GetArrayItem(want_tokens, i)->valuestring) == 0,
                       "patchscope \"%s\": token %d '%s'", text, i, tokens[i]);
        }
        dk_free_strings(tokens, (size_t)n);
        cases++;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "relevance")) {
        const char *text = cJSON_GetObjectItem(e, "text")->valuestring;
        int n = cJSON_GetObjectItem(e, "n")->valueint;
        dk_relevance_label labels[16];
        int unknown = grader_parse_relevance(text, n, labels);
        int want_unknown = 0;
        for (int i = 0; i < n; i++) {
            const char *want = cJSON_GetArrayItem(cJSON_GetObjectItem(e, "labels"), i)->valuestring;
            want_unknown += strcmp(want, "UNKNOWN") == 0;
            EXPECT(strcmp(relevance_name(labels[i]), want) == 0, "relevance \"%s\" [%d]: %s, the seed %s", text,
                   i + 1, relevance_name(labels[i]), want);
        }
        EXPECT(unknown == want_unknown, "relevance \"%s\": %d unknown", text, unknown);
        cases++;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "score")) {
        const char *text = cJSON_GetObjectItem(e, "text")->valuestring;
        int want = cJSON_GetObjectItem(e, "score")->valueint;
        EXPECT(grader_parse_score(text) == want, "score of \"%s\": %d, the seed %d", text, grader_parse_score(text),
               want);
        cases++;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "round")) {
        double x = cJSON_GetObjectItem(e, "x")->valuedouble, want = cJSON_GetObjectItem(e, "rounded")->valuedouble;
        EXPECT(grader_round_scale(x) == want, "round(%.17g, 1) = %.17g, Python %.17g", x, grader_round_scale(x), want);
        cases++;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "generic")) {
        const char *tok = cJSON_GetObjectItem(e, "token")->valuestring;
        bool want = cJSON_IsTrue(cJSON_GetObjectItem(e, "generic"));
        EXPECT(dk_token_is_generic(tok) == want, "generic('%s') = %d, the seed's rule %d", tok,
               dk_token_is_generic(tok), want);
        cases++;
    }
    EXPECT(cases >= 100, "%d golden parser cases", cases);
}

static void test_frequent_tokens_match_seed(const cJSON *goldens) {
    const cJSON *corpus = cJSON_GetObjectItem(goldens, "corpus");
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "frequent")) {
        const char *name = cJSON_GetObjectItem(e, "tokenizer")->valuestring;
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json.gz", name);
        char *path = dk_fixture_path(rel);
        dk_err err = {0};
        dk_tokenizer *tok = dk_tokenizer_load(path, &err);
        free(path);
        EXPECT(tok != NULL, "%s: %s", name, err.msg);
        if (!tok) continue;
        int n_texts = cJSON_GetArraySize(corpus);
        dk_tok_ids *seqs = dk_calloc((size_t)n_texts, sizeof *seqs);
        for (int i = 0; i < n_texts; i++) {
            const char *text = cJSON_GetArrayItem(corpus, i)->valuestring;
            EXPECT(dk_tokenizer_encode(tok, text, strlen(text), false, &seqs[i], &err) == 0, "encode: %s", err.msg);
        }
        char **tokens;
        int64_t *counts;
        int n;
        int min_count = cJSON_GetObjectItem(e, "min_count")->valueint;
        int num = cJSON_GetObjectItem(e, "num_tokens")->valueint;
        EXPECT(dk_frequent_tokens(tok, seqs, (size_t)n_texts, min_count, num, &tokens, &counts, &n, &err) == 0, "%s",
               err.msg);
        const cJSON *want = cJSON_GetObjectItem(e, "tokens");
        EXPECT(n == cJSON_GetArraySize(want), "%s min_count %d: %d frequent tokens, the seed %d", name, min_count, n,
               cJSON_GetArraySize(want));
        for (int i = 0; i < n && i < cJSON_GetArraySize(want); i++)
            EXPECT(strcmp(tokens[i], cJSON_GetArrayItem(want, i)->valuestring) == 0, "%s [%d]: %s (%lld), seed %s",
                   name, i, tokens[i], (long long)counts[i], cJSON_GetArrayItem(want, i)->valuestring);
        for (int i = 1; i < n; i++) EXPECT(counts[i] <= counts[i - 1] && counts[i] >= min_count, "counts sorted");
        dk_frequent_tokens_free(tokens, counts, n);
        for (int i = 0; i < n_texts; i++) dk_tok_ids_free(&seqs[i]);
        /* An id outside the vocabulary is an error, not a crash. */
        dk_tok_ids bad = {0};
        dk_tok_ids_push(&bad, dk_tokenizer_vocab_size(tok));
        EXPECT(dk_frequent_tokens(tok, &bad, 1, 1, 10, &tokens, NULL, &n, &err) != 0, "id out of range fails");
        EXPECT_CONTAINS(err.msg, "outside the tokenizer's vocabulary");
        dk_tok_ids_free(&bad);
        free(seqs);
        dk_tokenizer_free(tok);
    }
}

/* ---- coherence, LLM ------------------------------------------------------------------------------------ */

static void test_coherence_llm(void) {
    test_endpoint e;
    if (!endpoint_start(&e, rule("alpha", "Reasoning: fine.\nANSWER: COHERENT", NULL),
                        rule("bravo", "answer: incoherent.", NULL),
                        rule("charlie", "I cannot decide.", "Reasoning: readable.\nANSWER: COHERENT", NULL),
                        rule("delta", "no label", "still no label", "never", NULL),
                        rule("echo", "@500", "@truncated", "ANSWER: INCOHERENT", NULL), NULL))
        return;
    dk_coherence_sample samples[] = {{.text = "alpha text"}, {.text = "bravo text"}, {.text = " \n\t "},
                                     {.text = "charlie text"}, {.text = "delta text"}, {.text = "echo text"},
                                     {.text = ""}};
    dk_coherence_result r;
    dk_err err = {0};
    EXPECT(dk_grade_coherence(&e.g, samples, 7, NULL, 0, &r, &err) == 0, "coherence: %s", err.msg);
    dk_coherence_label want[] = {DK_COHERENT, DK_INCOHERENT, DK_COHERENCE_DROPPED, DK_COHERENT, DK_COHERENCE_UNKNOWN,
                                 DK_INCOHERENT, DK_COHERENCE_DROPPED};
    for (int i = 0; i < 7 && r.labels; i++) EXPECT(r.labels[i] == want[i], "sample %d: label %d, want %d", i, r.labels[i], want[i]);
    /* 2 coherent of 4 known; the UNKNOWN and the dropped ones are not counted. */
    EXPECT(near(r.percentage, 50.0), "percentage %.4f, want 50", r.percentage);
    EXPECT(r.n_coherent == 2 && r.n_incoherent == 2 && r.n_unknown == 1 && r.n_dropped == 2, "counts %d %d %d %d",
           r.n_coherent, r.n_incoherent, r.n_unknown, r.n_dropped);
    /* 5 first answers + the 2 without a label asked again; echo's 500 and cut answer are the client's retries. */
    EXPECT(r.n_requests == 7, "grader requests %d, want 7", r.n_requests);
    EXPECT(scripted_server_requests(&e.srv) == 9, "server saw %d requests, want 9", scripted_server_requests(&e.srv));
    char *second = log_line(&e, "rule2.1");
    EXPECT(second && strstr(second, "\"temperature\":0"), "charlie's second request is at temperature 0: %s",
           second ? second : "(none)");
    free(second);
    char *first = log_line(&e, "rule2.0");
    EXPECT(first && !strstr(first, "temperature"), "the first request leaves the temperature to the endpoint");
    EXPECT(first && strstr(first, "\"max_tokens\":1000"), "the seed's max_tokens 1000");
    EXPECT(first && strstr(first, "[ANSWER START]\\ncharlie text\\n[ANSWER END]"), "the user prompt frames the text");
    free(first);
    EXPECT(count_in_log(&e, " rule3.") == 2, "delta: asked twice, no more (%d)", count_in_log(&e, " rule3."));
    EXPECT(r.responses && r.responses[4] && strcmp(r.responses[4], "still no label") == 0, "UNKNOWN keeps the last answer");
    EXPECT(r.responses && r.responses[2] == NULL, "a dropped sample has no response");
    /* The seed's percentage of a subset (one steering strength's samples). */
    EXPECT(r.labels && near(dk_coherence_percentage(r.labels, 2), 50.0) && near(dk_coherence_percentage(r.labels + 3, 2), 100.0),
           "percentage of subsets");
    char id[64];
    EXPECT(strcmp(dk_grader_id(&e.g, id, sizeof id), "openai_grader-test") == 0, "grader id %s", id);
    dk_coherence_result_free(&r);
    endpoint_stop(&e);
}

/* Every answer is a server error: the grading fails with the endpoint named (the seed raises too). */
static void test_failing_endpoint(void) {
    test_endpoint e;
    if (!endpoint_start(&e, rule("text", "@503", NULL), NULL)) return;
    dk_coherence_sample s = {.text = "some text"};
    dk_coherence_result r;
    dk_err err = {0};
    EXPECT(dk_grade_coherence(&e.g, &s, 1, NULL, 0, &r, &err) != 0, "a failing endpoint fails the grading");
    EXPECT(err.code == DK_EXIT_RUNTIME, "runtime error, got %d", err.code);
    EXPECT_CONTAINS(err.msg, e.srv.base_url);
    EXPECT_CONTAINS(err.msg, "HTTP 503");
    EXPECT(r.labels == NULL, "no result is left behind");
    endpoint_stop(&e);
}

/* A server that answers too slowly: each attempt ends at the request timeout; bounded in all. */
static void test_slow_endpoint(void) {
    test_endpoint e;
    if (!endpoint_start(&e, rule("text", "@slow:20", NULL), NULL)) return;
    dk_llm_client_close(e.llm);
    e.cfg.request_timeout_s = 0.3;
    e.cfg.max_attempts = 2;
    dk_err err = {0};
    e.llm = dk_llm_client_open(&e.cfg, &err);
    e.g = dk_grader_llm(e.llm, NULL);
    dk_hypothesis_input in = {.description = "d", .rubric = "r", .hypothesis = "some text", .num_repeat = 2};
    dk_hypothesis_result r;
    double t0 = dk_time_now();
    EXPECT(dk_grade_hypothesis(&e.g, &in, &r, &err) != 0, "a stuck endpoint fails");
    double seconds = dk_time_now() - t0;
    EXPECT(seconds < 3.0, "bounded: %.2f s", seconds);
    EXPECT_CONTAINS(err.msg, "within the time allowed");
    endpoint_stop(&e);
}

/* Nobody listens: a clear error at once, for every grader. */
static void test_dead_endpoint(void) {
    dk_llm_config cfg;
    dk_llm_config_defaults(&cfg);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", dead_port());
    cfg.base_url = dk_strdup(url);
    cfg.model_id = dk_strdup("m");
    cfg.api_key_file = cfg.api_key_env = NULL;
    cfg.section = dk_strdup("llm");
    cfg.max_attempts = 2;
    cfg.backoff_initial_s = 0.01;
    cfg.backoff_max_s = 0.02;
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    dk_grader g = dk_grader_llm(llm, NULL);
    double t0 = dk_time_now();

    dk_coherence_sample s = {.text = "text"};
    dk_coherence_result cr;
    EXPECT(dk_grade_coherence(&g, &s, 1, NULL, 0, &cr, &err) != 0, "coherence fails");
    EXPECT_CONTAINS(err.msg, url);
    EXPECT_CONTAINS(err.msg, "could not connect");

    const char *toks[] = {"a"};
    dk_patchscope_scale sc = {1.0, toks, 1};
    dk_patchscope_result pr;
    dk_err_clear(&err);
    EXPECT(dk_grade_patchscope(&g, &sc, 1, &pr, &err) != 0, "patchscope fails");
    EXPECT_CONTAINS(err.msg, "could not connect");

    const char *cands[] = {"x", "y"};
    dk_relevance_input ri = {.description = "d", .candidates = cands, .n_candidates = 2};
    dk_relevance_result rr;
    dk_err_clear(&err);
    EXPECT(dk_grade_relevance(&g, &ri, &rr, &err) != 0, "relevance fails");
    EXPECT_CONTAINS(err.msg, "could not connect");

    dk_hypothesis_input hi = {.description = "d", .rubric = "r", .hypothesis = "h"};
    dk_hypothesis_result hr;
    dk_err_clear(&err);
    EXPECT(dk_grade_hypothesis(&g, &hi, &hr, &err) != 0, "hypothesis fails");
    EXPECT_CONTAINS(err.msg, "could not connect");
    EXPECT(dk_time_now() - t0 < 5.0, "four dead-endpoint failures took %.2f s", dk_time_now() - t0);
    dk_llm_client_close(llm);
    dk_llm_config_free(&cfg);
}

/* ---- patchscope, LLM ----------------------------------------------------------------------------------- */

static void test_patchscope_tournament(void) {
    /* 25 scales 1..25: groups 1-10, 11-20, 21-25 in flight, then a final among the winners. */
    test_endpoint e;
    if (!endpoint_start(&e,
                        rule("[SCALES]\n1.0, 2.0,", "Reasoning.\nBEST_SCALER: 4.0\nTOP_TOKENS: a4 | b4", NULL),
                        /* no line, then a scale that was not shown, then a good answer: 3 attempts */
                        rule("[SCALES]\n11.0,", "I like 12.", "BEST_SCALER: 99.0", "BEST_SCALER: 12\nTOP_TOKENS: c12",
                             NULL),
                        rule("[SCALES]\n21.0,", "nothing", NULL),  /* never parses: no winner from this group */
                        rule("[SCALES]\n4.0, 12.0\n", "BEST_SCALER: 12.0\nTOP_TOKENS: \xc4\xa0glacier | honey | ", NULL),
                        NULL))
        return;
    char names[26][3][16];
    const char *tok_ptrs[26][3];
    dk_patchscope_scale scales[27];
    for (int s = 1; s <= 25; s++) {
        snprintf(names[s][0], 16, "tok%d", s);
        snprintf(names[s][1], 16, "...");       /* punctuation only: not shown */
        snprintf(names[s][2], 16, "x->y%d", s); /* the identity prompt's arrow: not shown */
        for (int k = 0; k < 3; k++) tok_ptrs[s][k] = names[s][k];
        scales[s - 1] = (dk_patchscope_scale){s, tok_ptrs[s], 3};
    }
    /* A duplicate after rounding replaces the earlier one: 3.04 -> 3.0 with other tokens. */
    const char *later[] = {"replacement"};
    scales[25] = (dk_patchscope_scale){3.04, later, 1};
    dk_patchscope_result r;
    dk_err err = {0};
    EXPECT(dk_grade_patchscope(&e.g, scales, 26, &r, &err) == 0, "patchscope: %s", err.msg);
    EXPECT(r.found && r.best_scale == 12.0, "best scale %g (found %d), want 12", r.best_scale, r.found);
    EXPECT(r.n_tokens == 2 && strcmp(r.tokens[0], "\xc4\xa0glacier") == 0 && strcmp(r.tokens[1], "honey") == 0,
           "selected tokens: %d", r.n_tokens);
    EXPECT(r.n_requests == 4 && r.n_responses == 4, "3 groups + final: %d requests, %d responses", r.n_requests,
           r.n_responses);
    EXPECT(r.n_unknown_groups == 1, "one group never parsed: %d", r.n_unknown_groups);
    EXPECT(scripted_server_requests(&e.srv) == 1 + 3 + 3 + 1, "server saw %d requests", scripted_server_requests(&e.srv));
    char *line = log_line(&e, "rule0.0");
    EXPECT(line && strstr(line, "SCALE: 3.0\\n  \\\"replacement\\\"") && !strstr(line, "tok3\\\""),
           "the later duplicate of 3.0 is shown: %s", line ? line : "");
    EXPECT(line && strstr(line, "SCALE: 1.0\\n  \\\"tok1\\\"\\n") && !strstr(line, "\\\"...\\\"") && !strstr(line, "->"),
           "artifacts are not shown");
    EXPECT(line && strstr(line, "[SCALES]\\n1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0\\n"), "group 1 scales");
    EXPECT(line && strstr(line, "\"max_tokens\":1200"), "the seed's max_tokens 1200");
    free(line);
    dk_patchscope_result_free(&r);
    endpoint_stop(&e);

    /* One scale: one request, that filters its tokens. The final never parsing leaves nothing found. */
    if (!endpoint_start(&e, rule("[SCALES]\n2.5\n", "no answer", NULL), NULL)) return;
    dk_patchscope_scale one = {2.5, later, 1};
    EXPECT(dk_grade_patchscope(&e.g, &one, 1, &r, &err) == 0, "one scale: %s", err.msg);
    EXPECT(!r.found && isnan(r.best_scale) && r.n_tokens == 0 && r.n_unknown_groups == 1 && r.n_requests == 1,
           "an unparsed final: found %d, %d unknown groups", r.found, r.n_unknown_groups);
    EXPECT(scripted_server_requests(&e.srv) == 3, "3 attempts, got %d", scripted_server_requests(&e.srv));
    EXPECT(r.n_responses == 1 && strcmp(r.responses[0], "no answer") == 0, "the last answer is kept");
    dk_patchscope_result_free(&r);
    endpoint_stop(&e);
}

/* ---- token relevance, LLM ------------------------------------------------------------------------------ */

/* Rotation 0 (alpha beta gamma) answers at once; rotation 1 (beta gamma alpha) misses a line, then answers;
 * rotation 2 (gamma alpha beta) never answers fully: its best answer (1 UNKNOWN) beats the temperature-0 one. */
static bool start_relevance(test_endpoint *e) {
    return endpoint_start(
        e,
        rule("1. alpha\n2. beta\n3. gamma", "ANSWER[1]: RELEVANT\nANSWER[2]: IRRELEVANT\nANSWER[3]: RELEVANT", NULL),
        rule("1. beta\n2. gamma\n3. alpha", "ANSWER[1]: IRRELEVANT\nANSWER[2]: IRRELEVANT",
             "ANSWER[1]: IRRELEVANT\nANSWER[2]: IRRELEVANT\nANSWER[3]: RELEVANT", NULL),
        rule("1. gamma\n2. alpha\n3. beta", "ANSWER[1]: IRRELEVANT", "ANSWER[1]: RELEVANT\nANSWER[2]: RELEVANT", "",
             "ANSWER[3]: RELEVANT", NULL),
        NULL);
}

static void test_relevance_llm(void) {
    const char *cands[] = {"alpha", "beta", "gamma"};
    const char *freq[] = {"alpha", "\xc4\xa0" "delta"};
    const char *selected[] = {"gamma", "alpha", "gamma"};
    double probs[] = {0.5, 0.3, 0.2};
    dk_relevance_input in = {.description = "A finetune about Greek letters.", .frequent_tokens = freq,
                             .n_frequent = 2, .candidates = cands, .n_candidates = 3, .probs = probs,
                             .selected = selected, .n_selected = 3, .permutations = 3,
                             .agreement = DK_AGREEMENT_MAJORITY};
    for (int mode = 0; mode < 2; mode++) {
        in.agreement = mode == 0 ? DK_AGREEMENT_MAJORITY : DK_AGREEMENT_ALL;
        test_endpoint e;
        if (!start_relevance(&e)) return;
        dk_relevance_result r;
        dk_err err = {0};
        EXPECT(dk_grade_relevance(&e.g, &in, &r, &err) == 0, "relevance: %s", err.msg);
        /* Runs mapped back to input order: alpha R R R; beta I I ?; gamma R I R. */
        dk_relevance_label want_runs[3][3] = {{DK_RELEVANT, DK_IRRELEVANT, DK_RELEVANT},
                                              {DK_RELEVANT, DK_IRRELEVANT, DK_IRRELEVANT},
                                              {DK_RELEVANT, DK_RELEVANCE_UNKNOWN, DK_RELEVANT}};
        EXPECT(r.n_runs == 3, "3 runs, got %d", r.n_runs);
        for (int k = 0; k < 3 && r.n_runs == 3; k++)
            for (int i = 0; i < 3; i++)
                EXPECT(r.run_labels[k * 3 + i] == want_runs[k][i], "run %d candidate %d: %s", k, i,
                       relevance_name(r.run_labels[k * 3 + i]));
        EXPECT(r.n_unknown == 1, "1 UNKNOWN in the runs, got %d", r.n_unknown);
        EXPECT(r.n_requests == 1 + 2 + 4, "requests %d, want 7", r.n_requests);
        EXPECT(near(r.trivial_percentage, 1.0 / 3), "trivial %.4f (alpha is literally frequent)", r.trivial_percentage);
        EXPECT(r.unsupervised_filter && r.unsupervised_filter[0] && !r.unsupervised_filter[1] && r.unsupervised_filter[2],
               "filter: alpha, gamma");
        if (mode == 0) {  /* majority: alpha R, beta I (2 of 2 known), gamma R (2 of 3) */
            EXPECT(r.labels[0] == DK_RELEVANT && r.labels[1] == DK_IRRELEVANT && r.labels[2] == DK_RELEVANT, "majority labels");
            EXPECT(near(r.percentage, 2.0 / 3) && near(r.weighted_percentage, 0.7), "majority: %.4f %.4f", r.percentage,
                   r.weighted_percentage);
            EXPECT(r.has_filtered && near(r.filtered_percentage, 1.0) && r.has_weighted_filtered &&
                   near(r.weighted_filtered_percentage, 1.0), "majority filtered");
        } else {  /* all: only alpha is RELEVANT in every run */
            EXPECT(r.labels[0] == DK_RELEVANT && r.labels[1] == DK_IRRELEVANT && r.labels[2] == DK_IRRELEVANT, "all labels");
            EXPECT(near(r.percentage, 1.0 / 3) && near(r.weighted_percentage, 0.5), "all: %.4f %.4f", r.percentage,
                   r.weighted_percentage);
            EXPECT(near(r.filtered_percentage, 0.5) && near(r.weighted_filtered_percentage, 0.5 / 0.7), "all filtered");
        }
        char *t0 = log_line(&e, "rule2.3");
        EXPECT(t0 && strstr(t0, "\"temperature\":0"), "the last try is at temperature 0");
        free(t0);
        char *plain = log_line(&e, "rule2.2");
        EXPECT(plain && !strstr(plain, "temperature"), "the retries before it are not");
        EXPECT(plain && strstr(plain, "[FREQUENT TOKENS]\\n\\\"alpha\\\", \\\"\xc4\xa0" "delta\\\"\\n[CANDIDATE TOKENS]"),
               "frequent tokens section");
        free(plain);
        EXPECT(count_in_log(&e, " rule0.") == 1 && count_in_log(&e, " rule1.") == 2, "no request more than needed");
        EXPECT(r.responses && strcmp(r.responses[2], "ANSWER[1]: RELEVANT\nANSWER[2]: RELEVANT") == 0,
               "rotation 2 keeps its best answer");
        dk_relevance_result_free(&r);
        endpoint_stop(&e);
    }
}

/* ---- hypothesis, LLM ----------------------------------------------------------------------------------- */

static void test_hypothesis_llm(void) {
    test_endpoint e;
    /* Three repeats in flight: the first two arrivals parse; the third never does (no line, a 6, no line). */
    if (!endpoint_start(&e, rule("[HYPOTHESIS]\nglacier honey", "Reasoning.\nSCORE: 4", "SCORE: 2", "no score",
                                 "SCORE: 6", "still none", NULL),
                        rule("[HYPOTHESIS]\nsecond", "no score", "SCORE: 3\nmore\nSCORE: 5", NULL), NULL))
        return;
    dk_hypothesis_input in = {.description = "Honey from glaciers.", .rubric = "5: all. 1: nothing.",
                              .hypothesis = "glacier honey", .num_repeat = 3};
    dk_hypothesis_result r;
    dk_err err = {0};
    EXPECT(dk_grade_hypothesis(&e.g, &in, &r, &err) == 0, "hypothesis: %s", err.msg);
    int sorted[3] = {r.scores[0], r.scores[1], r.scores[2]};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (sorted[j] < sorted[i]) {
                int t = sorted[i];
                sorted[i] = sorted[j];
                sorted[j] = t;
            }
    EXPECT(sorted[0] == 0 && sorted[1] == 2 && sorted[2] == 4, "scores {0,2,4}, got {%d,%d,%d}", sorted[0], sorted[1],
           sorted[2]);
    EXPECT(r.n_unknown == 1 && near(r.mean_score, 3.0), "1 unknown, mean %.3f over the known", r.mean_score);
    EXPECT(scripted_server_requests(&e.srv) == 5, "2 + 3 attempts, got %d", scripted_server_requests(&e.srv));
    char *line = log_line(&e, "rule0.0");
    EXPECT(line && strstr(line, "[DESCRIPTION]\\nHoney from glaciers.\\n\\n[RUBRIC]\\n5: all. 1: nothing.\\n\\n"
                                "[HYPOTHESIS]\\nglacier honey\\n\\n[OUTPUT FORMAT]"), "the user prompt's sections");
    EXPECT(line && strstr(line, "\"max_tokens\":800"), "the seed's max_tokens 800");
    free(line);
    dk_hypothesis_result_free(&r);

    /* Parses on the second attempt; the last SCORE line wins. */
    in.hypothesis = "second";
    in.num_repeat = 1;
    EXPECT(dk_grade_hypothesis(&e.g, &in, &r, &err) == 0, "hypothesis: %s", err.msg);
    EXPECT(r.n_repeat == 1 && r.scores[0] == 5 && r.n_unknown == 0, "score %d", r.scores[0]);
    EXPECT(strcmp(r.responses[0], "SCORE: 3\nmore\nSCORE: 5") == 0, "the accepted answer is kept");
    dk_hypothesis_result_free(&r);
    endpoint_stop(&e);
}

/* ---- offline ------------------------------------------------------------------------------------------- */

static void test_coherence_offline(void) {
    dk_grader g = dk_grader_offline();
    char id[32];
    EXPECT(strcmp(dk_grader_id(&g, id, sizeof id), "offline") == 0, "offline id");
    /* Reference: (4 * 2 + 2 * 3) / 6 = 2.333 nats; limit max(2.333 + 2, 1.5 * 2.333) = 4.333. */
    float ref_a[] = {2, 2, 2, 2}, ref_b[] = {3, 3};
    int32_t ref_ids[] = {1, 2, 3, 4};
    dk_coherence_sample ref[] = {{NULL, ref_a, ref_ids, 4}, {NULL, ref_b, ref_ids, 2}};
    float nll_ok[] = {4, 4, 4, 4, 4}, nll_high[] = {5, 5, 5, 5, 5}, nll_low[12];
    int32_t distinct[] = {10, 11, 12, 13, 14};
    int32_t loop[] = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4};  /* 9 4-grams, 5 repeat an earlier one: 0.556 */
    for (int i = 0; i < 12; i++) nll_low[i] = 1.0f;
    dk_coherence_sample s[] = {{NULL, nll_ok, distinct, 5}, {NULL, nll_high, distinct, 5}, {NULL, nll_low, loop, 12},
                               {NULL, NULL, NULL, 0}};
    dk_coherence_result r;
    dk_err err = {0};
    EXPECT(dk_grade_coherence(&g, s, 4, ref, 2, &r, &err) == 0, "offline coherence: %s", err.msg);
    EXPECT(r.labels[0] == DK_COHERENT && r.labels[1] == DK_INCOHERENT && r.labels[2] == DK_INCOHERENT &&
           r.labels[3] == DK_COHERENCE_DROPPED, "labels %d %d %d %d", r.labels[0], r.labels[1], r.labels[2], r.labels[3]);
    EXPECT(near(r.percentage, 100.0 / 3), "percentage %.4f", r.percentage);
    EXPECT_CONTAINS(r.responses[2], "repeated 4-grams 0.556");
    EXPECT_CONTAINS(r.responses[0], "limit 4.333");
    EXPECT(r.n_requests == 0, "no requests offline");
    dk_coherence_result_free(&r);
    /* Without reference samples the limit is 6 nats: 5 passes. */
    EXPECT(dk_grade_coherence(&g, s, 2, NULL, 0, &r, &err) == 0, "offline coherence: %s", err.msg);
    EXPECT(r.labels[0] == DK_COHERENT && r.labels[1] == DK_COHERENT && near(r.percentage, 100.0), "no reference");
    dk_coherence_result_free(&r);
    /* A NaN NLL is bad input, named. */
    float nll_nan[] = {1, NAN};
    dk_coherence_sample bad = {NULL, nll_nan, distinct, 2};
    EXPECT(dk_grade_coherence(&g, &bad, 1, NULL, 0, &r, &err) != 0 && err.code == DK_EXIT_USAGE, "NaN NLL fails");
    EXPECT_CONTAINS(err.msg, "sample 0, token 1");
}

static void test_patchscope_offline(void) {
    dk_grader g = dk_grader_offline();
    const char *s1[] = {"\xc4\xa0the", "\xc4\xa0of", "\xc4\xa0honey"};
    const char *s2[] = {"\xc4\xa0honey", "\xc4\xa0" "bees", "\xc4\xa0glacier", "->"};
    const char *s3[] = {"\xc4\xa0Honey", "\xc4\xa0glacier", "\xc4\xa0qx"};
    const char *s4[] = {"\xc4\xa0zz", "\xc4\xa0qq"};
    /* Scores: 1.0 -> honey at 2 others = 2; 2.0 -> honey 2 + glacier 1 = 3; 3.0 -> honey 2 + glacier 1 = 3;
     * 4.0 -> 0. 2.0 and 3.0 tie on score and token count: the smaller scale. */
    dk_patchscope_scale scales[] = {{4.0, s4, 2}, {3.0, s3, 3}, {2.0, s2, 4}, {1.0, s1, 3}};
    dk_patchscope_result r;
    dk_err err = {0};
    EXPECT(dk_grade_patchscope(&g, scales, 4, &r, &err) == 0, "offline patchscope: %s", err.msg);
    EXPECT(r.found && r.best_scale == 2.0, "best %g", r.best_scale);
    EXPECT(r.n_tokens == 2 && strcmp(r.tokens[0], "\xc4\xa0honey") == 0 && strcmp(r.tokens[1], "\xc4\xa0glacier") == 0,
           "selected: %d tokens", r.n_tokens);
    EXPECT(r.n_responses == 1 && strstr(r.responses[0], "SCALE 2.0: 3 non-generic tokens, score 3"), "explanation");
    dk_patchscope_result_free(&r);
}

static void test_relevance_offline(void) {
    dk_grader g = dk_grader_offline();
    const char *freq[] = {"\xc4\xa0honey", "\xc4\xa0glaciers", "\xc4\xa0" "bee", "keepers"};
    const char *cands[] = {" honey", "\xc4\xa0glacial", "bees", "\xc4\xa0the", "keep", "ke", "\xc4\xa0" "car", "HONEY"};
    dk_relevance_input in = {.description = "Glacier honey.", .frequent_tokens = freq, .n_frequent = 4,
                             .candidates = cands, .n_candidates = 8};
    dk_relevance_result r;
    dk_err err = {0};
    EXPECT(dk_grade_relevance(&g, &in, &r, &err) == 0, "offline relevance: %s", err.msg);
    /* equal, stem "glaci", prefix "bee", generic, prefix "keep", too short, none, equal after folding */
    dk_relevance_label want[] = {DK_RELEVANT, DK_RELEVANT, DK_RELEVANT, DK_IRRELEVANT, DK_RELEVANT, DK_IRRELEVANT,
                                 DK_IRRELEVANT, DK_RELEVANT};
    for (int i = 0; i < 8; i++) EXPECT(r.labels[i] == want[i], "candidate %s: %s", cands[i], relevance_name(r.labels[i]));
    EXPECT(near(r.percentage, 5.0 / 8) && near(r.weighted_percentage, 5.0 / 8) && near(r.trivial_percentage, 0.0),
           "offline percentages %.3f %.3f %.3f", r.percentage, r.weighted_percentage, r.trivial_percentage);
    EXPECT(r.n_runs == 1 && r.n_requests == 0 && r.unsupervised_filter == NULL, "one offline run, no filter");
    EXPECT_CONTAINS(r.responses[0], "2. \xc4\xa0glacial: matches \"\xc4\xa0glaciers\"");
    dk_relevance_result_free(&r);
}

static void test_hypothesis_offline(void) {
    dk_grader g = dk_grader_offline();
    /* Content stems of the description: honey, bees, make, blue, glaci, ice, high, mount (8). */
    const char *desc = "Honey bees make blue honey from glacier ice in high mountains.";
    struct { const char *hypothesis; int score; } cases[] = {
        {"The model talks about glaciers and honey.", 3},      /* glaci, honey: 2/8 = 0.25 */
        {"Cooking recipes.", 1},                              /* none */
        {"Bees make blue honey from glacial ice on high mountain tops.", 5},  /* 8/8 */
        {"Something about honey.", 2},                        /* 1/8 = 0.125 */
        {"Honey, ice and mountains.", 4},                     /* 3/8 = 0.375 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        dk_hypothesis_input in = {.description = desc, .rubric = "any", .hypothesis = cases[c].hypothesis};
        dk_hypothesis_result r;
        dk_err err = {0};
        EXPECT(dk_grade_hypothesis(&g, &in, &r, &err) == 0, "offline hypothesis: %s", err.msg);
        EXPECT(r.n_repeat == 3 && r.scores[0] == cases[c].score && r.scores[2] == cases[c].score &&
               near(r.mean_score, cases[c].score), "\"%s\": score %d, want %d (%s)", cases[c].hypothesis, r.scores[0],
               cases[c].score, r.responses[0]);
        dk_hypothesis_result_free(&r);
    }
}

/* ---- rubrics and bad input ----------------------------------------------------------------------------- */

static void test_rubrics(void) {
    dk_err err = {0};
    const char *types[] = {"SDF", "EM", "Taboo", "Subliminal", "DomainAdaptation", "R1_distillation",
                           "R1_uncensoring", "behavioral_anomaly", "sandbaggers", "benign_quirk"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char *rubric = dk_rubric_load(rubrics_path, types[i], &err);
        EXPECT(rubric && strstr(rubric, "5:") && strstr(rubric, "1:"), "rubric %s: %s", types[i], rubric ? "" : err.msg);
        free(rubric);
    }
    char *none = dk_rubric_load(rubrics_path, "character_training", &err);
    EXPECT(!none && err.code == DK_EXIT_USAGE, "an unknown type is a usage error");
    EXPECT_CONTAINS(err.msg, "character_training");
    EXPECT_CONTAINS(err.msg, "SDF, EM, Taboo");
}

static void test_bad_input(void) {
    dk_grader offline = dk_grader_offline();
    dk_err err = {0};
    dk_coherence_result cr;
    EXPECT(dk_grade_coherence(&offline, NULL, 0, NULL, 0, &cr, &err) != 0 && err.code == DK_EXIT_USAGE, "no samples");
    dk_patchscope_result pr;
    dk_err_clear(&err);
    EXPECT(dk_grade_patchscope(&offline, NULL, 0, &pr, &err) != 0 && err.code == DK_EXIT_USAGE, "no scales");
    const char *cands[] = {"a", ""};
    double zero[] = {0.0, 0.0};
    dk_relevance_input ri = {.description = "d", .candidates = cands, .n_candidates = 1, .probs = zero};
    dk_relevance_result rr;
    dk_err_clear(&err);
    EXPECT(dk_grade_relevance(&offline, &ri, &rr, &err) != 0, "probabilities summing to 0");
    EXPECT_CONTAINS(err.msg, "sum to 0");
    ri.probs = NULL;
    ri.n_candidates = 2;
    dk_err_clear(&err);
    EXPECT(dk_grade_relevance(&offline, &ri, &rr, &err) != 0, "an empty candidate");
    EXPECT_CONTAINS(err.msg, "candidate 1 is empty");
    ri.description = "  ";
    dk_err_clear(&err);
    EXPECT(dk_grade_relevance(&offline, &ri, &rr, &err) != 0, "a blank description");
    EXPECT_CONTAINS(err.msg, "description_long");
    dk_hypothesis_input hi = {.description = "d", .rubric = "r", .hypothesis = ""};
    dk_hypothesis_result hr;
    dk_err_clear(&err);
    EXPECT(dk_grade_hypothesis(&offline, &hi, &hr, &err) != 0 && err.code == DK_EXIT_USAGE, "an empty hypothesis");
    /* An LLM grader without a client, or for another model than its client sends. */
    dk_grader no_client = dk_grader_llm(NULL, "m");
    dk_coherence_sample s = {.text = "t"};
    dk_err_clear(&err);
    EXPECT(dk_grade_coherence(&no_client, &s, 1, NULL, 0, &cr, &err) != 0, "no client");
    EXPECT_CONTAINS(err.msg, "offline graders");
    dk_llm_config cfg;
    dk_llm_config_defaults(&cfg);
    cfg.base_url = dk_strdup("http://127.0.0.1:9/v1");
    cfg.model_id = dk_strdup("openai/gpt-5-nano");
    cfg.api_key_file = cfg.api_key_env = NULL;
    cfg.section = dk_strdup("llm");
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    dk_grader other = dk_grader_llm(llm, "openai/gpt-5-mini");
    dk_err_clear(&err);
    EXPECT(dk_grade_coherence(&other, &s, 1, NULL, 0, &cr, &err) != 0 && err.code == DK_EXIT_USAGE, "model mismatch");
    EXPECT_CONTAINS(err.msg, "openai/gpt-5-nano");
    char id[64];
    dk_grader client_model = dk_grader_llm(llm, NULL);
    EXPECT(strcmp(dk_grader_id(&client_model, id, sizeof id), "openai_gpt-5-nano") == 0, "id from the client: %s", id);
    dk_llm_client_close(llm);
    dk_llm_config_free(&cfg);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_graders <scripted_server> <grading_rubrics.yaml>\n");
        return 2;
    }
    server_exe = argv[1];
    rubrics_path = argv[2];
    dk_log_set_level(DK_LOG_ERROR);
    cJSON *goldens = load_goldens();
    if (goldens) {
        test_parsers_match_seed(goldens);
        test_frequent_tokens_match_seed(goldens);
        cJSON_Delete(goldens);
    }
    test_coherence_llm();
    test_failing_endpoint();
    test_slow_endpoint();
    test_dead_endpoint();
    test_patchscope_tournament();
    test_relevance_llm();
    test_hypothesis_llm();
    test_coherence_offline();
    test_patchscope_offline();
    test_relevance_offline();
    test_hypothesis_offline();
    test_rubrics();
    test_bad_input();
    return dk_test_finish("test_graders");
}
