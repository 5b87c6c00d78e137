/* test_llm_client.c — the LLM client against tests/llm/scripted_server: answers that are good, malformed,
 * cut off, slow, failing or refused; retries as configured and no more; bounded time when the endpoint is
 * dead or stuck; several requests in flight; token usage; the key sent to the server and never shown.
 *
 *   test_llm_client <path of scripted_server>
 *
 * Everything the client logs goes (at debug level) to a temporary file, which is searched for the key at the
 * end, with every error message the client returned; ctest also searches the test's whole output. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/log.h"
#include "core/strutil.h"
#include "core/timer.h"
#include "llm/llm_client.h"
#include "llm/server_proc.h"
#include "test.h"

#define TEST_KEY "sk-dk-SECRET-3f9a7c41e2b8"
#define KEY_ENV "DK_TEST_LLM_KEY"

static const char *server_exe;
static dk_strbuf all_errors; /* every error message the client gave, searched for the key at the end */

static dk_llm_config make_cfg(const char *base_url) {
    dk_llm_config cfg;
    dk_llm_config_defaults(&cfg);
    cfg.base_url = dk_strdup(base_url);
    cfg.model_id = dk_strdup("test-model");
    cfg.api_key_env = dk_strdup(KEY_ENV);
    cfg.section = dk_strdup("llm");
    cfg.backoff_initial_s = 0.01;
    cfg.backoff_max_s = 0.05;
    cfg.request_timeout_s = 10.0;
    return cfg;
}

/* The end of a case: the client closed, its configuration freed, the server stopped. */
static void end_case(dk_llm_client *llm, dk_llm_config *cfg, scripted_server *srv) {
    dk_llm_client_close(llm);
    dk_llm_config_free(cfg);
    if (srv) scripted_server_cleanup(srv);
}

/* Starts a server that insists on the key, with a NULL-terminated script. */
#define START(server, ...)                                                                              \
    do {                                                                                                \
        const char *args_[] = {"--require-key-env", KEY_ENV, __VA_ARGS__, NULL};                        \
        if (scripted_server_start((server), server_exe, args_) != 0) {                                  \
            EXPECT(false, "scripted_server did not start");                                             \
            return;                                                                                     \
        }                                                                                               \
    } while (0)

static void keep_error(const dk_llm_response *resp) {
    if (resp->err.code) {
        dk_strbuf_append(&all_errors, resp->err.msg);
        dk_strbuf_append(&all_errors, "\n");
    }
}

/* One user message, default settings. */
static int ask(dk_llm_client *llm, const char *question, dk_llm_response *resp) {
    dk_llm_message msg = {.role = "user", .content = question};
    dk_llm_request req = dk_llm_request_init(&msg, 1);
    int rc = dk_llm_chat(llm, &req, resp);
    keep_error(resp);
    return rc;
}

/* Opens a client for cfg and asks one question (resp is filled either way); the seconds the question took. */
static double open_and_ask(const dk_llm_config *cfg, dk_llm_client **llm, const char *question, dk_llm_response *resp) {
    dk_err err = {0};
    memset(resp, 0, sizeof *resp);
    *llm = dk_llm_client_open(cfg, &err);
    EXPECT(*llm != NULL, "open: %s", err.msg);
    double t0 = dk_time_now();
    if (*llm) ask(*llm, question, resp);
    return dk_time_now() - t0;
}

