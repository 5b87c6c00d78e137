/* test_agent_methods.c — the agent types of host/agent/agent_method.h on real (trimmed) results, against texts
 * the SEED's own functions wrote for the same files (tools/make_agent_adl_golden.py on
 * tests/fixtures/agent/{adl_demo,dm_demo}, made by tools/make_agent_fixture.py):
 *   - the ADL overview message (two overview configurations: fractional layer, lexicographic position order,
 *     absolute + duplicate layers, top_k and max_sample_chars cuts), ADLBlackboxAgent's first message, the
 *     diff-mining overview for three ordering types and budgets, each byte for byte, and the dataset mappings;
 *   - get_logitlens_details, get_patchscope_details, get_steering_samples outputs byte for byte (through
 *     dk_pyjson_dumps), with the real dataset name and with the anonymised ds1;
 *   - generate_steered against tests/llm/scripted_server: the request bodies (messages, n, max_tokens,
 *     temperature, the steering layer, strength = avg_threshold and the vector, compared with the seed's
 *     load_position_mean_vector), the texts in prompt order, the post cost, an endpoint failure;
 *   - untrusted arguments: each bad argument gives DK_TOOL_PARAM_ERROR naming it, and no request is sent;
 *   - missing / unfinished results and a diff-mining extraction variant the results do not have: code 2;
 *   - a whole ADL agent run (dk_agent_run with these tools and the real resources/agent prompts) against the seed's
 *     ADLAgent.run on the same script (tools/make_agent_golden.py, fixture agent/adl_transcript): every tool, a
 *     signature error, the budget exhausted, FINAL; messages.json, stats.json, description, mapping byte for byte.
 * The prompts directory is a temporary one whose post_overview.txt is the golden's placeholder. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_method.h"
#include "agent/pyjson.h"
#include "config/config.h"
#include "core/strutil.h"
#include "io/file.h"
#include "llm/server_proc.h"
#include "test.h"

static cJSON *golden;
static const char *server_exe;
static char prompts_dir[256];
static char *source_dir;

static const char *gold(const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(golden, name);
    if (!cJSON_IsString(v)) {
        fprintf(stderr, "golden case %s missing\n", name);
        exit(1);
    }
    return v->valuestring;
}

static void expect_same(const char *what, const char *got, const char *want) {
    if (got && strcmp(got, want) == 0) {
        EXPECT(true, "%s", what);
        return;
    }
    size_t i = 0;
    while (got && got[i] && got[i] == want[i]) i++;
    EXPECT(false, "%s differs from the seed's at byte %zu:\n  ours: %.160s\n  seed: %.160s", what, i,
           got ? got + (i > 40 ? i - 40 : 0) : "(null)", want + (i > 40 ? i - 40 : 0));
}

/* The prompts folder: our resources/agent texts, the blackbox pieces and post_overview as placeholders. */
static void make_prompts_dir(void) {
    snprintf(prompts_dir, sizeof prompts_dir, "/tmp/dk_agent_methods_%d", (int)getpid());
    mkdir(prompts_dir, 0700);
    const char *own[] = {"adl_overview.txt", "adl_tools.txt", "adl_conduct.txt", "adl_examples.txt",
                         "adl_blackbox_overview.txt", "dm_overview.txt", "dm_tools.txt", "dm_conduct.txt",
                         "dm_examples.txt"};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
        char *src = dk_sprintf("%s/resources/agent/%s", source_dir, own[i]);
        char *dst = dk_sprintf("%s/%s", prompts_dir, own[i]);
        if (symlink(src, dst) != 0) fprintf(stderr, "cannot link %s\n", dst);
        free(src);
        free(dst);
    }
    const char *placeholders[][2] = {{"post_overview.txt", "<<POST_OVERVIEW>>"},
                                     {"blackbox_tools.txt", "<<BB_TOOLS>>"},
                                     {"blackbox_conduct.txt", "<<BB_CONDUCT>>"},
                                     {"blackbox_examples.txt", "<<BB_EXAMPLES>>"},
                                     {"large_budget.txt", "<<LARGE>>"}};
    for (size_t i = 0; i < 5; i++) {
        char *p = dk_sprintf("%s/%s", prompts_dir, placeholders[i][0]);
        FILE *f = fopen(p, "w");
        fputs(placeholders[i][1], f);
        fclose(f);
        free(p);
    }
}

static void remove_prompts_dir(void) {
    size_t n = 0;
    char **names = dk_list_dir(prompts_dir, NULL, false, &n);
    for (size_t i = 0; i < n; i++) {
        char *p = dk_sprintf("%s/%s", prompts_dir, names[i]);
        unlink(p);
        free(p);
    }
    dk_free_strings(names, n);
    rmdir(prompts_dir);
}

