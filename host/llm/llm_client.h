/* llm_client.h — chat completions against any OpenAI-compatible endpoint (OpenRouter, OpenAI, vLLM,
 * `diffkit serve`), for the graders and the agent runner.
 *
 * Why it exists: the seed asks a hosted LLM to judge coherence, relevance and hypotheses, through the openai
 * Python package. diffkit does the same with libcurl (several requests in flight through one curl multi
 * handle) and cJSON, and adds what a batch job on a cluster node needs: every wait is bounded (connect and
 * per-attempt timeouts, a fixed number of attempts), failures say what happened and what to change, and
 * the API key never leaves the Authorization header: it is not logged, not in any error message (a message
 * names where the key came from, "the key from $OPENROUTER_API_KEY", never its value; server text that
 * echoes it is redacted), and not written anywhere.
 *
 * Retries (the seed's graders retry any failure of a call, max_retries = 3 attempts in all, and the openai
 * package under them retries connection errors, timeouts, HTTP 408/409/429/5xx): an attempt is retried when
 * the connection failed or was cut, the attempt timed out, the status is 408, 409, 429 or 5xx, the body is
 * not valid JSON (truncated or malformed), the answer has no choices, or the request's accept callback
 * rejects it (the seed's parse_fn: a grader answer that does not parse is asked again). Other statuses
 * (400, 401, 403, 404, ...) and bad URLs fail at once: asking again cannot help. Before retry k (k = 1, 2,
 * ...) the client waits backoff_initial_s * 2^(k-1) seconds, at most backoff_max_s, less up to a quarter at
 * random so that requests failing together do not come back together; a 429/503 with Retry-After waits
 * that long instead (also at most backoff_max_s).
 *
 * Configuration (configs/config.yaml, section llm; dk_llm_config_read reads any section with these keys):
 *   base_url            https://openrouter.ai/api/v1 — requests go to <base_url>/chat/completions
 *   model_id            the model the endpoint serves ("openai/gpt-5-mini")
 *   api_key_file        a file holding the key (relative: to the working directory; surrounding whitespace
 *                       ignored), used when it exists ...
 *   api_key_env         ... else this environment variable; both null: no key is sent (a local server)
 *                       Absent keys follow the seed: no file, and $OPENROUTER_API_KEY; api_key_path (the seed's
 *                       grader sections) is read as api_key_file.
 *   connect_timeout_s   seconds to open the connection
 *   request_timeout_s   seconds one attempt may take in all (connect, send, wait, receive)
 *   max_attempts        attempts per request in all (1 = no retry)
 *   backoff_initial_s, backoff_max_s   the waits between attempts (above)
 *   max_in_flight       requests sent at the same time by dk_llm_chat_many
 * The longest a request can take is about max_attempts * request_timeout_s + the waits between them.
 *
 * A client is used by one thread at a time. Usage:
 *     dk_llm_client *llm = dk_llm_client_open(&cfg, &err);
 *     dk_llm_message msgs[] = {{.role = "system", .content = "You grade text."},
 *                              {.role = "user", .content = "Is this coherent? ..."}};
 *     dk_llm_request req = dk_llm_request_init(msgs, 2);
 *     req.max_tokens = 200;
 *     dk_llm_response resp;
 *     if (dk_llm_chat(llm, &req, &resp) == 0) use(resp.choices[0].content);
 *     else report(resp.err.msg);
 *     dk_llm_response_free(&resp);
 *     dk_llm_client_close(llm);
 */
#ifndef DK_LLM_CLIENT_H
#define DK_LLM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "core/error.h"

typedef struct dk_llm_config {
    char *base_url;            /* without the trailing /chat/completions */
    char *model_id;
    char *api_key_file;        /* NULL: none */
    char *api_key_env;         /* NULL: none */
    double connect_timeout_s;
    double request_timeout_s;
    int max_attempts;
    double backoff_initial_s;
    double backoff_max_s;
    int max_in_flight;
    char *section;             /* the config section it was read from ("llm"), for messages */
} dk_llm_config;

/* The defaults of configs/config.yaml (base_url and model_id NULL: they must be given). */
void dk_llm_config_defaults(dk_llm_config *cfg);
/* Reads section `section` ("llm", or a grader's section) of a composed configuration: base_url and model_id
 * are required, the other keys optional (defaults above). 0, or -1 with err (code 2) naming the key. */
