/* cmd_tokenize.c — `diffkit tokenize`: JSON Lines {"text": ...} -> {"ids": [...]}, one output line per
 * input line, in order, exactly as Hugging Face `tokenizers` encode(text) (special tokens added unless
 * --no-special-tokens). Lines are encoded in chunks on all cores. Bad input (not JSON, no "text", invalid
 * UTF-8) stops with the line number and exit code 1; on standard output the lines before it have been written,
 * an --output file is not created. Write errors (a full disk) stop the command with a message and exit 1. */
#include "cli_numbers.h"
#include "commands.h"

#include "io/out_file.h"
#include "tokenizer/tok_jsonl.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK_LINES = 4096 };

static void usage(FILE *out) {
    fprintf(out, "usage: diffkit tokenize --tokenizer PATH [--no-special-tokens] [--input IN.jsonl] [--output OUT.jsonl]\n"
                 "                        [--threads N]\n\n"
                 "Reads {\"text\": \"...\"} lines (stdin by default) and writes {\"ids\": [...]} lines (stdout by default),\n"
                 "the ids Hugging Face tokenizers gives for encode(text). PATH is a folder holding tokenizer.json(.gz)\n"
                 "or the file itself. --no-special-tokens leaves out the post-processor's tokens (e.g. BOS).\n"
                 "Text must be valid UTF-8; U+0000 (\\u0000) is encoded like any other character, as HF does.\n"
                 "--threads: encoding threads (default: all cores).\n");
}

/* Encodes and writes texts[0..n) (lens[i] bytes each, from lines[0..n) of the input `name`); frees them. */
static int flush_chunk(const dk_tokenizer *tok, char **texts, const size_t *lens, const long *lines, size_t n,
                       bool special, int threads, const char *name, FILE *out, dk_err *err) {
    dk_tok_ids *ids = calloc(n ? n : 1, sizeof *ids);
    size_t failed = 0;
    int rc = dk_tokenizer_encode_batch(tok, (const char *const *)texts, lens, n, special, threads, ids, &failed, err);
    if (rc != 0) dk_err_prefix(err, "%s:%ld: ", name, lines[failed]);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            fputs("{\"ids\": [", out);
            for (size_t k = 0; k < ids[i].n; k++) fprintf(out, k ? ", %d" : "%d", ids[i].ids[k]);
            fputs("]}\n", out);
        }
        dk_tok_ids_free(&ids[i]);
        free(texts[i]);
    }
    free(ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL, *in_path = NULL, *out_path = NULL;
    bool special = true;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) tok_path = argv[++i];
        else if (strcmp(argv[i], "--input") == 0 && i + 1 < argc) in_path = argv[++i];
        else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc) out_path = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = (int)cli_integer("tokenize", "--threads", argv[++i]);
        else if (strcmp(argv[i], "--no-special-tokens") == 0) special = false;
        else {
            fprintf(stderr, "diffkit tokenize: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return DK_EXIT_USAGE;
        }
    }
    if (!tok_path) {
        fprintf(stderr, "diffkit tokenize: --tokenizer PATH is required (a folder with tokenizer.json or the file)\n");
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

    char **texts = malloc(CHUNK_LINES * sizeof *texts);
    long *lines = malloc(CHUNK_LINES * sizeof *lines);
    size_t *lens = malloc(CHUNK_LINES * sizeof *lens);
    size_t n = 0;
    int rc = 0;
    for (;;) {
        cJSON *obj = NULL;
        int got = dk_jsonl_next(&in, &obj, &err);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got == 0) break;
        char *text = NULL;
        size_t len = 0;
        if (!dk_jsonl_string(&in, obj, "text", &text, &len)) {
            cJSON_Delete(obj);
            rc = dk_err_set(&err, DK_EXIT_RUNTIME, "%s:%ld: expected {\"text\": \"...\"} (a string \"text\")", in.name,
                            in.line_no);
            break;
        }
        cJSON_Delete(obj);
        size_t bad = dk_utf8_first_invalid(text, len);
        if (bad != len) {
            rc = dk_err_set(&err, DK_EXIT_RUNTIME, "%s:%ld: \"text\" is not valid UTF-8 (byte %zu of the text is 0x%02X)",
                            in.name, in.line_no, bad, (unsigned char)text[bad]);
            free(text);
            break;
        }
        lines[n] = in.line_no;
        texts[n] = text;
        lens[n++] = len;
        if (n == CHUNK_LINES) {
            if (flush_chunk(tok, texts, lens, lines, n, special, threads, in.name, out.f, &err) < 0 ||
                dk_out_check(&out, &err) < 0) {
                rc = -1;
                n = 0;
                break;
            }
            n = 0;
        }
    }
    dk_err flush_err = {0}; /* lines before a bad line are still written */
    if (n && flush_chunk(tok, texts, lens, lines, n, special, threads, in.name, out.f, &flush_err) < 0 && rc == 0) {
        err = flush_err;
        rc = -1;
    }
    free(texts);
    free(lines);
    free(lens);
    dk_jsonl_close(&in);
    if (rc == 0) rc = dk_out_commit(&out, &err);
    else dk_out_abort(&out);
    dk_tokenizer_free(tok);
    if (rc < 0) dk_die(&err);
    return 0;
}