/* A configuration with the agent keys of the two methods' YAML files. */
static dk_cfg *make_cfg(const char *adl_overview, const char *dm_overview) {
    char *yaml = dk_sprintf(
        "model: {model_id: %s/models/demo/base}\n"
        "diffing:\n"
        "  method:\n"
        "    token_ordering: {nmf: {num_topics: 3, top_n_tokens_per_topic: 200, mode: logit_diff_magnitude,\n"
        "                           beta: 2, orthogonal: false, orthogonal_weight: 1000.0}}\n"
        "    agent:\n"
        "      overview: {%s%s}\n"
        "      drilldown: {top_k_tokens: 30, max_steering_samples_per_prompt: 5, max_sample_chars: 1000}\n"
        "      generate_steered: {max_new_tokens: 512, temperature: 1.0, do_sample: true, max_batch_size: 8,\n"
        "                         max_samples_per_call: 16}\n",
        source_dir, adl_overview, dm_overview);
    dk_err err = {0};
    dk_cfg *cfg = dk_cfg_from_yaml(yaml, "test", &err);
    if (!cfg) {
        fprintf(stderr, "config: %s\n%s\n", err.msg, yaml);
        exit(1);
    }
    free(yaml);
    return cfg;
}

static const char *OV1 = "datasets: [], layers: [0.5], top_k_tokens: 10, steering_samples_per_prompt: 1, "
                         "max_sample_chars: 128, positions: [0, 1, 2, 3, 4, 10, 11]";
static const char *OV2 = "datasets: [], layers: [1, 1.0], top_k_tokens: 3, steering_samples_per_prompt: 1, "
                         "max_sample_chars: 20, positions: [11, 1, 10, 5]";

static dk_agent_method *open_method(dk_agent_kind kind, const dk_cfg *cfg, const char *fixture, dk_err *err) {
    char *dir = dk_fixture_path(fixture);
    dk_agent_method_config mc = {.kind = kind, .cfg = cfg, .results_dir = dir, .prompts_dir = prompts_dir};
    dk_agent_method *m = dk_agent_method_open(&mc, err);
    free(dir);
    return m;
}

