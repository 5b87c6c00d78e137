/* hf_config.c — see hf_config.h. Layout:
 *   1. tables: supported architectures and each transformers config class's defaults;
 *   2. typed getters over cJSON that name the file and the key in every error;
 *   3. RoPE (both spellings), layer kinds, and the top-level parse.
 * Defaults were read from transformers 4.57 and 5.x (configuration_{llama,mistral,qwen2,qwen3,gemma2,gemma3,gpt2,
 * qwen2_5_vl}.py)
 * and agree between the two; the tests check the result against transformers' reading of real files.
 */
#include "hf_config.h"

#include "core/strutil.h"
#include "io/file.h"
#include "io/json_value.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * 1. tables */

static const struct {
    const char *architecture;
    dk_arch arch;
    const char *model_type; /* the config class transformers picks for this architecture */
} architectures[] = {
    {"LlamaForCausalLM", DK_ARCH_LLAMA, "llama"},
    {"MistralForCausalLM", DK_ARCH_MISTRAL, "mistral"},
    {"Qwen2ForCausalLM", DK_ARCH_QWEN2, "qwen2"},
    {"Qwen3ForCausalLM", DK_ARCH_QWEN3, "qwen3"},
    {"Gemma2ForCausalLM", DK_ARCH_GEMMA2, "gemma2"},
    {"Gemma3ForCausalLM", DK_ARCH_GEMMA3, "gemma3_text"},
    {"Gemma3ForConditionalGeneration", DK_ARCH_GEMMA3, "gemma3"},
    {"GPT2LMHeadModel", DK_ARCH_GPT2, "gpt2"},
    {"Qwen2_5_VLForConditionalGeneration", DK_ARCH_QWEN2_5_VL, "qwen2_5_vl"},
};
enum { N_ARCHITECTURES = sizeof architectures / sizeof architectures[0] };

/* Defaults of one config class (transformers' __init__ keyword defaults). -1 = None. */
typedef struct class_defaults {
    const char *model_type;
    int64_t vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    int64_t num_key_value_heads; /* -1: = num_attention_heads */
    int64_t head_dim;            /* -1: = hidden_size / num_attention_heads */
    double rms_norm_eps, rope_theta;
    int64_t max_position_embeddings;
    bool tie_word_embeddings;
    const char *hidden_act;
    int64_t bos_token_id, eos_token_id, pad_token_id;
    int64_t sliding_window;      /* -1: None */
    double query_pre_attn_scalar, attn_logit_softcapping, final_logit_softcapping; /* 0: None */
} class_defaults;

static const class_defaults defaults_table[] = {
    /* model_type     V       H     I      L   nh  nkv  D    eps   theta  maxpos tie  act  bos eos pad win qpas cap fcap */
    {"llama", 32000, 4096, 11008, 32, 32, -1, -1, 1e-6, 10000.0, 2048, false, "silu", 1, 2, -1, -1, 0, 0, 0},
    {"mistral", 32000, 4096, 14336, 32, 32, 8, -1, 1e-6, 10000.0, 131072, false, "silu", 1, 2, -1, 4096, 0, 0, 0},
    {"qwen2", 151936, 4096, 22016, 32, 32, 32, -1, 1e-6, 10000.0, 32768, false, "silu", -1, -1, -1, 4096, 0, 0, 0},
    {"qwen3", 151936, 4096, 22016, 32, 32, 32, 128, 1e-6, 10000.0, 32768, false, "silu", -1, -1, -1, 4096, 0, 0, 0},
    {"gemma2", 256000, 2304, 9216, 26, 8, 4, 256, 1e-6, 10000.0, 8192, true, "gelu_pytorch_tanh", 2, 1, 0, 4096,
     256, 50.0, 30.0},
    {"gemma3_text", 262208, 2304, 9216, 26, 8, 4, 256, 1e-6, 1000000.0, 131072, true, "gelu_pytorch_tanh", 2, 1, 0,
     4096, 256, 0, 0},
    {"gpt2", 50257, 768, -1, 12, 12, -1, -1, 1e-5, 10000.0, 1024, true, "gelu_new", 50256, 50256, -1, -1, 0, 0, 0},
    {"qwen2_5_vl_text", 152064, 8192, 29568, 80, 64, 8, -1, 1e-5, 1000000.0, 32768, false, "silu", 151643, 151645, -1,
     4096, 0, 0, 0},
};

static const class_defaults *defaults_of(const char *model_type) {
    for (size_t i = 0; i < sizeof defaults_table / sizeof defaults_table[0]; i++)
        if (strcmp(defaults_table[i].model_type, model_type) == 0) return &defaults_table[i];
    return NULL;
}

const char *dk_arch_name(dk_arch arch) {
    switch (arch) {
    case DK_ARCH_LLAMA: return "llama";
    case DK_ARCH_MISTRAL: return "mistral";
    case DK_ARCH_QWEN2: return "qwen2";
    case DK_ARCH_QWEN3: return "qwen3";
    case DK_ARCH_GEMMA2: return "gemma2";
    case DK_ARCH_GEMMA3: return "gemma3";
    case DK_ARCH_GPT2: return "gpt2";
    case DK_ARCH_QWEN2_5_VL: return "qwen2_5_vl";
    }
    return "unknown";
}

const char *dk_rope_type_name(dk_rope_type type) {
    switch (type) {
    case DK_ROPE_DEFAULT: return "default";
    case DK_ROPE_LINEAR: return "linear";
    case DK_ROPE_LLAMA3: return "llama3";
    case DK_ROPE_YARN: return "yarn";
    }
    return "unknown";
}

/* ---------------------------------------------------------------------------------------------------
 * 2. typed getters. `where` is "" for the top level or "text_config." for the nested language model, so
 * messages name the key as the user would look for it. A JSON null counts as absent (transformers
 * treats None as "use the default" for every field read here). */

