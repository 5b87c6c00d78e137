/* test_hf_config.c — config.json parsing against transformers' own reading.
 *
 * tests/fixtures/engine/configs/ holds, per case, a config.json text (written by transformers 4.57 or
 * 5.x config classes, or a published Hub file) and <case>.expected.json: the attribute values transformers
 * gives after loading that text (tools/make_engine_fixtures.py). Every case must parse and agree on every
 * field. Then the errors: unsupported architecture, missing/mistyped keys, unsupported RoPE, ... each
 * naming the file and the key. */
#include "engine_test.h"

#include "core/strutil.h"
#include "io/file.h"
#include "model/hf_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>

static const cJSON *get(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key); }

/* An expected integer that may be null (→ null_value). */
static int64_t expected_int(const cJSON *obj, const char *key, int64_t null_value) {
    const cJSON *v = get(obj, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : null_value;
}

static double expected_double(const cJSON *obj, const char *key, double null_value) {
    const cJSON *v = get(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : null_value;
}

static void check_rope(const char *name, const char *which, const cJSON *exp, const dk_rope_params *got) {
    if (!cJSON_IsObject(exp)) return;
    const cJSON *type = get(exp, "rope_type");
    EXPECT(cJSON_IsString(type) && strcmp(type->valuestring, dk_rope_type_name(got->type)) == 0, "%s %s: type %s vs %s",
           name, which, cJSON_IsString(type) ? type->valuestring : "?", dk_rope_type_name(got->type));
    EXPECT(expected_double(exp, "rope_theta", -1) == got->theta, "%s %s: theta %g vs %g", name, which,
           expected_double(exp, "rope_theta", -1), got->theta);
    /* Optional parameters: compared when transformers states them. */
    struct {
        const char *key;
        double got;
    } params[] = {
        {"factor", got->factor},
        {"low_freq_factor", got->low_freq_factor},
        {"high_freq_factor", got->high_freq_factor},
        {"original_max_position_embeddings", (double)got->original_max_position_embeddings},
        {"beta_fast", got->beta_fast},
        {"beta_slow", got->beta_slow},
        {"attention_factor", got->attention_factor},
        {"mscale", got->mscale},
        {"mscale_all_dim", got->mscale_all_dim},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        const cJSON *v = get(exp, params[i].key);
        if (cJSON_IsNumber(v))
            EXPECT(v->valuedouble == params[i].got, "%s %s: %s %g vs %g", name, which, params[i].key, v->valuedouble,
                   params[i].got);
    }
    const cJSON *truncate = get(exp, "truncate");
    if (cJSON_IsBool(truncate)) EXPECT(cJSON_IsTrue(truncate) == got->truncate, "%s %s: truncate", name, which);
}

static void check_case(const char *dir, const char *name) {
    char *config_path = dk_sprintf("%s/%s.config.json", dir, name);
    char *expected_path = dk_sprintf("%s/%s.expected.json", dir, name);
    size_t size;
    char *expected_text = (char *)engine_read_all(expected_path, &size);
    cJSON *e = cJSON_Parse(expected_text);
    EXPECT(e != NULL, "%s: cannot parse the expectations", expected_path);
    dk_hf_config c;
    dk_err err = {0};
    int rc = dk_hf_config_load(config_path, &c, &err);
    EXPECT(rc == 0, "%s: %s", name, err.msg);
    if (rc == 0 && e) {
        EXPECT(strcmp(c.architecture, get(e, "architecture")->valuestring) == 0, "%s: architecture %s", name,
               c.architecture);
        EXPECT(strcmp(c.model_type, get(e, "model_type")->valuestring) == 0, "%s: model_type %s", name, c.model_type);
        struct {
            const char *key;
            int64_t got;
        } ints[] = {
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.num_hidden_layers},
            {"num_attention_heads", c.num_attention_heads},
            {"num_key_value_heads", c.num_key_value_heads},
            {"head_dim", c.head_dim},
            {"max_position_embeddings", c.max_position_embeddings},
            {"bos_token_id", c.bos_token_id},
            {"pad_token_id", c.pad_token_id},
            {"sliding_window", c.sliding_window},
        };
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
            int64_t want = expected_int(e, ints[i].key, strcmp(ints[i].key, "sliding_window") == 0 ? 0 : -1);
            EXPECT(want == ints[i].got, "%s: %s = %lld, transformers says %lld", name, ints[i].key,
                   (long long)ints[i].got, (long long)want);
        }
        EXPECT(expected_double(e, "rms_norm_eps", -1) == c.rms_norm_eps, "%s: rms_norm_eps %g", name, c.rms_norm_eps);
        EXPECT(cJSON_IsTrue(get(e, "tie_word_embeddings")) == c.tie_word_embeddings, "%s: tie_word_embeddings %d",
               name, c.tie_word_embeddings);
        EXPECT(cJSON_IsTrue(get(e, "attention_bias")) == c.attention_bias, "%s: attention_bias", name);
        EXPECT(cJSON_IsTrue(get(e, "mlp_bias")) == c.mlp_bias, "%s: mlp_bias", name);
        EXPECT(strcmp(get(e, "hidden_act")->valuestring, c.hidden_act) == 0, "%s: hidden_act %s", name, c.hidden_act);
        const cJSON *dtype = get(e, "dtype");
        EXPECT(cJSON_IsString(dtype) ? strcmp(dtype->valuestring, c.dtype_name) == 0 : c.dtype_name[0] == '\0',
               "%s: dtype '%s'", name, c.dtype_name);
        if (cJSON_IsString(dtype)) EXPECT(c.dtype != DK_DTYPE_INVALID, "%s: dtype %s not understood", name, c.dtype_name);
        /* Gemma-only scalars: null (0 here) elsewhere */
        EXPECT(expected_double(e, "query_pre_attn_scalar", 0) == c.query_pre_attn_scalar, "%s: query_pre_attn_scalar",
               name);
        EXPECT(expected_double(e, "attn_logit_softcapping", 0) == c.attn_logit_softcapping, "%s: attn softcap %g", name,
               c.attn_logit_softcapping);
        EXPECT(expected_double(e, "final_logit_softcapping", 0) == c.final_logit_softcapping, "%s: final softcap %g",
               name, c.final_logit_softcapping);
        /* eos: a list */
        const cJSON *eos = get(e, "eos_token_id");
        int n_eos = cJSON_IsArray(eos) ? cJSON_GetArraySize(eos) : 0;
        EXPECT(n_eos == c.n_eos_token_ids, "%s: %d eos ids, transformers %d", name, c.n_eos_token_ids, n_eos);
        for (int i = 0; i < n_eos && i < c.n_eos_token_ids; i++)
            EXPECT((int64_t)cJSON_GetArrayItem(eos, i)->valuedouble == c.eos_token_ids[i], "%s: eos[%d]", name, i);
        /* layer kinds */
        const cJSON *types = get(e, "layer_types");
        EXPECT(cJSON_GetArraySize(types) == c.num_hidden_layers, "%s: layer_types length", name);
        for (int i = 0; i < cJSON_GetArraySize(types) && i < c.num_hidden_layers; i++) {
            bool want_sliding = strcmp(cJSON_GetArrayItem(types, i)->valuestring, "sliding_attention") == 0;
            EXPECT(want_sliding == dk_hf_layer_is_sliding(&c, i), "%s: layer %d sliding=%d", name, i,
                   dk_hf_layer_is_sliding(&c, i));
        }
        check_rope(name, "full", get(e, "rope_full"), &c.rope);
        check_rope(name, "sliding", get(e, "rope_sliding"), &c.rope_sliding);

        /* Family facts of the modeling code (models_formats.md §3), not in config.json. */
        EXPECT(c.qkv_bias == (c.attention_bias || c.arch == DK_ARCH_QWEN2 || c.arch == DK_ARCH_QWEN2_5_VL), "%s: qkv_bias",
               name);
        EXPECT(c.qk_norm == (c.arch == DK_ARCH_QWEN3 || c.arch == DK_ARCH_GEMMA3), "%s: qk_norm", name);
        double want_scale = c.gemma_norms ? 1.0 / sqrt(c.query_pre_attn_scalar) : 1.0 / sqrt((double)c.head_dim);
        EXPECT(c.attention_scale == want_scale, "%s: attention_scale %g", name, c.attention_scale);
        dk_hf_config_free(&c);
    }
    cJSON_Delete(e);
    free(expected_text);
    free(config_path);
    free(expected_path);
}