static void test_overviews(void) {
    dk_err err = {0};
    dk_cfg *cfg = make_cfg(OV1, "");
    dk_agent_method *m = open_method(DK_AGENT_ADL, cfg, "agent/adl_demo", &err);
    EXPECT(m != NULL, "ADL open: %s", err.msg);
    if (m) {
        expect_same("ADL first message", dk_agent_method_first_message(m), gold("adl_first_message"));
        char *map = dk_pyjson_dumps(dk_agent_method_dataset_mapping(m), DK_PYJSON_COMPACT);
        expect_same("ADL dataset mapping", map, gold("adl_mapping"));
        free(map);
        EXPECT(strcmp(dk_agent_method_name(m), "ADL") == 0, "name %s", dk_agent_method_name(m));
        const dk_agent_prompt_parts *p = dk_agent_method_prompt_parts(m);
        EXPECT(dk_str_starts_with(p->tool_descriptions, "<<BB_TOOLS>>") &&
                   strstr(p->tool_descriptions, "generate_steered") != NULL,
               "ADL tools = blackbox tools + ADL tools: %.60s", p->tool_descriptions);
        EXPECT(strstr(p->additional_conduct, "OVERVIEW") != NULL, "ADL conduct replaces the blackbox one");
        dk_agent_method_close(m);
    }
    m = open_method(DK_AGENT_ADL_BLACKBOX, cfg, "agent/adl_demo", &err);
    EXPECT(m != NULL, "ADLBlackbox open: %s", err.msg);
    if (m) {
        expect_same("ADLBlackbox first message", dk_agent_method_first_message(m), gold("adl_blackbox_first_message"));
        EXPECT(strcmp(dk_agent_method_name(m), "Blackbox") == 0, "name %s", dk_agent_method_name(m));
        const dk_agent_prompt_parts *p = dk_agent_method_prompt_parts(m);
        EXPECT(strcmp(p->tool_descriptions, "<<BB_TOOLS>>") == 0 && strcmp(p->additional_conduct, "<<BB_CONDUCT>>") == 0,
               "ADLBlackbox has the blackbox pieces");
        dk_agent_method_close(m);
    }
    dk_cfg_free(cfg);
    cfg = make_cfg(OV2, "");
    m = open_method(DK_AGENT_ADL, cfg, "agent/adl_demo", &err);
    EXPECT(m != NULL, "ADL open (2): %s", err.msg);
    if (m) expect_same("ADL first message (absolute and repeated layers, cuts)", dk_agent_method_first_message(m),
                       gold("adl_first_message_2"));
    dk_agent_method_close(m);
    dk_cfg_free(cfg);

    const char *dm_cases[][3] = {{"top_k_occurring", "100", "dm_top_k_occurring"}, {"nmf", "7", "dm_nmf_7"},
                                 {"fraction_positive_diff", "12", "dm_fraction"}};
    for (int i = 0; i < 3; i++) {
        char *ov = dk_sprintf("datasets: [], top_k_tokens: %s, ordering_type: %s, extraction_method: logits",
                              dm_cases[i][1], dm_cases[i][0]);
        cfg = make_cfg(ov, "");
        m = open_method(DK_AGENT_DIFF_MINING, cfg, "agent/dm_demo", &err);
        EXPECT(m != NULL, "DiffMining open (%s): %s", dm_cases[i][0], err.msg);
        if (m) {
            expect_same(dm_cases[i][2], dk_agent_method_first_message(m), gold(dm_cases[i][2]));
            char *key = dk_sprintf("%s_mapping", dm_cases[i][2]);
            char *map = dk_pyjson_dumps(dk_agent_method_dataset_mapping(m), DK_PYJSON_COMPACT);
            expect_same(key, map, gold(key));
            free(map);
            free(key);
            EXPECT(strcmp(dk_agent_method_name(m), "DiffMining") == 0, "name");
        }
        dk_agent_method_close(m);
        dk_cfg_free(cfg);
        free(ov);
    }
    /* the seed's default extraction variant, which our diff_mining does not compute: refused, naming the key */
    cfg = make_cfg("datasets: [], top_k_tokens: 10, ordering_type: top_k_occurring, extraction_method: patchscope_lens",
                   "");
    dk_err_clear(&err);
    m = open_method(DK_AGENT_DIFF_MINING, cfg, "agent/dm_demo", &err);
    EXPECT(m == NULL && err.code == 2, "patchscope_lens variant refused (code %d)", err.code);
    EXPECT_CONTAINS(err.msg, "diffing.method.agent.overview.extraction_method=logits");
    dk_agent_method_close(m);
    dk_cfg_free(cfg);

    /* the generic Blackbox agent: no overview, post_overview as the context section */
    cfg = make_cfg(OV1, "");
    m = open_method(DK_AGENT_BLACKBOX, cfg, "agent/adl_demo", &err);
    EXPECT(m && strcmp(dk_agent_method_first_message(m), "") == 0 &&
               strcmp(dk_agent_method_prompt_parts(m)->first_user_message_description, "<<POST_OVERVIEW>>") == 0 &&
               dk_agent_method_dataset_mapping(m) == NULL,
           "Blackbox: empty first message, POST_OVERVIEW as description");
    dk_agent_method_close(m);
    dk_cfg_free(cfg);
}

static void test_incomplete_results(void) {
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/dk_agent_incomplete_%d", (int)getpid());
    mkdir(dir, 0700);
    dk_cfg *cfg = make_cfg(OV1, "");
    dk_agent_method_config mc = {.kind = DK_AGENT_ADL, .cfg = cfg, .results_dir = dir, .prompts_dir = prompts_dir};
    dk_err err = {0};
    dk_agent_method *m = dk_agent_method_open(&mc, &err);
    EXPECT(!m && err.code == 2, "missing results.h5: code 2 (%d)", err.code);
    EXPECT_CONTAINS(err.msg, "run diff_adl");
    char *partial = dk_sprintf("%s/results.h5.partial", dir);
    fclose(fopen(partial, "w"));
    dk_err_clear(&err);
    m = dk_agent_method_open(&mc, &err);
    EXPECT(!m && err.code == 2, "results.h5.partial only: code 2");
    EXPECT_CONTAINS(err.msg, "results.h5.partial");
    EXPECT_CONTAINS(err.msg, "rerun diff_adl");
    mc.kind = DK_AGENT_DIFF_MINING;
    dk_cfg_free(cfg);
    cfg = make_cfg("datasets: [], top_k_tokens: 10, ordering_type: top_k_occurring, extraction_method: logits", "");
    mc.cfg = cfg;
    dk_err_clear(&err);
    m = dk_agent_method_open(&mc, &err);
    EXPECT(!m && err.code == 2, "diff mining unfinished: code 2");
    EXPECT_CONTAINS(err.msg, "diff_mining");
    unlink(partial);
    free(partial);
    rmdir(dir);
    dk_cfg_free(cfg);
    dk_agent_kind k;
    EXPECT(dk_agent_kind_parse("ADLBlackbox", &k, &err) == 0 && k == DK_AGENT_ADL_BLACKBOX, "kind parse");
    EXPECT(dk_agent_kind_parse("adl", &k, &err) != 0 && err.code == 2, "unknown kind refused");
}