static void test_request_and_answer(void) {
    scripted_server srv;
    START(&srv, "ok");
    dk_llm_config cfg = make_cfg(srv.base_url);
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    EXPECT(llm != NULL, "open: %s", err.msg);
    if (!llm) return;
    dk_llm_message msgs[] = {{.role = "system", .content = "You grade text."},
                             {.role = "user", .content = "hello there"}};
    const char *stops[] = {"\n\n", "END"};
    dk_llm_request req = dk_llm_request_init(msgs, 2);
    req.temperature = 0.5;
    req.top_p = 0.25;
    req.max_tokens = 50;
    req.n = 2;
    req.has_seed = true;
    req.seed = 42;
    req.stop = stops;
    req.n_stop = 2;
    dk_llm_response resp;
    EXPECT(dk_llm_chat(llm, &req, &resp) == 0, "chat: %s", resp.err.msg);
    keep_error(&resp);
    EXPECT(resp.n_choices == 2, "2 choices, got %d", resp.n_choices);
    if (resp.n_choices == 2) {
        EXPECT(strcmp(resp.choices[0].content, "reply 0 to: hello there") == 0, "content 0: %s", resp.choices[0].content);
        EXPECT(strcmp(resp.choices[1].content, "reply 1 to: hello there") == 0, "content 1: %s", resp.choices[1].content);
        EXPECT(strcmp(resp.choices[1].finish_reason, "stop") == 0, "finish_reason: %s", resp.choices[1].finish_reason);
    }
    EXPECT(resp.prompt_tokens == 11 && resp.completion_tokens == 7, "usage %lld + %lld",
           (long long)resp.prompt_tokens, (long long)resp.completion_tokens);
    EXPECT(resp.attempts == 1, "1 attempt, got %d", resp.attempts);
    char *log = scripted_server_log(&srv);
    EXPECT_CONTAINS(log, "\"model\":\"test-model\"");
    EXPECT_CONTAINS(log, "{\"role\":\"system\",\"content\":\"You grade text.\"}");
    EXPECT_CONTAINS(log, "{\"role\":\"user\",\"content\":\"hello there\"}");
    EXPECT_CONTAINS(log, "\"temperature\":0.5");
    EXPECT_CONTAINS(log, "\"top_p\":0.25");
    EXPECT_CONTAINS(log, "\"max_tokens\":50");
    EXPECT_CONTAINS(log, "\"n\":2");
    EXPECT_CONTAINS(log, "\"seed\":42");
    EXPECT_CONTAINS(log, "\"stop\":[\"\\n\\n\",\"END\"]");
    EXPECT(strstr(log, TEST_KEY) == NULL, "the server log holds no header");
    free(log);
    EXPECT_CONTAINS(dk_llm_client_url(llm), "/v1/chat/completions");
    dk_llm_response_free(&resp);

    /* Unset optional fields are not sent. */
    EXPECT(ask(llm, "plain", &resp) == 0, "plain request: %s", resp.err.msg);
    dk_llm_response_free(&resp);
    log = scripted_server_log(&srv);
    const char *second = strstr(log, "\n1 ");
    EXPECT(second && !strstr(second, "temperature") && !strstr(second, "\"n\"") && !strstr(second, "seed") &&
           !strstr(second, "stop"), "second request sends only model and messages: %s", second ? second : log);
    free(log);
    end_case(llm, &cfg, &srv);
}

/* Each kind of bad answer once, then a good one: retried, and the good answer is returned. */
static void test_each_failure_is_retried(void) {
    const char *kinds[] = {"500", "502", "503", "429", "408", "malformed", "cut", "truncated", "empty", "close",
                           "slow:5"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        scripted_server srv;
        START(&srv, kinds[k], "ok");
        dk_llm_config cfg = make_cfg(srv.base_url);
        cfg.max_attempts = 2;
        cfg.request_timeout_s = 0.5;
        dk_llm_client *llm;
        dk_llm_response resp;
        double seconds = open_and_ask(&cfg, &llm, "again", &resp);
        EXPECT(resp.err.code == 0, "%s then ok: %s", kinds[k], resp.err.msg);
        EXPECT(resp.attempts == 2, "%s then ok: 2 attempts, got %d", kinds[k], resp.attempts);
        EXPECT(scripted_server_requests(&srv) == 2, "%s: the server saw %d requests", kinds[k],
               scripted_server_requests(&srv));
        EXPECT(resp.n_choices == 1 && strcmp(resp.choices[0].content, "reply to: again") == 0, "%s: the good answer",
               kinds[k]);
        EXPECT(seconds < 4.0, "%s: %.2f s", kinds[k], seconds);
        dk_llm_usage u = dk_llm_client_usage(llm);
        EXPECT(u.attempts == 2 && u.requests == 1 && u.failed == 0 && u.prompt_tokens == 11,
               "%s: usage attempts %lld requests %lld failed %lld prompt %lld", kinds[k], (long long)u.attempts,
               (long long)u.requests, (long long)u.failed, (long long)u.prompt_tokens);
        dk_llm_response_free(&resp);
        end_case(llm, &cfg, &srv);
    }
}

/* The seed's default: 3 attempts in all. A fourth answer would have been good; it is never asked for. */
static void test_attempts_as_configured(void) {
    scripted_server srv;
    START(&srv, "500", "500", "500", "ok");
    dk_llm_config cfg = make_cfg(srv.base_url);
    cfg.max_attempts = 3;
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    dk_llm_response resp;
    EXPECT(ask(llm, "x", &resp) != 0, "three failures fail the request");
    EXPECT(resp.attempts == 3 && scripted_server_requests(&srv) == 3, "3 attempts, got %d (server saw %d)",
           resp.attempts, scripted_server_requests(&srv));
    EXPECT(resp.err.code == DK_EXIT_RUNTIME, "runtime error code, got %d", resp.err.code);
    EXPECT_CONTAINS(resp.err.msg, "failed after 3 attempts");
    EXPECT_CONTAINS(resp.err.msg, "HTTP 500: scripted failure 500");
    EXPECT_CONTAINS(resp.err.msg, srv.base_url);
    dk_llm_usage u = dk_llm_client_usage(llm);
    EXPECT(u.failed == 1 && u.requests == 1 && u.attempts == 3, "usage counts the failure");
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, &srv);
}