static void test_fixtures(void) {
    char *dir = engine_fixture("configs");
    size_t n = 0;
    char **names = dk_list_dir(dir, ".expected.json", true, &n);
    EXPECT(n >= 20, "expected the v4 and v5 fixture sets in %s, found %zu cases", dir, n);
    for (size_t i = 0; i < n; i++) check_case(dir, names[i]);
    dk_free_strings(names, n);
    free(dir);

    /* Spot checks of what the fixtures must contain, so a regenerated set cannot silently lose a feature. */
    dk_hf_config c;
    dk_err err = {0};
    char *path = engine_fixture("configs/hub_gemma3_4b_it_v5.config.json");
    EXPECT(dk_hf_config_load(path, &c, &err) == 0, "%s", err.msg);
    EXPECT(c.nested_text_config && c.arch == DK_ARCH_GEMMA3 && c.vocab_size == 262208 && c.num_hidden_layers == 34 &&
               c.rope.type == DK_ROPE_LINEAR && c.rope.factor == 8.0 && c.rope_sliding.type == DK_ROPE_DEFAULT &&
               c.rope_sliding.theta == 10000.0 && c.sliding_window == 1024 && c.tie_word_embeddings,
           "gemma-3-4b text model");
    dk_hf_config_free(&c);
    free(path);
    path = engine_fixture("configs/hub_llama32_1b_instruct_v4.config.json");
    EXPECT(dk_hf_config_load(path, &c, &err) == 0, "%s", err.msg);
    EXPECT(c.rope.type == DK_ROPE_LLAMA3 && c.rope.factor == 32 && c.rope.original_max_position_embeddings == 8192 &&
               c.rope.theta == 500000.0 && c.n_eos_token_ids == 3 && c.head_dim == 64 && c.dtype == DK_DTYPE_BF16,
           "llama 3.2 1B");
    dk_hf_config_free(&c);
    free(path);
}