typedef struct reader {
    const char *path;
    const char *where;
    dk_err *err;
} reader;

static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int wrong_type(const reader *r, const char *key, const char *want, const cJSON *v) {
    return dk_err_set(r->err, DK_EXIT_USAGE, "%s: key \"%s%s\" must be %s, found %s: fix config.json", r->path,
                      r->where, key, want, dk_json_kind(v));
}

/* Integer (a JSON number with no fraction). def == REQUIRED: an absent key is an error. */
#define REQUIRED INT64_MIN
static int get_int(const reader *r, const cJSON *obj, const char *key, int64_t def, int64_t *out) {
    const cJSON *v = field(obj, key);
    if (!v) {
        if (def == REQUIRED)
            return dk_err_set(r->err, DK_EXIT_USAGE,
                              "%s: required key \"%s%s\" is missing: this config.json is incomplete (compare with "
                              "the model's published config.json)",
                              r->path, r->where, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return wrong_type(r, key, "an integer", v);
    double d = v->valuedouble;
    if (d != floor(d) || fabs(d) > 9007199254740992.0)
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: key \"%s%s\" must be an integer, found %g: fix config.json",
                          r->path, r->where, key, d);
    *out = (int64_t)d;
    return 0;
}

static int get_double(const reader *r, const cJSON *obj, const char *key, double def, double *out) {
    const cJSON *v = field(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return wrong_type(r, key, "a number", v);
    *out = v->valuedouble;
    return 0;
}

static int get_bool(const reader *r, const cJSON *obj, const char *key, bool def, bool *out) {
    const cJSON *v = field(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return wrong_type(r, key, "true or false", v);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Copies a string value into out[cap] (def when absent). */
static int get_string(const reader *r, const cJSON *obj, const char *key, const char *def, char *out, size_t cap) {
    const cJSON *v = field(obj, key);
    if (!v) {
        snprintf(out, cap, "%s", def ? def : "");
        return 0;
    }
    if (!cJSON_IsString(v)) return wrong_type(r, key, "a string", v);
    if (strlen(v->valuestring) >= cap)
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: key \"%s%s\" is too long (\"%.40s...\")", r->path, r->where,
                          key, v->valuestring);
    snprintf(out, cap, "%s", v->valuestring);
    return 0;
}

static int require_positive(const reader *r, const char *key, int64_t value) {
    if (value > 0) return 0;
    return dk_err_set(r->err, DK_EXIT_USAGE, "%s: key \"%s%s\" must be positive, found %" PRId64 ": fix config.json",
                      r->path, r->where, key, value);
}

/* ---------------------------------------------------------------------------------------------------
 * 3. RoPE, layer kinds, parse */

/* transformers' get_mscale(scale, mscale): 1 if scale <= 1 else 0.1 * mscale * ln(scale) + 1. */
static double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0; }

/* Reads one RoPE dict (a rope_scaling or one rope_parameters entry) into *out. obj may be NULL (default
 * RoPE). `key` names the dict in messages. */
static int parse_rope_dict(const reader *r, const cJSON *obj, const char *key, double theta, int64_t max_pos,
                           dk_rope_params *out) {
    memset(out, 0, sizeof *out);
    out->type = DK_ROPE_DEFAULT;
    out->factor = 1.0;
    out->attention_factor = 1.0;
    out->truncate = true;
    out->theta = theta;
    if (obj && !cJSON_IsObject(obj)) return wrong_type(r, key, "an object", obj);
    char type[32];
    const char *type_key = field(obj, "rope_type") ? "rope_type" : "type"; /* "type" is the legacy key */
    reader sub = *r;
    char where[96];
    snprintf(where, sizeof where, "%s%s.", r->where, key);
    sub.where = where;
    if (get_string(&sub, obj, type_key, "default", type, sizeof type) != 0) return -1;
    if (get_double(&sub, obj, "rope_theta", theta, &out->theta) != 0) return -1;
    if (strcmp(type, "default") == 0) {
        out->type = DK_ROPE_DEFAULT;
    } else if (strcmp(type, "linear") == 0) {
        out->type = DK_ROPE_LINEAR;
    } else if (strcmp(type, "llama3") == 0) {
        out->type = DK_ROPE_LLAMA3;
    } else if (strcmp(type, "yarn") == 0) {
        out->type = DK_ROPE_YARN;
    } else if (strcmp(type, "mrope") == 0) { /* Qwen2-VL's legacy spelling: default RoPE + mrope_section */
        out->type = DK_ROPE_DEFAULT;
    } else {
        return dk_err_set(r->err, DK_EXIT_USAGE,
                          "%s: \"%s%s.%s\" is \"%s\"; diffkit supports the RoPE types default, linear, llama3 and "
                          "yarn (dynamic, longrope and others are not implemented)",
                          r->path, r->where, key, type_key, type);
    }
    if (!(out->theta > 0))
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: the RoPE base (rope_theta) of \"%s%s\" must be positive, found %g",
                          r->path, r->where, key, out->theta);
    if (out->type == DK_ROPE_DEFAULT) return 0;

    /* factor: required by linear and llama3; yarn may derive it from the context lengths */
    const cJSON *factor = field(obj, "factor");
    if (!factor && out->type != DK_ROPE_YARN)
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"%s%s\" has rope type %s but no \"factor\": fix config.json",
                          r->path, r->where, key, type);
    if (get_double(&sub, obj, "factor", 0.0, &out->factor) != 0) return -1;
    if (get_int(&sub, obj, "original_max_position_embeddings", max_pos, &out->original_max_position_embeddings) != 0)
        return -1;
    if (out->type == DK_ROPE_LLAMA3) {
        if (!field(obj, "low_freq_factor") || !field(obj, "high_freq_factor"))
            return dk_err_set(r->err, DK_EXIT_USAGE,
                              "%s: \"%s%s\" has rope type llama3 but lacks \"%s\" (llama3 needs factor, "
                              "low_freq_factor, high_freq_factor, original_max_position_embeddings)",
                              r->path, r->where, key, field(obj, "low_freq_factor") ? "high_freq_factor" : "low_freq_factor");
        if (get_double(&sub, obj, "low_freq_factor", 0, &out->low_freq_factor) != 0 ||
            get_double(&sub, obj, "high_freq_factor", 0, &out->high_freq_factor) != 0)
            return -1;
        if (!(out->low_freq_factor > 0) || !(out->high_freq_factor > 0))
            return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"%s%s\": low_freq_factor and high_freq_factor must be positive",
                              r->path, r->where, key);
        if (out->high_freq_factor == out->low_freq_factor)
            return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"%s%s\": high_freq_factor equals low_freq_factor (%g)",
                              r->path, r->where, key, out->low_freq_factor);
    }
    if (out->type == DK_ROPE_YARN) {
        if (out->original_max_position_embeddings <= 0)
            return require_positive(&sub, "original_max_position_embeddings", out->original_max_position_embeddings);
        if (!factor) out->factor = (double)max_pos / (double)out->original_max_position_embeddings;
        /* transformers 5 (_compute_yarn_parameters): `get("beta_fast") or 32`, so 0 also means 32 */
        if (get_double(&sub, obj, "beta_fast", 0, &out->beta_fast) != 0 ||
            get_double(&sub, obj, "beta_slow", 0, &out->beta_slow) != 0 ||
            get_double(&sub, obj, "mscale", 0, &out->mscale) != 0 ||
            get_double(&sub, obj, "mscale_all_dim", 0, &out->mscale_all_dim) != 0 ||
            get_bool(&sub, obj, "truncate", true, &out->truncate) != 0)
            return -1;
        if (out->beta_fast == 0) out->beta_fast = 32;
        if (out->beta_slow == 0) out->beta_slow = 1;
        if (!(out->beta_fast > 0) || !(out->beta_slow > 0))
            return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"%s%s\": beta_fast and beta_slow must be positive", r->path,
                              r->where, key);
        const cJSON *af = field(obj, "attention_factor");
        if (af) {
            if (get_double(&sub, obj, "attention_factor", 1.0, &out->attention_factor) != 0) return -1;
        } else {
            double f = out->factor;
            if (out->mscale != 0 && out->mscale_all_dim != 0)
                out->attention_factor = yarn_mscale(f, out->mscale) / yarn_mscale(f, out->mscale_all_dim);
            else
                out->attention_factor = yarn_mscale(f, 1.0);
        }
    }
    if (!(out->factor > 0))
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"%s%s.factor\" must be positive, found %g", r->path, r->where,
                          key, out->factor);
    return 0;
}

