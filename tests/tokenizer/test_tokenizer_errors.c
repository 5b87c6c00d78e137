/* test_tokenizer_errors.c — what the tokenizer does with input it must refuse: each case is an error value
 * with a message that names the problem (never a crash, never a silent approximation). Also the pieces the
 * goldens cannot see from outside: HF's empty-input behaviour and the byte-level round trip. */
#include "test.h"

#include "core/error.h"
#include "tokenizer/tokenizer.h"

/* A minimal tokenizer.json around the given components (JSON snippets). */
static char *tokenizer_json(const char *normalizer, const char *pre, const char *post, const char *decoder,
                            const char *model_extra, const char *top_extra) {
    return dk_sprintf("{\"version\":\"1.0\",%s\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"single_word\":false,"
                      "\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
                      "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":%s,\"decoder\":%s,"
                      "\"model\":{\"type\":\"BPE\",%s\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}",
                      top_extra, normalizer, pre, post, decoder, model_extra);
}

static void expect_load_error(const char *what, char *json, const char *needle) {
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_from_json(json, strlen(json), "t.json", &err);
    EXPECT(tok == NULL && err.code == DK_EXIT_USAGE, "%s: loaded, or wrong code %d", what, err.code);
    EXPECT_CONTAINS(err.msg, needle);
    dk_tokenizer_free(tok);
    free(json);
}

static void test_load_errors(void) {
    expect_load_error("unknown normalizer", tokenizer_json("{\"type\":\"BertNormalizer\"}", "null", "null", "null", "", ""),
                      "normalizer type 'BertNormalizer' is not supported");
    expect_load_error("unknown pre-tokenizer", tokenizer_json("null", "{\"type\":\"Punctuation\"}", "null", "null", "", ""),
                      "pre_tokenizer type 'Punctuation' is not supported");
    expect_load_error("unknown decoder", tokenizer_json("null", "null", "null", "{\"type\":\"WordPiece\"}", "", ""),
                      "decoder type 'WordPiece' is not supported");
    expect_load_error("unknown post-processor", tokenizer_json("null", "null", "{\"type\":\"BertProcessing\"}", "null", "", ""),
                      "post_processor type 'BertProcessing' is not supported");
    expect_load_error("dropout", tokenizer_json("null", "null", "null", "null", "\"dropout\":0.1,", ""),
                      "BPE dropout 0.1 is not supported");
    expect_load_error("unk not in vocab", tokenizer_json("null", "null", "null", "null", "\"unk_token\":\"<unk>\",", ""),
                      "unk_token \"<unk>\" is not in the vocab");
    expect_load_error("truncation", tokenizer_json("null", "null", "null", "null", "", "\"truncation\":{\"max_length\":5},"),
                      "\"truncation\" is set");
    expect_load_error("bad behavior", tokenizer_json("null", "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\"}",
                                                     "null", "null", "", ""),
                      "Split behavior 'Sideways' is unknown");
    expect_load_error("template without special", tokenizer_json("null", "null",
                      "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<x>\"}},{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{}}",
                      "null", "", ""),
                      "special token '<x>' is missing");
    expect_load_error("not json", dk_strdup("{\"model\": {\"vocab\": {\"a\": 0"), "not valid JSON");
    expect_load_error("not utf8", dk_strdup("{\"model\": \"\xff\"}"), "not valid UTF-8 at byte 11");
    expect_load_error("no model", dk_strdup("{\"version\": \"1.0\"}"), "no \"model\" object");
    expect_load_error("bad vocab id", dk_strdup("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}"),
                      "vocab entry \"a\" has an invalid id");
    expect_load_error("wordpiece", dk_strdup("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}"), "model type 'WordPiece'");
    dk_err err = {0};
    EXPECT(dk_tokenizer_load("/nonexistent/tokenizer.json", &err) == NULL && err.code == DK_EXIT_RUNTIME, "missing file");
    EXPECT_CONTAINS(err.msg, "/nonexistent/tokenizer.json");
}

static void test_encode_decode_errors(void) {
    char *json = tokenizer_json("null", "null",
                                "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],"
                                "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[3],\"tokens\":[\"<s>\"]}}}",
                                "null", "", "");
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_from_json(json, strlen(json), "t.json", &err);
    free(json);
    if (!EXPECT(tok, "load: %s", err.msg)) return;
    dk_tok_ids ids = {0};
    EXPECT(dk_tokenizer_encode(tok, "ab\xc3", 3, true, &ids, &err) < 0, "invalid UTF-8 accepted");
    EXPECT_CONTAINS(err.msg, "byte 2 is 0xC3");
    dk_err_clear(&err);
    EXPECT(dk_tokenizer_encode(tok, "abab<s>a", 8, true, &ids, &err) == 0 && ids.n == 5 && ids.ids[0] == 3 &&
               ids.ids[1] == 2 && ids.ids[2] == 2 && ids.ids[3] == 3 && ids.ids[4] == 0,
           "encode abab<s>a: %s", err.msg);
    ids.n = 0;
    EXPECT(dk_tokenizer_encode(tok, "", 0, true, &ids, &err) == 0 && ids.n == 1, "empty text gives only the template");
    /* Without unk_token or byte_fallback HF drops chars missing from the vocab, and the symbols around them
     * merge as if adjacent: encode("zz") = [], encode("azzb") = [2] (checked with tokenizers 0.23.3). */
    ids.n = 0;
    EXPECT(dk_tokenizer_encode(tok, "zz", 2, false, &ids, &err) == 0 && ids.n == 0, "zz gives no ids");
    EXPECT(dk_tokenizer_encode(tok, "azzb", 4, false, &ids, &err) == 0 && ids.n == 1 && ids.ids[0] == 2,
           "azzb gives [ab]");
    int32_t bad[] = {0, 99};
    EXPECT(dk_tokenizer_decode(tok, bad, 2, false, NULL, &err) == NULL, "out-of-range id decoded");
    EXPECT_CONTAINS(err.msg, "id 99 (position 1) is not a token");
    int32_t neg[] = {-1};
    EXPECT(dk_tokenizer_decode(tok, neg, 1, false, NULL, &err) == NULL, "negative id decoded");
    int32_t good[] = {3, 2, 0};
    char *text = dk_tokenizer_decode(tok, good, 3, true, NULL, &err);
    EXPECT(text && strcmp(text, "ab a") == 0, "no decoder joins with spaces, skipping <s>: got %s", text ? text : "(null)");
    free(text);
    EXPECT(dk_tokenizer_token_to_id(tok, "<s>") == 3 && dk_tokenizer_token_to_id(tok, "ab") == 2 &&
               dk_tokenizer_token_to_id(tok, "zz") == -1 && dk_tokenizer_vocab_size(tok) == 4,
           "token_to_id / vocab_size");
    dk_tok_ids_free(&ids);
    dk_tokenizer_free(tok);
}

int main(void) {
    test_load_errors();
    test_encode_decode_errors();
    return dk_test_finish("test_tokenizer_errors");
}