/* ---------------------------------------------------------------------------------------------------
 * errors */

static const char *base_llama =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":64,"
    "\"intermediate_size\":96,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2}";

/* base_llama with the keys of `changes` set (replaced or added); `changes` is a JSON object without its
 * closing brace. The caller frees. */
static char *llama_with(const char *changes) {
    char *closed = dk_sprintf("%s}", changes);
    cJSON *base = cJSON_Parse(base_llama), *delta = cJSON_Parse(closed);
    free(closed);
    CHECK(base && delta, "bad test JSON %s", changes);
    for (cJSON *item = delta->child; item; item = item->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(base, item->string);
        cJSON_AddItemToObject(base, item->string, cJSON_Duplicate(item, 1));
    }
    char *text = cJSON_PrintUnformatted(base);
    cJSON_Delete(base);
    cJSON_Delete(delta);
    return text;
}

static void expect_config_error(const char *json, int code, ...) {
    dk_hf_config c;
    dk_err err = {0};
    EXPECT(dk_hf_config_parse(json, strlen(json), "/models/x/config.json", &c, &err) == -1, "accepted: %s", json);
    EXPECT(err.code == code, "exit code %d, want %d: %s", err.code, code, err.msg);
    EXPECT_ERR_HAS(&err, "/models/x/config.json");
    va_list ap;
    va_start(ap, code);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;) EXPECT_ERR_HAS(&err, needle);
    va_end(ap);
    EXPECT(c.layer_types == NULL && c.path == NULL, "a failed parse must leave nothing to free");
}