/* Fills cfg->rope and cfg->rope_sliding from either spelling. */
static int parse_rope(const reader *r, const cJSON *text, const class_defaults *d, dk_hf_config *cfg) {
    double theta = 0;
    if (get_double(r, text, "rope_theta", d->rope_theta, &theta) != 0) return -1;
    const cJSON *params = field(text, "rope_parameters");
    bool gemma3 = cfg->arch == DK_ARCH_GEMMA3;
    double local_theta = 10000.0;
    if (gemma3 && get_double(r, text, "rope_local_base_freq", 10000.0, &local_theta) != 0) return -1;
    int64_t max_pos = cfg->max_position_embeddings;

    if (params) { /* transformers 5 */
        if (!cJSON_IsObject(params)) return wrong_type(r, "rope_parameters", "an object", params);
        const cJSON *full = field(params, "full_attention"), *sliding = field(params, "sliding_attention");
        if (full || sliding) { /* one dict per layer type */
            if (parse_rope_dict(r, full, "rope_parameters.full_attention", theta, max_pos, &cfg->rope) != 0)
                return -1;
            if (sliding)
                return parse_rope_dict(r, sliding, "rope_parameters.sliding_attention", gemma3 ? local_theta : theta,
                                       max_pos, &cfg->rope_sliding);
            cfg->rope_sliding = cfg->rope;
            return 0;
        }
        if (parse_rope_dict(r, params, "rope_parameters", theta, max_pos, &cfg->rope) != 0) return -1;
    } else { /* transformers 4: rope_theta + rope_scaling */
        if (parse_rope_dict(r, field(text, "rope_scaling"), "rope_scaling", theta, max_pos, &cfg->rope) != 0)
            return -1;
    }
    if (gemma3) /* local layers: default RoPE on rope_local_base_freq, whatever the global scaling */
        return parse_rope_dict(r, NULL, "rope_local_base_freq", local_theta, max_pos, &cfg->rope_sliding);
    cfg->rope_sliding = cfg->rope;
    return 0;
}

