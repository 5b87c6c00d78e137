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
 *   - the bearer token is required, and never appears in the server's log or answers;
 *   - SIGTERM ends the server cleanly (exit 0).
 *
 *   test_serve <path of diffkit>       (DIFFKIT_SOURCE_DIR: the repository, for configs/ and models/demo)
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
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

static bool start_server(void) {
    snprintf(log_path, sizeof log_path, "/tmp/dk_serve_test_%d.log", (int)getpid());
    server_pid = fork();
    if (server_pid == 0) {
        FILE *log = freopen(log_path, "w", stderr);
        if (!log) _exit(127);
        dup2(2, 1);
        execl(diffkit, diffkit, "serve", "--port", "0",
              "serve.models=[demo," ORG "," ORG "@0," ORG "@2.5," ORG "@default_2x," ORG "~0," ORG "~2]",
              "serve.api_key_env=" KEY_ENV, "serve.max_body_bytes=65536", "serve.max_tokens=200", "serve.max_n=4",
              "serve.max_batch=16", (char *)NULL);
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
    if (!start_server()) return 1;
    test_models();
    test_greedy_equals_generate();
    test_n_and_seeds();
    test_concurrent();
    test_stop_strings();
    test_bad_requests();
    test_token();
    test_shutdown();
    unlink(log_path);
    dk_strbuf_free(&all_answers);
    curl_global_cleanup();
    return dk_test_finish("test_serve");
}