/* A permanently failing endpoint: the waits between attempts grow (0.1, 0.2, then capped at 0.25 s, each less
 * up to a quarter at random) and the request ends after the configured attempts. */
static void test_backoff_and_bound(void) {
    scripted_server srv;
    START(&srv, "--default", "503");
    dk_llm_config cfg = make_cfg(srv.base_url);
    cfg.max_attempts = 4;
    cfg.backoff_initial_s = 0.1;
    cfg.backoff_max_s = 0.25;
    dk_llm_client *llm;
    dk_llm_response resp;
    double seconds = open_and_ask(&cfg, &llm, "x", &resp);
    EXPECT(resp.err.code != 0, "a failing endpoint fails the request");
    EXPECT(resp.attempts == 4 && scripted_server_requests(&srv) == 4, "4 attempts, got %d", resp.attempts);
    EXPECT(seconds >= 0.45 && seconds < 2.5, "waits 0.075-0.1 + 0.15-0.2 + 0.25 s, took %.3f s", seconds);
    EXPECT_CONTAINS(resp.err.msg, "failed after 4 attempts");
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, NULL);

    /* backoff_max_s caps the wait even when the exponential one is long. */
    cfg = make_cfg(srv.base_url);
    cfg.max_attempts = 3;
    cfg.backoff_initial_s = 5.0;
    cfg.backoff_max_s = 0.1;
    seconds = open_and_ask(&cfg, &llm, "x", &resp);
    EXPECT(resp.err.code != 0, "still failing");
    EXPECT(seconds >= 0.19 && seconds < 1.5, "two capped waits of 0.1 s, took %.3f s", seconds);
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, &srv);

    /* A 429 with Retry-After waits what the server asks (capped by backoff_max_s). */
    START(&srv, "retry429:0.4", "ok");
    cfg = make_cfg(srv.base_url);
    cfg.backoff_max_s = 1.0;
    seconds = open_and_ask(&cfg, &llm, "x", &resp);
    EXPECT(resp.err.code == 0, "429 then ok: %s", resp.err.msg);
    EXPECT(seconds >= 0.39 && seconds < 2.0, "Retry-After: 0.4 honoured, took %.3f s", seconds);
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, &srv);
}

/* Statuses that asking again cannot fix end the request at once, with a hint. */
static void test_not_retried(void) {
    struct {
        const char *action, *hint;
    } cases[] = {{"400", "check llm.model_id (test-model)"}, {"401", "the endpoint refused the key from $" KEY_ENV},
                 {"404", "check llm.base_url"}, {"403", "the endpoint refused the key from $" KEY_ENV}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        scripted_server srv;
        START(&srv, cases[k].action, "ok");
        dk_llm_config cfg = make_cfg(srv.base_url);
        dk_err err = {0};
        dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
        dk_llm_response resp;
        EXPECT(ask(llm, "x", &resp) != 0, "%s fails", cases[k].action);
        EXPECT(resp.attempts == 1 && scripted_server_requests(&srv) == 1, "%s: not retried (%d attempts)",
               cases[k].action, resp.attempts);
        EXPECT_CONTAINS(resp.err.msg, cases[k].hint);
        dk_llm_response_free(&resp);
        end_case(llm, &cfg, &srv);
    }
}

/* A server that never answers: every attempt ends at request_timeout_s. */
static void test_timeout(void) {
    scripted_server srv;
    START(&srv, "--default", "slow:30");
    dk_llm_config cfg = make_cfg(srv.base_url);
    cfg.max_attempts = 2;
    cfg.request_timeout_s = 0.5;
    dk_llm_client *llm;
    dk_llm_response resp;
    double seconds = open_and_ask(&cfg, &llm, "x", &resp);
    EXPECT(resp.err.code != 0, "a stuck server fails the request");
    EXPECT(seconds >= 0.95 && seconds < 5.0, "two attempts of 0.5 s, took %.2f s", seconds);
    EXPECT(resp.attempts == 2, "2 attempts, got %d", resp.attempts);
    EXPECT_CONTAINS(resp.err.msg, "no complete answer within the time allowed");
    EXPECT_CONTAINS(resp.err.msg, "raise llm.request_timeout_s");
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, &srv);
}