static dk_agent_tool *find_tool(dk_agent_run_tools *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->tools[i].name, name) == 0) return &t->tools[i];
    fprintf(stderr, "no tool %s\n", name);
    exit(1);
}

static cJSON *args_of(const char *json) {
    char why[200];
    cJSON *v = dk_pyjson_loads(json, strlen(json), why, sizeof why);
    if (!v) {
        fprintf(stderr, "bad test args %s: %s\n", json, why);
        exit(1);
    }
    return v;
}

/* Runs a tool; returns the status and *text (the output's json.dumps, or the message). */
static dk_tool_status run_tool(dk_agent_tool *t, const char *json, char **text, dk_err *err) {
    cJSON *args = args_of(json), *out = NULL;
    char *message = NULL;
    dk_err_clear(err);
    dk_tool_status st = t->run(t->ctx, args, &out, &message, err);
    *text = st == DK_TOOL_OK ? dk_pyjson_dumps(out, DK_PYJSON_COMPACT) : message ? message : dk_strdup(err->msg);
    if (st == DK_TOOL_OK) free(message);
    cJSON_Delete(out);
    cJSON_Delete(args);
    return st;
}

static void test_tools(void) {
    dk_err err = {0};
    dk_cfg *cfg = make_cfg(OV1, "");
    dk_agent_method *m = open_method(DK_AGENT_ADL, cfg, "agent/adl_demo", &err);
    if (!EXPECT(m != NULL, "open: %s", err.msg)) return;
    scripted_server srv;
    const char *script[] = {"ok", "ok", "500", "500", "500", "500", NULL};
    if (scripted_server_start(&srv, server_exe, script) != 0) exit(1);
    dk_llm_config lc;
    dk_llm_config_defaults(&lc);
    lc.base_url = dk_strdup(srv.base_url);
    lc.model_id = dk_strdup("organism");
    lc.section = dk_strdup("test");
    lc.max_attempts = 1;
    lc.request_timeout_s = 10;
    dk_llm_client *ft = dk_llm_client_open(&lc, &err);
    dk_agent_models models = {.base = ft, .finetuned = ft, .max_new_tokens = 16, .temperature = 0.8,
                              .disable_thinking = true, .max_prompts = 8, .max_prompt_chars = 2000};
    dk_agent_run_tools rt;
    EXPECT(dk_agent_method_tools(m, &models, &rt, &err) == 0 && rt.n == 6, "six tools (%d)", rt.n);
    EXPECT(strcmp(rt.tools[0].name, "ask_model") == 0 && strcmp(rt.tools[1].name, "hypothesis_tracking") == 0,
           "the blackbox tools come first");
    char *text = NULL;
    struct {
        const char *tool, *args, *golden;
    } cases[] = {
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 0.5, \"positions\": [1, 0, 11, 1], \"k\": 20}",
         "logitlens_1"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [10], \"k\": 100}",
         "logitlens_2"},
        {"get_patchscope_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [1, 0], \"k\": 5}",
         "patchscope_1"},
        {"get_patchscope_details", "{\"dataset\": \"pretrain\", \"layer\": 0.5, \"positions\": [0], \"k\": 20}",
         "patchscope_2"},
        {"get_steering_samples",
         "{\"dataset\": \"pretrain\", \"layer\": 0.5, \"position\": 1, \"prompts_subset\": null, \"n\": 1}",
         "steering_1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dk_agent_tool *t = find_tool(&rt, cases[i].tool);
        dk_tool_status st = run_tool(t, cases[i].args, &text, &err);
        EXPECT(st == DK_TOOL_OK, "%s %s: %s", cases[i].tool, cases[i].args, text);
        if (st == DK_TOOL_OK) expect_same(cases[i].golden, text, gold(cases[i].golden));
        free(text);
    }
    /* the subset case: the prompts from the golden */
    char *subset_args = dk_sprintf("{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts_subset\": %s, "
                                   "\"n\": 2}", gold("steering_subset"));
    dk_agent_tool *samples = find_tool(&rt, "get_steering_samples");
    dk_tool_status st = run_tool(samples, subset_args, &text, &err);
    free(subset_args);
    EXPECT(st == DK_TOOL_OK, "steering subset: %s", text);
    if (st == DK_TOOL_OK) expect_same("steering_2 (prompts_subset)", text, gold("steering_2"));
    free(text);
    /* ds1 is the anonymised name of pretrain: the same output, echoing ds1 */
    st = run_tool(find_tool(&rt, "get_logitlens_details"),
                  "{\"dataset\": \"ds1\", \"layer\": 0.5, \"positions\": [1, 0, 11, 1], \"k\": 20}", &text, &err);
    char *want = dk_strdup(gold("logitlens_1"));
    char *at = strstr(want, "\"pretrain\"");
    char *expected = at ? dk_sprintf("%.*s\"ds1\"%s", (int)(at - want), want, at + strlen("\"pretrain\"")) : NULL;
    EXPECT(st == DK_TOOL_OK && expected && strcmp(text, expected) == 0, "ds1 resolves to pretrain: %.100s", text);
    free(expected);
    free(want);
    free(text);

    /* untrusted arguments: each a PARAM_ERROR naming the argument, nothing sent to the endpoint */
    struct {
        const char *tool, *args, *needle;
    } bad[] = {
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [0], \"k\": \"20\"}", "k must"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [0], \"k\": 101}", "k must be an int from 1 to 100"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [0], \"k\": 0}", "k must"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [0], \"k\": 2.0}", "k must"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [0], \"k\": true}", "k must"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [12], \"k\": 5}", "position"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": 0, \"k\": 5}", "positions must be a list"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [\"0\"], \"k\": 5}", "positions entry must be an int"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [true], \"k\": 5}", "positions entry must be an int"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [1e400], \"k\": 5}", "positions entry must be an int"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 2, \"positions\": [0], \"k\": 5}", "available layers: 1"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": true, \"positions\": [0], \"k\": 5}", "layer must"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 1.5, \"positions\": [0], \"k\": 5}", "fraction of depth in [0, 1]"},
        {"get_logitlens_details", "{\"dataset\": \"pretrain\", \"layer\": 99999999999999999999, \"positions\": [0], \"k\": 5}", "layer"},
        {"get_logitlens_details", "{\"dataset\": \"../../etc/passwd\", \"layer\": 1, \"positions\": [0], \"k\": 5}", "dataset \"../../etc/passwd\" is unknown: use one of ds1"},
        {"get_logitlens_details", "{\"dataset\": \"ds2\", \"layer\": 1, \"positions\": [0], \"k\": 5}", "use one of ds1"},
        {"get_logitlens_details", "{\"dataset\": 7, \"layer\": 1, \"positions\": [0], \"k\": 5}", "dataset must be a string"},
        {"get_patchscope_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [2], \"k\": 5}", "available positions: 0, 1"},
        {"get_patchscope_details", "{\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [0], \"k\": 21}", "k must be an int from 1 to 20"},
        {"get_steering_samples", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 0, \"prompts_subset\": null, \"n\": 1}", "available positions: 1"},
        {"get_steering_samples", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts_subset\": \"x\", \"n\": 1}", "prompts_subset must be a list"},
        {"get_steering_samples", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts_subset\": [3], \"n\": 1}", "prompts_subset[0]"},
        {"get_steering_samples", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts_subset\": null, \"n\": 0}", "n must be an int from 1 to 5"},
        {"get_steering_samples", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts_subset\": null, \"n\": 1000000}", "n must"},
        {"generate_steered", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 0, \"prompts\": [\"hi\"], \"n\": 1}", "available positions: 1"},
        {"generate_steered", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts\": [], \"n\": 1}", "non-empty list"},
        {"generate_steered", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts\": \"hi\", \"n\": 1}", "prompts must be a list"},
        {"generate_steered", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts\": [\"hi\", \"\"], \"n\": 1}", "prompts[1]"},
        {"generate_steered", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts\": [\"a\", \"b\"], \"n\": 9}", "max_samples_per_call"},
        {"generate_steered", "{\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, \"prompts\": [\"a\"], \"n\": -1}", "n must"},
    };
    int before = scripted_server_requests(&srv);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = run_tool(find_tool(&rt, bad[i].tool), bad[i].args, &text, &err);
        EXPECT(st == DK_TOOL_PARAM_ERROR, "%s %s: expected a parameter error, got %d: %.120s", bad[i].tool,
               bad[i].args, (int)st, text);
        EXPECT_CONTAINS(text, bad[i].needle);
        free(text);
    }
    /* a huge list */
    dk_strbuf big = {0};
    dk_strbuf_append(&big, "{\"dataset\": \"pretrain\", \"layer\": 1, \"k\": 1, \"positions\": [0");
    for (int i = 0; i < 1000; i++) dk_strbuf_append(&big, ", 0");
    dk_strbuf_append(&big, "]}");
    st = run_tool(find_tool(&rt, "get_logitlens_details"), big.data, &text, &err);
    EXPECT(st == DK_TOOL_PARAM_ERROR, "1001 positions refused");
    EXPECT_CONTAINS(text, "at most 256");
    free(text);
    dk_strbuf_free(&big);
    EXPECT(scripted_server_requests(&srv) == before, "no request for bad arguments");

    /* generate_steered for real against the scripted endpoint */
    dk_agent_tool *gs = find_tool(&rt, "generate_steered");
    cJSON *gargs = args_of("{\"dataset\": \"ds1\", \"layer\": 0.5, \"position\": 1, \"prompts\": [\"first\", \"second\"], "
                           "\"n\": 2}");
    /* charged whole before the call (n x |prompts|; the seed: 1 before, the rest after, overspending then asserting) */
    EXPECT(gs->pre_cost(gs->ctx, gargs) == 4, "pre cost n x |prompts| = 4");
    cJSON *out = NULL;
    char *message = NULL;
    dk_err_clear(&err);
    st = gs->run(gs->ctx, gargs, &out, &message, &err);
    EXPECT(st == DK_TOOL_OK, "generate_steered: %s %s", message ? message : "", err.msg);
    char *got = out ? dk_pyjson_dumps(out, DK_PYJSON_COMPACT) : NULL;
    expect_same("generate_steered texts",
                got, "{\"texts\": [\"reply 0 to: first\", \"reply 1 to: first\", \"reply 0 to: second\", "
                     "\"reply 1 to: second\"]}");
    EXPECT(out && gs->post_cost(gs->ctx, out) == 0, "post cost 0 (all charged before)");
    free(got);
    cJSON_Delete(out);
    /* the request bodies */
    char *log = scripted_server_log(&srv);
    cJSON *seed_vec = args_of(gold("steering_vector"));
    double strength = atof(gold("steering_strength"));
    int bodies = 0, seen_first = 0, seen_second = 0;
    for (char *line = log; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *brace = strchr(line, '{');
        cJSON *body = brace ? cJSON_Parse(brace) : NULL;
        if (body) {
            bodies++;
            const cJSON *steer = cJSON_GetObjectItemCaseSensitive(body, "steering");
            const cJSON *vec = cJSON_GetObjectItemCaseSensitive(steer, "vector");
            const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
            const cJSON *msg0 = cJSON_GetArrayItem(msgs, 0);
            /* the two requests are in flight together: they may arrive in either order */
            const char *content = cJSON_GetObjectItemCaseSensitive(msg0, "content")->valuestring;
            seen_first += strcmp(content, "first") == 0;
            seen_second += strcmp(content, "second") == 0;
            EXPECT(cJSON_GetArraySize(msgs) == 1 &&
                       strcmp(cJSON_GetObjectItemCaseSensitive(msg0, "role")->valuestring, "user") == 0,
                   "request %d: one user message", bodies);
            EXPECT(cJSON_GetObjectItemCaseSensitive(body, "n")->valuedouble == 2 &&
                       cJSON_GetObjectItemCaseSensitive(body, "max_tokens")->valuedouble == 512 &&
                       cJSON_GetObjectItemCaseSensitive(body, "temperature")->valuedouble == 1.0,
                   "n 2, max_tokens 512, temperature 1.0");
            EXPECT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(
                       cJSON_GetObjectItemCaseSensitive(body, "chat_template_kwargs"), "enable_thinking")),
                   "thinking off");
            EXPECT(cJSON_GetObjectItemCaseSensitive(steer, "layer")->valuedouble == 1 &&
                       cJSON_GetObjectItemCaseSensitive(steer, "strength")->valuedouble == strength &&
                       strcmp(cJSON_GetObjectItemCaseSensitive(steer, "mode")->valuestring, "all") == 0,
                   "steering layer 1, strength avg_threshold, mode all");
            int n = cJSON_GetArraySize(vec), bad_values = 0;
            double worst = 0;
            for (int h = 0; h < n; h++) {
                double a = cJSON_GetArrayItem(vec, h)->valuedouble, b = cJSON_GetArrayItem(seed_vec, h)->valuedouble;
                double rel = fabs(a - b) / (fabs(b) > 1e-3 ? fabs(b) : 1e-3);
                if (rel > worst) worst = rel;
                bad_values += rel > 1e-6;
            }
            EXPECT(n == 256 && n == cJSON_GetArraySize(seed_vec) && bad_values == 0,
                   "steering vector = the seed's load_position_mean_vector within float32 rounding (%d values, "
                   "%d off, worst relative %.3g)", n, bad_values, worst);
            cJSON_Delete(body);
        }
        line = nl ? nl + 1 : NULL;
    }
    EXPECT(bodies == 2 && seen_first == 1 && seen_second == 1, "one request per prompt (%d)", bodies);
    free(log);
    cJSON_Delete(seed_vec);
    /* the endpoint fails (500): the run cannot go on */
    free(message);
    message = NULL;
    dk_err_clear(&err);
    st = gs->run(gs->ctx, gargs, &out, &message, &err);
    EXPECT(st == DK_TOOL_FAILED && err.code != 0, "endpoint failure -> DK_TOOL_FAILED (%d)", (int)st);
    EXPECT_CONTAINS(err.msg, "generate_steered");
    free(message);
    cJSON_Delete(gargs);
    dk_agent_run_tools_free(&rt);
    dk_llm_client_close(ft);
    dk_llm_config_free(&lc);
    scripted_server_cleanup(&srv);
    dk_agent_method_close(m);
    dk_cfg_free(cfg);
}