static void test_errors(void) {
    dk_hf_config c;
    dk_err err = {0};
    EXPECT(dk_hf_config_parse(base_llama, strlen(base_llama), "x", &c, &err) == 0, "the base config must parse: %s", err.msg);
    EXPECT(c.rope.type == DK_ROPE_DEFAULT && c.rope.theta == 10000.0 && c.rms_norm_eps == 1e-6 &&
               !c.tie_word_embeddings && c.head_dim == 16 && c.bos_token_id == 1 && c.n_eos_token_ids == 1 &&
               c.eos_token_ids[0] == 2 && c.pad_token_id == -1 && c.activation == DK_ACT_SILU,
           "LlamaConfig defaults");
    dk_hf_config_free(&c);

    expect_config_error("{\"architectures\":[\"PhiForCausalLM\"],\"model_type\":\"phi\"}", DK_EXIT_USAGE,
                        "\"PhiForCausalLM\" is not supported", "LlamaForCausalLM", "Qwen3ForCausalLM",
                        "Gemma3ForConditionalGeneration", NULL);
    expect_config_error("{\"architectures\":[\"Qwen3ForCausalLm\"]}", DK_EXIT_USAGE, "did you mean Qwen3ForCausalLM",
                        NULL);
    expect_config_error("{\"model_type\":\"falcon\"}", DK_EXIT_USAGE, "falcon", "not supported", NULL);
    expect_config_error("{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"vocab_size\":10}",
                        DK_EXIT_USAGE, "required key \"hidden_size\" is missing", NULL);
    expect_config_error("{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"qwen2\"}", DK_EXIT_USAGE,
                        "expects \"model_type\": \"llama\"", "\"qwen2\"", NULL);
    expect_config_error("{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"model_type\":\"gemma3\"}",
                        DK_EXIT_USAGE, "text_config", NULL);
    expect_config_error("{\"architectures\":[\"LlamaForCausalLM\"", DK_EXIT_USAGE, "not valid JSON", NULL);
    expect_config_error("[1]", DK_EXIT_USAGE, "must be a JSON object", NULL);

    struct {
        const char *extra;
        const char *needle1, *needle2;
    } cases[] = {
        {"{\"num_attention_heads\":\"4\"", "\"num_attention_heads\" must be an integer", "found a string"},
        {"{\"hidden_size\":64.5", "\"hidden_size\" must be an integer", "64.5"},
        {"{\"num_key_value_heads\":3", "not a multiple of num_key_value_heads", "(3)"},
        {"{\"num_key_value_heads\":0", "\"num_key_value_heads\" must be positive", "0"},
        {"{\"rms_norm_eps\":\"1e-5\"", "\"rms_norm_eps\" must be a number", "string"},
        {"{\"tie_word_embeddings\":1", "\"tie_word_embeddings\" must be true or false", "number"},
        {"{\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2.0}", "\"rope_scaling.rope_type\" is \"dynamic\"",
         "default, linear, llama3 and yarn"},
        {"{\"rope_scaling\":{\"type\":\"longrope\"}", "\"rope_scaling.type\" is \"longrope\"", "llama3"},
        {"{\"rope_scaling\":{\"rope_type\":\"linear\"}", "rope type linear but no \"factor\"", "rope_scaling"},
        {"{\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"high_freq_factor\":4.0}",
         "lacks \"low_freq_factor\"", "llama3"},
        {"{\"rope_parameters\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":\"1\","
         "\"high_freq_factor\":4.0}",
         "\"rope_parameters.low_freq_factor\" must be a number", "string"},
        {"{\"rope_theta\":-5", "rope_theta", "must be positive"},
        {"{\"rope_scaling\":[1]", "\"rope_scaling\" must be an object", "a list"},
        {"{\"layer_types\":[\"full_attention\"]", "\"layer_types\" has 1 entries", "num_hidden_layers is 2"},
        {"{\"layer_types\":[\"full_attention\",\"chunked_attention\"]", "\"layer_types\"[1] is \"chunked_attention\"",
         "sliding_attention"},
        {"{\"layer_types\":[\"full_attention\",\"sliding_attention\"]", "\"sliding_window\" is null or absent",
         "sliding-window"},
        {"{\"hidden_act\":\"relu2\"", "\"hidden_act\" is \"relu2\"", "silu"},
        {"{\"eos_token_id\":[1,\"2\"]", "\"eos_token_id\" must be an integer or a list of integers", "string"},
        {"{\"head_dim\":15", "head_dim 15 is odd", "RoPE"},
        {"{\"num_hidden_layers\":0", "\"num_hidden_layers\" must be positive", "0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *json = llama_with(cases[i].extra);
        expect_config_error(json, DK_EXIT_USAGE, cases[i].needle1, cases[i].needle2, NULL);
        free(json);
    }
    /* Python's json keeps the last of duplicate keys, cJSON the first: refuse rather than guess. */
    expect_config_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"hidden_size\":32}",
                        DK_EXIT_USAGE, "\"hidden_size\" appears twice", NULL);
    expect_config_error("{\"architectures\":[\"LlamaForCausalLM\"],\"rope_scaling\":{\"factor\":1,\"factor\":2}}",
                        DK_EXIT_USAGE, "\"rope_scaling.factor\" appears twice", NULL);

    /* Nested keys are named with their prefix. */
    expect_config_error("{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"model_type\":\"gemma3\","
                        "\"text_config\":{\"num_attention_heads\":\"8\"}}",
                        DK_EXIT_USAGE, "\"text_config.num_attention_heads\" must be an integer", NULL);
    expect_config_error("{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"model_type\":\"gemma3\","
                        "\"text_config\":{\"model_type\":\"llama\"}}",
                        DK_EXIT_USAGE, "\"text_config.model_type\": \"gemma3_text\"", NULL);

    /* A file that is not there: runtime error (code 1) naming the path. */
    char *missing = dk_sprintf("%s/no_such_model", engine_scratch_dir());
    dk_err_clear(&err);
    EXPECT(dk_hf_config_load(missing, &c, &err) == -1, "loaded a missing config");
    EXPECT(err.code == DK_EXIT_RUNTIME, "code %d", err.code);
    EXPECT_ERR_HAS(&err, "no_such_model");
    free(missing);
    /* A folder: config.json inside it. */
    char *folder = engine_fixture("configs");
    dk_err_clear(&err);
    EXPECT(dk_hf_config_load(folder, &c, &err) == -1, "there is no configs/config.json");
    EXPECT_ERR_HAS(&err, "configs/config.json");
    free(folder);
}

int main(void) {
    test_fixtures();
    test_errors();
    engine_scratch_cleanup();
    return dk_test_finish("test_hf_config");
}