/* cfg->layer_types and cfg->sliding_window. */
static int parse_layer_kinds(const reader *r, const cJSON *text, const class_defaults *d, dk_hf_config *cfg) {
    int64_t n = cfg->num_hidden_layers;
    cfg->layer_types = dk_calloc((size_t)n, sizeof *cfg->layer_types);
    int64_t window;
    if (get_int(r, text, "sliding_window", d->sliding_window, &window) != 0) return -1;
    bool use_sliding = true;
    if (cfg->arch == DK_ARCH_QWEN2 || cfg->arch == DK_ARCH_QWEN3 || cfg->arch == DK_ARCH_QWEN2_5_VL) {
        if (get_bool(r, text, "use_sliding_window", false, &use_sliding) != 0) return -1;
        if (!use_sliding) window = -1; /* Qwen2Config: sliding_window = sliding_window if use_sliding_window else None */
    }

    const cJSON *types = field(text, "layer_types");
    if (types) {
        if (!cJSON_IsArray(types)) return wrong_type(r, "layer_types", "a list", types);
        if (cJSON_GetArraySize(types) != n)
            return dk_err_set(r->err, DK_EXIT_USAGE,
                              "%s: \"%slayer_types\" has %d entries but num_hidden_layers is %" PRId64
                              ": fix config.json",
                              r->path, r->where, cJSON_GetArraySize(types), n);
        int64_t i = 0;
        for (const cJSON *t = types->child; t; t = t->next, i++) {
            if (cJSON_IsString(t) && strcmp(t->valuestring, "full_attention") == 0)
                cfg->layer_types[i] = DK_LAYER_FULL_ATTENTION;
            else if (cJSON_IsString(t) && strcmp(t->valuestring, "sliding_attention") == 0)
                cfg->layer_types[i] = DK_LAYER_SLIDING_ATTENTION;
            else
                return dk_err_set(r->err, DK_EXIT_USAGE,
                                  "%s: \"%slayer_types\"[%" PRId64 "] is %s%s%s; diffkit supports \"full_attention\" "
                                  "and \"sliding_attention\"",
                                  r->path, r->where, i, cJSON_IsString(t) ? "\"" : "",
                                  cJSON_IsString(t) ? t->valuestring : dk_json_kind(t), cJSON_IsString(t) ? "\"" : "");
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            bool sliding = false;
            switch (cfg->arch) {
            case DK_ARCH_LLAMA:
            case DK_ARCH_GPT2: break;
            case DK_ARCH_MISTRAL: sliding = window > 0; break; /* one mask for every layer */
            case DK_ARCH_QWEN2:
            case DK_ARCH_QWEN3:
            case DK_ARCH_QWEN2_5_VL: {
                int64_t max_window_layers;
                if (get_int(r, text, "max_window_layers", 28, &max_window_layers) != 0) return -1;
                sliding = window > 0 && i >= max_window_layers;
                break;
            }
            case DK_ARCH_GEMMA2: sliding = (i + 1) % 2 != 0; break; /* even layers are local */
            case DK_ARCH_GEMMA3: {
                int64_t pattern;
                const char *key = field(text, "sliding_window_pattern") ? "sliding_window_pattern"
                                                                         : "_sliding_window_pattern";
                if (get_int(r, text, key, 6, &pattern) != 0 || require_positive(r, key, pattern) != 0) return -1;
                sliding = (i + 1) % pattern != 0;
                break;
            }
            }
            cfg->layer_types[i] = sliding ? DK_LAYER_SLIDING_ATTENTION : DK_LAYER_FULL_ATTENTION;
        }
    }
    bool any_sliding = false;
    for (int64_t i = 0; i < n; i++) any_sliding |= cfg->layer_types[i] == DK_LAYER_SLIDING_ATTENTION;
    if (any_sliding && window <= 0) {
        const cJSON *given = field(text, "sliding_window");
        char shown[64];
        if (!given || cJSON_IsNull(given)) snprintf(shown, sizeof shown, "null or absent");
        else snprintf(shown, sizeof shown, "%" PRId64 " (it must be positive)", window);
        return dk_err_set(r->err, DK_EXIT_USAGE,
                          "%s: some layers use sliding-window attention but \"%ssliding_window\" is %s: fix "
                          "config.json", r->path, r->where, shown);
    }
    cfg->sliding_window = any_sliding ? window : 0;
    return 0;
}

static int parse_token_ids(const reader *r, const cJSON *top, const cJSON *text, const class_defaults *d,
                           dk_hf_config *cfg) {
    /* Token ids: the top-level value when the file has one (a multimodal file's own), else the text
     * config's, else the class default. */
    const cJSON *bos_obj = field(top, "bos_token_id") ? top : text;
    const cJSON *pad_obj = field(top, "pad_token_id") ? top : text;
    const cJSON *eos_obj = field(top, "eos_token_id") ? top : text;
    reader rb = *r;
    rb.where = bos_obj == top ? "" : r->where;
    if (get_int(&rb, bos_obj, "bos_token_id", d->bos_token_id, &cfg->bos_token_id) != 0) return -1;
    rb.where = pad_obj == top ? "" : r->where;
    if (get_int(&rb, pad_obj, "pad_token_id", d->pad_token_id, &cfg->pad_token_id) != 0) return -1;
    rb.where = eos_obj == top ? "" : r->where;
    const cJSON *eos = field(eos_obj, "eos_token_id");
    cfg->n_eos_token_ids = 0;
    if (!eos) {
        if (d->eos_token_id >= 0) cfg->eos_token_ids[cfg->n_eos_token_ids++] = d->eos_token_id;
    } else if (cJSON_IsNumber(eos)) {
        if (get_int(&rb, eos_obj, "eos_token_id", -1, &cfg->eos_token_ids[0]) != 0) return -1;
        cfg->n_eos_token_ids = 1;
    } else if (cJSON_IsArray(eos)) {
        for (const cJSON *e = eos->child; e; e = e->next) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble))
                return wrong_type(&rb, "eos_token_id", "an integer or a list of integers", e);
            if (cfg->n_eos_token_ids == DK_HF_MAX_EOS)
                return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"eos_token_id\" lists more than %d ids", r->path,
                                  DK_HF_MAX_EOS);
            cfg->eos_token_ids[cfg->n_eos_token_ids++] = (int64_t)e->valuedouble;
        }
    } else {
        return wrong_type(&rb, "eos_token_id", "an integer or a list of integers", eos);
    }
    return 0;
}

/* "<where>: architecture "X" is not supported (did you mean Y?); diffkit supports A, B, ...". name NULL: shown
 * as `shown`. */
