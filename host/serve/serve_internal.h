/* serve_internal.h — what the files of host/serve share (serve.h lists them). */
#ifndef DK_SERVE_INTERNAL_H
#define DK_SERVE_INTERNAL_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/forward.h"
#include "model/lora.h"
#include "model/prompt.h"
#include "serve/serve.h"
#include "tokenizer/tokenizer.h"

/* ---- serve_models.c: the registry ---------------------------------------------------------------------- */

typedef struct serve_organism {
    char *name;                  /* its config name (configs/organism/NAME.yaml) */
    char *dir;                   /* the adapter folder */
    dk_lora_adapter adapter;     /* loaded once; variants share its A and B */
} serve_organism;

typedef struct serve_model {
    char *id;                    /* the name clients send as "model" */
    int organism;                /* index into organisms; -1: the base model */
    dk_lora_adapter variant;     /* the organism's adapter with this model's own multiplier array (A, B shared) */
    bool logit_amp;              /* ORGANISM~ALPHA: logits_ft + alpha·(logits_ft − logits_base) */
    float logit_amp_alpha;
    char *description;           /* what it is, for the log and /v1/models (no file paths) */
} serve_model;

typedef struct serve_registry {
    char *base_name;             /* model.name: the base model's id */
    char *base_dir;
    dk_model base;               /* the one mapping of the base weights */
    bool base_open;
    dk_tokenizer *tok;
    bool has_chat;               /* the model has a chat template */
    dk_chat_format chat;
    char chat_problem[1024];     /* why /v1/chat/completions cannot work, when !has_chat */
    int64_t stop_ids[DK_MAX_STOP_IDS];
    int n_stop;
    int64_t context;             /* max_position_embeddings: prompt + completion must fit */
    serve_organism *organisms;
    int n_organisms;
    serve_model *models;
    int n_models;
} serve_registry;

/* Opens the base of cfg and every model sc names. 0, or -1 with err (code 2: an unknown organism, a bad suffix). */
int serve_registry_open(serve_registry *r, const dk_cfg *cfg, const dk_serve_config *sc, const char *config_dir,
                        const char *const *overrides, size_t n_overrides, int threads, dk_err *err);
void serve_registry_close(serve_registry *r);
/* The index of model `id`, or -1. */
int serve_registry_find(const serve_registry *r, const char *id);

/* ---- serve_response.c: errors and answers ------------------------------------------------------------- */

typedef struct serve_error {
    int status;                  /* HTTP status: 400, 401, 404, 405, 413, 500, 503 */
    const char *type;            /* "invalid_request_error", "authentication_error", "server_error", ... */
    char param[64];              /* the request field at fault, "" for none (null) */
    char code[64];               /* "model_not_found", "context_length_exceeded", ... ; "" for none (null) */
    char message[1024];
} serve_error;

