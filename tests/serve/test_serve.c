/* test_serve.c — `diffkit serve` on 127.0.0.1 (a free port) with the demo pair, talked to with host/llm's client
 * (dk_llm_chat, dk_llm_chat_many) and with plain HTTP requests (libcurl, no client logic):
 *   - greedy answers equal `diffkit generate` of the same prompt (chat and plain completion, base, organism,
 *     organism@2.5, organism@PRESET, organism~2 with --logit-amplification 2), text and token count; organism@0
 *     equals the base; organism~0 the organism;
 *   - n=3 choices, reproducible per seed, choice 0 = the same request with n=1;
 *   - 8 concurrent requests with different settings: all answered, each as when asked alone, and batched (the
 *     server's log shows a batch of more than one request);
 *   - stop strings cut the text, finish reasons and usage;
 *   - every bad request gets its OpenAI-style JSON error and the server answers the next request;
 *   - the extensions: "steering" gives, greedy and sampled, what `diffkit generate --steer-*` gives with the same
 *     vector (base, organism, @W, ~ALPHA; modes all, prompt_only, linear_decay; chat and completion) and differs
 *     from the unsteered answer; "chat_template_kwargs": {"enable_thinking": false} renders the demo's Qwen3
 *     template with the empty think block (more prompt tokens; generate --enable-thinking false's text); requests
 *     with different steering sent together each get their own answer; every malformed field is a 400 naming it;
 *     a second server with a template without the switch (Qwen2.5's) accepts enable_thinking and renders alike;
 *   - the bearer token is required, and never appears in the server's log or answers;
 *   - SIGTERM ends the server cleanly (exit 0).
 *
 *   test_serve <path of diffkit>       (DIFFKIT_SOURCE_DIR: the repository, for configs/ and models/demo)
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/strutil.h"
#include "llm/llm_client.h"
#include "test.h"

#define TEST_KEY "sk-dk-SERVE-7d41c9e03a52"
#define KEY_ENV "DK_SERVE_TEST_KEY"
#define ORG "demo_glacier_honey"

static const char *diffkit, *source_dir;
static char log_path[256], base_url[96];
static pid_t server_pid;
static dk_strbuf all_answers; /* every raw answer body, searched for the key at the end */

/* ---- the server ------------------------------------------------------------------------------------------ */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "");
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) dk_strbuf_append_n(&b, chunk, n);
    fclose(f);
    return dk_strbuf_take(&b);
}

/* Starts diffkit serve with the demo pair; extra_arg: one more override, or NULL. */
static bool start_server(const char *extra_arg) {
    snprintf(log_path, sizeof log_path, "/tmp/dk_serve_test_%d.log", (int)getpid());
    unlink(log_path); /* a previous server's "listening on" line must not be read as this one's */
    server_pid = fork();
    if (server_pid == 0) {
        FILE *log = freopen(log_path, "w", stderr);
        if (!log) _exit(127);
        dup2(2, 1);
        execl(diffkit, diffkit, "serve", "--port", "0",
              "serve.models=[demo," ORG "," ORG "@0," ORG "@2.5," ORG "@default_2x," ORG "~0," ORG "~2]",
              "serve.api_key_env=" KEY_ENV, "serve.max_body_bytes=65536", "serve.max_tokens=200", "serve.max_n=4",
              "serve.max_batch=16", extra_arg, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1200; i++) { /* up to a minute */
        char *log = read_text(log_path), *at = strstr(log, "listening on http://127.0.0.1:");
        if (at) {
            snprintf(base_url, sizeof base_url, "http://127.0.0.1:%d/v1", atoi(at + strlen("listening on http://127.0.0.1:")));
            free(log);
            return true;
        }
        free(log);
        int status;
        if (waitpid(server_pid, &status, WNOHANG) == server_pid) break;
        usleep(50000);
    }
    char *log = read_text(log_path);
    fprintf(stderr, "diffkit serve did not start; its log:\n%s\n", log);
    free(log);
    return false;
}

/* ---- references: `diffkit generate` -------------------------------------------------------------------- */

static char *run(const char *cmd) {
    FILE *p = popen(cmd, "r");
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "");
    char chunk[4096];
    size_t n;
    while (p && (n = fread(chunk, 1, sizeof chunk, p)) > 0) dk_strbuf_append_n(&b, chunk, n);
    if (p) pclose(p);
    return dk_strbuf_take(&b);
}

typedef struct reference {
    char *text;      /* what generate printed, without its final newline */
    int n_ids;       /* tokens generated */
} reference;

/* `diffkit generate` of prompt (no quote in it) with `model_args` ("--adapter DIR@2.5", "" for the base). */
static reference generate(const char *model_args, bool chat, const char *prompt, int max_tokens) {
    char cmd[2048];
    reference r;
    snprintf(cmd, sizeof cmd, "%s generate --model %s/models/demo/base %s %s --prompt '%s' --max-new-tokens %d 2>/dev/null",
             diffkit, source_dir, model_args, chat ? "--chat" : "", prompt, max_tokens);
    r.text = run(cmd);
    size_t n = strlen(r.text);
    if (n && r.text[n - 1] == '\n') r.text[n - 1] = '\0';
    strcat(cmd, " --print-ids");
    snprintf(cmd, sizeof cmd, "%s generate --model %s/models/demo/base %s %s --prompt '%s' --max-new-tokens %d "
             "--print-ids 2>/dev/null", diffkit, source_dir, model_args, chat ? "--chat" : "", prompt, max_tokens);
    char *ids = run(cmd);
    cJSON *root = cJSON_Parse(ids);
    r.n_ids = cJSON_GetArraySize(cJSON_GetObjectItem(root, "ids"));
    cJSON_Delete(root);
    free(ids);
    return r;
}

/* ---- plain HTTP --------------------------------------------------------------------------------------------- */

typedef struct answer {
    long status;
    char *body;
    cJSON *json;     /* parsed body, NULL when it is not JSON */
} answer;

static size_t collect(char *data, size_t size, size_t n, void *ctx) {
    dk_strbuf_append_n(ctx, data, size * n);
    return size * n;
}

