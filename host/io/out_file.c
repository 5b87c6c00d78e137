/* out_file.c — checked outputs written to a temporary and renamed into place (see out_file.h).
 * The stream is a glibc cookie stream (fopencookie) over our own descriptor, so the errno of the first
 * failing write(2) is kept for the message instead of being lost by the time of fclose. */
#define _GNU_SOURCE /* fopencookie */
#include "io/out_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/store_lock.h"

enum { STREAM_BUFFER = 1 << 16 };

dk_file_id dk_file_id_of_path(const char *path) {
    struct stat st;
    dk_file_id id = {0};
    if (path && stat(path, &st) == 0) id = (dk_file_id){st.st_dev, st.st_ino, true};
    return id;
}

dk_file_id dk_file_id_of_fd(int fd) {
    struct stat st;
    dk_file_id id = {0};
    if (fstat(fd, &st) == 0) id = (dk_file_id){st.st_dev, st.st_ino, true};
    return id;
}

bool dk_file_id_same(dk_file_id a, dk_file_id b) { return a.valid && b.valid && a.dev == b.dev && a.ino == b.ino; }

int dk_err_write(dk_err *err, const char *path, int e) {
    switch (e) {
    case ENOSPC:
        return dk_err_set(err, DK_EXIT_RUNTIME, "no space left on %s (%s): free space on its file system or write "
                          "the output elsewhere", path, strerror(e));
    case EDQUOT:
        return dk_err_set(err, DK_EXIT_RUNTIME, "disk quota exceeded writing %s (%s): free space in your quota or "
                          "write the output elsewhere", path, strerror(e));
    case EFBIG:
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s grew past the file-size limit (%s): raise the limit (ulimit -f) "
                          "or write a smaller output", path, strerror(e));
    case 0:
        return dk_err_set(err, DK_EXIT_RUNTIME, "cannot write %s: a write failed", path);
    default:
        return dk_err_set(err, DK_EXIT_RUNTIME, "cannot write %s: %s", path, strerror(e));
    }
}

/* A job that ends without committing an output (dk_die, dk_abort) removes its temporary. */
static void remove_temporary(void *obj) {
    dk_out_file *o = obj;
    if (o->tmp_path) unlink(o->tmp_path);
}

/* ---- the cookie stream ----------------------------------------------------------------------------- */

static ssize_t cookie_write(void *cookie, const char *buf, size_t size) {
    dk_out_file *o = cookie;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(o->fd, buf + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (o->write_errno == 0) o->write_errno = n < 0 ? errno : EIO;
            break;
        }
        done += (size_t)n;
    }
    return (ssize_t)done; /* short: the stream sets its error flag */
}

static int cookie_close(void *cookie) {
    (void)cookie; /* the descriptor is closed (and checked) by commit / abort */
    return 0;
}

static int make_stream(dk_out_file *o, dk_err *err) {
    cookie_io_functions_t io = {.read = NULL, .write = cookie_write, .seek = NULL, .close = cookie_close};
    o->f = fopencookie(o, "w", io);
    if (!o->f) return dk_err_set(err, DK_EXIT_RUNTIME, "cannot write %s: %s", o->path, strerror(errno));
    setvbuf(o->f, NULL, _IOFBF, STREAM_BUFFER);
    return 0;
}

/* ---- open ------------------------------------------------------------------------------------------ */

static bool is_std(const char *path) { return !path || strcmp(path, "-") == 0; }

/* The regular file behind a path ("-" = stdin) or descriptor; valid only for regular files, because only
 * they can be destroyed by writing (stdin and stdout both a terminal or /dev/null is fine). */
static dk_file_id regular_id(const char *path, int fd) {
    struct stat st;
    int rc = path ? (strcmp(path, "-") == 0 ? fstat(0, &st) : stat(path, &st)) : fstat(fd, &st);
    dk_file_id id = {0};
    if (rc == 0 && S_ISREG(st.st_mode)) id = (dk_file_id){st.st_dev, st.st_ino, true};
    return id;
}

static int refuse_input(const char *out_name, dk_file_id out_id, const char *const *inputs, size_t n, dk_err *err) {
    for (size_t i = 0; out_id.valid && i < n; i++) {
        if (!inputs[i] || !dk_file_id_same(out_id, regular_id(inputs[i], -1))) continue;
        const char *in_name = strcmp(inputs[i], "-") == 0 ? "standard input" : inputs[i];
        return dk_err_set(err, DK_EXIT_USAGE, "the output %s is the same file as the input %s: writing it would "
                          "destroy the input; write the output to another path", out_name, in_name);
    }
    return 0;
}

static void ignore_file_size_signal(void) {
    /* past `ulimit -f` a write then fails with EFBIG, which we report, instead of killing the process */
    signal(SIGXFSZ, SIG_IGN);
}

static int open_stdout(dk_out_file *o, const char *const *inputs, size_t n_inputs, dk_err *err) {
    o->path = dk_strdup("<stdout>");
    o->is_stdout = o->in_place = true;
    if (refuse_input("(standard output)", regular_id(NULL, STDOUT_FILENO), inputs, n_inputs, err) != 0) return -1;
    fflush(stdout); /* what printf wrote before comes first */
    o->fd = dup(STDOUT_FILENO);
    if (o->fd < 0) return dk_err_set(err, DK_EXIT_RUNTIME, "cannot write standard output: %s", strerror(errno));
    return make_stream(o, err);
}