/* ---- several runs at once (diff_agent's parallel runs): each thread has its own tools over one method ------- */

typedef struct thread_job {
    const dk_agent_method *m;
    const char *want;   /* the golden logitlens_1 */
    int mismatches;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    dk_agent_models models = {0};
    dk_agent_run_tools rt;
    dk_err err = {0};
    dk_agent_method_tools(j->m, &models, &rt, &err);
    dk_agent_tool *t = find_tool(&rt, "get_logitlens_details");
    for (int i = 0; i < 50; i++) {
        char *text = NULL;
        dk_tool_status st = run_tool(t, "{\"dataset\": \"pretrain\", \"layer\": 0.5, \"positions\": [1, 0, 11, 1], "
                                        "\"k\": 20}", &text, &err);
        j->mismatches += st != DK_TOOL_OK || strcmp(text, j->want) != 0;
        free(text);
    }
    dk_agent_run_tools_free(&rt);
    return NULL;
}

static void test_threads(void) {
    dk_err err = {0};
    dk_cfg *cfg = make_cfg(OV1, "");
    dk_agent_method *m = open_method(DK_AGENT_ADL, cfg, "agent/adl_demo", &err);
    if (!EXPECT(m != NULL, "open: %s", err.msg)) return;
    thread_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){.m = m, .want = gold("logitlens_1")};
        pthread_create(&th[i], NULL, thread_main, &jobs[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += jobs[i].mismatches;
    }
    EXPECT(bad == 0, "4 threads x 50 calls on one method: %d outputs differ from the seed's", bad);
    dk_agent_method_close(m);
    dk_cfg_free(cfg);
}