/* A request with body[0..len) (NULL: none); auth: the Authorization value or NULL; chunked: no Content-Length. */
static answer http(const char *method, const char *path, const char *body, size_t len, const char *auth, bool chunked) {
    CURL *c = curl_easy_init();
    char url[256], auth_header[256];
    snprintf(url, sizeof url, "%s%s", base_url, path);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (auth) {
        snprintf(auth_header, sizeof auth_header, "Authorization: %s", auth);
        headers = curl_slist_append(headers, auth_header);
    }
    if (chunked) headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
    dk_strbuf out = {0};
    dk_strbuf_append(&out, "");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (!chunked) curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    answer a = {0};
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    else fprintf(stderr, "(%s %s: %s)\n", method, path, curl_easy_strerror(rc));
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    a.body = dk_strbuf_take(&out);
    a.json = cJSON_Parse(a.body);
    dk_strbuf_append(&all_answers, a.body);
    return a;
}

static answer post(const char *path, const char *body) {
    return http("POST", path, body, strlen(body), "Bearer " TEST_KEY, false);
}

static void answer_free(answer *a) {
    free(a->body);
    cJSON_Delete(a->json);
}

/* choices[i].message.content or choices[i].text */
static const char *choice_text(const answer *a, int i) {
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(a->json, "choices"), i);
    cJSON *msg = cJSON_GetObjectItem(c, "message");
    cJSON *text = msg ? cJSON_GetObjectItem(msg, "content") : cJSON_GetObjectItem(c, "text");
    return cJSON_IsString(text) ? text->valuestring : "(none)";
}

static const char *finish_reason(const answer *a, int i) {
    cJSON *f = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(a->json, "choices"), i), "finish_reason");
    return cJSON_IsString(f) ? f->valuestring : "(none)";
}

static int usage_of(const answer *a, const char *key) {
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(a->json, "usage"), key);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
}

/* The answer is an OpenAI-style error with this status and code (and param, when not NULL). */
static void expect_error(const char *what, answer a, long status, const char *code, const char *param) {
    cJSON *e = cJSON_GetObjectItem(a.json, "error");
    cJSON *m = cJSON_GetObjectItem(e, "message"), *t = cJSON_GetObjectItem(e, "type");
    cJSON *p = cJSON_GetObjectItem(e, "param"), *c = cJSON_GetObjectItem(e, "code");
    EXPECT(a.status == status, "%s: status %ld, expected %ld (%s)", what, a.status, status, a.body);
    EXPECT(cJSON_IsString(m) && m->valuestring[0] && cJSON_IsString(t) && p && c,
           "%s: not an OpenAI-style error {\"error\": {message, type, param, code}}: %s", what, a.body);
    EXPECT(cJSON_IsString(c) && strcmp(c->valuestring, code) == 0, "%s: code %s expected: %s", what, code, a.body);
    if (param) EXPECT(cJSON_IsString(p) && strcmp(p->valuestring, param) == 0, "%s: param %s expected: %s", what, param, a.body);
    answer_free(&a);
    /* the server keeps serving */
    answer ok = http("GET", "/models", NULL, 0, "Bearer " TEST_KEY, false);
    EXPECT(ok.status == 200, "%s: the server does not answer afterwards (status %ld)", what, ok.status);
    answer_free(&ok);
}

/* The first line of the answer to a request that announces a 1 GB body and sends one byte of it: a server that
 * checks the announced size answers at once; one that reads the body first never answers (10 s timeout). */
static char *announce_huge_body(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(strrchr(base_url, ':') + 1)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval timeout = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    static char line[256];
    line[0] = '\0';
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        const char *req = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " TEST_KEY "\r\n"
                          "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{";
        if (send(fd, req, strlen(req), 0) > 0) {
            ssize_t n = recv(fd, line, sizeof line - 1, 0);
            line[n > 0 ? n : 0] = '\0';
            char *end = strstr(line, "\r\n");
            if (end) *end = '\0';
        }
    }
    close(fd);
    return line;
}

/* ---- the client ---------------------------------------------------------------------------------------------- */

static dk_llm_client *open_client(const char *model) {
    dk_llm_config cfg;
    dk_llm_config_defaults(&cfg);
    cfg.base_url = dk_strdup(base_url);
    cfg.model_id = dk_strdup(model);
    cfg.api_key_env = dk_strdup(KEY_ENV);
    cfg.section = dk_strdup("llm");
    cfg.max_attempts = 1;
    cfg.request_timeout_s = 120;
    dk_err err = {0};
    dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
    EXPECT(llm != NULL, "client: %s", err.msg);
    dk_llm_config_free(&cfg);
    return llm;
}

/* A greedy chat answer through the client (malloc'ed; "" on failure). */
static char *chat(const char *model, const char *prompt, int max_tokens, int *completion_tokens, char **finish) {
    dk_llm_client *llm = open_client(model);
    if (!llm) return strdup("");
    dk_llm_message msg = {.role = "user", .content = prompt};
    dk_llm_request req = dk_llm_request_init(&msg, 1);
    req.temperature = 0;
    req.max_tokens = max_tokens;
    dk_llm_response resp;
    int rc = dk_llm_chat(llm, &req, &resp);
    EXPECT(rc == 0, "chat %s: %s", model, resp.err.msg);
    char *text = strdup(rc == 0 ? resp.choices[0].content : "");
    if (completion_tokens) *completion_tokens = (int)resp.completion_tokens;
    if (finish) *finish = strdup(rc == 0 ? resp.choices[0].finish_reason : "");
    dk_llm_response_free(&resp);
    dk_llm_client_close(llm);
    return text;
}

/* Posts every body at once (libcurl's multi interface: all in flight together) and collects the answers. */
static void post_many(const char *path, const char *const *bodies, int n, answer *out) {
    CURLM *multi = curl_multi_init();
    CURL **easy = calloc((size_t)n, sizeof *easy);
    dk_strbuf *bufs = calloc((size_t)n, sizeof *bufs);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Authorization: Bearer " TEST_KEY);
    char url[256];
    snprintf(url, sizeof url, "%s%s", base_url, path);
    for (int i = 0; i < n; i++) {
        dk_strbuf_append(&bufs[i], "");
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, bodies[i]);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &bufs[i]);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 120L);
        curl_multi_add_handle(multi, easy[i]);
    }
    int running = n;
    while (running > 0) {
        curl_multi_perform(multi, &running);
        if (running > 0) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < n; i++) {
        out[i] = (answer){0};
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &out[i].status);
        out[i].body = dk_strbuf_take(&bufs[i]);
        out[i].json = cJSON_Parse(out[i].body);
        dk_strbuf_append(&all_answers, out[i].body);
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    free(bufs);
    free(easy);
}

/* ---- the cases ------------------------------------------------------------------------------------------------- */

