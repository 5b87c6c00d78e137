/* test_core.c — host/core utilities: dk_err, logging with ranks and levels, duration/count/byte
 * formatting, progress lines (non-TTY mode with an injected clock), the arena, timers, edit distance.
 * With an argument it runs one fatal path instead (see tests/unit/CMakeLists.txt: death tests check the
 * exit code and message through tests/cli/expect.sh). */
#include "test.h"

#include "core/arena.h"
#include "core/error.h"
#include "core/format.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/strutil.h"
#include "core/timer.h"

#include <math.h>
#include <stdint.h>

static char *read_stream(FILE *f) {
    fflush(f);
    long n = ftell(f);
    rewind(f);
    char *text = calloc((size_t)n + 1, 1);
    if (fread(text, 1, (size_t)n, f) != (size_t)n) text[0] = '\0';
    return text;
}

static void test_errors(void) {
    dk_err err = {0};
    EXPECT(!dk_err_is_set(&err), "fresh error is clear");
    EXPECT(dk_err_set(&err, DK_EXIT_USAGE, "bad key %s", "x.y") == -1, "dk_err_set returns -1");
    dk_err_set(&err, DK_EXIT_RUNTIME, "second");
    EXPECT(err.code == DK_EXIT_USAGE && strcmp(err.msg, "bad key x.y") == 0, "the first error wins: %s", err.msg);
    dk_err_prefix(&err, "while loading %s: ", "f.yaml");
    EXPECT(strcmp(err.msg, "while loading f.yaml: bad key x.y") == 0, "prefix: %s", err.msg);
    char *s = dk_sprintf("%d-%s", 7, "x");
    EXPECT(strcmp(s, "7-x") == 0, "dk_sprintf");
    free(s);
}

static void test_format(void) {
    char b[DK_FMT_BUF];
    EXPECT(strcmp(dk_format_duration(b, 0.42), "0.42s") == 0, "0.42s: %s", b);
    EXPECT(strcmp(dk_format_duration(b, 75), "1m15s") == 0, "1m15s: %s", b);
    EXPECT(strcmp(dk_format_duration(b, 7384), "2h03m") == 0, "2h03m: %s", b);
    EXPECT(strcmp(dk_format_duration(b, 200000), "2d08h") == 0, "200000 s = 55.6 h -> 2d08h: %s", b);
    EXPECT(strcmp(dk_format_duration(b, NAN), "?") == 0, "NaN duration");
    EXPECT(strcmp(dk_format_count(b, 950), "950") == 0, "950: %s", b);
    EXPECT(strcmp(dk_format_count(b, 12345), "12.3k") == 0, "12.3k: %s", b);
    EXPECT(strcmp(dk_format_count(b, 4.5e6), "4.50M") == 0, "4.50M: %s", b);
    EXPECT(strcmp(dk_format_count(b, 999999), "1.00M") == 0, "999999 rounds to 1.00M: %s", b);
    EXPECT(strcmp(dk_format_bytes(b, 1536), "1.50 KiB") == 0, "1.50 KiB: %s", b);
    EXPECT(strcmp(dk_format_bytes(b, 6.4e9), "5.96 GiB") == 0, "5.96 GiB: %s", b);
    EXPECT(strcmp(dk_format_bytes(b, 100), "100 B") == 0, "100 B: %s", b);
}

static void test_log(void) {
    FILE *f = tmpfile();
    dk_log_set_stream(f);
    dk_log_set_level(DK_LOG_INFO);
    dk_log_set_rank(1, 4);
    LOG_INFO("rank-0-only line");
    LOG_INFO_ALL("every rank %d", 1);
    LOG_DEBUG("hidden at info level");
    dk_log_set_rank(0, 4);
    LOG_WARN("careful");
    dk_log_set_rank(0, 1);
    LOG_INFO("single");
    char *text = read_stream(f);
    EXPECT(!strstr(text, "rank-0-only"), "LOG_INFO is silent on rank 1");
    EXPECT_CONTAINS(text, "r1/4] every rank 1");
    EXPECT(!strstr(text, "hidden"), "debug hidden at info level");
    EXPECT_CONTAINS(text, "r0/4] warning: careful");
    EXPECT(strstr(text, "] single") && !strstr(text, "r0/1"), "no rank tag with one rank: %s", text);
    free(text);
    fclose(f);
    dk_log_set_stream(NULL);
    dk_log_level lvl;
    EXPECT(dk_log_parse_level("DEBUG", &lvl) && lvl == DK_LOG_DEBUG, "parse debug");
    EXPECT(!dk_log_parse_level("verbose", &lvl), "unknown level");
}

