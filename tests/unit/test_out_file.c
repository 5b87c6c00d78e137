/* test_out_file.c — the output plumbing every command writes through (host/io/out_file.h, store_lock.h)
 * and the non-finite guard (host/core/finite.h): write errors (/dev/full, a file-size limit) become messages,
 * the final file appears only whole, an output that is an input is refused, a replaced temporary is not
 * renamed, a store lock excludes a second holder and names the first. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/finite.h"
#include "io/file.h"
#include "io/out_file.h"
#include "io/store_lock.h"

static char dir[256];

static char *path_in_dir(const char *name) { return dk_sprintf("%s/%s", dir, name); }

static size_t count_entries(void) {
    size_t n = 0;
    char **names = dk_list_dir(dir, NULL, false, &n);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return n;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    size_t n;
    dk_err err = {0};
    return dk_read_file(path, &n, &err);
}

static void test_commit_and_abort(void) {
    char *out = path_in_dir("out.txt");
    dk_out_file o;
    dk_err err = {0};
    EXPECT(dk_out_open(&o, out, NULL, 0, &err) == 0, "open: %s", err.msg);
    fprintf(o.f, "hello %d\n", 42);
    EXPECT(!dk_file_id_same(o.tmp_id, dk_file_id_of_path(out)), "the final file must not exist before the commit");
    EXPECT(count_entries() == 1, "one temporary in the folder while writing");
    EXPECT(dk_out_commit(&o, &err) == 0, "commit: %s", err.msg);
    char *text = read_text(out);
    EXPECT(text && strcmp(text, "hello 42\n") == 0, "content after commit: %s", text ? text : "(none)");
    free(text);
    EXPECT(count_entries() == 1, "no temporary left after the commit");

    /* abort: the old file stays as it was, the temporary goes */
    EXPECT(dk_out_open(&o, out, NULL, 0, &err) == 0, "reopen: %s", err.msg);
    fprintf(o.f, "half\n");
    dk_out_abort(&o);
    text = read_text(out);
    EXPECT(text && strcmp(text, "hello 42\n") == 0, "abort must leave the old file: %s", text ? text : "(none)");
    free(text);
    EXPECT(count_entries() == 1, "no temporary left after abort");
    unlink(out);
    free(out);
}

static void test_dev_full(void) {
    dk_out_file o;
    dk_err err = {0};
    EXPECT(dk_out_open(&o, "/dev/full", NULL, 0, &err) == 0, "open /dev/full: %s", err.msg);
    EXPECT(o.in_place && !o.tmp_path, "a device is written in place");
    for (int i = 0; i < 100000; i++) fprintf(o.f, "line %d\n", i);
    EXPECT(dk_out_failed(&o), "a write to /dev/full fails as it happens");
    EXPECT(dk_out_check(&o, &err) != 0, "dk_out_check reports the failure");
    EXPECT_CONTAINS(err.msg, "no space left on /dev/full");
    dk_err_clear(&err);
    EXPECT(dk_out_commit(&o, &err) != 0, "commit to /dev/full must fail");
    EXPECT_CONTAINS(err.msg, "no space left on /dev/full");
    /* small output: the error shows only at the final flush */
    EXPECT(dk_out_open(&o, "/dev/full", NULL, 0, &err) == 0, "open /dev/full: %s", err.msg);
    fputs("x\n", o.f);
    dk_err_clear(&err);
    EXPECT(dk_out_commit(&o, &err) != 0, "commit of one line to /dev/full must fail");
    EXPECT_CONTAINS(err.msg, "no space left on /dev/full");
}