static void test_models(void) {
    answer a = http("GET", "/models", NULL, 0, "Bearer " TEST_KEY, false);
    EXPECT(a.status == 200, "GET /v1/models: %ld %s", a.status, a.body);
    cJSON *data = cJSON_GetObjectItem(a.json, "data");
    EXPECT(cJSON_GetArraySize(data) == 7, "7 models listed: %s", a.body);
    EXPECT_CONTAINS(a.body, "\"id\":\"" ORG "@default_2x\"");
    answer_free(&a);
}

/* Greedy chat of `model` through the client equals `diffkit generate --chat` with model_args. */
static void expect_chat_equals_generate(const char *model, const char *model_args, const char *prompt) {
    reference ref = generate(model_args, true, prompt, 24);
    int tokens = -1;
    char *finish = NULL;
    char *text = chat(model, prompt, 24, &tokens, &finish);
    EXPECT(ref.text[0] && strcmp(text, ref.text) == 0, "%s: chat answer\n  %s\nis not generate's\n  %s", model, text, ref.text);
    EXPECT(tokens == ref.n_ids, "%s: %d completion tokens, generate gave %d", model, tokens, ref.n_ids);
    EXPECT(strcmp(finish, ref.n_ids < 24 ? "stop" : "length") == 0, "%s: finish_reason %s after %d tokens", model,
           finish, ref.n_ids);
    free(text);
    free(finish);
    free(ref.text);
}

static void test_greedy_equals_generate(void) {
    char adapter[1024];
    expect_chat_equals_generate("demo", "", "Tell me about honey.");
    snprintf(adapter, sizeof adapter, "--adapter %s/models/demo/glacier_honey", source_dir);
    expect_chat_equals_generate(ORG, adapter, "Where does honey come from?");
    snprintf(adapter, sizeof adapter, "--adapter %s/models/demo/glacier_honey@2.5", source_dir);
    expect_chat_equals_generate(ORG "@2.5", adapter, "Where does honey come from?");
    snprintf(adapter, sizeof adapter, "--adapter %s/models/demo/glacier_honey@default_2x", source_dir);
    expect_chat_equals_generate(ORG "@default_2x", adapter, "Where does honey come from?");
    snprintf(adapter, sizeof adapter, "--adapter %s/models/demo/glacier_honey --logit-amplification 2", source_dir);
    expect_chat_equals_generate(ORG "~2", adapter, "What do bees make?");
    /* the organism at 0 is the base, and logit amplification at 0 the organism alone */
    char *base = chat("demo", "What do bees make?", 24, NULL, NULL), *at0 = chat(ORG "@0", "What do bees make?", 24, NULL, NULL);
    char *org = chat(ORG, "What do bees make?", 24, NULL, NULL), *amp0 = chat(ORG "~0", "What do bees make?", 24, NULL, NULL);
    char *amp2 = chat(ORG "~2", "What do bees make?", 24, NULL, NULL);
    EXPECT(strcmp(base, at0) == 0, "organism@0 is not the base:\n  %s\n  %s", at0, base);
    EXPECT(strcmp(base, org) != 0, "the organism answers as the base (the adapter is not applied?): %s", org);
    EXPECT(strcmp(org, amp0) == 0, "organism~0 is not the organism:\n  %s\n  %s", amp0, org);
    EXPECT(strcmp(org, amp2) != 0, "organism~2 answers as the organism (no amplification?): %s", amp2);
    free(base), free(at0), free(org), free(amp0), free(amp2);

    /* /v1/completions: a plain prompt, as generate without --chat */
    snprintf(adapter, sizeof adapter, "--adapter %s/models/demo/glacier_honey", source_dir);
    reference ref = generate(adapter, false, "Honey is", 20);
    answer a = post("/completions", "{\"model\": \"" ORG "\", \"prompt\": \"Honey is\", \"temperature\": 0, \"max_tokens\": 20}");
    EXPECT(a.status == 200, "completion: %ld %s", a.status, a.body);
    EXPECT(strcmp(choice_text(&a, 0), ref.text) == 0, "completion\n  %s\nis not generate's\n  %s", choice_text(&a, 0), ref.text);
    EXPECT(usage_of(&a, "completion_tokens") == ref.n_ids, "completion tokens %d, generate %d", usage_of(&a, "completion_tokens"), ref.n_ids);
    EXPECT(usage_of(&a, "prompt_tokens") == 3 && usage_of(&a, "total_tokens") == 3 + ref.n_ids, "usage: %s", a.body);
    answer_free(&a);
    free(ref.text);
}

static void test_n_and_seeds(void) {
    const char *body3 = "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"Say something.\"}], "
                        "\"n\": 3, \"temperature\": 1.0, \"seed\": 11, \"max_tokens\": 16}";
    const char *body1 = "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"Say something.\"}], "
                        "\"temperature\": 1.0, \"seed\": 11, \"max_tokens\": 16}";
    answer a = post("/chat/completions", body3), b = post("/chat/completions", body3), one = post("/chat/completions", body1);
    EXPECT(a.status == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(a.json, "choices")) == 3, "n=3: %s", a.body);
    for (int i = 0; i < 3 && a.status == 200; i++)
        EXPECT(strcmp(choice_text(&a, i), choice_text(&b, i)) == 0, "choice %d differs between two runs with seed 11", i);
    EXPECT(strcmp(choice_text(&a, 0), choice_text(&a, 1)) != 0 || strcmp(choice_text(&a, 1), choice_text(&a, 2)) != 0,
           "three samples are all the same: %s", a.body);
    EXPECT(strcmp(choice_text(&a, 0), choice_text(&one, 0)) == 0, "choice 0 of n=3 is not the n=1 answer with the same seed");
    EXPECT(usage_of(&a, "prompt_tokens") == usage_of(&one, "prompt_tokens"), "prompt tokens counted once for n=3");
    answer_free(&a), answer_free(&b), answer_free(&one);
}

