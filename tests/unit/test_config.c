/* test_config.c — the configuration system (host/config): composition with groups and defaults,
 * `model: auto`, overrides and their type checks, interpolation, typed getters, YAML round trip, and every
 * error a user can make (each must be exit code 2 with a message naming the key and the file). Fixtures:
 * tests/fixtures/config/. */
#include "test.h"

#include "config/config.h"
#include "config/yaml_io.h"

#include <stdlib.h>

static dk_cfg *compose(const char *tree, dk_err *err, int n, const char **args) {
    char *dir = dk_fixture_path(tree);
    dk_cfg_options opt = {.config_dir = dir, .overrides = args, .n_overrides = (size_t)n};
    dk_err_clear(err);
    dk_cfg *cfg = dk_cfg_compose(&opt, err);
    free(dir);
    return cfg;
}

/* Composes and expects an error of code 2 whose message contains every needle. */
static void expect_error(const char *tree, int n, const char **args, const char *n1, const char *n2) {
    dk_err err;
    dk_cfg *cfg = compose(tree, &err, n, args);
    EXPECT(cfg == NULL, "composition of %s with %s should fail", tree, n ? args[0] : "(no args)");
    EXPECT(err.code == DK_EXIT_USAGE, "exit code 2 expected, got %d (%s)", err.code, err.msg);
    if (n1) EXPECT_CONTAINS(err.msg, n1);
    if (n2) EXPECT_CONTAINS(err.msg, n2);
    dk_cfg_free(cfg);
}

static void test_defaults_and_auto(void) {
    dk_err err;
    dk_cfg *cfg = compose("config/basic", &err, 0, NULL);
    if (!EXPECT(cfg != NULL, "basic compose: %s", err.msg)) return;
    EXPECT(strcmp(dk_cfg_str(cfg, "model.name"), "m2") == 0, "model: auto picks the first finetuned model (m2)");
    EXPECT(strcmp(dk_cfg_choice(cfg, "model"), "m2") == 0, "choice recorded as m2");
    EXPECT(strcmp(dk_cfg_str(cfg, "organism.name"), "alpha") == 0, "organism alpha");
    EXPECT(dk_cfg_int(cfg, "seed") == 42, "seed 42");
    EXPECT(dk_cfg_float(cfg, "ratio") == 0.5, "ratio 0.5");
    EXPECT(dk_cfg_bool(cfg, "flag") == true, "flag true");
    EXPECT(dk_cfg_str_or_null(cfg, "nothing") == NULL && !dk_cfg_has(cfg, "nothing"), "null value");
    EXPECT(strcmp(dk_cfg_str(cfg, "version"), "1.0") == 0, "quoted 1.0 is a string");
    double v;
    EXPECT(dk_cfg_try_float(cfg, "version", &v, &err) != 0, "a quoted number is not a number");
    EXPECT(dk_cfg_get(cfg, "defaults") == NULL, "the defaults list is not part of the result");
    dk_cfg_free(cfg);

    const char *m1[] = {"model=m1"};
    cfg = compose("config/basic", &err, 1, m1);
    EXPECT(cfg && strcmp(dk_cfg_str(cfg, "model.model_id"), "org/m1") == 0, "model=m1 selects m1");
    EXPECT(cfg && strcmp(dk_cfg_str(cfg, "preprocessing.model_dir"), "org/m1") == 0, "interpolation sees the chosen group");
    dk_cfg_free(cfg);

    const char *beta_m1[] = {"organism=beta", "model=m1"};
    cfg = compose("config/basic", &err, 2, beta_m1);
    EXPECT(cfg != NULL, "organism=beta model=m1: %s", err.msg);
    dk_cfg_free(cfg);

    const char *no_org2[] = {"~organism", "+model=m1"};
    cfg = compose("config/basic", &err, 2, no_org2);
    EXPECT(cfg && dk_cfg_get(cfg, "organism") == NULL && strcmp(dk_cfg_choice(cfg, "model"), "m1") == 0,
           "~organism leaves it out, +model=m1 chooses m1: %s", err.msg);
    dk_cfg_free(cfg);

    const char *no_org[] = {"organism=null", "model=m1"};
    cfg = compose("config/basic", &err, 2, no_org);
    EXPECT(cfg && dk_cfg_get(cfg, "organism") == NULL && dk_cfg_choice(cfg, "organism") == NULL, "organism=null leaves it out");
    dk_cfg_free(cfg);
}