/* Nobody listens on the port: a clear error after the configured attempts, in well under a second. */
static void test_dead_port(void) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", dead_port());
    dk_llm_config cfg = make_cfg(url);
    cfg.max_attempts = 3;
    setenv(KEY_ENV, TEST_KEY, 1);
    dk_llm_client *llm;
    dk_llm_response resp;
    double seconds = open_and_ask(&cfg, &llm, "x", &resp);
    EXPECT(resp.err.code != 0, "a dead port fails");
    EXPECT(seconds < 5.0, "took %.2f s", seconds);
    EXPECT(resp.attempts == 3, "3 attempts, got %d", resp.attempts);
    EXPECT_CONTAINS(resp.err.msg, "could not connect");
    EXPECT_CONTAINS(resp.err.msg, "is the server running, and is llm.base_url");
    EXPECT_CONTAINS(resp.err.msg, url);
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, NULL);
}

/* 8 requests that each take 1 s finish together in about 1 s; each answer belongs to its own request. */
static void test_in_flight(void) {
    scripted_server srv;
    START(&srv, "--default", "slow:1");
    dk_llm_config cfg = make_cfg(srv.base_url);
    cfg.max_in_flight = 8;
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    enum { N = 8 };
    char questions[N][32];
    dk_llm_message msgs[N];
    dk_llm_request reqs[N];
    dk_llm_response resps[N];
    for (int i = 0; i < N; i++) {
        snprintf(questions[i], sizeof questions[i], "question %d", i);
        msgs[i] = (dk_llm_message){.role = "user", .content = questions[i]};
        reqs[i] = dk_llm_request_init(&msgs[i], 1);
    }
    double t0 = dk_time_now();
    int failed = dk_llm_chat_many(llm, reqs, N, resps);
    double seconds = dk_time_now() - t0;
    EXPECT(failed == 0, "all succeed, %d failed", failed);
    EXPECT(seconds < 4.0, "8 requests of 1 s in flight together took %.2f s (one by one: 8 s)", seconds);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof want, "reply to: question %d", i);
        EXPECT(resps[i].n_choices == 1 && strcmp(resps[i].choices[0].content, want) == 0, "answer %d: %s", i,
               resps[i].n_choices ? resps[i].choices[0].content : resps[i].err.msg);
        keep_error(&resps[i]);
        dk_llm_response_free(&resps[i]);
    }
    dk_llm_usage u = dk_llm_client_usage(llm);
    EXPECT(u.requests == N && u.attempts == N && u.prompt_tokens == 11 * N && u.completion_tokens == 7 * N,
           "usage: %lld requests, %lld attempts, %lld + %lld tokens", (long long)u.requests, (long long)u.attempts,
           (long long)u.prompt_tokens, (long long)u.completion_tokens);
    end_case(llm, &cfg, NULL);

    /* max_in_flight = 2: four 1 s requests take two rounds. */
    cfg = make_cfg(srv.base_url);
    cfg.max_in_flight = 2;
    llm = dk_llm_client_open(&cfg, &err);
    t0 = dk_time_now();
    EXPECT(dk_llm_chat_many(llm, reqs, 4, resps) == 0, "4 requests succeed");
    seconds = dk_time_now() - t0;
    EXPECT(seconds >= 1.95 && seconds < 3.5, "two rounds of 1 s, took %.2f s", seconds);
    for (int i = 0; i < 4; i++) dk_llm_response_free(&resps[i]);
    end_case(llm, &cfg, &srv);

    /* In flight together, some retried: every request completes, attempts add up. */
    START(&srv, "500", "ok", "malformed", "close", "--default", "ok");
    cfg = make_cfg(srv.base_url);
    llm = dk_llm_client_open(&cfg, &err);
    EXPECT(dk_llm_chat_many(llm, reqs, 6, resps) == 0, "6 requests with 3 failures on the way succeed");
    int attempts = 0;
    for (int i = 0; i < 6; i++) {
        attempts += resps[i].attempts;
        dk_llm_response_free(&resps[i]);
    }
    EXPECT(attempts == 9 && scripted_server_requests(&srv) == 9, "6 + 3 attempts, got %d", attempts);
    EXPECT(dk_llm_client_usage(llm).prompt_tokens == 66, "usage counts the 6 good answers");
    end_case(llm, &cfg, &srv);
}