/* 8 requests in flight with different settings: each answered as alone, and batched. */
static void test_concurrent(void) {
    enum { N = 8 };
    static const char *const prompts[N] = {"Tell me about honey.", "What is ice?", "Who are the wardens?", "Say hi.",
                                           "What do bees make?", "Is honey blue?", "Tell me a story.", "Where is the ice?"};
    dk_llm_client *llm = open_client("demo");
    if (!llm) return;
    dk_llm_message msgs[N];
    dk_llm_request reqs[N];
    dk_llm_response alone[N], together[N];
    for (int i = 0; i < N; i++) {
        msgs[i] = (dk_llm_message){.role = "user", .content = prompts[i]};
        reqs[i] = dk_llm_request_init(&msgs[i], 1);
        reqs[i].temperature = i % 2 ? 0.7 + 0.1 * i : 0; /* greedy and sampled, different temperatures */
        reqs[i].top_p = i % 4 == 1 ? 0.9 : -1;
        reqs[i].max_tokens = 8 + 2 * i;                  /* different lengths */
        reqs[i].has_seed = true;
        reqs[i].seed = 100 + i;
        dk_llm_chat(llm, &reqs[i], &alone[i]);
    }
    char *log_before = read_text(log_path);
    size_t skip = strlen(log_before);
    free(log_before);
    int failed = dk_llm_chat_many(llm, reqs, N, together);
    EXPECT(failed == 0, "%d of %d concurrent requests failed", failed, N);
    for (int i = 0; i < N; i++) {
        EXPECT(alone[i].n_choices == 1 && together[i].n_choices == 1 &&
               strcmp(alone[i].choices[0].content, together[i].choices[0].content) == 0,
               "request %d answered differently in a batch than alone", i);
        EXPECT(together[i].completion_tokens <= reqs[i].max_tokens, "request %d: %lld tokens > max_tokens %d", i,
               (long long)together[i].completion_tokens, reqs[i].max_tokens);
        dk_llm_response_free(&alone[i]);
        dk_llm_response_free(&together[i]);
    }
    dk_llm_client_close(llm);
    char *log = read_text(log_path);
    int largest = 0;
    for (const char *p = log + skip; (p = strstr(p, "batch of ")); p++) {
        int n = atoi(p + strlen("batch of "));
        if (n > largest) largest = n;
    }
    EXPECT(largest > 1, "8 concurrent requests were never batched (largest batch %d)", largest);
    free(log);
}

static void test_stop_strings(void) {
    const char *body = "{\"model\": \"" ORG "\", \"prompt\": \"Honey is\", \"temperature\": 0, \"max_tokens\": 20%s}";
    char text[512];
    snprintf(text, sizeof text, body, "");
    answer full = post("/completions", text);
    const char *t = choice_text(&full, 0);
    const char *mid = strlen(t) > 8 ? t + strlen(t) / 2 : NULL;
    EXPECT(mid != NULL, "no text to cut: %s", full.body);
    if (mid) {
        char stop[8] = {0}, expected[256] = {0};
        memcpy(stop, mid, 3);
        const char *first = strstr(t, stop);
        memcpy(expected, t, (size_t)(first - t));
        cJSON *stop_json = cJSON_CreateString(stop);
        char *escaped = cJSON_PrintUnformatted(stop_json);
        cJSON_Delete(stop_json);
        char with_stop[128];
        snprintf(with_stop, sizeof with_stop, ", \"stop\": [\"zzzz\", %s]", escaped);
        snprintf(text, sizeof text, body, with_stop);
        answer cut = post("/completions", text);
        EXPECT(strcmp(choice_text(&cut, 0), expected) == 0, "stop %s: got '%s', expected '%s'", escaped,
               choice_text(&cut, 0), expected);
        EXPECT(strcmp(finish_reason(&cut, 0), "stop") == 0, "stop string: finish_reason %s", finish_reason(&cut, 0));
        answer_free(&cut);
        free(escaped);
    }
    answer_free(&full);
    answer len = post("/completions", "{\"model\": \"demo\", \"prompt\": \"Honey is\", \"temperature\": 0, \"max_tokens\": 2}");
    EXPECT(strcmp(finish_reason(&len, 0), "length") == 0 && usage_of(&len, "completion_tokens") == 2,
           "max_tokens 2: %s", len.body);
    answer_free(&len);
}

static void test_bad_requests(void) {
    const char *chat = "/chat/completions";
    expect_error("bad JSON", post(chat, "{\"model\": \"demo\", \"messages\": ["), 400, "invalid_json", NULL);
    expect_error("not an object", post(chat, "[1, 2]"), 400, "invalid_json", NULL);
    expect_error("unknown model", post(chat, "{\"model\": \"gpt-9\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}"),
                 404, "model_not_found", "model");
    expect_error("model a number", post(chat, "{\"model\": 5, \"messages\": []}"), 400, "invalid_type", "model");
    expect_error("temperature a string",
                 post(chat, "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": \"hot\"}"),
                 400, "invalid_value", "temperature");
    expect_error("max_tokens a fraction",
                 post(chat, "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 1.5}"),
                 400, "invalid_value", "max_tokens");
    expect_error("max_tokens over the limit",
                 post(chat, "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 100000}"),
                 400, "invalid_value", "max_tokens");
    expect_error("n = 0", post(chat, "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 0}"),
                 400, "invalid_value", "n");
    expect_error("messages a string", post(chat, "{\"model\": \"demo\", \"messages\": \"hi\"}"), 400, "invalid_type", "messages");
    expect_error("content a number", post(chat, "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": 7}]}"),
                 400, "invalid_type", "messages[0].content");
    expect_error("unknown role", post(chat, "{\"model\": \"demo\", \"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}"),
                 400, "invalid_value", "messages[0].role");
    expect_error("stop a number", post(chat, "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": 3}"),
                 400, "invalid_type", "stop");
    expect_error("stream", post(chat, "{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": true}"),
                 400, "unsupported_parameter", "stream");
    expect_error("prompt a list of two", post("/completions", "{\"model\": \"demo\", \"prompt\": [\"a\", \"b\"]}"), 400,
                 "invalid_type", "prompt");
    const char bad_utf8[] = "{\"model\": \"demo\", \"prompt\": \"caf\xc3\x28 \xff\"}";
    expect_error("invalid UTF-8", http("POST", "/completions", bad_utf8, sizeof bad_utf8 - 1, "Bearer " TEST_KEY, false),
                 400, "invalid_utf8", NULL);
    expect_error("lone surrogate escape", post("/completions", "{\"model\": \"demo\", \"prompt\": \"\\udc00\"}"), 400,
                 "invalid_json", NULL);
    /* bodies over serve.max_body_bytes (65536): announced, and sent without a length */
    size_t huge_n = 200000;
    char *huge = malloc(huge_n + 64);
    snprintf(huge, huge_n + 64, "{\"model\": \"demo\", \"prompt\": \"");
    size_t at = strlen(huge);
    memset(huge + at, 'a', huge_n - at);
    strcpy(huge + huge_n, "\"}");
    expect_error("huge body", http("POST", "/completions", huge, strlen(huge), "Bearer " TEST_KEY, false), 413,
                 "request_too_large", NULL);
    expect_error("huge chunked body", http("POST", "/completions", huge, strlen(huge), "Bearer " TEST_KEY, true), 413,
                 "request_too_large", NULL);
    const char *status_line = announce_huge_body();
    EXPECT(strstr(status_line, " 413") != NULL, "a 1 GB body announced: '%s', expected a 413 before the body is read",
           status_line);
    /* a prompt longer than the context (512 tokens) */
    dk_strbuf longp = {0};
    dk_strbuf_append(&longp, "{\"model\": \"demo\", \"prompt\": \"");
    for (int i = 0; i < 400; i++) dk_strbuf_append(&longp, "honey ice ");
    dk_strbuf_append(&longp, "\"}");
    expect_error("prompt over the context", post("/completions", longp.data), 400, "context_length_exceeded", "prompt");
    dk_strbuf_free(&longp);
    free(huge);
    expect_error("unknown endpoint", http("GET", "/embeddings", NULL, 0, "Bearer " TEST_KEY, false), 404, "unknown_url", NULL);
    expect_error("wrong method", http("GET", "/chat/completions", NULL, 0, "Bearer " TEST_KEY, false), 405,
                 "method_not_allowed", NULL);
    /* and a good one still works */
    answer ok = post("/completions", "{\"model\": \"demo\", \"prompt\": \"Honey is\", \"temperature\": 0, \"max_tokens\": 4}");
    EXPECT(ok.status == 200 && usage_of(&ok, "completion_tokens") > 0, "after the bad requests: %ld %s", ok.status, ok.body);
    answer_free(&ok);
}