static void test_overrides(void) {
    dk_err err;
    const char *args[] = {"preprocessing.context_len=512", "layers=[0.1, 0.9, 1]", "+extra.deep.key=3", "++seed=7",
                          "~flag",   "name=123",        "preprocessing.batch_size=0x10", "layers.0=0.3",
                          "ratio=2"};
    dk_cfg *cfg = compose("config/basic", &err, 9, args);
    if (!EXPECT(cfg != NULL, "overrides: %s", err.msg)) return;
    EXPECT(dk_cfg_int(cfg, "preprocessing.context_len") == 512, "context_len overridden");
    double *layers = NULL;
    size_t n = 0;
    EXPECT(dk_cfg_try_float_list(cfg, "layers", &layers, &n, &err) == 0 && n == 3 && layers[0] == 0.3 &&
               layers[1] == 0.9 && layers[2] == 1.0,
           "layers list override then index override");
    free(layers);
    EXPECT(dk_cfg_int(cfg, "extra.deep.key") == 3, "+ adds a new nested key");
    EXPECT(dk_cfg_int(cfg, "seed") == 7, "++ upserts");
    EXPECT(dk_cfg_get(cfg, "flag") == NULL, "~ removes");
    EXPECT(strcmp(dk_cfg_str(cfg, "name"), "123") == 0, "a string key stays a string");
    EXPECT(dk_cfg_int(cfg, "preprocessing.batch_size") == 16, "hex integers");
    EXPECT(dk_cfg_float(cfg, "ratio") == 2.0, "an integer is accepted for a float key");
    EXPECT(strcmp(dk_cfg_str(cfg, "preprocessing.tag"), "run-7-123") == 0, "overrides apply before interpolation");
    char *yaml = dk_cfg_dump(cfg);
    EXPECT_CONTAINS(yaml, "name: \"123\"");
    free(yaml);
    dk_cfg_free(cfg);
}

static void test_interpolation(void) {
    dk_err err;
    unsetenv("DK_TEST_HOME");
    dk_cfg *cfg = compose("config/basic", &err, 0, NULL);
    if (!EXPECT(cfg != NULL, "%s", err.msg)) return;
    EXPECT(strcmp(dk_cfg_str(cfg, "preprocessing.out_dir"), "/data/activations") == 0, "spliced reference");
    const dk_cfg_node *copy = dk_cfg_get(cfg, "preprocessing.copy_layers");
    EXPECT(copy && copy->kind == DK_CFG_SEQ && copy->n == 2, "whole-value reference keeps the list");
    EXPECT(strcmp(dk_cfg_str(cfg, "preprocessing.home"), "/tmp/default") == 0, "env default");
    EXPECT(strcmp(dk_cfg_str(cfg, "preprocessing.tag"), "run-42-demo") == 0, "two references in one string");
    EXPECT(strcmp(dk_cfg_str(cfg, "preprocessing.literal"), "${not.a.ref}") == 0, "escaped ${ stays literal");
    dk_cfg_free(cfg);
    setenv("DK_TEST_HOME", "/home/tester", 1);
    cfg = compose("config/basic", &err, 0, NULL);
    EXPECT(cfg && strcmp(dk_cfg_str(cfg, "preprocessing.home"), "/home/tester") == 0, "env value");
    dk_cfg_free(cfg);
    unsetenv("DK_TEST_HOME");

    cfg = dk_cfg_from_yaml("a: ${env:DK_SURELY_UNSET_VAR}\n", "inline", &err);
    EXPECT(cfg == NULL && err.code == DK_EXIT_USAGE, "unset env without default fails");
    EXPECT_CONTAINS(err.msg, "DK_SURELY_UNSET_VAR");
    dk_err_clear(&err);
    cfg = dk_cfg_from_yaml("n: 3\nm: ${n}\ns: x${n}\nd: ${now:%Y}\n", "inline", &err);
    EXPECT(cfg && dk_cfg_int(cfg, "m") == 3, "whole-value reference keeps an integer");
    EXPECT(cfg && strcmp(dk_cfg_str(cfg, "s"), "x3") == 0, "spliced integer");
    EXPECT(cfg && strlen(dk_cfg_str(cfg, "d")) == 4, "now:%%Y gives a year");
    dk_cfg_free(cfg);
    dk_err_clear(&err);
    cfg = dk_cfg_from_yaml("a: ${nope.key}\n", "inline", &err);
    EXPECT(cfg == NULL, "reference to a missing key fails");
    EXPECT_CONTAINS(err.msg, "nope.key");
    EXPECT_CONTAINS(err.msg, "inline:1");
    dk_err_clear(&err);
    cfg = dk_cfg_from_yaml("a: ${unknown:thing}\n", "inline", &err);
    EXPECT(cfg == NULL, "unknown resolver fails");
    EXPECT_CONTAINS(err.msg, "unknown resolver");
}

