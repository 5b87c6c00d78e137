/* test_pyjson.c — host/agent/pyjson.c against what CPython writes (tests/fixtures/agent/pyjson_golden.json, from
 * tools/make_pyjson_golden.py): json.dumps compact with ensure_ascii, json.dumps(ensure_ascii=False, indent=2) and
 * repr() of nested values, Python's float repr of exact doubles (float32 probabilities, powers of two, inf, nan),
 * and which texts json.loads accepts (and what it makes of them: ints, repeated keys). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/pyjson.h"
#include "io/file.h"
#include "io/json_value.h"
#include "test.h"

static void expect_text(const char *what, const char *input, const char *got, const char *want) {
    EXPECT(strcmp(got, want) == 0, "%s of %s:\n  got  %s\n  want %s", what, input, got, want);
}

static void check_values(const cJSON *values) {
    const cJSON *c;
    cJSON_ArrayForEach(c, values) {
        const char *input = cJSON_GetObjectItem(c, "input")->valuestring;
        char why[256] = "";
        cJSON *v = dk_pyjson_loads(input, strlen(input), why, sizeof why);
        if (!EXPECT(v != NULL, "loads %s: %s", input, why)) continue;
        char *dumps = dk_pyjson_dumps(v, DK_PYJSON_COMPACT);
        char *indent2 = dk_pyjson_dumps(v, DK_PYJSON_INDENT2);
        char *repr = dk_pyjson_repr(v);
        expect_text("json.dumps", input, dumps, cJSON_GetObjectItem(c, "dumps")->valuestring);
        expect_text("json.dumps(indent=2)", input, indent2, cJSON_GetObjectItem(c, "indent2")->valuestring);
        expect_text("repr", input, repr, cJSON_GetObjectItem(c, "repr")->valuestring);
        free(dumps);
        free(indent2);
        free(repr);
        cJSON_Delete(v);
    }
}

static void check_floats(const cJSON *floats) {
    const cJSON *c;
    cJSON_ArrayForEach(c, floats) {
        const char *hex = cJSON_GetObjectItem(c, "bits")->valuestring;
        uint64_t bits = strtoull(hex, NULL, 16);
        double x;
        memcpy(&x, &bits, sizeof x);
        cJSON *v = cJSON_CreateNumber(x);
        v->valuedouble = x;  /* cJSON_CreateNumber keeps nan/inf as they are; be sure */
        char *json = dk_pyjson_dumps(v, DK_PYJSON_COMPACT);
        char *repr = dk_pyjson_repr(v);
        expect_text("json.dumps", hex, json, cJSON_GetObjectItem(c, "json")->valuestring);
        expect_text("repr", hex, repr, cJSON_GetObjectItem(c, "repr")->valuestring);
        free(json);
        free(repr);
        cJSON_Delete(v);
    }
}

static void check_loads(const cJSON *loads) {
    const cJSON *c;
    cJSON_ArrayForEach(c, loads) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        bool ok = cJSON_IsTrue(cJSON_GetObjectItem(c, "ok"));
        char why[256] = "";
        cJSON *v = dk_pyjson_loads(text, strlen(text), why, sizeof why);
        EXPECT((v != NULL) == ok, "json.loads(%s) %s in Python, %s here (%s)", text, ok ? "parses" : "fails",
               v ? "parses" : "fails", why);
        if (v && ok) {
            char *dumps = dk_pyjson_dumps(v, DK_PYJSON_COMPACT);
            expect_text("json.dumps(json.loads)", text, dumps, cJSON_GetObjectItem(c, "dumps")->valuestring);
            free(dumps);
        }
        cJSON_Delete(v);
    }
}

/* What the goldens cannot show: dk_pyjson_int marks, an unmarked integral number is a float. */
static void check_marks(void) {
    cJSON *o = cJSON_CreateObject();
    dk_pyjson_add_int(o, "i", 7);
    cJSON_AddNumberToObject(o, "f", 7);
    cJSON_AddItemToObject(o, "b", cJSON_CreateTrue());
    char *s = dk_pyjson_dumps(o, DK_PYJSON_COMPACT);
    expect_text("json.dumps", "marks", s, "{\"i\": 7, \"f\": 7.0, \"b\": true}");
    free(s);
    s = dk_pyjson_repr(o);
    expect_text("repr", "marks", s, "{'i': 7, 'f': 7.0, 'b': True}");
    free(s);
    EXPECT(dk_pyjson_is_int(cJSON_GetObjectItem(o, "i")) && !dk_pyjson_is_int(cJSON_GetObjectItem(o, "f")) &&
               !dk_pyjson_is_int(cJSON_GetObjectItem(o, "b")), "int marks");
    cJSON *copy = cJSON_Duplicate(o, 1);
    EXPECT(dk_pyjson_is_int(cJSON_GetObjectItem(copy, "i")), "the mark survives cJSON_Duplicate");
    cJSON_Delete(copy);
    cJSON_Delete(o);
}

int main(void) {
    char *path = dk_fixture_path("agent/pyjson_golden.json");
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err);
    if (!text) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    cJSON *golden = dk_json_parse_document(text, size, path, 1, "regenerate it with tools/make_pyjson_golden.py", &err);
    if (!golden) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    check_values(cJSON_GetObjectItem(golden, "values"));
    check_floats(cJSON_GetObjectItem(golden, "floats"));
    check_loads(cJSON_GetObjectItem(golden, "loads"));
    check_marks();
    cJSON_Delete(golden);
    free(text);
    free(path);
    return dk_test_finish("test_pyjson");
}