/* A request stuck at a server that never answers does not hold up the others in flight with it. */
static void test_stuck_one_in_flight(void) {
    scripted_server srv;
    START(&srv, "slow:30", "--default", "ok");
    dk_llm_config cfg = make_cfg(srv.base_url);
    cfg.max_attempts = 1;
    cfg.request_timeout_s = 1.0;
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    dk_llm_message msg = {.role = "user", .content = "x"};
    dk_llm_request reqs[3] = {dk_llm_request_init(&msg, 1), dk_llm_request_init(&msg, 1), dk_llm_request_init(&msg, 1)};
    dk_llm_response resps[3];
    double t0 = dk_time_now();
    int failed = dk_llm_chat_many(llm, reqs, 3, resps);
    double seconds = dk_time_now() - t0;
    EXPECT(failed == 1, "the stuck request fails, the other two succeed (%d failed)", failed);
    EXPECT(seconds >= 0.95 && seconds < 4.0, "ended by the 1 s timeout, took %.2f s", seconds);
    for (int i = 0; i < 3; i++) {
        if (resps[i].err.code) {
            EXPECT_CONTAINS(resps[i].err.msg, "no complete answer within the time allowed");
            EXPECT(resps[i].seconds >= 0.95, "the stuck one took its timeout");
        } else {
            EXPECT(resps[i].seconds < 0.9, "answer %d came back at once (%.2f s), not after the stuck one", i,
                   resps[i].seconds);
        }
        keep_error(&resps[i]);
        dk_llm_response_free(&resps[i]);
    }
    end_case(llm, &cfg, &srv);
}

/* An answer larger than the client takes ends the request at once (asking again would get the same). */
static void test_huge_answer(void) {
    scripted_server srv;
    START(&srv, "huge", "ok");
    dk_llm_config cfg = make_cfg(srv.base_url);
    dk_llm_client *llm;
    dk_llm_response resp;
    open_and_ask(&cfg, &llm, "x", &resp);
    EXPECT(resp.err.code != 0 && resp.attempts == 1, "a 40 MiB answer fails without a retry (%d attempts)",
           resp.attempts);
    EXPECT_CONTAINS(resp.err.msg, "the answer is larger than 32 MiB");
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, &srv);
}

/* Usage adds up over calls; an answer without usage adds nothing. */
static void test_usage(void) {
    scripted_server srv;
    START(&srv, "ok", "nousage", "ok");
    dk_llm_config cfg = make_cfg(srv.base_url);
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    dk_llm_response resp;
    for (int i = 0; i < 3; i++) {
        EXPECT(ask(llm, "x", &resp) == 0, "call %d: %s", i, resp.err.msg);
        dk_llm_response_free(&resp);
    }
    dk_llm_usage u = dk_llm_client_usage(llm);
    EXPECT(u.prompt_tokens == 22 && u.completion_tokens == 14 && u.requests == 3 && u.failed == 0,
           "usage %lld + %lld over %lld requests", (long long)u.prompt_tokens, (long long)u.completion_tokens,
           (long long)u.requests);
    end_case(llm, &cfg, &srv);
}

static bool needs_answer_line(const dk_llm_response *resp, void *ctx, char *why, size_t cap) {
    (*(int *)ctx)++;
    if (strstr(resp->choices[0].content, "ANSWER:")) return true;
    snprintf(why, cap, "no ANSWER: line in \"%s\"", resp->choices[0].content);
    return false;
}

/* The accept callback (the seed's parse_fn): a rejected answer is asked again. */
static void test_accept(void) {
    scripted_server srv;
    START(&srv, "say:banana wing", "say:ANSWER: COHERENT", "--default", "say:nothing useful");
    dk_llm_config cfg = make_cfg(srv.base_url);
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    dk_llm_message msg = {.role = "user", .content = "grade this"};
    dk_llm_request req = dk_llm_request_init(&msg, 1);
    int calls = 0;
    req.accept = needs_answer_line;
    req.accept_ctx = &calls;
    dk_llm_response resp;
    EXPECT(dk_llm_chat(llm, &req, &resp) == 0, "accepted on the second answer: %s", resp.err.msg);
    EXPECT(resp.attempts == 2 && calls == 2, "2 attempts (%d), 2 checks (%d)", resp.attempts, calls);
    EXPECT(resp.n_choices == 1 && strcmp(resp.choices[0].content, "ANSWER: COHERENT") == 0, "the accepted answer");
    EXPECT(dk_llm_client_usage(llm).prompt_tokens == 22, "the rejected answer's tokens count too");
    dk_llm_response_free(&resp);
    EXPECT(dk_llm_chat(llm, &req, &resp) != 0, "never accepted: fails");
    keep_error(&resp);
    EXPECT(resp.attempts == 3 && resp.n_choices == 0, "3 attempts, no choices kept");
    EXPECT_CONTAINS(resp.err.msg, "the answer was not accepted: no ANSWER: line in \"nothing useful\"");
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, &srv);
}