/* ---- the ADL agent's whole run, against the seed's ADLAgent.run (tools/make_agent_golden.py, adl_transcript) ---- */

static char *read_fixture_text(const char *dir, const char *name) {
    char *path = dk_sprintf("%s/%s", dir, name);
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err);
    if (!text) fprintf(stderr, "%s\n", err.msg);
    free(path);
    return text;
}

static dk_llm_client *client_for(const char *url, const char *model) {
    dk_llm_config lc;
    dk_llm_config_defaults(&lc);
    lc.base_url = dk_strdup(url);
    lc.model_id = dk_strdup(model);
    lc.section = dk_strdup("test");
    lc.max_attempts = 1;
    lc.request_timeout_s = 10;
    dk_err err = {0};
    dk_llm_client *c = dk_llm_client_open(&lc, &err);
    dk_llm_config_free(&lc);
    return c;
}

static void test_adl_transcript(void) {
    char *dir = dk_fixture_path("agent/adl_transcript");
    char *res = dk_sprintf("%s/resources/agent", source_dir);
    char *script = dk_sprintf("%s/script.json", dir);
    dk_err err = {0};
    dk_cfg *cfg = make_cfg(OV1, "");  /* = the case's input.json overview */
    char *results = dk_fixture_path("agent/adl_demo");
    dk_agent_method_config mc = {.kind = DK_AGENT_ADL, .cfg = cfg, .results_dir = results, .prompts_dir = res};
    dk_agent_method *m = dk_agent_method_open(&mc, &err);
    scripted_server agent_srv, models_srv;
    const char *agent_args[] = {"--script-file", script, NULL};
    const char *models_args[] = {"--reply-with-model", NULL};
    if (!EXPECT(m != NULL, "open with resources/agent: %s", err.msg) ||
        scripted_server_start(&agent_srv, server_exe, agent_args) != 0)
        exit(1);
    if (scripted_server_start(&models_srv, server_exe, models_args) != 0) exit(1);
    dk_llm_client *agent = client_for(agent_srv.base_url, "agent-model");
    dk_llm_client *base = client_for(models_srv.base_url, "base-model");
    dk_llm_client *ft = client_for(models_srv.base_url, "finetuned-model");
    dk_agent_models models = {.base = base, .finetuned = ft, .max_new_tokens = 1024, .temperature = 0.8,
                              .disable_thinking = true, .max_prompts = 64, .max_prompt_chars = 4000};
    dk_agent_run_tools rt;
    dk_agent_method_tools(m, &models, &rt, &err);
    char *template_text = dk_agent_prompt_read(res, "system_prompt.txt", &err);
    char *post_tool = dk_agent_prompt_read(res, "post_tool_result.txt", &err);
    const int64_t budget = 6;
    char *system = template_text ? dk_agent_system_prompt(template_text, dk_agent_method_prompt_parts(m), budget, &err)
                                 : NULL;
    EXPECT(system && post_tool, "system prompt: %s", err.msg);
    dk_agent_run_input in = {.system_prompt = system, .hints = "", .first_user_message = dk_agent_method_first_message(m),
                             .post_tool_result = post_tool, .tools = rt.tools, .n_tools = rt.n,
                             .addendum = dk_agent_blackbox_addendum, .addendum_ctx = rt.board,
                             .budgets = {.agent_llm_calls = 100, .model_interactions = budget, .token_budget = 100000},
                             .llm = {.client = agent, .temperature = 0.7, .max_tokens_per_call = 10000}};
    dk_agent_result r;
    memset(&r, 0, sizeof r);
    if (system && post_tool) EXPECT(dk_agent_run(&in, &r, &err) == 0, "dk_agent_run: %s", err.msg);
    EXPECT(r.outcome == DK_AGENT_FINAL, "outcome %d (%s)", (int)r.outcome, r.err.msg);
    char *want = read_fixture_text(dir, "messages.json");
    char *got = r.messages ? dk_pyjson_dumps(r.messages, DK_PYJSON_INDENT2) : NULL;
    expect_same("ADL transcript (messages.json)", got, want ? want : "");
    free(want);
    free(got);
    want = read_fixture_text(dir, "stats.json");
    cJSON *stats = dk_agent_stats_json(&r);
    cJSON_DeleteItemFromObject(stats, "outcome");
    got = dk_pyjson_dumps(stats, DK_PYJSON_INDENT2);
    expect_same("ADL stats.json", got, want ? want : "");
    free(want);
    free(got);
    cJSON_Delete(stats);
    want = read_fixture_text(dir, "description.txt");
    expect_same("ADL description", r.description, want ? want : "");
    free(want);
    want = read_fixture_text(dir, "dataset_mapping.json");
    got = dk_pyjson_dumps(dk_agent_method_dataset_mapping(m), DK_PYJSON_INDENT2);
    expect_same("ADL dataset_mapping.json", got, want ? want : "");
    free(want);
    free(got);
    dk_agent_result_free(&r);
    free(system);
    free(template_text);
    free(post_tool);
    dk_agent_run_tools_free(&rt);
    dk_llm_client_close(agent);
    dk_llm_client_close(base);
    dk_llm_client_close(ft);
    scripted_server_cleanup(&agent_srv);
    scripted_server_cleanup(&models_srv);
    dk_agent_method_close(m);
    dk_cfg_free(cfg);
    free(results);
    free(script);
    free(res);
    free(dir);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_agent_methods SCRIPTED_SERVER\n");
        return 2;
    }
    server_exe = argv[1];
    (void)dead_port;  /* server_proc.h's helper for the client tests */
    source_dir = getenv("DIFFKIT_SOURCE_DIR");
    if (!source_dir) {
        fprintf(stderr, "DIFFKIT_SOURCE_DIR is not set: run through ctest\n");
        return 2;
    }
    char *gpath = dk_fixture_path("agent/agent_methods_golden.json");
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(gpath, &size, &err);
    golden = text ? cJSON_Parse(text) : NULL;
    free(text);
    free(gpath);
    if (!golden) {
        fprintf(stderr, "cannot read the golden: %s\n", err.msg);
        return 1;
    }
    make_prompts_dir();
    test_overviews();
    test_incomplete_results();
    test_tools();
    test_threads();
    test_adl_transcript();
    remove_prompts_dir();
    cJSON_Delete(golden);
    return dk_test_finish("test_agent_methods");
}
