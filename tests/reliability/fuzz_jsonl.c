/* fuzz_jsonl.c — fuzz target for the JSON Lines readers: the streaming reader of diffkit tokenize / detokenize /
 * chat-template (tokenizer/tok_jsonl.c over a FILE) and the whole-file path of diff_preprocess and forward
 * (io/file.c dk_read_file, gzip included, then io/json_value.c dk_json_parse_one per line).
 * Every input must give records or a message, never a crash, a hang or a leak; a record is always an object,
 * and a line accepted as one value really is one value (nothing but whitespace after it).
 * Built two ways (tests/reliability/CMakeLists.txt): always as the ctest fuzz_jsonl_smoke (seeds + seeded
 * mutations through tests/tokenizer/fuzz_driver.c), and for libFuzzer with -DDIFFKIT_FUZZ=ON and clang. */
#define _GNU_SOURCE /* fmemopen, memfd_create */
#include "fuzz_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "io/file.h"
#include "io/json_value.h"
#include "tokenizer/tok_jsonl.h"

static void streaming_reader(const uint8_t *data, size_t size) {
    static const char empty[1];
    FILE *f = fmemopen(size ? (void *)data : (void *)empty, size ? size : 1, "rb");
    CHECK(f != NULL, "fmemopen");
    if (!size) getc(f); /* an empty input: at its end at once */
    dk_jsonl_reader r;
    memset(&r, 0, sizeof r);
    r.f = f;
    r.name = "fuzz";
    long last_line = 0;
    for (;;) {
        cJSON *obj = NULL;
        dk_err err = {0};
        int got = dk_jsonl_next(&r, &obj, &err);
        CHECK(got >= -1 && got <= 1, "dk_jsonl_next returned %d", got);
        if (got <= 0) {
            CHECK(got == 0 || (err.code != 0 && err.msg[0] != '\0'), "an error without a message");
            CHECK(obj == NULL, "an object on a non-record");
            break;
        }
        CHECK(cJSON_IsObject(obj), "a record that is not an object");
        CHECK(r.line_no > last_line, "line numbers must grow");
        last_line = r.line_no;
        cJSON_Delete(obj);
    }
    dk_jsonl_close(&r); /* closes f */
}

static void whole_file(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz_jsonl", 0);
    CHECK(fd >= 0, "memfd_create");
    CHECK(size == 0 || write(fd, data, size) == (ssize_t)size, "memfd write");
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    dk_err err = {0};
    size_t len = 0;
    char *text = dk_read_file(path, &len, &err);
    close(fd);
    if (!text) {
        CHECK(err.code != 0 && err.msg[0] != '\0', "a read failure without a message");
        return;
    }
    CHECK(text[len] == '\0', "dk_read_file must NUL-terminate");
    for (char *line = text, *next; line < text + len; line = next) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        next = end ? end + 1 : text + len;
        size_t n = (size_t)((end ? end : text + len) - line);
        char why[256] = "";
        cJSON *v = dk_json_parse_one(line, n, why, sizeof why);
        if (!v) {
            CHECK(why[0] != '\0', "a rejected line without a reason");
            continue;
        }
        /* one value: printed and parsed again, it is still exactly one value */
        char *printed = cJSON_PrintUnformatted(v);
        if (printed) {
            cJSON *again = dk_json_parse_one(printed, strlen(printed), why, sizeof why);
            CHECK(again != NULL, "the printed form of an accepted value is rejected: %s", why);
            cJSON_Delete(again);
            free(printed);
        }
        cJSON_Delete(v);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    streaming_reader(data, size);
    whole_file(data, size);
    return 0;
}