int dk_llm_config_read(const dk_cfg *cfg, const char *section, dk_llm_config *out, dk_err *err);
void dk_llm_config_free(dk_llm_config *cfg);

typedef struct dk_llm_message {
    const char *role;     /* "system", "user" or "assistant" */
    const char *content;
    bool cache_ephemeral; /* send "cache_control": {"type": "ephemeral"} with the message (prompt caching, as the
                           * seed's agent marks its system message) */
} dk_llm_message;

typedef struct dk_llm_response dk_llm_response;

/* Optional check of an answer inside the retry loop (the seed's parse_fn): return true to accept it; false
 * (with a reason in why, e.g. "no ANSWER: line") counts the attempt as failed and asks again. */
typedef bool (*dk_llm_accept_fn)(const dk_llm_response *resp, void *ctx, char *why, size_t why_cap);

typedef struct dk_llm_request {
    const dk_llm_message *messages;  /* [n_messages] */
    int n_messages;
    double temperature;              /* < 0: not sent (the endpoint's default) */
    double top_p;                    /* < 0: not sent */
    int max_tokens;                  /* 0: not sent */
    int n;                           /* choices wanted; 0 or 1: not sent (one) */
    bool has_seed;
    int64_t seed;                    /* sent when has_seed (exact up to 2^53, JSON numbers are doubles) */
    const char *const *stop;         /* [n_stop] stop strings; n_stop 0: not sent */
    int n_stop;
    dk_llm_accept_fn accept;         /* NULL: any answer with choices is accepted */
    void *accept_ctx;
    /* Members merged into the request's JSON object as they are (an endpoint's own fields: {"chat_template_kwargs":
     * {"enable_thinking": false}}, {"steering": {...}}); NULL: none. A member the client sets itself (model,
     * messages, temperature, ...) fails the request (code 2) instead of being sent twice. Not copied: it must live
     * until the call returns. */
    const cJSON *extra_body;
} dk_llm_request;

/* A request with every optional field unset. */
dk_llm_request dk_llm_request_init(const dk_llm_message *messages, int n_messages);

typedef struct dk_llm_choice {
    char *content;        /* the message text ("" when the endpoint sent null) */
    char *finish_reason;  /* "stop", "length", ...; "" when absent */
} dk_llm_choice;

struct dk_llm_response {
    dk_llm_choice *choices;    /* [n_choices], index order */
    int n_choices;
    int64_t prompt_tokens;     /* usage of the accepted answer (0 when the endpoint sent none) */
    int64_t completion_tokens;
    int64_t total_tokens;      /* usage.total_tokens as the endpoint reported it (0 when absent) */
    int attempts;              /* attempts made (1 = no retry) */
    double seconds;            /* from the first attempt to the end, waits included */
    dk_err err;                /* err.code != 0: the request failed; err.msg says why (no key in it) */
};

void dk_llm_response_free(dk_llm_response *resp);

/* Token usage and request counts since the client was opened. Tokens of answers the accept callback
 * rejected are counted too (the endpoint billed them). */
typedef struct dk_llm_usage {
    int64_t requests;           /* requests finished, failed ones included */
    int64_t failed;             /* requests that failed after their attempts */
    int64_t attempts;           /* HTTP attempts made */
    int64_t prompt_tokens;
    int64_t completion_tokens;
} dk_llm_usage;

typedef struct dk_llm_client dk_llm_client;

/* Reads the key (api_key_file, else api_key_env) and prepares the connection pool. NULL + err when the
 * configuration is unusable (code 2: no key where one was configured, a base_url that is not http(s)). */
dk_llm_client *dk_llm_client_open(const dk_llm_config *cfg, dk_err *err);
void dk_llm_client_close(dk_llm_client *client);

/* One request: 0, or -1 with resp->err set. resp is always filled (free it). */
int dk_llm_chat(dk_llm_client *client, const dk_llm_request *req, dk_llm_response *resp);
/* n requests, at most cfg.max_in_flight at the same time; resps[i] answers reqs[i]. Returns how many failed
 * (each failed one has its err set). */
int dk_llm_chat_many(dk_llm_client *client, const dk_llm_request *reqs, int n, dk_llm_response *resps);

dk_llm_usage dk_llm_client_usage(const dk_llm_client *client);
/* "https://host/v1/chat/completions": the URL requests go to. */
const char *dk_llm_client_url(const dk_llm_client *client);
/* The model_id every request names. */
const char *dk_llm_client_model(const dk_llm_client *client);

#endif