/* Where the key comes from, and that it never shows. */
static void test_key(void) {
    /* A server that quotes the key it refuses: the message has it redacted. */
    scripted_server srv;
    dk_llm_response resp = {0};
    START(&srv, "echokey");
    dk_llm_config cfg = make_cfg(srv.base_url);
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    EXPECT(ask(llm, "x", &resp) != 0, "401 fails");
    EXPECT_CONTAINS(resp.err.msg, "Incorrect API key provided: Bearer [api key]");
    EXPECT(strstr(resp.err.msg, TEST_KEY) == NULL, "the key is redacted");
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, &srv);

    /* The key from a file (whitespace around it ignored), which wins over the variable. */
    char path[] = "/tmp/dk_llm_key_XXXXXX";
    int fd = mkstemp(path);
    EXPECT(write(fd, "  " TEST_KEY "\n", strlen(TEST_KEY) + 3) > 0, "write the key file");
    close(fd);
    START(&srv, "ok");
    cfg = make_cfg(srv.base_url);
    cfg.api_key_file = dk_strdup(path);
    setenv(KEY_ENV, "sk-not-this-one", 1);
    llm = dk_llm_client_open(&cfg, &err);
    EXPECT(llm && ask(llm, "x", &resp) == 0, "the key from the file is accepted: %s", llm ? resp.err.msg : err.msg);
    dk_llm_response_free(&resp);
    dk_llm_client_close(llm);
    setenv(KEY_ENV, TEST_KEY, 1);
    scripted_server_cleanup(&srv);

    /* The variable when the file does not exist; a wrong key is refused with a message naming its source. */
    unlink(path);
    START(&srv, "ok");
    free(cfg.base_url);
    cfg.base_url = dk_strdup(srv.base_url);
    setenv(KEY_ENV, "sk-wrong", 1);
    llm = dk_llm_client_open(&cfg, &err);
    EXPECT(llm && ask(llm, "x", &resp) != 0, "a wrong key is refused");
    EXPECT_CONTAINS(resp.err.msg, "the endpoint refused the key from $" KEY_ENV);
    EXPECT(strstr(resp.err.msg, "sk-wrong") == NULL, "the wrong key is not shown either");
    dk_llm_response_free(&resp);
    dk_llm_client_close(llm);
    setenv(KEY_ENV, TEST_KEY, 1);
    llm = dk_llm_client_open(&cfg, &err);
    EXPECT(llm && ask(llm, "x", &resp) == 0, "the variable's key is used when the file is missing");
    dk_llm_response_free(&resp);
    dk_llm_client_close(llm);
    scripted_server_cleanup(&srv);

    /* Neither: a configuration error naming both places. */
    unsetenv(KEY_ENV);
    dk_err_clear(&err);
    EXPECT(dk_llm_client_open(&cfg, &err) == NULL && err.code == DK_EXIT_USAGE, "no key: exit code 2");
    EXPECT_CONTAINS(err.msg, path);
    EXPECT_CONTAINS(err.msg, "environment variable " KEY_ENV " is not set");
    setenv(KEY_ENV, "  \n", 1);
    dk_err_clear(&err);
    EXPECT(dk_llm_client_open(&cfg, &err) == NULL, "empty key refused");
    EXPECT_CONTAINS(err.msg, "the key from $" KEY_ENV " is empty");
    setenv(KEY_ENV, "sk-two\nlines", 1);
    dk_err_clear(&err);
    EXPECT(dk_llm_client_open(&cfg, &err) == NULL, "a key with a newline inside is refused");
    EXPECT_CONTAINS(err.msg, "not printable ASCII");
    EXPECT(strstr(err.msg, "sk-two") == NULL, "the bad key is not shown");
    setenv(KEY_ENV, TEST_KEY, 1);
    dk_llm_config_free(&cfg);

    /* No key configured: no Authorization header (a local server). */
    const char *args[] = {"ok", NULL};
    EXPECT(scripted_server_start(&srv, server_exe, args) == 0, "server without key check");
    cfg = make_cfg(srv.base_url);
    free(cfg.api_key_env);
    cfg.api_key_env = NULL;
    llm = dk_llm_client_open(&cfg, &err);
    EXPECT(llm && ask(llm, "x", &resp) == 0, "no key, no header");
    dk_llm_response_free(&resp);
    end_case(llm, &cfg, &srv);
}

