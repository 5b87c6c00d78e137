/* serve_extensions.c — the two request fields of `diffkit serve` that OpenAI does not define, read and checked:
 *
 *   "chat_template_kwargs": {"enable_thinking": true|false}   vLLM's field: the chat template is rendered with this
 *       thinking switch for this request (Qwen3's template: false adds an empty think block; a family without the
 *       switch renders the same either way). Chat requests only; any other key is refused.
 *   "steering": {"layer": L, "vector": [H numbers], "strength": S, "mode": M, "decay_steps": N}
 *       adds S·vector to the residual stream after block L while generating, exactly as `diffkit generate
 *       --steer-vector/--steer-layer/--steer-strength/--steer-mode` does (one dk_steer in dk_generate_options;
 *       the mode through dk_steer_set_mode). strength defaults to 1, mode to "all"; decay_steps (default 10, the
 *       seed's) goes with mode "linear_decay" only.
 *
 * Every problem is a 400 whose param names the field ("steering.layer", "chat_template_kwargs.foo") and whose
 * message says what was expected (the layer range, the model's hidden size), so an agent can correct itself. */
#include "serve/serve_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_value.h"
#include "model/generate.h"

static const char INVALID[] = "invalid_request_error";

/* v as a finite float, or false (not a number, NaN/Inf after JSON's overflow, or beyond float's range). */
static bool finite_float(const cJSON *v, float *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > FLT_MAX) return false;
    *out = (float)v->valuedouble;
    return true;
}

static int read_chat_template_kwargs(serve_request *q, serve_error *e) {
    const cJSON *kwargs = cJSON_GetObjectItemCaseSensitive(q->root, "chat_template_kwargs");
    if (!kwargs || cJSON_IsNull(kwargs)) return 0;
    if (!cJSON_IsObject(kwargs))
        return serve_error_set(e, 400, INVALID, "chat_template_kwargs", "invalid_type", "'chat_template_kwargs' must "
                               "be an object such as {\"enable_thinking\": false}, got %s", dk_json_kind(kwargs));
    if (q->kind == SERVE_COMPLETION && kwargs->child)
        return serve_error_set(e, 400, INVALID, "chat_template_kwargs", "unsupported_parameter", "'chat_template_kwargs' "
                               "applies to /v1/chat/completions: a completion's prompt is not rendered with a chat "
                               "template");
    const cJSON *item;
    cJSON_ArrayForEach(item, kwargs) {
        if (strcmp(item->string, "enable_thinking") != 0) {
            char param[64];
            snprintf(param, sizeof param, "chat_template_kwargs.%.40s", item->string);
            return serve_error_set(e, 400, INVALID, param, "unsupported_parameter", "'chat_template_kwargs' key "
                                   "'%.100s' is not supported by diffkit serve: the only supported key is "
                                   "enable_thinking", item->string);
        }
        if (cJSON_IsNull(item)) continue;
        if (!cJSON_IsBool(item))
            return serve_error_set(e, 400, INVALID, "chat_template_kwargs.enable_thinking", "invalid_type",
                                   "'chat_template_kwargs.enable_thinking' must be true or false, got %s",
                                   dk_json_kind(item));
        q->enable_thinking = cJSON_IsTrue(item) ? 1 : 0;
    }
    return 0;
}

/* steering.vector: a list of exactly H finite numbers, into q->steer_vector. */
static int read_steer_vector(const cJSON *v, int64_t H, serve_request *q, serve_error *e) {
    const char *param = "steering.vector";
    if (!cJSON_IsArray(v))
        return serve_error_set(e, 400, INVALID, param, v ? "invalid_type" : "missing_required_parameter",
                               "'steering.vector' must be a list of %lld numbers (the model's hidden size), got %s",
                               (long long)H, v ? dk_json_kind(v) : "nothing");
    int64_t n = cJSON_GetArraySize(v);
    if (n != H)
        return serve_error_set(e, 400, INVALID, param, "invalid_value", "'steering.vector' has %lld numbers; this "
                               "model's hidden size is %lld: send one number per hidden dimension", (long long)n,
                               (long long)H);
    q->steer_vector = dk_malloc((size_t)H * sizeof *q->steer_vector);
    int64_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        if (!finite_float(x, &q->steer_vector[i]))
            return serve_error_set(e, 400, INVALID, param, "invalid_value", "'steering.vector' must hold finite "
                                   "numbers (within float32's range); entry %lld is %s", (long long)i,
                                   cJSON_IsNumber(x) ? "not finite or too large" : dk_json_kind(x));
        i++;
    }
    q->steer.vector = q->steer_vector;
    return 0;
}

