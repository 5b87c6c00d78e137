/* scripted_server.c — an OpenAI-compatible chat-completions endpoint that misbehaves on cue, for testing
 * the LLM client and (later) the graders without the network or Python.
 *
 *   scripted_server [--require-key-env VAR] [--log FILE] [--default ACTION] ACTION...
 *
 * It listens on 127.0.0.1 at a free port, prints "PORT <n>" on stdout, and answers the k-th request it
 * receives (counting from 0, in order of arrival) with the k-th ACTION, or with the --default action
 * (ok) once the script is used up. It exits when its stdin reaches end of file, so a test that dies never
 * leaves it running. Actions:
 *   ok          200, one choice per requested n: "reply to: <last user message>" ("reply <i> to: ..." when
 *               n > 1), finish_reason "stop", usage 11 prompt + 7 completion tokens
 *   say:TEXT    like ok with TEXT as the content
 *   nousage     like ok without the usage object
 *   malformed   200 with a body that is not JSON
 *   cut         200 without Content-Length, half a JSON answer, then the connection is closed
 *   truncated   200 whose Content-Length promises more bytes than are sent before the connection closes
 *   empty       200 with "choices": []
 *   close       the connection is closed without an answer
 *   slow:S      waits S seconds (a decimal number), then answers like ok
 *   echokey     401 whose error message quotes the Authorization header it received (real providers echo
 *               the key they refused)
 *   NNN         status NNN (500, 429, 404, ...) with an OpenAI-style error body
 *   retry429:S  429 with "Retry-After: S"
 *   huge        200 with a 40 MiB body (more than the client takes)
 * --require-key-env VAR: a request whose Authorization header is not "Bearer $VAR" gets 401 (so a test
 * sees the key arrive) whatever the script says. --log FILE: one line per request, "<k> <action> <body>"
 * (the JSON body; headers, and so the key, are not logged).
 * --rules FILE: answers chosen by content, for requests sent at the same time (the graders): FILE is a JSON
 * array of {"match": TEXT, "steps": [STEP, ...]}. A request whose last user message contains a rule's TEXT
 * (the first such rule) gets that rule's next step (the last step again once they are used up): a step
 * "@ACTION" acts as ACTION above ("@500", "@slow:2", "@truncated"), "@after:S:TEXT" waits S seconds and then
 * answers TEXT, any other step is the answer's content ("say:STEP"). Requests no rule matches follow the
 * script. In the log, the action is "rule<r>.<step>".
 * --script-file FILE: more script entries (after those on the command line), for scripting an agent's turns:
 * FILE is a JSON array whose items are an ACTION string as above or an object {"content": TEXT, "usage":
 * {"prompt_tokens": a, "completion_tokens": b, "total_tokens": c}} (usage optional, default 11 + 7 = 18), answered
 * with TEXT and that usage. In the log, such an entry's action is "say".
 * --reply-with-model: ok answers "<model> reply to: <last user message>" (the request's "model"), so one server
 * can stand for two models (the agent's base and finetuned endpoints) and a test still tells their answers apart. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_REQUEST = 1 << 20 };

static char **script;
static int script_len;
static char **script_content;  /* [script_len] --script-file objects' TEXT, else NULL */
static cJSON **script_usage;   /* [script_len] their usage, else NULL */
static bool reply_with_model;
static cJSON *rules;     /* --rules: [{"match", "steps"}] */
static int *rule_used;   /* [rules] steps given so far */
static const char *default_action = "ok";
static const char *required_key;  /* NULL: any */
static FILE *log_file;
static int next_index;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return;
        }
        data += w;
        len -= (size_t)w;
    }
}

static void send_response(int fd, int status, const char *extra_headers, const char *body) {
    char head[512];
    const char *reason = status == 200 ? "OK" : status == 401 ? "Unauthorized" : status == 429 ? "Too Many Requests"
                         : status >= 500 ? "Server Error" : "Error";
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n", status, reason, strlen(body), extra_headers ? extra_headers : "");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, strlen(body));
}

static void send_error(int fd, int status, const char *extra_headers, const char *message) {
    cJSON *root = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(error, "message", message);
    cJSON_AddNumberToObject(error, "code", status);
    char *body = cJSON_PrintUnformatted(root);
    send_response(fd, status, extra_headers, body);
    free(body);
    cJSON_Delete(root);
}