static void test_config(void) {
    dk_err err = {0};
    dk_cfg *c = dk_cfg_from_yaml("llm:\n  base_url: http://localhost:8000/v1/\n  model_id: m\n  max_attempts: 5\n"
                                 "  api_key_env: null\n",
                                 "t.yaml", &err);
    dk_llm_config cfg;
    EXPECT(c && dk_llm_config_read(c, "llm", &cfg, &err) == 0, "read: %s", err.msg);
    if (dk_err_is_set(&err)) return;
    EXPECT(strcmp(cfg.base_url, "http://localhost:8000/v1") == 0, "trailing / dropped: %s", cfg.base_url);
    EXPECT(cfg.max_attempts == 5 && cfg.api_key_env == NULL && cfg.api_key_file == NULL, "values read");
    EXPECT(cfg.request_timeout_s == 300.0 && cfg.max_in_flight == 8, "defaults kept");
    dk_llm_config_free(&cfg);
    dk_cfg_free(c);

    /* A grader section written for the seed: api_key_path, and $OPENROUTER_API_KEY when no variable is named. */
    c = dk_cfg_from_yaml("grader:\n  model_id: openai/gpt-5-mini\n  base_url: https://openrouter.ai/api/v1\n"
                         "  api_key_path: openrouter_api_key.txt\n  max_tokens: 10000\n", "t.yaml", &err);
    EXPECT(c && dk_llm_config_read(c, "grader", &cfg, &err) == 0, "read the seed's grader section: %s", err.msg);
    if (!dk_err_is_set(&err)) {
        EXPECT(cfg.api_key_file && strcmp(cfg.api_key_file, "openrouter_api_key.txt") == 0, "api_key_path read");
        EXPECT(cfg.api_key_env && strcmp(cfg.api_key_env, "OPENROUTER_API_KEY") == 0, "the seed's variable");
        dk_llm_config_free(&cfg);
    }
    dk_cfg_free(c);

    struct {
        const char *yaml, *message;
    } bad[] = {
        {"llm:\n  base_url: http://x/v1\n", "config key llm.model_id is missing"},
        {"llm:\n  base_url: ftp://x/v1\n  model_id: m\n", "llm.base_url (t.yaml:2:13) must be an http:// or https:// URL"},
        {"llm:\n  base_url: http://x\n  model_id: m\n  max_attempts: 0\n", "llm.max_attempts (t.yaml:4:17) must be an integer in [1, 100], got 0"},
        {"llm:\n  base_url: http://x\n  model_id: m\n  request_timeout_s: -1\n", "llm.request_timeout_s"},
        {"llm:\n  base_url: http://x\n  model_id: m\n  max_in_flight: many\n", "llm.max_in_flight (t.yaml:4:18) must be an integer"},
        {"llm:\n  base_url: http://x\n  model_id: m\n  api_key_file: a\n  api_key_path: b\n",
         "llm.api_key_path (t.yaml:5:17) must be left out when api_key_file is given"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        dk_err_clear(&err);
        c = dk_cfg_from_yaml(bad[k].yaml, "t.yaml", &err);
        EXPECT(c && dk_llm_config_read(c, "llm", &cfg, &err) != 0 && err.code == DK_EXIT_USAGE, "bad config %zu", k);
        EXPECT_CONTAINS(err.msg, bad[k].message);
        dk_cfg_free(c);
    }

    /* The shipped configs/config.yaml has a usable llm section. */
    dk_cfg_options opts = {.config_dir = getenv("DIFFKIT_CONFIG_DIR")};
    dk_err_clear(&err);
    c = dk_cfg_compose(&opts, &err);
    EXPECT(c != NULL, "compose configs/: %s", err.msg);
    if (!c) return;
    EXPECT(dk_llm_config_read(c, "llm", &cfg, &err) == 0, "configs/config.yaml llm: %s", err.msg);
    if (!dk_err_is_set(&err)) {
        EXPECT(strcmp(cfg.base_url, "https://openrouter.ai/api/v1") == 0, "base_url %s", cfg.base_url);
        EXPECT(cfg.api_key_env && strcmp(cfg.api_key_env, "OPENROUTER_API_KEY") == 0, "api_key_env");
        EXPECT(cfg.max_attempts == 3, "the seed's 3 attempts");
        dk_llm_config_free(&cfg);
    }
    dk_cfg_free(c);
}

/* The seed's agent marks its system message for prompt caching and asks for generation without thinking
 * (chat_template_kwargs): the message flag and extra_body reach the body as they are; a member the client sets
 * itself is refused before anything is sent; usage.total_tokens is read. */
static void test_extra_body_and_cache(void) {
    scripted_server srv;
    START(&srv, "ok", "nousage");
    dk_llm_config cfg = make_cfg(srv.base_url);
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    EXPECT(llm != NULL, "open: %s", err.msg);
    if (!llm) return;
    dk_llm_message msgs[] = {{.role = "system", .content = "S", .cache_ephemeral = true}, {.role = "user", .content = "hello there"}};
    cJSON *extra = cJSON_Parse("{\"chat_template_kwargs\": {\"enable_thinking\": false}, \"steering\": {\"layer\": 3}}");
    dk_llm_request req = dk_llm_request_init(msgs, 2);
    req.temperature = 0.5;
    req.extra_body = extra;
    dk_llm_response resp;
    EXPECT(dk_llm_chat(llm, &req, &resp) == 0, "chat: %s", resp.err.msg);
    keep_error(&resp);
    EXPECT(resp.prompt_tokens == 11 && resp.completion_tokens == 7 && resp.total_tokens == 18,
           "usage %lld + %lld = %lld", (long long)resp.prompt_tokens, (long long)resp.completion_tokens,
           (long long)resp.total_tokens);
    dk_llm_response_free(&resp);
    char *log = scripted_server_log(&srv);
    EXPECT_CONTAINS(log, "{\"role\":\"system\",\"content\":\"S\",\"cache_control\":{\"type\":\"ephemeral\"}}");
    EXPECT_CONTAINS(log, "{\"role\":\"user\",\"content\":\"hello there\"}]");
    EXPECT_CONTAINS(log, "\"chat_template_kwargs\":{\"enable_thinking\":false},\"steering\":{\"layer\":3}}");
    free(log);
    req.extra_body = NULL;  /* the second answer has no usage: total 0 */
    EXPECT(dk_llm_chat(llm, &req, &resp) == 0 && resp.total_tokens == 0, "no usage: total %lld",
           (long long)resp.total_tokens);
    dk_llm_response_free(&resp);
    cJSON *clash = cJSON_Parse("{\"temperature\": 1.0}");
    req.extra_body = clash;
    EXPECT(dk_llm_chat(llm, &req, &resp) != 0 && resp.err.code == DK_EXIT_USAGE, "a colliding member fails");
    EXPECT_CONTAINS(resp.err.msg, "extra body member \"temperature\" is a field the client sets");
    keep_error(&resp);
    dk_llm_response_free(&resp);
    EXPECT(scripted_server_requests(&srv) == 2, "the colliding request is not sent (%d requests)",
           scripted_server_requests(&srv));
    cJSON_Delete(clash);
    cJSON_Delete(extra);
    end_case(llm, &cfg, &srv);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_llm_client <path of scripted_server>\n");
        return 2;
    }
    server_exe = argv[1];
    setenv(KEY_ENV, TEST_KEY, 1);
    FILE *log = tmpfile();
    dk_log_set_stream(log);
    dk_log_set_level(DK_LOG_DEBUG);

    test_config();
    test_request_and_answer();
    test_each_failure_is_retried();
    test_attempts_as_configured();
    test_backoff_and_bound();
    test_not_retried();
    test_timeout();
    test_dead_port();
    test_in_flight();
    test_stuck_one_in_flight();
    test_huge_answer();
    test_usage();
    test_accept();
    test_key();
    test_extra_body_and_cache();

    dk_log_set_stream(NULL);
    fflush(log);
    long size = ftell(log);
    rewind(log);
    char *text = calloc((size_t)size + 1, 1);
    size_t got = fread(text, 1, (size_t)size, log);
    text[got] = '\0';
    fclose(log);
    EXPECT(strstr(text, "trying again in") != NULL, "retries are logged");
    EXPECT(strstr(text, "prompt + 7 completion tokens") != NULL, "successes are logged at debug level");
    EXPECT(strstr(text, TEST_KEY) == NULL, "the key is in the client's log");
    EXPECT(all_errors.data && strstr(all_errors.data, TEST_KEY) == NULL, "the key is in an error message");
    /* The log goes to the test's output too, where ctest searches it for the key (NOMATCH). */
    fputs(text, stderr);
    free(text);
    dk_strbuf_free(&all_errors);
    return dk_test_finish("test_llm_client");
}