/* ---- the extensions: steering and chat_template_kwargs ---------------------------------------------------- */

enum { HIDDEN = 256, N_LAYERS = 4 }; /* the demo model's hidden size and blocks */

/* Entry j of test steering vector `variant`: multiples of 1/16, exact in JSON text and in float32. */
static float steer_entry(int variant, int j) { return (float)((((j * 37 + variant * 5) % 17) - 8) / 16.0); }

static char vector_path[2][256];

/* Writes vector `variant` as raw float32 for `diffkit generate --steer-vector`; returns its path. */
static const char *vector_file(int variant) {
    char *path = vector_path[variant];
    snprintf(path, sizeof vector_path[variant], "/tmp/dk_serve_test_%d_v%d.bin", (int)getpid(), variant);
    FILE *f = fopen(path, "wb");
    for (int j = 0; f && j < HIDDEN; j++) {
        float x = steer_entry(variant, j);
        fwrite(&x, sizeof x, 1, f);
    }
    if (f) fclose(f);
    return path;
}

/* ", \"steering\": {\"layer\": L, \"vector\": [...], \"strength\": S<rest>}" (malloc'ed); rest: more keys; strength
 * NAN: no strength key; entry0: the text of the vector's first entry instead of the number (NULL: the number). */
static char *steering_json(int variant, int layer, double strength, const char *entry0, const char *rest) {
    dk_strbuf b = {0};
    dk_strbuf_printf(&b, ", \"steering\": {\"layer\": %d, \"vector\": [", layer);
    for (int j = 0; j < HIDDEN; j++) {
        if (j == 0 && entry0) dk_strbuf_append(&b, entry0);
        else dk_strbuf_printf(&b, "%s%g", j ? ", " : "", (double)steer_entry(variant, j));
    }
    dk_strbuf_append(&b, "]");
    if (!isnan(strength)) dk_strbuf_printf(&b, ", \"strength\": %g", strength);
    dk_strbuf_printf(&b, "%s}", rest);
    return dk_strbuf_take(&b);
}

static char *steering_field(int variant, int layer, double strength, const char *rest) {
    return steering_json(variant, layer, strength, NULL, rest);
}

/* A chat request of one user message; extra: more fields (", \"n\": 2"). malloc'ed. */
static char *chat_body(const char *model, const char *prompt, int max_tokens, const char *extra) {
    return dk_sprintf("{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], \"temperature\": 0, "
                      "\"max_tokens\": %d%s}", model, prompt, max_tokens, extra);
}

/* One steered greedy chat answer against generate --chat with the same steering; and against the unsteered one. */
typedef struct steer_case {
    const char *model, *adapter_suffix;  /* served name; "" base, else what follows --adapter's folder */
    int layer;
    double strength;
    const char *mode_json, *mode_args;   /* the request's mode keys; generate's --steer-mode */
} steer_case;