/* In a child with a 64 KiB file-size limit: 1 MiB written must fail with EFBIG and leave nothing. */
static void test_file_size_limit(void) {
    char *out = path_in_dir("big.txt");
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit lim = {1 << 16, 1 << 16};
        setrlimit(RLIMIT_FSIZE, &lim);
        dk_out_file o;
        dk_err err = {0};
        if (dk_out_open(&o, out, NULL, 0, &err) != 0) _exit(3);
        for (int i = 0; i < 1 << 16; i++) fputs("0123456789abcde\n", o.f);
        int rc = dk_out_commit(&o, &err);
        _exit(rc == 0 ? 4 : strstr(err.msg, "file-size limit") && strstr(err.msg, out) ? 0 : 5);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "file-size limit: child status %d (4: commit succeeded, 5: "
           "wrong message, signal: killed by SIGXFSZ)", status);
    EXPECT(access(out, F_OK) != 0, "no final file after a failed commit");
    EXPECT(count_entries() == 0, "no temporary left after a failed commit");
    free(out);
}

static void test_output_is_input(void) {
    char *in = path_in_dir("in.jsonl"), *linked = path_in_dir("link.jsonl"), *other = path_in_dir("other.jsonl");
    write_text(in, "{\"text\": \"a\"}\n");
    EXPECT(link(in, linked) == 0, "hard link: %s", strerror(errno));
    const char *inputs[] = {NULL, in};
    dk_out_file o;
    dk_err err = {0};
    EXPECT(dk_out_open(&o, in, inputs, 2, &err) != 0 && err.code == DK_EXIT_USAGE, "same path refused");
    EXPECT_CONTAINS(err.msg, "is the same file as the input");
    dk_err_clear(&err);
    char *dotted = dk_sprintf("%s/./in.jsonl", dir);
    EXPECT(dk_out_open(&o, dotted, inputs, 2, &err) != 0, "same file through another spelling refused");
    dk_err_clear(&err);
    EXPECT(dk_out_open(&o, linked, inputs, 2, &err) != 0, "a hard link of the input refused");
    dk_err_clear(&err);
    EXPECT(dk_out_open(&o, other, inputs, 2, &err) == 0, "another file accepted: %s", err.msg);
    dk_out_abort(&o);
    char *text = read_text(in);
    EXPECT(text && strcmp(text, "{\"text\": \"a\"}\n") == 0, "the input is intact");
    free(text);
    unlink(in);
    unlink(linked);
    free(dotted);
    free(in);
    free(linked);
    free(other);
}

static void test_replaced_temporary(void) {
    char *out = path_in_dir("r.txt");
    dk_out_file o;
    dk_err err = {0};
    EXPECT(dk_out_open(&o, out, NULL, 0, &err) == 0, "open: %s", err.msg);
    fputs("mine\n", o.f);
    /* another job moves our temporary away and puts its own file under the name (moved, not removed: a
     * removed file's inode number could be given to the new one) */
    char *tmp = dk_strdup(o.tmp_path), *moved = dk_sprintf("%s.moved", tmp);
    rename(tmp, moved);
    write_text(tmp, "theirs\n");
    EXPECT(dk_out_commit(&o, &err) != 0, "a replaced temporary must not be renamed");
    EXPECT_CONTAINS(err.msg, "is no longer the file this job wrote");
    EXPECT(access(out, F_OK) != 0, "nothing renamed into place");
    unlink(tmp);
    unlink(moved);
    free(tmp);
    free(moved);
    free(out);
}

static void test_store_lock(void) {
    char *store = path_in_dir("train.h5");
    dk_store_lock a, b;
    dk_err err = {0};
    EXPECT(dk_store_lock_take(&a, store, &err) == 0, "first lock: %s", err.msg);
    EXPECT(dk_store_lock_check(&a, &err) == 0, "held: %s", err.msg);
    EXPECT(dk_store_lock_take(&b, store, &err) != 0, "a second holder must be refused");
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d on host", (int)getpid());
    EXPECT_CONTAINS(err.msg, pid);
    EXPECT_CONTAINS(err.msg, "is being written by another job");
    dk_store_lock_release(&a);
    char *lock = dk_sprintf("%s.lock", store);
    EXPECT(access(lock, F_OK) != 0, "the lock file is removed on release");
    dk_err_clear(&err);
    EXPECT(dk_store_lock_take(&b, store, &err) == 0, "after release: %s", err.msg);
    /* a lock file removed under the holder is noticed */
    unlink(lock);
    EXPECT(dk_store_lock_check(&b, &err) != 0, "a removed lock file must be noticed");
    EXPECT_CONTAINS(err.msg, "was removed or replaced");
    dk_store_lock_release(&b);
    free(lock);

    /* the ownership-checked rename */
    char *partial = path_in_dir("train.h5.partial");
    write_text(partial, "ours");
    dk_file_id id = dk_file_id_of_path(partial);
    char *moved = path_in_dir("moved");
    rename(partial, moved);
    write_text(partial, "another job's");
    dk_err_clear(&err);
    EXPECT(dk_rename_owned(partial, id, store, &err) != 0, "a foreign partial must not be renamed");
    EXPECT(access(store, F_OK) != 0, "nothing renamed");
    id = dk_file_id_of_path(partial);
    dk_err_clear(&err);
    EXPECT(dk_rename_owned(partial, id, store, &err) == 0, "our partial is renamed: %s", err.msg);
    unlink(store);
    unlink(moved);
    free(moved);
    free(partial);
    free(store);
}

