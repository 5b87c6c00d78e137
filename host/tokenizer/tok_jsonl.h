/* tok_jsonl.h — the JSON Lines plumbing the tokenizer subcommands share (diffkit tokenize, detokenize,
 * chat-template): read one line at a time with its number, parse it as one JSON object (io/json_value.h: nothing
 * may follow it on the line), and write strings back as JSON. Messages name the input and the line. Outputs
 * are opened with io/out_file.h. */
#ifndef DK_TOK_JSONL_H
#define DK_TOK_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

typedef struct cJSON cJSON;

typedef struct dk_jsonl_reader {
    FILE *f;
    const char *name;   /* "<stdin>" or the path, for messages */
    char *line;         /* getline buffer, [cap] */
    size_t cap;
    long line_no;       /* 1-based number of the last line read */
} dk_jsonl_reader;

/* Opens path ("-" or NULL = stdin). 0, or -1 with err. */
int dk_jsonl_open(dk_jsonl_reader *r, const char *path, dk_err *err);
void dk_jsonl_close(dk_jsonl_reader *r);
/* Next non-empty line parsed as a JSON object: 1 (*obj set, the caller deletes it), 0 at end of input,
 * -1 with err (code 1) naming the line when it is not a JSON object. */
int dk_jsonl_next(dk_jsonl_reader *r, cJSON **obj, dk_err *err);
/* The string member `key` of the line dk_jsonl_next last read (obj: its parse) with its length, U+0000
 * (\u0000) included (cJSON's own strings end at the first NUL; io/json_text.h). 1 (*out malloc'ed, *len), 0 when
 * the member is absent or not a string. */
int dk_jsonl_string(const dk_jsonl_reader *r, const cJSON *obj, const char *key, char **out, size_t *len);

/* Writes s[0..len) as a JSON string literal (UTF-8 kept, control chars escaped). */
void dk_json_write_string(FILE *out, const char *s, size_t len);

#endif