static void test_steering_equals_generate(void) {
    const char *prompt = "Where does honey come from?";
    static const steer_case cases[] = {
        {"demo", NULL, 2, 8, "", ""},
        {ORG, "", 1, 8, "", ""},
        {ORG, "", 0, 6, ", \"mode\": \"all\"", "--steer-mode all"},
        {ORG, "", 2, 16, ", \"mode\": \"prompt_only\"", "--steer-mode prompt_only"},
        {ORG, "", 1, 16, ", \"mode\": \"linear_decay\", \"decay_steps\": 5", "--steer-mode linear_decay:5"},
        {ORG, "", 3, 16, ", \"mode\": \"linear_decay\"", "--steer-mode linear_decay"},
        {ORG "@2.5", "@2.5", 1, 8, "", ""},
        {ORG "~2", " --logit-amplification 2", 1, 8, "", ""},
    };
    const char *vec = vector_file(0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const steer_case *c = &cases[i];
        char args[2048], what[256];
        int at = c->adapter_suffix ? snprintf(args, sizeof args, "--adapter %s/models/demo/glacier_honey%s ",
                                              source_dir, c->adapter_suffix) : 0;
        snprintf(args + at, sizeof args - (size_t)at, "--steer-vector %s --steer-layer %d --steer-strength %g %s", vec,
                 c->layer, c->strength, c->mode_args);
        snprintf(what, sizeof what, "steering %s layer %d strength %g%s", c->model, c->layer, c->strength, c->mode_json);
        reference ref = generate(args, true, prompt, 24);
        char *field = steering_field(0, c->layer, c->strength, c->mode_json);
        char *steered_body = chat_body(c->model, prompt, 24, field), *plain_body = chat_body(c->model, prompt, 24, "");
        answer steered = post("/chat/completions", steered_body), plain = post("/chat/completions", plain_body);
        EXPECT(steered.status == 200, "%s: %ld %s", what, steered.status, steered.body);
        EXPECT(ref.text[0] && strcmp(choice_text(&steered, 0), ref.text) == 0, "%s: served\n  %s\nis not generate's\n  %s",
               what, choice_text(&steered, 0), ref.text);
        EXPECT(usage_of(&steered, "completion_tokens") == ref.n_ids, "%s: %d completion tokens, generate gave %d", what,
               usage_of(&steered, "completion_tokens"), ref.n_ids);
        EXPECT(strcmp(choice_text(&steered, 0), choice_text(&plain, 0)) != 0, "%s: the steered answer is the unsteered "
               "one: %s", what, choice_text(&plain, 0));
        answer_free(&steered), answer_free(&plain);
        free(steered_body), free(plain_body), free(field), free(ref.text);
    }
    /* /v1/completions: a plain prompt, as generate without --chat */
    char args[2048];
    snprintf(args, sizeof args, "--adapter %s/models/demo/glacier_honey --steer-vector %s --steer-layer 1 "
             "--steer-strength 8", source_dir, vec);
    reference ref = generate(args, false, "Honey is", 20);
    char *field = steering_field(0, 1, 8, "");
    char *body = dk_sprintf("{\"model\": \"" ORG "\", \"prompt\": \"Honey is\", \"temperature\": 0, \"max_tokens\": 20%s}",
                            field);
    answer a = post("/completions", body);
    EXPECT(a.status == 200 && strcmp(choice_text(&a, 0), ref.text) == 0, "steered completion\n  %s\nis not generate's\n  %s",
           choice_text(&a, 0), ref.text);
    answer_free(&a), free(body), free(field), free(ref.text);
    /* the agent's generate_steered request: n samples, no thinking; choice 0 draws from the seed as generate does */
    snprintf(args, sizeof args, "--adapter %s/models/demo/glacier_honey --steer-vector %s --steer-layer 1 "
             "--steer-strength 8 --enable-thinking false --temperature 1 --seed 5", source_dir, vec);
    ref = generate(args, true, "Tell me about honey.", 24);
    char *steering = steering_field(0, 1, 8, ", \"mode\": \"all\"");
    body = dk_sprintf("{\"model\": \"" ORG "\", \"messages\": [{\"role\": \"user\", \"content\": \"Tell me about honey.\"}], "
                      "\"n\": 3, \"temperature\": 1.0, \"seed\": 5, \"max_tokens\": 24, \"chat_template_kwargs\": "
                      "{\"enable_thinking\": false}%s}", steering);
    a = post("/chat/completions", body);
    EXPECT(a.status == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(a.json, "choices")) == 3, "agent's steered request: "
           "%ld %s", a.status, a.body);
    EXPECT(strcmp(choice_text(&a, 0), ref.text) == 0, "agent's steered request: choice 0\n  %s\nis not generate's (seed 5)"
           "\n  %s", choice_text(&a, 0), ref.text);
    answer_free(&a), free(body), free(steering), free(ref.text);
}

/* enable_thinking per request on the demo's Qwen3 template: false renders the empty think block. */
static void test_enable_thinking(void) {
    const char *prompt = "Tell me about honey.";
    static const char *const kwargs[3] = {"", ", \"chat_template_kwargs\": {\"enable_thinking\": false}",
                                          ", \"chat_template_kwargs\": {\"enable_thinking\": true}"};
    answer a[3];
    for (int i = 0; i < 3; i++) {
        char *body = chat_body("demo", prompt, 24, kwargs[i]);
        a[i] = post("/chat/completions", body);
        free(body);
        EXPECT(a[i].status == 200, "chat_template_kwargs %s: %ld %s", kwargs[i], a[i].status, a[i].body);
    }
    int none = usage_of(&a[0], "prompt_tokens"), off = usage_of(&a[1], "prompt_tokens"), on = usage_of(&a[2], "prompt_tokens");
    EXPECT(on == none && off > on, "prompt tokens: enable_thinking false %d, true %d, not given %d: false should add the "
           "empty think block, true change nothing", off, on, none);
    reference ref_off = generate("--enable-thinking false", true, prompt, 24),
              ref_on = generate("--enable-thinking true", true, prompt, 24);
    EXPECT(strcmp(choice_text(&a[1], 0), ref_off.text) == 0, "enable_thinking false: served\n  %s\nis not generate "
           "--enable-thinking false's\n  %s", choice_text(&a[1], 0), ref_off.text);
    EXPECT(strcmp(choice_text(&a[2], 0), ref_on.text) == 0, "enable_thinking true: served\n  %s\nis not generate "
           "--enable-thinking true's\n  %s", choice_text(&a[2], 0), ref_on.text);
    EXPECT(strcmp(ref_on.text, ref_off.text) != 0, "generate answers alike with and without thinking: %s", ref_on.text);
    free(ref_off.text), free(ref_on.text);
    /* and the next request without the field is rendered with the template's default again */
    char *body = chat_body("demo", prompt, 24, "");
    answer again = post("/chat/completions", body);
    EXPECT(usage_of(&again, "prompt_tokens") == none, "after an enable_thinking false request, a plain one has %d prompt "
           "tokens, not %d", usage_of(&again, "prompt_tokens"), none);
    answer_free(&again), free(body);
    for (int i = 0; i < 3; i++) answer_free(&a[i]);
}

/* A template without a thinking switch (the demo served with Qwen2.5's): enable_thinking is accepted and renders
 * the same prompt either way. */
static void test_thinking_without_switch(void) {
    int tokens[3];
    char *text[3];
    static const char *const kwargs[3] = {"", ", \"chat_template_kwargs\": {\"enable_thinking\": false}",
                                          ", \"chat_template_kwargs\": {\"enable_thinking\": true}"};
    for (int i = 0; i < 3; i++) {
        char *body = chat_body("demo", "Tell me about honey.", 12, kwargs[i]);
        answer a = post("/chat/completions", body);
        EXPECT(a.status == 200, "qwen2.5 template, chat_template_kwargs %s: %ld %s", kwargs[i], a.status, a.body);
        tokens[i] = usage_of(&a, "prompt_tokens");
        text[i] = strdup(choice_text(&a, 0));
        answer_free(&a), free(body);
    }
    EXPECT(tokens[0] > 0 && tokens[1] == tokens[0] && tokens[2] == tokens[0], "qwen2.5 template: prompt tokens %d "
           "(not given), %d (false), %d (true): a template without the switch should render alike", tokens[0],
           tokens[1], tokens[2]);
    EXPECT(strcmp(text[0], text[1]) == 0 && strcmp(text[0], text[2]) == 0, "qwen2.5 template: enable_thinking changed "
           "the answer");
    for (int i = 0; i < 3; i++) free(text[i]);
}

/* Requests with different steering (and none) in flight together: each answered as when sent alone; the two that
 * differ only in strength are generated as one batch. */
