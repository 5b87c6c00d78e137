/* serve_http.c — the HTTP side of `diffkit serve`, on libmicrohttpd (one thread per connection): routes
 * (GET /v1/models, POST /v1/chat/completions, POST /v1/completions), the bearer token, the request body size limit,
 * and JSON answers. A request is refused before its body is read when its route, token or announced size is wrong;
 * a body that grows past the limit while arriving is dropped and answered with 413. A checked request goes to the
 * batching queue and this thread waits for its answer.
 *
 * The token is compared in constant time and never written anywhere: not in answers, not in the log. */
#include "serve/serve_internal.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/log.h"
#include "core/strutil.h"

struct serve_http {
    struct MHD_Daemon *daemon;
    serve_queue *queue;
    serve_registry *reg;
    const dk_serve_config *sc;
    char *token;                 /* NULL: none required */
    int64_t started;             /* "created" of the models */
    atomic_uint_fast64_t seeds;  /* seeds drawn for requests that give none */
};

typedef enum { ROUTE_MODELS, ROUTE_CHAT, ROUTE_COMPLETION } route;

/* What one connection's current request has sent so far. */
typedef struct http_request {
    route route;
    dk_strbuf body;
    bool too_big;
} http_request;

static enum MHD_Result respond(struct MHD_Connection *conn, int status, char *json) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result respond_error(struct MHD_Connection *conn, const char *method, const char *url,
                                     const serve_error *e) {
    LOG_INFO("serve: %d %s %.200s: %s", e->status, method, url, e->message);
    return respond(conn, e->status, serve_error_json(e));
}

/* Equal strings, in a time that does not depend on where they differ. */
static bool same_secret(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    unsigned char diff = (unsigned char)(na != nb);
    for (size_t i = 0; i < na; i++) diff |= (unsigned char)(a[i] ^ b[nb ? i % nb : 0]);
    return diff == 0;
}

static int check_token(const serve_http *h, struct MHD_Connection *conn, serve_error *e) {
    if (!h->token) return 0;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *given = auth + 7;
        while (*given == ' ') given++;
        if (same_secret(given, h->token)) return 0;
    }
    return serve_error_set(e, 401, "authentication_error", NULL, "invalid_api_key", auth ? "the bearer token is wrong"
                           : "this server needs a bearer token: send the header 'Authorization: Bearer <token>'");
}

static int find_route(const char *method, const char *url, route *out, serve_error *e) {
    static const struct { const char *url, *method; route r; } routes[] = {
        {"/v1/models", "GET", ROUTE_MODELS},
        {"/v1/chat/completions", "POST", ROUTE_CHAT},
        {"/v1/completions", "POST", ROUTE_COMPLETION},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].url) != 0) continue;
        if (strcmp(method, routes[i].method) != 0)
            return serve_error_set(e, 405, "invalid_request_error", NULL, "method_not_allowed", "%s takes %s, not %.20s",
                                   routes[i].url, routes[i].method, method);
        *out = routes[i].r;
        return 0;
    }
    return serve_error_set(e, 404, "invalid_request_error", NULL, "unknown_url", "no such endpoint: %.20s %.200s "
                           "(diffkit serve has GET /v1/models, POST /v1/chat/completions, POST /v1/completions)",
                           method, url);
}

/* The checks made before the body is read: route, token, announced size. */
static int check_start(serve_http *h, struct MHD_Connection *conn, const char *method, const char *url,
                       http_request *hr, serve_error *e) {
    if (find_route(method, url, &hr->route, e) != 0 || check_token(h, conn, e) != 0) return -1;
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && strtoull(length, NULL, 10) > (unsigned long long)h->sc->max_body_bytes)
        return serve_error_set(e, 413, "invalid_request_error", NULL, "request_too_large", "the request body has %s "
                               "bytes; this server takes at most %lld (serve.max_body_bytes)", length,
                               (long long)h->sc->max_body_bytes);
    return 0;
}