static int unsupported_architecture(const char *where, const char *name, const char *shown, dk_err *err) {
    const char *names[N_ARCHITECTURES];
    dk_strbuf list_text = {0};
    for (int i = 0; i < N_ARCHITECTURES; i++) {
        names[i] = architectures[i].architecture;
        dk_strbuf_printf(&list_text, "%s%s", i ? ", " : "", names[i]);
    }
    int near = name ? dk_nearest_string(name, (const char *const *)names, N_ARCHITECTURES) : -1;
    char hint[128] = "";
    if (near >= 0) snprintf(hint, sizeof hint, " (did you mean %s?)", names[near]);
    dk_err_set(err, DK_EXIT_USAGE, "%s: architecture %s%.80s%s is not supported%s; diffkit supports %s", where,
               name ? "\"" : "", name ? name : shown, name ? "\"" : "", hint, list_text.data);
    dk_strbuf_free(&list_text);
    return -1;
}

int dk_hf_architecture_check(const char *architecture, const char *where, dk_err *err) {
    for (int i = 0; i < N_ARCHITECTURES; i++)
        if (architecture && strcmp(architecture, architectures[i].architecture) == 0) return 0;
    return unsupported_architecture(where, architecture, "(none given)", err);
}

/* The architecture: "architectures"[0], or the model_type when the list is absent. */
static int find_architecture(const char *path, const cJSON *root, int *index, dk_err *err) {
    const cJSON *list = field(root, "architectures");
    const cJSON *model_type = field(root, "model_type");
    const char *name = NULL;
    if (list) {
        if (!cJSON_IsArray(list) || !cJSON_IsString(list->child))
            return dk_err_set(err, DK_EXIT_USAGE, "%s: \"architectures\" must be a list of class names", path);
        name = list->child->valuestring;
    }
    for (int i = 0; i < N_ARCHITECTURES; i++) {
        bool match = name ? strcmp(name, architectures[i].architecture) == 0
                          : cJSON_IsString(model_type) && strcmp(model_type->valuestring, architectures[i].model_type) == 0;
        if (match) {
            *index = i;
            return 0;
        }
    }
    return unsupported_architecture(path, name, cJSON_IsString(model_type) ? model_type->valuestring : "(none given)",
                                    err);
}

/* The activation named by hidden_act / hidden_activation / activation_function. */
static int parse_activation(const reader *r, const cJSON *text, const char *key, const char *def, dk_hf_config *cfg) {
    if (get_string(r, text, key, def, cfg->hidden_act, sizeof cfg->hidden_act) != 0) return -1;
    if (strcmp(cfg->hidden_act, "silu") == 0 || strcmp(cfg->hidden_act, "swish") == 0)
        cfg->activation = DK_ACT_SILU;
    else if (strcmp(cfg->hidden_act, "gelu_pytorch_tanh") == 0 || strcmp(cfg->hidden_act, "gelu_new") == 0)
        cfg->activation = DK_ACT_GELU_TANH;
    else if (strcmp(cfg->hidden_act, "gelu") == 0)
        cfg->activation = DK_ACT_GELU;
    else
        return dk_err_set(r->err, DK_EXIT_USAGE,
                          "%s: \"%s%s\" is \"%s\"; diffkit supports silu, gelu_pytorch_tanh, gelu_new and gelu",
                          r->path, r->where, key, cfg->hidden_act);
    return 0;
}

/* dtype (informational): "dtype" (transformers >= 4.56) or "torch_dtype", top level first, then `text`. */
static int parse_dtype(const reader *r, const cJSON *root, const cJSON *text, dk_hf_config *cfg) {
    const cJSON *dtype_obj = root;
    const char *dtype_key = field(root, "dtype") ? "dtype" : "torch_dtype";
    if (!field(root, dtype_key) && text != root) {
        dtype_obj = text;
        dtype_key = field(text, "dtype") ? "dtype" : "torch_dtype";
    }
    reader rd = *r;
    rd.where = dtype_obj == root ? "" : r->where;
    if (get_string(&rd, dtype_obj, dtype_key, "", cfg->dtype_name, sizeof cfg->dtype_name) != 0) return -1;
    cfg->dtype = cfg->dtype_name[0] ? dk_dtype_parse(cfg->dtype_name) : DK_DTYPE_INVALID;
    return 0;
}

/* An integer under GPT-2's name (n_embd) or the attribute name transformers maps it to (hidden_size). */
static int get_int_alias(const reader *r, const cJSON *obj, const char *key, const char *alias, int64_t def,
                         int64_t *out) {
    return get_int(r, obj, field(obj, key) || !field(obj, alias) ? key : alias, def, out);
}

/* GPT2LMHeadModel (GPT2Config): its own key names, LayerNorm, learned positions, a plain GELU MLP, Conv1D
 * projections with biases everywhere, tied embeddings by default. */