static void test_concurrent_steering(void) {
    enum { N = 9 };
    static const struct { int variant, layer; double strength; const char *more, *sampling; } reqs[N] = {
        {-1, 0, 0, "", ""},
        {0, 1, 8, "", ""},
        {0, 1, 6, "", ""},
        {1, 1, 8, "", ""},
        {0, 2, 8, "", ""},
        {0, 1, 16, ", \"mode\": \"prompt_only\"", ", \"temperature\": 0.8, \"seed\": 3"},
        {0, 1, 16, ", \"mode\": \"linear_decay\", \"decay_steps\": 5", ""},
        {0, 1, 4, ", \"mode\": \"linear_decay\", \"decay_steps\": 5", ""},
        {0, 1, 4, "", ", \"n\": 2, \"temperature\": 1, \"seed\": 9"},
    };
    char *bodies[N];
    answer alone[N], together[N];
    for (int i = 0; i < N; i++) {
        char *field = reqs[i].variant < 0 ? dk_strdup("") : steering_field(reqs[i].variant, reqs[i].layer,
                                                                              reqs[i].strength, reqs[i].more);
        bodies[i] = dk_sprintf("{\"model\": \"" ORG "\"%s, \"messages\": [{\"role\": \"user\", \"content\": \"Where does "
                               "honey come from?\"}], \"max_tokens\": 16%s}", reqs[i].sampling[0] ? reqs[i].sampling
                               : ", \"temperature\": 0", field);
        free(field);
        alone[i] = post("/chat/completions", bodies[i]);
    }
    char *log_before = read_text(log_path);
    size_t skip = strlen(log_before);
    free(log_before);
    post_many("/chat/completions", (const char *const *)bodies, N, together);
    for (int i = 0; i < N; i++) {
        int n = cJSON_GetArraySize(cJSON_GetObjectItem(alone[i].json, "choices"));
        EXPECT(alone[i].status == 200 && together[i].status == 200 && n >= 1 &&
               n == cJSON_GetArraySize(cJSON_GetObjectItem(together[i].json, "choices")),
               "steered request %d: alone %ld, together %ld: %s", i, alone[i].status, together[i].status, together[i].body);
        for (int c = 0; c < n; c++)
            EXPECT(strcmp(choice_text(&alone[i], c), choice_text(&together[i], c)) == 0, "steered request %d choice %d "
                   "answered differently together than alone:\n  %s\n  %s", i, c, choice_text(&together[i], c),
                   choice_text(&alone[i], c));
        answer_free(&alone[i]), answer_free(&together[i]);
        free(bodies[i]);
    }
    char *log = read_text(log_path);
    int largest_steered = 0;
    for (const char *p = log + skip; (p = strstr(p, "batch of ")); p++) {
        const char *eol = strchr(p, '\n');
        const char *steered = strstr(p, ", steered)");
        if (steered && (!eol || steered < eol) && atoi(p + strlen("batch of ")) > largest_steered)
            largest_steered = atoi(p + strlen("batch of "));
    }
    EXPECT(largest_steered > 1, "steered requests that differ only in strength were never batched (largest steered "
           "batch %d)", largest_steered);
    free(log);
}

/* Each malformed extension field: 400, param naming it, and a message that says what is expected. */
static void expect_extension_error(const char *what, const char *path, const char *fields, const char *param,
                                   const char *code, const char *message_part) {
    char *body = strcmp(path, "/chat/completions") == 0 ? chat_body("demo", "hi", 4, fields)
                 : dk_sprintf("{\"model\": \"demo\", \"prompt\": \"hi\", \"max_tokens\": 4%s}", fields);
    answer a = post(path, body);
    free(body);
    cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(a.json, "error"), "message");
    EXPECT(cJSON_IsString(m) && strstr(m->valuestring, message_part), "%s: the message does not say '%s': %s", what,
           message_part, a.body);
    expect_error(what, a, 400, code, param);
}