static void test_progress(void) {
    FILE *f = tmpfile();
    dk_log_set_stream(f);
    dk_progress p;
    dk_progress_begin_on(&p, "caching", 1000, "tokens", f, false, 30.0, 100.0);
    dk_progress_set_at(&p, 100, 110.0);  /* 10 s < interval: no line */
    dk_progress_set_at(&p, 500, 140.0);  /* 40 s: line, 12.5 tokens/s, ETA 40 s */
    dk_progress_set_note(&p, "1.00 GiB written");
    dk_progress_set_at(&p, 600, 150.0);  /* 10 s after the last line: none */
    dk_progress_end_at(&p, 180.0);
    char *text = read_stream(f);
    EXPECT(!strstr(text, "100/1.00k"), "no line before the interval: %s", text);
    EXPECT_CONTAINS(text, "caching: 500/1.00k tokens (50.0%), 12 tokens/s, elapsed 40.0s, ETA 40.0s");
    EXPECT(!strstr(text, "(60.0%),"), "no periodic line within the interval");
    EXPECT_CONTAINS(text, "caching: done, 600/1.00k tokens (60.0%) in 1m20s, 8 tokens/s, 1.00 GiB written");
    free(text);
    fclose(f);
    dk_log_set_stream(NULL);
}

static void test_arena_and_timer(void) {
    dk_arena a;
    dk_err err = {0};
    EXPECT(dk_arena_init(&a, "scratch", 1000, &err) == 0, "arena init");
    EXPECT(a.capacity == 1024, "capacity rounded to 256: %zu", a.capacity);
    uint8_t *p1 = dk_arena_alloc(&a, 10, 0);
    uint8_t *p2 = dk_arena_alloc(&a, 10, 16);
    EXPECT(((uintptr_t)p1 % 256) == 0 && ((uintptr_t)p2 % 16) == 0 && p2 >= p1 + 10, "aligned, disjoint");
    size_t mark = dk_arena_mark(&a);
    dk_arena_alloc(&a, 500, 0);
    EXPECT(a.peak >= 756, "peak tracks the high water mark: %zu", a.peak);
    dk_arena_reset_to(&a, mark);
    EXPECT(a.used == mark, "reset to mark");
    dk_arena_free(&a);
    dk_timer t;
    dk_timer_reset(&t);
    dk_timer_start(&t);
    double t0 = dk_time_now();
    while (dk_time_now() - t0 < 0.01) {
    }
    dk_timer_stop(&t);
    EXPECT(t.count == 1 && t.total >= 0.01 && t.total < 1.0, "timer measured %.4f s", t.total);
}

static void test_strings(void) {
    EXPECT(dk_edit_distance("kitten", "sitting") == 3, "kitten/sitting");
    EXPECT(dk_edit_distance("", "abc") == 3 && dk_edit_distance("abc", "abc") == 0, "edge cases");
    const char *keys[] = {"preprocessing.context_len", "preprocessing.batch_size", "seed"};
    EXPECT(dk_nearest_string("preprocesing.context_len", keys, 3) == 0, "nearest key");
    EXPECT(dk_nearest_string("completely.different", keys, 3) == -1, "nothing near");
    dk_strbuf b = {0};
    for (int i = 0; i < 100; i++) dk_strbuf_printf(&b, "%d,", i);
    EXPECT(b.len == 290 && dk_str_starts_with(b.data, "0,1,2,") && dk_str_ends_with(b.data, "98,99,"), "strbuf");
    dk_strbuf_free(&b);
}

static int run_fatal(const char *which) {
    if (strcmp(which, "check") == 0) {
        int tokens = 0;
        CHECK(tokens > 0, "the plan gave rank %d no tokens", 3);
    } else if (strcmp(which, "arena") == 0) {
        dk_arena a;
        dk_err err = {0};
        dk_arena_init(&a, "activations", 1024, &err);
        dk_arena_alloc(&a, 4096, 0);
    } else if (strcmp(which, "die") == 0) {
        dk_err err = {0};
        dk_err_set(&err, DK_EXIT_USAGE, "config key x (f.yaml:3:1) must be an integer, got 'abc'");
        dk_die(&err);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1) return run_fatal(argv[1]);
    test_errors();
    test_format();
    test_log();
    test_progress();
    test_arena_and_timer();
    test_strings();
    return dk_test_finish("test_core");
}