static void test_finite(void) {
    enum { N = 5000 };
    float *x = malloc(N * sizeof *x);
    double *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++) x[i] = y[i] = (float)i * 1e-3f - 2.0f;
    x[0] = 3.0e38f; /* large but finite */
    EXPECT(dk_first_nonfinite_f32(x, N) == -1, "all finite");
    EXPECT(dk_first_nonfinite_f64(y, N) == -1, "all finite (f64)");
    size_t at[] = {0, 1023, 1024, 4097, N - 1};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        float keep = x[at[k]];
        x[at[k]] = k % 2 ? NAN : -INFINITY;
        EXPECT(dk_first_nonfinite_f32(x, N) == (int64_t)at[k], "first bad at %zu, got %lld", at[k],
               (long long)dk_first_nonfinite_f32(x, N));
        x[at[k]] = keep;
        double keep_y = y[at[k]];
        y[at[k]] = INFINITY;
        EXPECT(dk_first_nonfinite_f64(y, N) == (int64_t)at[k], "f64 first bad at %zu", at[k]);
        y[at[k]] = keep_y;
    }
    x[10] = NAN;
    x[3000] = INFINITY;
    EXPECT(dk_first_nonfinite_f32(x, N) == 10, "the first of two");
    EXPECT(dk_first_nonfinite_f32(x, 5) == -1, "only the first n values are looked at");
    EXPECT(strcmp(dk_nonfinite_name(-INFINITY), "-Inf") == 0 && strcmp(dk_nonfinite_name(NAN), "NaN") == 0, "names");
    free(x);
    free(y);

    /* a packed batch: sequences of 2, 3 and 1 rows of width 4; the first bad value names its sequence and token */
    float batch[6 * 4] = {0};
    const int64_t starts[4] = {0, 2, 5, 6};
    dk_nonfinite_at w;
    EXPECT(!dk_first_nonfinite_in_batch(batch, 6, 4, starts, 3, &w), "an all-finite batch");
    batch[4 * 4 + 3] = -INFINITY; /* row 4: sequence 1, token 2 */
    batch[5 * 4] = NAN;
    EXPECT(dk_first_nonfinite_in_batch(batch, 6, 4, starts, 3, &w) && w.seq == 1 && w.token == 2 && isinf(w.value),
           "row 4 is sequence 1, token 2: got sequence %lld, token %lld", (long long)w.seq, (long long)w.token);
    batch[4 * 4 + 3] = 0;
    EXPECT(dk_first_nonfinite_in_batch(batch, 6, 4, starts, 3, &w) && w.seq == 2 && w.token == 0 && isnan(w.value),
           "row 5 is sequence 2, token 0: got sequence %lld, token %lld", (long long)w.seq, (long long)w.token);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/dk_test_out_file.XXXXXX");
    if (!mkdtemp(dir)) return 2;
    test_commit_and_abort();
    test_dev_full();
    test_file_size_limit();
    test_output_is_input();
    test_replaced_temporary();
    test_store_lock();
    test_finite();
    rmdir(dir);
    return dk_test_finish("test_out_file");
}