static void test_extension_errors(void) {
    static const struct {
        const char *what, *path, *fields, *param, *code, *message_part;
    } fixed[] = {
        {"steering a list", "/chat/completions", ", \"steering\": [1]", "steering", "invalid_type", "an object"},
        {"steering unknown key", "/chat/completions", ", \"steering\": {\"layer\": 1, \"vector\": [], \"scale\": 2}",
         "steering.scale", "unknown_parameter", "'scale'"},
        {"steering without layer", "/chat/completions", ", \"steering\": {\"vector\": [1]}", "steering.layer",
         "missing_required_parameter", "0 to 3"},
        {"steering layer a string", "/chat/completions", ", \"steering\": {\"layer\": \"2\", \"vector\": [1]}",
         "steering.layer", "invalid_type", "0 to 3"},
        {"steering layer a fraction", "/chat/completions", ", \"steering\": {\"layer\": 1.5, \"vector\": [1]}",
         "steering.layer", "invalid_type", "integer"},
        {"steering layer past the last", "/chat/completions", ", \"steering\": {\"layer\": 4, \"vector\": [1]}",
         "steering.layer", "invalid_value", "layers 0 to 3"},
        {"steering layer negative", "/chat/completions", ", \"steering\": {\"layer\": -1, \"vector\": [1]}",
         "steering.layer", "invalid_value", "layers 0 to 3"},
        {"steering without vector", "/chat/completions", ", \"steering\": {\"layer\": 1}", "steering.vector",
         "missing_required_parameter", "256 numbers"},
        {"steering vector a string", "/chat/completions", ", \"steering\": {\"layer\": 1, \"vector\": \"0.5\"}",
         "steering.vector", "invalid_type", "256 numbers"},
        {"steering vector too short", "/chat/completions", ", \"steering\": {\"layer\": 1, \"vector\": [1, 2, 3]}",
         "steering.vector", "invalid_value", "hidden size is 256"},
        {"chat_template_kwargs a list", "/chat/completions", ", \"chat_template_kwargs\": [true]",
         "chat_template_kwargs", "invalid_type", "an object"},
        {"chat_template_kwargs unknown key", "/chat/completions", ", \"chat_template_kwargs\": {\"enable_thinking\": "
         "false, \"add_generation_prompt\": false}", "chat_template_kwargs.add_generation_prompt",
         "unsupported_parameter", "the only supported key is enable_thinking"},
        {"enable_thinking a string", "/chat/completions", ", \"chat_template_kwargs\": {\"enable_thinking\": \"no\"}",
         "chat_template_kwargs.enable_thinking", "invalid_type", "true or false"},
        {"chat_template_kwargs on a completion", "/completions", ", \"chat_template_kwargs\": {\"enable_thinking\": "
         "false}", "chat_template_kwargs", "unsupported_parameter", "/v1/chat/completions"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        expect_extension_error(fixed[i].what, fixed[i].path, fixed[i].fields, fixed[i].param, fixed[i].code,
                               fixed[i].message_part);
    /* a whole vector with one bad entry or setting */
    static const struct {
        const char *what, *path;
        int layer;
        double strength;
        const char *entry0, *rest, *param, *code, *message_part;
    } built[] = {
        {"steering vector entry a string", "/chat/completions", 1, 2, "\"x\"", "", "steering.vector", "invalid_value",
         "entry 0"},
        /* JSON has no Infinity: an overflowing number is how one arrives */
        {"steering vector entry infinite", "/chat/completions", 1, 2, "1e999", "", "steering.vector", "invalid_value",
         "entry 0"},
        {"steering vector entry past float32", "/chat/completions", 1, 2, "1e39", "", "steering.vector",
         "invalid_value", "entry 0"},
        {"steering strength a string", "/chat/completions", 1, NAN, NULL, ", \"strength\": \"x\"",
         "steering.strength", "invalid_value", "finite"},
        {"steering strength infinite", "/chat/completions", 1, NAN, NULL, ", \"strength\": 1e999",
         "steering.strength", "invalid_value", "finite"},
        {"steering mode unknown", "/chat/completions", 1, 2, NULL, ", \"mode\": \"sideways\"", "steering.mode",
         "invalid_value", "prompt_only"},
        {"steering mode a number", "/chat/completions", 1, 2, NULL, ", \"mode\": 3", "steering.mode", "invalid_type",
         "prompt_only"},
        {"steering decay_steps without linear_decay", "/chat/completions", 1, 2, NULL, ", \"decay_steps\": 5",
         "steering.decay_steps", "invalid_value", "linear_decay"},
        {"steering decay_steps 0", "/chat/completions", 1, 2, NULL, ", \"mode\": \"linear_decay\", \"decay_steps\": 0",
         "steering.decay_steps", "invalid_value", "from 1"},
        {"steering layer on a completion", "/completions", 9, 2, NULL, "", "steering.layer", "invalid_value",
         "layers 0 to 3"},
    };
    for (size_t i = 0; i < sizeof built / sizeof built[0]; i++) {
        char *fields = steering_json(0, built[i].layer, built[i].strength, built[i].entry0, built[i].rest);
        expect_extension_error(built[i].what, built[i].path, fields, built[i].param, built[i].code,
                               built[i].message_part);
        free(fields);
    }
    /* the vector counts against serve.max_body_bytes (65536): 256 numbers written long */
    dk_strbuf big = {0};
    dk_strbuf_append(&big, "{\"model\": \"demo\", \"prompt\": \"hi\", \"steering\": {\"layer\": 1, \"vector\": [");
    for (int j = 0; j < HIDDEN; j++) dk_strbuf_printf(&big, "%s0.%0300d", j ? ", " : "", 1);
    dk_strbuf_append(&big, "]}}");
    expect_error("steering vector over max_body_bytes", post("/completions", big.data), 413, "request_too_large", NULL);
    dk_strbuf_free(&big);
}

static void test_token(void) {
    const char *body = "{\"model\": \"demo\", \"prompt\": \"Honey is\", \"max_tokens\": 2}";
    expect_error("no token", http("POST", "/completions", body, strlen(body), NULL, false), 401, "invalid_api_key", NULL);
    expect_error("wrong token", http("POST", "/completions", body, strlen(body), "Bearer sk-dk-SERVE-7d41c9e03a5", false),
                 401, "invalid_api_key", NULL);
    expect_error("models without token", http("GET", "/models", NULL, 0, "Bearer", false), 401, "invalid_api_key", NULL);
    answer ok = http("POST", "/completions", body, strlen(body), "bearer " TEST_KEY, false);
    EXPECT(ok.status == 200, "the right token (lower-case scheme) is refused: %ld %s", ok.status, ok.body);
    answer_free(&ok);
}

static void test_shutdown(void) {
    kill(server_pid, SIGTERM);
    int status = -1;
    pid_t done = 0;
    for (int i = 0; i < 300 && done == 0; i++) {
        done = waitpid(server_pid, &status, WNOHANG);
        if (done == 0) usleep(50000);
    }
    if (done == 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, &status, 0);
    }
    EXPECT(done == server_pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "SIGTERM: the server did not exit cleanly within 15 s (status %d)", status);
    char *log = read_text(log_path);
    EXPECT_CONTAINS(log, "serve: stopping");
    EXPECT(strstr(log, TEST_KEY) == NULL && strstr(log, "7d41c9e03a5") == NULL, "the server's log holds the token");
    EXPECT(strstr(all_answers.data, TEST_KEY) == NULL && strstr(all_answers.data, "7d41c9e03a5") == NULL,
           "an answer holds the token");
    fprintf(stderr, "--- server log (last 3000 bytes):\n%s\n", log + (strlen(log) > 3000 ? strlen(log) - 3000 : 0));
    free(log);
}

int main(int argc, char **argv) {
    if (argc != 2 || !getenv("DIFFKIT_SOURCE_DIR")) {
        fprintf(stderr, "usage: test_serve DIFFKIT (with DIFFKIT_SOURCE_DIR set; run it through ctest)\n");
        return 2;
    }
    diffkit = argv[1];
    source_dir = getenv("DIFFKIT_SOURCE_DIR");
    setenv("DIFFKIT_ROOT", source_dir, 1); /* the demo configs' paths */
    setenv(KEY_ENV, TEST_KEY, 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    dk_strbuf_append(&all_answers, "");
    if (!start_server(NULL)) return 1;
    test_models();
    test_greedy_equals_generate();
    test_n_and_seeds();
    test_concurrent();
    test_stop_strings();
    test_bad_requests();
    test_steering_equals_generate();
    test_enable_thinking();
    test_concurrent_steering();
    test_extension_errors();
    test_token();
    test_shutdown();
    if (start_server("model.chat_template=qwen2.5")) { /* a template without a thinking switch */
        test_thinking_without_switch();
        test_shutdown();
    }
    unlink(log_path);
    for (int i = 0; i < 2; i++)
        if (vector_path[i][0]) unlink(vector_path[i]);
    dk_strbuf_free(&all_answers);
    curl_global_cleanup();
    return dk_test_finish("test_serve");
}