static int parse_gpt2(const reader *r, const cJSON *root, dk_hf_config *cfg) {
    const class_defaults *d = defaults_of("gpt2");
    snprintf(cfg->model_type, sizeof cfg->model_type, "gpt2");
    if (get_int(r, root, "vocab_size", REQUIRED, &cfg->vocab_size) ||
        get_int_alias(r, root, "n_embd", "hidden_size", REQUIRED, &cfg->hidden_size) ||
        get_int_alias(r, root, "n_layer", "num_hidden_layers", REQUIRED, &cfg->num_hidden_layers) ||
        get_int_alias(r, root, "n_head", "num_attention_heads", REQUIRED, &cfg->num_attention_heads) ||
        get_int_alias(r, root, "n_positions", "max_position_embeddings", d->max_position_embeddings,
                      &cfg->max_position_embeddings))
        return -1;
    if (require_positive(r, "vocab_size", cfg->vocab_size) || require_positive(r, "n_embd", cfg->hidden_size) ||
        require_positive(r, "n_layer", cfg->num_hidden_layers) || require_positive(r, "n_head", cfg->num_attention_heads) ||
        require_positive(r, "n_positions", cfg->max_position_embeddings))
        return -1;
    if (cfg->num_hidden_layers > 100000 || cfg->max_position_embeddings > (1 << 24))
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: n_layer %" PRId64 " / n_positions %" PRId64 " cannot be right",
                          r->path, cfg->num_hidden_layers, cfg->max_position_embeddings);
    if (cfg->hidden_size % cfg->num_attention_heads != 0)
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: n_embd (%" PRId64 ") is not a multiple of n_head (%" PRId64 ")",
                          r->path, cfg->hidden_size, cfg->num_attention_heads);
    cfg->num_key_value_heads = cfg->num_attention_heads;
    cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    if (cfg->head_dim % 2 != 0) /* no RoPE, but the CUDA attention pairs dimensions too */
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: n_embd / n_head = %" PRId64 " is odd; diffkit's attention "
                          "needs an even head size", r->path, cfg->head_dim);
    if (get_int(r, root, "n_inner", 4 * cfg->hidden_size, &cfg->intermediate_size) != 0 ||
        require_positive(r, "n_inner", cfg->intermediate_size) != 0)
        return -1;
    if (get_double(r, root, "layer_norm_epsilon", d->rms_norm_eps, &cfg->rms_norm_eps) != 0) return -1;
    if (!(cfg->rms_norm_eps > 0))
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"layer_norm_epsilon\" must be positive, found %g", r->path,
                          cfg->rms_norm_eps);
    bool scale_weights = true, by_layer = false;
    if (get_bool(r, root, "scale_attn_weights", true, &scale_weights) ||
        get_bool(r, root, "scale_attn_by_inverse_layer_idx", false, &by_layer))
        return -1;
    if (by_layer)
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"scale_attn_by_inverse_layer_idx\": true (a per-layer attention "
                          "scale) is not supported by diffkit's GPT-2", r->path);
    cfg->attention_scale = scale_weights ? 1.0 / sqrt((double)cfg->head_dim) : 1.0;
    /* reorder_and_upcast_attn only changes where fp16 is upcast: the fp32 result is the same */
    if (parse_activation(r, root, "activation_function", d->hidden_act, cfg) != 0) return -1;
    if (get_bool(r, root, "tie_word_embeddings", d->tie_word_embeddings, &cfg->tie_word_embeddings) != 0) return -1;
    cfg->layer_types = dk_calloc((size_t)cfg->num_hidden_layers, sizeof *cfg->layer_types); /* all full attention */
    if (parse_rope_dict(r, NULL, "rope", d->rope_theta, cfg->max_position_embeddings, &cfg->rope) != 0) return -1;
    cfg->rope_sliding = cfg->rope; /* unused: GPT-2 has no RoPE */
    cfg->attention_bias = cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = true; /* Conv1D projections have biases */
    cfg->layer_norm = cfg->learned_positions = true;
    cfg->gated_mlp = false;
    if (parse_dtype(r, root, root, cfg) != 0) return -1;
    return parse_token_ids(r, root, root, d, cfg);
}

/* Qwen2.5-VL: mrope_section, in rope_parameters (transformers 5) or rope_scaling (the Hub's flat file). */
static int parse_mrope(const reader *r, const cJSON *text, dk_hf_config *cfg) {
    const char *key = field(text, "rope_parameters") ? "rope_parameters" : "rope_scaling";
    const cJSON *section = field(field(text, key), "mrope_section");
    if (!section)
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: %s needs \"%s%s.mrope_section\" (three counts of RoPE "
                          "frequencies, summing to head_dim / 2), and it is missing", r->path, cfg->architecture,
                          r->where, key);
    int64_t sum = 0, i = 0;
    if (!cJSON_IsArray(section) || cJSON_GetArraySize(section) != 3) i = -1;
    for (const cJSON *s = i == 0 ? section->child : NULL; s; s = s->next, i++) {
        if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble != floor(s->valuedouble)) {
            i = -1;
            break;
        }
        cfg->mrope_section[i] = (int64_t)s->valuedouble;
        sum += cfg->mrope_section[i];
    }
    if (i != 3 || sum != cfg->head_dim / 2)
        return dk_err_set(r->err, DK_EXIT_USAGE, "%s: \"%s%s.mrope_section\" must be three non-negative integers "
                          "summing to head_dim / 2 = %" PRId64 ": fix config.json", r->path, r->where, key,
                          cfg->head_dim / 2);
    return 0;
}