static enum MHD_Result finish(serve_http *h, struct MHD_Connection *conn, const char *method, const char *url,
                              http_request *hr) {
    serve_error e;
    if (hr->too_big) {
        serve_error_set(&e, 413, "invalid_request_error", NULL, "request_too_large", "the request body is larger than "
                        "%lld bytes (serve.max_body_bytes)", (long long)h->sc->max_body_bytes);
        return respond_error(conn, method, url, &e);
    }
    if (hr->route == ROUTE_MODELS) return respond(conn, 200, serve_models_json(h->reg, h->started));
    serve_job job;
    memset(&job, 0, sizeof job);
    uint64_t seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + atomic_fetch_add(&h->seeds, 1);
    if (serve_request_parse(hr->body.data ? hr->body.data : "", hr->body.len,
                            hr->route == ROUTE_CHAT ? SERVE_CHAT : SERVE_COMPLETION, h->reg, h->sc, seed, &job.req,
                            &e) != 0) {
        serve_request_free(&job.req);
        return respond_error(conn, method, url, &e);
    }
    serve_queue_submit(h->queue, &job);
    serve_request_free(&job.req);
    return respond(conn, job.status, job.answer);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **ctx) {
    serve_http *h = cls;
    http_request *hr = *ctx;
    if (!hr) { /* the headers are in, the body is not */
        hr = dk_calloc(1, sizeof *hr);
        *ctx = hr;
        serve_error e;
        if (check_start(h, conn, method, url, hr, &e) != 0) return respond_error(conn, method, url, &e);
        return MHD_YES;
    }
    if (*upload_size) {
        if (hr->too_big || hr->body.len + *upload_size > (size_t)h->sc->max_body_bytes) {
            hr->too_big = true;
            dk_strbuf_free(&hr->body);
        } else {
            dk_strbuf_append_n(&hr->body, upload, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return finish(h, conn, method, url, hr);
}

static void completed(void *cls, struct MHD_Connection *conn, void **ctx, enum MHD_RequestTerminationCode why) {
    http_request *hr = *ctx;
    if (!hr) return;
    dk_strbuf_free(&hr->body);
    free(hr);
    *ctx = NULL;
}

serve_http *serve_http_start(const dk_serve_config *sc, serve_queue *q, serve_registry *r, const char *token,
                             int *bound_port, dk_err *err) {
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sc->port)};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)sc->port)};
    const struct sockaddr *addr;
    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    if (inet_pton(AF_INET, sc->host, &v4.sin_addr) == 1) {
        addr = (const struct sockaddr *)&v4;
    } else if (inet_pton(AF_INET6, sc->host, &v6.sin6_addr) == 1) {
        addr = (const struct sockaddr *)&v6;
        flags |= MHD_USE_IPv6;
    } else {
        dk_err_set(err, DK_EXIT_USAGE, "serve.host = '%s' is not an IP address (127.0.0.1, ::1, 0.0.0.0)", sc->host);
        return NULL;
    }
    serve_http *h = dk_calloc(1, sizeof *h);
    h->queue = q;
    h->reg = r;
    h->sc = sc;
    h->token = token ? dk_strdup(token) : NULL;
    h->started = (int64_t)time(NULL);
    atomic_init(&h->seeds, 0);
    h->daemon = MHD_start_daemon(flags, (uint16_t)sc->port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, addr,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)sc->max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)sc->timeout_s,
                                 MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_END);
    if (!h->daemon) {
        dk_err_set(err, DK_EXIT_RUNTIME, "serve: cannot listen on %s port %d (in use, or not an address of this "
                   "machine): choose another with --port / --host", sc->host, sc->port);
        serve_http_stop(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? (int)info->port : sc->port;
    return h;
}

void serve_http_stop(serve_http *h) {
    if (!h) return;
    if (h->daemon) MHD_stop_daemon(h->daemon);
    if (h->token) {
        explicit_bzero(h->token, strlen(h->token));
        free(h->token);
    }
    free(h);
}