static void test_errors(void) {
    const char *misspelt[] = {"preprocesing.context_len=512"};
    expect_error("config/basic", 1, misspelt, "preprocesing.context_len", "did you mean 'preprocessing.context_len'");
    const char *wrong_type[] = {"preprocessing.context_len=abc"};
    expect_error("config/basic", 1, wrong_type, "must be an integer", "config.yaml:15");
    const char *float_type[] = {"ratio=fast"};
    expect_error("config/basic", 1, float_type, "ratio must be a number", NULL);
    const char *bool_type[] = {"flag=yes"};
    expect_error("config/basic", 1, bool_type, "flag must be a boolean", NULL);
    const char *list_type[] = {"layers=5"};
    expect_error("config/basic", 1, list_type, "layers must be a list", NULL);
    const char *unknown_group[] = {"model=m3"};
    expect_error("config/basic", 1, unknown_group, "unknown model 'm3'", "Available: m1, m2");
    const char *near_group[] = {"model=m"};
    expect_error("config/basic", 1, near_group, "Did you mean model=m1?", NULL);
    const char *auto_none[] = {"organism=beta"};
    expect_error("config/basic", 1, auto_none, "model=auto", "organism.finetuned_models");
    const char *no_equals[] = {"context_len"};
    expect_error("config/basic", 1, no_equals, "is not an override", NULL);
    const char *bad_key[] = {"a..b=1"};
    expect_error("config/basic", 1, bad_key, "not a valid key", NULL);
    const char *add_existing[] = {"+seed=1"};
    expect_error("config/basic", 1, add_existing, "already exists", NULL);
    const char *remove_missing[] = {"~nosuch"};
    expect_error("config/basic", 1, remove_missing, "no key 'nosuch'", NULL);
    const char *bad_value[] = {"name=[1, 2"};
    expect_error("config/basic", 1, bad_value, "not valid YAML", NULL);
    expect_error("config/bad_yaml", 0, NULL, "config.yaml:4:", "malformed YAML");
    expect_error("config/dup_key", 0, NULL, "config.yaml:4:3", "duplicate key 'context_len'");
    expect_error("config/missing_value", 0, NULL, "storage.base_dir", "missing_value/config.yaml:3");
    expect_error("config/cycle", 0, NULL, "interpolation cycle", "a -> b -> c -> a");
    expect_error("config/bad_defaults", 0, NULL, "nosuchgroup", NULL);
    expect_error("config/no_such_tree", 0, NULL, "does not exist", NULL);
}