static int parse_root(const char *path, const cJSON *root, dk_hf_config *cfg, dk_err *err) {
    if (!cJSON_IsObject(root))
        return dk_err_set(err, DK_EXIT_USAGE, "%s: config.json must be a JSON object", path);
    int a = 0;
    if (find_architecture(path, root, &a, err) != 0) return -1;
    cfg->arch = architectures[a].arch;
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", architectures[a].architecture);
    cfg->gated_mlp = true;
    if (cfg->arch == DK_ARCH_GPT2) {
        reader rg = {path, "", err};
        char model_type[32];
        if (get_string(&rg, root, "model_type", "gpt2", model_type, sizeof model_type) != 0) return -1;
        if (strcmp(model_type, "gpt2") != 0)
            return dk_err_set(err, DK_EXIT_USAGE, "%s: architecture %s expects \"model_type\": \"gpt2\", found "
                              "\"%s\": the config.json is inconsistent", path, cfg->architecture, model_type);
        return parse_gpt2(&rg, root, cfg);
    }

    /* The class whose defaults apply is the model_type's (that is how AutoConfig picks it). */
    reader r = {path, "", err};
    char model_type[32];
    if (get_string(&r, root, "model_type", architectures[a].model_type, model_type, sizeof model_type) != 0) return -1;
    const cJSON *text = root;
    if (strcmp(model_type, "gemma3") == 0) { /* composite: the language model is in text_config */
        if (cfg->arch != DK_ARCH_GEMMA3)
            return dk_err_set(err, DK_EXIT_USAGE, "%s: architecture %s does not go with model_type \"gemma3\"", path,
                              cfg->architecture);
        text = field(root, "text_config");
        if (!text)
            return dk_err_set(err, DK_EXIT_USAGE,
                              "%s: model_type \"gemma3\" (%s) needs a \"text_config\" object with the language "
                              "model's settings, and it is missing",
                              path, cfg->architecture);
        if (!cJSON_IsObject(text)) return wrong_type(&r, "text_config", "an object", text);
        cfg->nested_text_config = true;
        r.where = "text_config.";
        if (get_string(&r, text, "model_type", "gemma3_text", model_type, sizeof model_type) != 0) return -1;
    } else if (strcmp(model_type, "qwen2_5_vl") == 0) {
        /* the language model: text_config (transformers >= 4.52), or the top level (the Hub's files) */
        if (cfg->arch != DK_ARCH_QWEN2_5_VL)
            return dk_err_set(err, DK_EXIT_USAGE, "%s: architecture %s does not go with model_type \"qwen2_5_vl\"",
                              path, cfg->architecture);
        snprintf(model_type, sizeof model_type, "qwen2_5_vl_text");
        const cJSON *nested = field(root, "text_config");
        if (nested) {
            if (!cJSON_IsObject(nested)) return wrong_type(&r, "text_config", "an object", nested);
            text = nested;
            cfg->nested_text_config = true;
            r.where = "text_config.";
            if (get_string(&r, text, "model_type", "qwen2_5_vl_text", model_type, sizeof model_type) != 0) return -1;
        }
    }
    const char *expected_type = cfg->arch == DK_ARCH_GEMMA3       ? "gemma3_text"
                                : cfg->arch == DK_ARCH_QWEN2_5_VL ? "qwen2_5_vl_text"
                                                                  : architectures[a].model_type;
    if (strcmp(model_type, expected_type) != 0)
        return dk_err_set(err, DK_EXIT_USAGE,
                          "%s: architecture %s expects \"%smodel_type\": \"%s\", found \"%s\": the config.json is "
                          "inconsistent",
                          path, cfg->architecture, r.where, expected_type, model_type);
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", model_type);
    const class_defaults *d = defaults_of(model_type);
    CHECK(d != NULL, "no defaults for model_type %s", model_type);

    /* Sizes. A flat file must state them (save_pretrained always writes them); a nested text_config may
     * leave them to the class defaults, as gemma-3-4b's does. */
    bool nested = cfg->nested_text_config;
    if (get_int(&r, text, "vocab_size", nested ? d->vocab_size : REQUIRED, &cfg->vocab_size) ||
        get_int(&r, text, "hidden_size", nested ? d->hidden_size : REQUIRED, &cfg->hidden_size) ||
        get_int(&r, text, "intermediate_size", nested ? d->intermediate_size : REQUIRED, &cfg->intermediate_size) ||
        get_int(&r, text, "num_hidden_layers", nested ? d->num_hidden_layers : REQUIRED, &cfg->num_hidden_layers) ||
        get_int(&r, text, "num_attention_heads", nested ? d->num_attention_heads : REQUIRED,
                &cfg->num_attention_heads))
        return -1;
    if (require_positive(&r, "vocab_size", cfg->vocab_size) || require_positive(&r, "hidden_size", cfg->hidden_size) ||
        require_positive(&r, "intermediate_size", cfg->intermediate_size) ||
        require_positive(&r, "num_hidden_layers", cfg->num_hidden_layers) ||
        require_positive(&r, "num_attention_heads", cfg->num_attention_heads))
        return -1;
    if (cfg->num_hidden_layers > 100000)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: \"%snum_hidden_layers\" is %" PRId64 ", which cannot be right", path,
                          r.where, cfg->num_hidden_layers);
    int64_t nkv_default = d->num_key_value_heads < 0 ? cfg->num_attention_heads : d->num_key_value_heads;
    if (get_int(&r, text, "num_key_value_heads", nkv_default, &cfg->num_key_value_heads) != 0 ||
        require_positive(&r, "num_key_value_heads", cfg->num_key_value_heads) != 0)
        return -1;
    if (cfg->num_attention_heads % cfg->num_key_value_heads != 0)
        return dk_err_set(err, DK_EXIT_USAGE,
                          "%s: num_attention_heads (%" PRId64 ") is not a multiple of num_key_value_heads (%" PRId64
                          "): fix config.json",
                          path, cfg->num_attention_heads, cfg->num_key_value_heads);
    int64_t head_dim_default = d->head_dim < 0 ? cfg->hidden_size / cfg->num_attention_heads : d->head_dim;
    if (get_int(&r, text, "head_dim", head_dim_default, &cfg->head_dim) != 0 ||
        require_positive(&r, "head_dim", cfg->head_dim) != 0)
        return -1;
    if (cfg->head_dim % 2 != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: head_dim %" PRId64 " is odd; RoPE pairs dimensions (i, i + D/2)",
                          path, cfg->head_dim);
    if (cfg->arch == DK_ARCH_QWEN2_5_VL && parse_mrope(&r, text, cfg) != 0) return -1;
    if (get_int(&r, text, "max_position_embeddings", d->max_position_embeddings, &cfg->max_position_embeddings) ||
        require_positive(&r, "max_position_embeddings", cfg->max_position_embeddings) ||
        get_double(&r, text, "rms_norm_eps", d->rms_norm_eps, &cfg->rms_norm_eps))
        return -1;
    if (!(cfg->rms_norm_eps > 0))
        return dk_err_set(err, DK_EXIT_USAGE, "%s: \"%srms_norm_eps\" must be positive, found %g", path, r.where,
                          cfg->rms_norm_eps);

    if (parse_rope(&r, text, d, cfg) != 0) return -1;
    if (parse_layer_kinds(&r, text, d, cfg) != 0) return -1;

    /* tie_word_embeddings: the text config's own value, else the top level's (a composite's), else the
     * class default (Gemma true, the others false). For Gemma3ForConditionalGeneration transformers 4.x
     * ties by text_config's value and 5.x by the top level's; both default to true and every published
     * file agrees, so the difference only matters for a hand-edited file that sets them differently. */
    const cJSON *tie_obj = field(text, "tie_word_embeddings") ? text : root;
    reader rt = r;
    rt.where = tie_obj == text ? r.where : "";
    if (get_bool(&rt, tie_obj, "tie_word_embeddings", d->tie_word_embeddings, &cfg->tie_word_embeddings) != 0)
        return -1;
    if (get_bool(&r, text, "attention_bias", false, &cfg->attention_bias) != 0) return -1;
    if (cfg->arch == DK_ARCH_LLAMA && get_bool(&r, text, "mlp_bias", false, &cfg->mlp_bias) != 0) return -1;
    const bool qwen2_block = cfg->arch == DK_ARCH_QWEN2 || cfg->arch == DK_ARCH_QWEN2_5_VL;
    cfg->qkv_bias = cfg->attention_bias || qwen2_block; /* Qwen2Attention (and Qwen2.5-VL's): hard-coded */
    cfg->o_bias = cfg->attention_bias && !qwen2_block && cfg->arch != DK_ARCH_MISTRAL;
    if (cfg->arch == DK_ARCH_MISTRAL) cfg->qkv_bias = false; /* MistralAttention: bias=False */
    cfg->qk_norm = cfg->arch == DK_ARCH_QWEN3 || cfg->arch == DK_ARCH_GEMMA3;
    cfg->gemma_norms = cfg->arch == DK_ARCH_GEMMA2 || cfg->arch == DK_ARCH_GEMMA3;

    bool gemma = cfg->gemma_norms;
    if (gemma) {
        if (get_double(&r, text, "query_pre_attn_scalar", d->query_pre_attn_scalar, &cfg->query_pre_attn_scalar) ||
            get_double(&r, text, "attn_logit_softcapping", d->attn_logit_softcapping, &cfg->attn_logit_softcapping) ||
            get_double(&r, text, "final_logit_softcapping", d->final_logit_softcapping, &cfg->final_logit_softcapping))
            return -1;
        if (!(cfg->query_pre_attn_scalar > 0))
            return dk_err_set(err, DK_EXIT_USAGE, "%s: \"%squery_pre_attn_scalar\" must be positive", path, r.where);
        cfg->attention_scale = 1.0 / sqrt(cfg->query_pre_attn_scalar);
    } else {
        cfg->attention_scale = 1.0 / sqrt((double)cfg->head_dim);
    }

    /* Gemma's modeling code reads hidden_activation (hidden_act is a leftover in some Gemma 2 files). */
    if (parse_activation(&r, text, gemma ? "hidden_activation" : "hidden_act", d->hidden_act, cfg) != 0) return -1;
    if (parse_dtype(&r, root, text, cfg) != 0) return -1;

    return parse_token_ids(&r, root, text, d, cfg);
}