/* The content of the request's last user message (a copy; "" when none). */
static char *last_user_message(const char *request_body) {
    cJSON *req = cJSON_Parse(request_body);
    const char *last = "";
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(req, "messages")) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0 && cJSON_IsString(text))
            last = text->valuestring;
    }
    char *copy = strdup(last);
    cJSON_Delete(req);
    return copy;
}

/* The ok answer (content NULL: "reply to: <last user message>"); usage NULL: 11 + 7 = 18 tokens. */
static void send_ok(int fd, const char *request_body, const char *content, bool with_usage, const cJSON *usage) {
    cJSON *req = cJSON_Parse(request_body);
    const cJSON *nv = cJSON_GetObjectItemCaseSensitive(req, "n");
    int n = cJSON_IsNumber(nv) && nv->valueint > 1 ? nv->valueint : 1;
    char *last_user = last_user_message(request_body);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(req, "model");
    char prefix[256] = "";
    if (reply_with_model && cJSON_IsString(model)) snprintf(prefix, sizeof prefix, "%s ", model->valuestring);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", "chatcmpl-scripted");
    cJSON_AddStringToObject(root, "object", "chat.completion");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    for (int i = 0; i < n; i++) {
        char generated[4096];
        const char *text = content ? content : generated;
        if (!content && n > 1)
            snprintf(generated, sizeof generated, "%sreply %d to: %s", prefix, i, last_user);
        else if (!content)
            snprintf(generated, sizeof generated, "%sreply to: %s", prefix, last_user);
        cJSON *choice = cJSON_CreateObject();
        cJSON_AddNumberToObject(choice, "index", i);
        cJSON *message = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(message, "role", "assistant");
        cJSON_AddStringToObject(message, "content", text);
        cJSON_AddStringToObject(choice, "finish_reason", "stop");
        cJSON_AddItemToArray(choices, choice);
    }
    if (with_usage && usage) {
        cJSON_AddItemToObject(root, "usage", cJSON_Duplicate(usage, 1));
    } else if (with_usage) {
        cJSON *u = cJSON_AddObjectToObject(root, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", 11);
        cJSON_AddNumberToObject(u, "completion_tokens", 7);
        cJSON_AddNumberToObject(u, "total_tokens", 18);
    }
    char *body = cJSON_PrintUnformatted(root);
    send_response(fd, 200, NULL, body);
    free(body);
    cJSON_Delete(root);
    cJSON_Delete(req);
    free(last_user);
}

/* The step of the first rule whose match the request's last user message contains, or NULL (call locked).
 * *label gets "rule<r>.<step>". */
static const char *rule_step(const char *request_body, char *label, size_t cap) {
    if (!rules) return NULL;
    char *user = last_user_message(request_body);
    const char *step = NULL;
    int r = 0;
    const cJSON *rule;
    cJSON_ArrayForEach(rule, rules) {
        const cJSON *match = cJSON_GetObjectItemCaseSensitive(rule, "match");
        const cJSON *steps = cJSON_GetObjectItemCaseSensitive(rule, "steps");
        if (cJSON_IsString(match) && strstr(user, match->valuestring) && cJSON_GetArraySize(steps) > 0) {
            int k = rule_used[r] < cJSON_GetArraySize(steps) ? rule_used[r] : cJSON_GetArraySize(steps) - 1;
            snprintf(label, cap, "rule%d.%d", r, rule_used[r]);
            rule_used[r]++;
            step = cJSON_GetArrayItem(steps, k)->valuestring;
            break;
        }
        r++;
    }
    free(user);
    return step;
}

/* The value of header `name` in the header block (NUL-terminated copy in out), or false. */
static bool header_value(const char *headers, const char *name, char *out, size_t cap) {
    size_t name_len = strlen(name);
    for (const char *line = strstr(headers, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (*v == ' ') v++;
            const char *end = strstr(v, "\r\n");
            size_t len = end ? (size_t)(end - v) : strlen(v);
            if (len >= cap) len = cap - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

static void serve(int fd) {
    char *buf = malloc(MAX_REQUEST + 1);
    size_t len = 0;
    char *body = NULL;
    size_t content_length = 0;
    for (;;) {  /* read the headers, then the body */
        ssize_t r = recv(fd, buf + len, MAX_REQUEST - len, 0);
        if (r <= 0) goto done;
        len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        if (!body) {
            body = end + 4;
            char value[64];
            if (header_value(buf, "Content-Length", value, sizeof value)) content_length = strtoul(value, NULL, 10);
            if (header_value(buf, "Expect", value, sizeof value)) send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        if ((size_t)(buf + len - body) >= content_length) break;
        if (len == MAX_REQUEST) goto done;
    }
    body[content_length] = '\0';
    char auth[1024] = "";
    header_value(buf, "Authorization", auth, sizeof auth);
    pthread_mutex_lock(&lock);
    int index = next_index++;
    char label[64];
    const char *step = rule_step(body, label, sizeof label);
    const char *content = NULL;  /* a rule's answer text */
    double delay_s = 0.0;        /* before it */
    const char *action;
    const cJSON *usage = NULL;  /* a --script-file entry's */
    if (step && strncmp(step, "@after:", 7) == 0 && strchr(step + 7, ':')) {
        action = "say";
        delay_s = atof(step + 7);
        content = strchr(step + 7, ':') + 1;
    } else if (step && step[0] == '@') {
        action = step + 1;
    } else if (step) {
        action = "say";
        content = step;
    } else {
        action = index < script_len ? script[index] : default_action;
        if (index < script_len && script_content[index]) {
            content = script_content[index];
            usage = script_usage[index];
        }
        snprintf(label, sizeof label, "%s", action);
    }
    if (log_file) {
        fprintf(log_file, "%d %s %s\n", index, label, body);
        fflush(log_file);
    }
    pthread_mutex_unlock(&lock);

    if (strcmp(action, "echokey") == 0) {
        char message[1200];
        snprintf(message, sizeof message, "Incorrect API key provided: %s", auth);
        send_error(fd, 401, NULL, message);
        goto done;
    }
    if (required_key) {
        char expected[1024];
        snprintf(expected, sizeof expected, "Bearer %s", required_key);
        if (strcmp(auth, expected) != 0) {
            send_error(fd, 401, NULL, "missing or wrong API key");
            goto done;
        }
    }
    if (content) {
        struct timespec ts = {(time_t)delay_s, (long)((delay_s - (double)(time_t)delay_s) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
        send_ok(fd, body, content, true, usage);
    } else if (strcmp(action, "ok") == 0) {
        send_ok(fd, body, NULL, true, NULL);
    } else if (strncmp(action, "say:", 4) == 0) {
        send_ok(fd, body, action + 4, true, NULL);
    } else if (strcmp(action, "nousage") == 0) {
        send_ok(fd, body, NULL, false, NULL);
    } else if (strcmp(action, "malformed") == 0) {
        send_response(fd, 200, NULL, "{\"choices\": [{\"message\": {\"content\": \"hello\"}}], oops}");
    } else if (strcmp(action, "cut") == 0) {
        const char *half = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                           "{\"choices\": [{\"message\": {\"content\": \"the answer st";
        send_all(fd, half, strlen(half));
    } else if (strcmp(action, "truncated") == 0) {
        const char *part = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n"
                           "Connection: close\r\n\r\n{\"choices\": [{\"message\": {\"content\": \"the answer st";
        send_all(fd, part, strlen(part));
    } else if (strcmp(action, "empty") == 0) {
        send_response(fd, 200, NULL, "{\"id\": \"x\", \"choices\": [], \"usage\": {\"prompt_tokens\": 3}}");
    } else if (strcmp(action, "huge") == 0) {
        const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 41943040\r\n"
                           "Connection: close\r\n\r\n";
        send_all(fd, head, strlen(head));
        static char block[1 << 16];
        memset(block, ' ', sizeof block);
        for (int i = 0; i < 640; i++) send_all(fd, block, sizeof block);
    } else if (strcmp(action, "close") == 0) {
        /* nothing */
    } else if (strncmp(action, "slow:", 5) == 0) {
        double s = atof(action + 5);
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
        send_ok(fd, body, NULL, true, NULL);
    } else if (strncmp(action, "retry429:", 9) == 0) {
        char header[64];
        snprintf(header, sizeof header, "Retry-After: %s\r\n", action + 9);
        send_error(fd, 429, header, "rate limited, retry later");
    } else if (atoi(action) >= 100) {
        char message[96];
        snprintf(message, sizeof message, "scripted failure %s", action);
        send_error(fd, atoi(action), NULL, message);
    } else {
        fprintf(stderr, "scripted_server: unknown action '%s'\n", action);
        send_error(fd, 599, NULL, "unknown scripted action");
    }
done:
    shutdown(fd, SHUT_WR);
    close(fd);
    free(buf);
}

static void *connection_thread(void *arg) {
    serve((int)(intptr_t)arg);
    return NULL;
}

/* Appends the entries of a --script-file (see the top of the file); 0, or -1 with a message. */
static int read_script_file(const char *path, int max_entries) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "scripted_server: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = calloc((size_t)size + 1, 1);
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    text[got] = '\0';
    cJSON *entries = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsArray(entries) || script_len + cJSON_GetArraySize(entries) > max_entries) {
        fprintf(stderr, "scripted_server: %s is not a JSON array of script entries (or has too many)\n", path);
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, entries) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(e)) {
            script[script_len++] = strdup(e->valuestring);
        } else if (cJSON_IsObject(e) && cJSON_IsString(content)) {
            script_content[script_len] = strdup(content->valuestring);
            const cJSON *usage = cJSON_GetObjectItemCaseSensitive(e, "usage");
            if (usage) script_usage[script_len] = cJSON_Duplicate(usage, 1);
            script[script_len++] = "say";
        } else {
            fprintf(stderr, "scripted_server: %s: entry %d is neither an action nor {\"content\": ...}\n", path,
                    script_len);
            return -1;
        }
    }
    cJSON_Delete(entries);
    return 0;
}

/* Ends the process when stdin closes: the test that started us is done or dead. */
static void *stdin_watch(void *arg) {
    char c;
    while (read(0, &c, 1) > 0) {}
    _exit(0);
    return NULL;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    enum { MAX_FILE_ENTRIES = 4096 };
    int max_entries = argc + MAX_FILE_ENTRIES;
    script = calloc((size_t)max_entries, sizeof *script);
    script_content = calloc((size_t)max_entries, sizeof *script_content);
    script_usage = calloc((size_t)max_entries, sizeof *script_usage);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--require-key-env") == 0 && i + 1 < argc) {
            required_key = getenv(argv[++i]);
            if (!required_key) {
                fprintf(stderr, "scripted_server: %s is not set\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc) {
            log_file = fopen(argv[++i], "w");
            if (!log_file) {
                fprintf(stderr, "scripted_server: cannot write %s: %s\n", argv[i], strerror(errno));
                return 2;
            }
        } else if (strcmp(argv[i], "--rules") == 0 && i + 1 < argc) {
            FILE *f = fopen(argv[++i], "r");
            static char text[1 << 20];
            size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
            if (f) fclose(f);
            text[n] = '\0';
            rules = cJSON_Parse(text);
            if (!cJSON_IsArray(rules)) {
                fprintf(stderr, "scripted_server: %s is not a JSON array of rules\n", argv[i]);
                return 2;
            }
            rule_used = calloc((size_t)cJSON_GetArraySize(rules) + 1, sizeof *rule_used);
        } else if (strcmp(argv[i], "--script-file") == 0 && i + 1 < argc) {
            if (read_script_file(argv[++i], max_entries) != 0) return 2;
        } else if (strcmp(argv[i], "--reply-with-model") == 0) {
            reply_with_model = true;
        } else if (strcmp(argv[i], "--default") == 0 && i + 1 < argc) {
            default_action = argv[++i];
        } else {
            script[script_len++] = argv[i];
        }
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 128) != 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &addr_len) != 0) {
        fprintf(stderr, "scripted_server: cannot listen on 127.0.0.1: %s\n", strerror(errno));
        return 1;
    }
    pthread_t watcher;
    pthread_create(&watcher, NULL, stdin_watch, NULL);
    printf("PORT %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) continue;
        pthread_t thread;
        if (pthread_create(&thread, NULL, connection_thread, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(thread);
    }
}