/* Sets e (and returns -1). */
int serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* {"error": {"message", "type", "param", "code"}} (malloc'ed). */
char *serve_error_json(const serve_error *e);
/* {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}, ...]} (malloc'ed). */
char *serve_models_json(const serve_registry *r, int64_t created);

/* ---- serve_request.c: a request body read and checked ---------------------------------------------------- */

enum { SERVE_MAX_STOP = 4 };   /* OpenAI's limit on stop strings */

typedef enum { SERVE_CHAT, SERVE_COMPLETION } serve_kind;

typedef struct serve_request {
    serve_kind kind;
    cJSON *root;                 /* the parsed body: the strings below point into it */
    int model;                   /* index into the registry */
    dk_chat_message *messages;   /* SERVE_CHAT: [n_messages] */
    size_t n_messages;
    const char *prompt;          /* SERVE_COMPLETION */
    float temperature;           /* default 1, as OpenAI's */
    float top_p;                 /* default 1 */
    int64_t max_tokens;          /* 0: as many as the limits and the context allow */
    int64_t n;                   /* choices, default 1 */
    uint64_t seed;               /* the request's, or one the server drew */
    const char *stop[SERVE_MAX_STOP];
    int n_stop;
    int enable_thinking;         /* chat_template_kwargs.enable_thinking: -1 not given, 0, 1 (qwen3's switch) */
    bool steered;                /* "steering" given: */
    dk_steer steer;              /* its layer, strength and mode (prompt_only, linear_decay_steps); vector below */
    float *steer_vector;         /* (hidden_size) owned; steer.vector points here */
} serve_request;

/* Reads body[0..len) (any bytes): 0, or -1 with e set (400 for bad JSON, invalid UTF-8, wrong types and values;
 * 404 for an unknown model). */
int serve_request_parse(const char *body, size_t len, serve_kind kind, const serve_registry *r,
                        const dk_serve_config *sc, uint64_t default_seed, serve_request *out, serve_error *e);
void serve_request_free(serve_request *q);

/* ---- serve_extensions.c: the fields beyond OpenAI's ------------------------------------------------------------ */

/* Reads "chat_template_kwargs" (vLLM's: {"enable_thinking": BOOL}, chat only) and "steering" ({"layer", "vector",
 * "strength", "mode", "decay_steps"}) of q->root into q. 0, or -1 with e set (400 naming the field). */
int serve_request_read_extensions(serve_request *q, const serve_registry *r, serve_error *e);
/* Whether a and b steer alike, so that one dk_generate call can carry both: neither steers, or both add the same
 * vector after the same block in the same mode (and, with linear_decay, at the same strength: other strengths
 * travel as per-sequence factors, which would round the decayed strength differently). H: the hidden size. */
bool serve_same_steering(const serve_request *a, const serve_request *b, int64_t H);

/* One finished choice, for the answer. */
typedef struct serve_choice {
    char *text;                  /* decoded, cut at the first stop string */
    const char *finish_reason;   /* "stop" or "length" */
} serve_choice;

/* The chat.completion or text_completion object (malloc'ed). */
char *serve_completion_json(const serve_request *q, const serve_registry *r, const serve_choice *choices,
                            int64_t prompt_tokens, int64_t completion_tokens, uint64_t serial, int64_t created);

/* ---- serve_queue.c: batching ----------------------------------------------------------------------------- */

typedef struct serve_job {
    serve_request req;
    int status;                  /* the HTTP status of the answer, once done */
    char *answer;                /* its JSON body (malloc'ed) */
    bool done;
    pthread_cond_t done_cv;
    struct serve_job *next;
} serve_job;

typedef struct serve_queue {
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    serve_job *head, *tail;      /* waiting jobs, oldest first */
    int64_t n_waiting;
    bool closing;
    pthread_t engine;
    serve_registry *reg;
    const dk_serve_config *sc;
    uint64_t serial;             /* answers given (their ids) */
    int64_t batches, largest_batch;
} serve_queue;

int serve_queue_start(serve_queue *q, serve_registry *r, const dk_serve_config *sc, dk_err *err);
/* Enqueues job and waits for its answer (job->status, job->answer). A closing or full queue answers 503 at once. */
void serve_queue_submit(serve_queue *q, serve_job *job);
/* Answers every waiting job with 503 (and every later one), lets the engine finish its batch, and joins it. */
void serve_queue_stop(serve_queue *q);
/* Frees what is left, once no HTTP thread can submit any more (the listener has stopped). */
void serve_queue_free(serve_queue *q);

/* ---- serve_http.c: the listener ---------------------------------------------------------------------------- */

typedef struct serve_http serve_http;

/* Listens on sc->host:sc->port (the port bound in *bound_port). token: the bearer token or NULL. */
serve_http *serve_http_start(const dk_serve_config *sc, serve_queue *q, serve_registry *r, const char *token,
                             int *bound_port, dk_err *err);
void serve_http_stop(serve_http *h);

#endif