static void test_getter_errors(void) {
    dk_err err = {0};
    dk_cfg *cfg = compose("config/basic", &err, 0, NULL);
    if (!EXPECT(cfg != NULL, "%s", err.msg)) return;
    int64_t i;
    dk_err_clear(&err);
    EXPECT(dk_cfg_try_int(cfg, "name", &i, &err) != 0 && err.code == DK_EXIT_USAGE, "string is not an int");
    EXPECT_CONTAINS(err.msg, "config key name");
    EXPECT_CONTAINS(err.msg, "basic/config.yaml:9");
    dk_err_clear(&err);
    EXPECT(dk_cfg_try_int(cfg, "preprocessing.contex_len", &i, &err) != 0, "missing key");
    EXPECT_CONTAINS(err.msg, "did you mean preprocessing.context_len");
    dk_err_clear(&err);
    const char *s;
    EXPECT(dk_cfg_try_str(cfg, "nothing", false, &s, &err) != 0, "null is not a string unless allowed");
    dk_err_clear(&err);
    int64_t *ints = NULL;
    size_t n;
    EXPECT(dk_cfg_try_int_list(cfg, "layers", &ints, &n, &err) != 0, "0.25 is not an integer");
    EXPECT_CONTAINS(err.msg, "layers.0");
    dk_cfg_free(cfg);
}

static void test_round_trip_and_scalars(void) {
    dk_err err = {0};
    dk_cfg *cfg = compose("config/basic", &err, 0, NULL);
    if (!EXPECT(cfg != NULL, "%s", err.msg)) return;
    char *first = dk_cfg_dump(cfg);
    dk_cfg *again = dk_cfg_from_yaml(first, "dump", &err);
    EXPECT(again != NULL, "the dump parses: %s", err.msg);
    char *second = again ? dk_cfg_dump(again) : NULL;
    EXPECT(second && strcmp(first, second) == 0, "dump -> load -> dump is stable:\n%s\n---\n%s", first, second);
    EXPECT_CONTAINS(first, "version: \"1.0\"");
    EXPECT_CONTAINS(first, "layers: [0.25, 0.5]");
    free(first);
    free(second);
    dk_cfg_free(again);
    dk_cfg_free(cfg);

    int64_t v;
    EXPECT(dk_cfg_parse_int("50_000_000", &v) && v == 50000000, "underscores in integers");
    EXPECT(!dk_cfg_parse_int("_5", &v) && !dk_cfg_parse_int("5_", &v) && !dk_cfg_parse_int("1.0", &v), "not integers");
    EXPECT(dk_cfg_parse_int("-9223372036854775808", &v) && v == INT64_MIN, "INT64_MIN");
    EXPECT(!dk_cfg_parse_int("9223372036854775808", &v), "overflow is not an integer");
    double d;
    EXPECT(dk_cfg_parse_float("1e-5", &d) && d == 1e-5, "1e-5");
    EXPECT(dk_cfg_parse_float(".5", &d) && d == 0.5, ".5");
    EXPECT(!dk_cfg_parse_float("1e", &d) && !dk_cfg_parse_float("abc", &d) && !dk_cfg_parse_float(".", &d), "not floats");
    dk_cfg_node yes = {.kind = DK_CFG_SCALAR, .text = "yes"};
    EXPECT(dk_cfg_node_type(&yes) == DK_CFG_TYPE_STRING, "yes is a string (YAML 1.2)");
    dk_cfg_node tru = {.kind = DK_CFG_SCALAR, .text = "True"};
    EXPECT(dk_cfg_node_type(&tru) == DK_CFG_TYPE_BOOL, "True is a boolean");
}

int main(void) {
    test_defaults_and_auto();
    test_overrides();
    test_interpolation();
    test_errors();
    test_getter_errors();
    test_round_trip_and_scalars();
    return dk_test_finish("test_config");
}