/* Python's json keeps the last of duplicate keys and cJSON the first; rather than guess, refuse them.
 * `prefix` is the dotted path of obj ("" at the top). */
static int check_duplicate_keys(const char *path, const cJSON *obj, const char *prefix, dk_err *err) {
    if (!cJSON_IsObject(obj)) return 0;
    for (const cJSON *a = obj->child; a; a = a->next) {
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0)
                return dk_err_set(err, DK_EXIT_USAGE, "%s: key \"%s%s\" appears twice: keep one and delete the other",
                                  path, prefix, a->string);
        if (cJSON_IsObject(a) && strlen(prefix) < 200) {
            char *sub = dk_sprintf("%s%s.", prefix, a->string ? a->string : "");
            int rc = check_duplicate_keys(path, a, sub, err);
            free(sub);
            if (rc != 0) return rc;
        }
    }
    return 0;
}

int dk_hf_config_parse(const char *json_text, size_t len, const char *path, dk_hf_config *cfg, dk_err *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->path = dk_strdup(path ? path : "config.json");
    cJSON *root = dk_json_parse_document(json_text, len, cfg->path, DK_EXIT_USAGE, "fix or download it again", err);
    if (!root) {
        dk_hf_config_free(cfg);
        return -1;
    }
    int rc = check_duplicate_keys(cfg->path, root, "", err);
    if (rc == 0) rc = parse_root(cfg->path, root, cfg, err);
    cJSON_Delete(root);
    if (rc != 0) {
        dk_hf_config_free(cfg);
        return -1;
    }
    return 0;
}

int dk_hf_config_load(const char *path, dk_hf_config *cfg, dk_err *err) {
    memset(cfg, 0, sizeof *cfg);
    char *file = dk_is_dir(path) ? dk_path_join(path, "config.json") : dk_strdup(path);
    size_t len = 0;
    char *text = dk_read_file(file, &len, err);
    int rc = text ? dk_hf_config_parse(text, len, file, cfg, err) : -1;
    free(text);
    free(file);
    return rc;
}

void dk_hf_config_free(dk_hf_config *cfg) {
    if (!cfg) return;
    free(cfg->layer_types);
    free(cfg->path);
    cfg->layer_types = NULL;
    cfg->path = NULL;
}
