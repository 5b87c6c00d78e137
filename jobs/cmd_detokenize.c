/* cmd_detokenize.c — `diffkit detokenize`: JSON Lines {"ids": [...]} -> {"text": "..."}, one output line
 * per input line, in order, as Hugging Face `tokenizers` decode(ids, skip_special_tokens). An id that is not
 * an integer in the vocabulary stops with the line number and exit code 1. */
#include "commands.h"

#include "io/out_file.h"
#include "tokenizer/tok_jsonl.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out, "usage: diffkit detokenize --tokenizer PATH [--skip-special-tokens] [--input IN.jsonl] [--output OUT.jsonl]\n\n"
                 "Reads {\"ids\": [...]} lines (stdin by default) and writes {\"text\": \"...\"} lines (stdout by default),\n"
                 "the text Hugging Face tokenizers gives for decode(ids). PATH is a folder holding tokenizer.json(.gz)\n"
                 "or the file itself. --skip-special-tokens drops special tokens (BOS, <|im_end|>, ...).\n");
}

int cmd_detokenize(int argc, char **argv) {
    const char *tok_path = NULL, *in_path = NULL, *out_path = NULL;
    bool skip = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) tok_path = argv[++i];
        else if (strcmp(argv[i], "--input") == 0 && i + 1 < argc) in_path = argv[++i];
        else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc) out_path = argv[++i];
        else if (strcmp(argv[i], "--skip-special-tokens") == 0) skip = true;
        else {
            fprintf(stderr, "diffkit detokenize: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return DK_EXIT_USAGE;
        }
    }
    if (!tok_path) {
        fprintf(stderr, "diffkit detokenize: --tokenizer PATH is required (a folder with tokenizer.json or the file)\n");
        return DK_EXIT_USAGE;
    }
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(tok_path, &err);
    if (!tok) dk_die(&err);
    dk_jsonl_reader in;
    if (dk_jsonl_open(&in, in_path, &err) < 0) dk_die(&err);
    dk_out_file out;
    const char *inputs[] = {in_path ? in_path : "-"};
    if (dk_out_open(&out, out_path, inputs, 1, &err) < 0) dk_die(&err);
    int32_t *ids = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        cJSON *obj = NULL;
        int got = dk_jsonl_next(&in, &obj, &err);
        if (got <= 0) {
            rc = got;
            break;
        }
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, "ids");
        if (!cJSON_IsArray(arr)) {
            cJSON_Delete(obj);
            rc = dk_err_set(&err, DK_EXIT_RUNTIME, "%s:%ld: expected {\"ids\": [...]} (a list \"ids\")", in.name, in.line_no);
            break;
        }
        size_t n = 0;
        for (const cJSON *v = arr->child; v; v = v->next, n++) {
            if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
                v->valuedouble >= dk_tokenizer_vocab_size(tok)) {
                char *shown = cJSON_PrintUnformatted(v);
                rc = dk_err_set(&err, DK_EXIT_RUNTIME, "%s:%ld: ids[%zu] = %s is not a token id of %s (0..%d)", in.name,
                                in.line_no, n, shown ? shown : "?", tok_path, dk_tokenizer_vocab_size(tok) - 1);
                free(shown);
                break;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                ids = realloc(ids, cap * sizeof *ids);
            }
            ids[n] = (int32_t)v->valuedouble;
        }
        cJSON_Delete(obj);
        if (rc < 0) break;
        size_t len;
        char *text = dk_tokenizer_decode(tok, ids, n, skip, &len, &err);
        if (!text) {
            dk_err_prefix(&err, "%s:%ld: ", in.name, in.line_no);
            err.code = DK_EXIT_RUNTIME;
            rc = -1;
            break;
        }
        fputs("{\"text\": ", out.f);
        dk_json_write_string(out.f, text, len);
        fputs("}\n", out.f);
        free(text);
        if ((rc = dk_out_check(&out, &err)) < 0) break;
    }
    free(ids);
    dk_jsonl_close(&in);
    if (rc == 0) rc = dk_out_commit(&out, &err);
    else dk_out_abort(&out);
    dk_tokenizer_free(tok);
    if (rc < 0) dk_die(&err);
    return 0;
}