static int read_steering(serve_request *q, const serve_registry *r, serve_error *e) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(q->root, "steering");
    if (!s || cJSON_IsNull(s)) return 0;
    const int64_t n_layers = r->base.cfg.num_hidden_layers, H = r->base.cfg.hidden_size;
    if (!cJSON_IsObject(s))
        return serve_error_set(e, 400, INVALID, "steering", "invalid_type", "'steering' must be an object {\"layer\", "
                               "\"vector\", \"strength\", \"mode\", \"decay_steps\"}, got %s", dk_json_kind(s));
    static const char *const known[] = {"layer", "vector", "strength", "mode", "decay_steps"};
    const cJSON *item;
    cJSON_ArrayForEach(item, s) {
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok = ok || strcmp(item->string, known[k]) == 0;
        if (!ok) {
            char param[64];
            snprintf(param, sizeof param, "steering.%.50s", item->string);
            return serve_error_set(e, 400, INVALID, param, "unknown_parameter", "'steering' has no key '%.100s': it "
                                   "takes layer, vector, strength, mode and decay_steps", item->string);
        }
    }
    const cJSON *layer = cJSON_GetObjectItemCaseSensitive(s, "layer");
    if (!cJSON_IsNumber(layer) || layer->valuedouble != floor(layer->valuedouble))
        return serve_error_set(e, 400, INVALID, "steering.layer", layer && !cJSON_IsNull(layer) ? "invalid_type"
                               : "missing_required_parameter", "'steering.layer' must be an integer from 0 to %lld "
                               "(the block after which the vector is added), got %s", (long long)(n_layers - 1),
                               layer && !cJSON_IsNull(layer) ? (cJSON_IsNumber(layer) ? "a number with a fraction"
                                                                                       : dk_json_kind(layer))
                                                             : "nothing");
    if (!(layer->valuedouble >= 0 && layer->valuedouble <= (double)(n_layers - 1)))
        return serve_error_set(e, 400, INVALID, "steering.layer", "invalid_value", "'steering.layer' %.0f is out of "
                               "range: this model has %lld blocks, layers 0 to %lld", layer->valuedouble,
                               (long long)n_layers, (long long)(n_layers - 1));
    q->steer.layer = (int64_t)layer->valuedouble;
    q->steer.strength = 1.0f;
    const cJSON *strength = cJSON_GetObjectItemCaseSensitive(s, "strength");
    if (strength && !cJSON_IsNull(strength) && !finite_float(strength, &q->steer.strength))
        return serve_error_set(e, 400, INVALID, "steering.strength", "invalid_value", "'steering.strength' must be a "
                               "finite number (default 1), got %s", cJSON_IsNumber(strength) ? "a number that is not "
                               "finite or beyond float32's range" : dk_json_kind(strength));
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(s, "mode");
    const char *mode_name = "all";
    if (mode && !cJSON_IsNull(mode)) {
        if (!cJSON_IsString(mode))
            return serve_error_set(e, 400, INVALID, "steering.mode", "invalid_type", "'steering.mode' must be \"all\", "
                                   "\"prompt_only\" or \"linear_decay\", got %s", dk_json_kind(mode));
        mode_name = mode->valuestring;
    }
    const cJSON *decay = cJSON_GetObjectItemCaseSensitive(s, "decay_steps");
    int64_t decay_steps = 0;
    if (decay && !cJSON_IsNull(decay)) {
        if (strcmp(mode_name, "linear_decay") != 0)
            return serve_error_set(e, 400, INVALID, "steering.decay_steps", "invalid_value", "'steering.decay_steps' "
                                   "goes with \"mode\": \"linear_decay\" only (the mode is \"%.40s\")", mode_name);
        if (!cJSON_IsNumber(decay) || decay->valuedouble != floor(decay->valuedouble) || !(decay->valuedouble >= 1) ||
            decay->valuedouble > 1e9)
            return serve_error_set(e, 400, INVALID, "steering.decay_steps", "invalid_value", "'steering.decay_steps' "
                                   "must be an integer from 1 to 1000000000 (generation steps over which the strength "
                                   "falls to 0; default %d), got %s", DK_STEER_DEFAULT_DECAY_STEPS,
                                   cJSON_IsNumber(decay) ? "a number outside that range or with a fraction"
                                                         : dk_json_kind(decay));
        decay_steps = (int64_t)decay->valuedouble;
    }
    if (!dk_steer_set_mode(&q->steer, mode_name, decay_steps))
        return serve_error_set(e, 400, INVALID, "steering.mode", "invalid_value", "'steering.mode' must be \"all\", "
                               "\"prompt_only\" or \"linear_decay\", got \"%.40s\"", mode_name);
    if (read_steer_vector(cJSON_GetObjectItemCaseSensitive(s, "vector"), H, q, e) != 0) return -1;
    q->steered = true;
    return 0;
}

int serve_request_read_extensions(serve_request *q, const serve_registry *r, serve_error *e) {
    if (read_chat_template_kwargs(q, e) != 0) return -1;
    return read_steering(q, r, e);
}

bool serve_same_steering(const serve_request *a, const serve_request *b, int64_t H) {
    if (!a->steered || !b->steered) return a->steered == b->steered;
    const dk_steer *x = &a->steer, *y = &b->steer;
    return x->layer == y->layer && x->prompt_only == y->prompt_only &&
           x->linear_decay_steps == y->linear_decay_steps &&
           (x->linear_decay_steps == 0 || x->strength == y->strength) &&
           memcmp(x->vector, y->vector, (size_t)H * sizeof *x->vector) == 0;
}