/* An existing output that is not a regular file (a device, a FIFO): written in place, nothing renamed. */
static int open_in_place(dk_out_file *o, dk_err *err) {
    o->in_place = true;
    o->fd = open(o->path, O_WRONLY | O_CLOEXEC);
    if (o->fd < 0) return dk_err_set(err, DK_EXIT_RUNTIME, "cannot write %s: %s", o->path, strerror(errno));
    return make_stream(o, err);
}

static int open_temporary(dk_out_file *o, dk_err *err) {
    o->tmp_path = dk_sprintf("%s.tmp.XXXXXX", o->path);
    o->fd = mkstemp(o->tmp_path);
    if (o->fd < 0) {
        int e = errno;
        free(o->tmp_path);
        o->tmp_path = NULL;
        return dk_err_set(err, DK_EXIT_RUNTIME, "cannot create %s: %s (check that its folder exists and is writable)",
                          o->path, strerror(e));
    }
    mode_t mask = umask(0); /* mkstemp makes 0600; give the file the usual 0666 & ~umask */
    umask(mask);
    fchmod(o->fd, 0666 & ~mask);
    o->tmp_id = dk_file_id_of_fd(o->fd);
    dk_cleanup_add(remove_temporary, o);
    return make_stream(o, err);
}

int dk_out_open(dk_out_file *o, const char *path, const char *const *inputs, size_t n_inputs, dk_err *err) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    ignore_file_size_signal();
    if (is_std(path)) {
        if (open_stdout(o, inputs, n_inputs, err) == 0) return 0;
        dk_out_abort(o);
        return -1;
    }
    /* a symlink is followed: the file it points to is replaced, the link stays */
    char resolved[PATH_MAX];
    struct stat lst, st;
    bool exists = stat(path, &st) == 0;
    if (exists && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode) && realpath(path, resolved))
        o->path = dk_strdup(resolved);
    else
        o->path = dk_strdup(path);
    int rc;
    if (exists && S_ISDIR(st.st_mode))
        rc = dk_err_set(err, DK_EXIT_USAGE, "the output %s is a folder: give a file path", path);
    else if (refuse_input(path, regular_id(path, -1), inputs, n_inputs, err) != 0)
        rc = -1;
    else if (exists && !S_ISREG(st.st_mode))
        rc = open_in_place(o, err);
    else if (exists && access(o->path, W_OK) != 0) /* the rename would replace a write-protected file */
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "cannot write %s: %s", path, strerror(errno));
    else
        rc = open_temporary(o, err);
    if (rc != 0) dk_out_abort(o);
    return rc;
}

bool dk_out_failed(const dk_out_file *o) { return o->write_errno != 0 || (o->f && ferror(o->f)); }

/* The write error of an output, saying what becomes of it. */
static int out_write_error(const dk_out_file *o, int e, dk_err *err) {
    if (!err || dk_err_is_set(err)) return -1;
    dk_err_write(err, o->is_stdout ? "standard output" : o->path, e);
    size_t n = strlen(err->msg);
    if (o->tmp_path) snprintf(err->msg + n, sizeof err->msg - n, "; the incomplete output was not kept");
    return -1;
}

int dk_out_check(const dk_out_file *o, dk_err *err) {
    if (!dk_out_failed(o)) return 0;
    return out_write_error(o, o->write_errno, err);
}

/* ---- commit / abort --------------------------------------------------------------------------------- */

/* fsync makes a full disk or a failing NFS server show now rather than after exit; only files sync. */
static int sync_fd(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    return fsync(fd) == 0 || errno == EINVAL || errno == EROFS ? 0 : errno;
}

/* Best effort: the rename itself durable (ext4 / xfs need the folder synced). */
static void sync_parent(const char *path) {
    char *dir = dk_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int dk_out_commit(dk_out_file *o, dk_err *err) {
    int e = 0;
    if (fflush(o->f) != 0 || ferror(o->f)) e = o->write_errno ? o->write_errno : errno;
    else if (o->write_errno) e = o->write_errno;
    if (!e) e = sync_fd(o->fd);
    fclose(o->f);
    o->f = NULL;
    if (close(o->fd) != 0 && !e) e = errno; /* NFS reports some write errors only here */
    o->fd = -1;
    int rc = 0;
    if (e) {
        rc = out_write_error(o, e, err);
    } else if (o->tmp_path) {
        if (dk_rename_owned(o->tmp_path, o->tmp_id, o->path, err) != 0)
            rc = -1;
        else {
            free(o->tmp_path); /* renamed: nothing left to remove */
            o->tmp_path = NULL;
            sync_parent(o->path);
        }
    }
    dk_out_abort(o);
    return rc;
}

void dk_out_abort(dk_out_file *o) {
    dk_cleanup_remove(o);
    if (o->f) fclose(o->f);
    if (o->fd >= 0) close(o->fd);
    if (o->tmp_path) unlink(o->tmp_path);
    free(o->tmp_path);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

/* ---- standard output written with printf ------------------------------------------------------------ */

static const char *stdout_prog = "diffkit";

static void check_stdout(void) {
    errno = 0;
    int e = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) e = errno ? errno : EIO;
    if (fclose(stdout) != 0 && !e) e = errno;
    if (!e) return;
    if (e == EPIPE) _exit(DK_EXIT_RUNTIME); /* the reader went away (`| head`): nothing to say */
    dk_err err = {0};
    dk_err_write(&err, "standard output", e);
    fprintf(stderr, "%s: error: %s\n", stdout_prog, err.msg);
    _exit(DK_EXIT_RUNTIME);
}

void dk_stdout_check_at_exit(const char *prog) {
    static bool registered = false;
    stdout_prog = prog;
    ignore_file_size_signal();
    if (!registered) atexit(check_stdout);
    registered = true;
}
