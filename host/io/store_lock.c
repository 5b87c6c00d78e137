/* store_lock.c — exclusive flock on "<path>.lock" and the ownership-checked rename (see store_lock.h).
 *
 * Taking: open (create) the lock file, flock(LOCK_EX | LOCK_NB), then check that the path still names the
 * locked file: a releasing holder unlinks it while still holding the lock, so a job that opened the old file
 * just before would otherwise hold a lock nobody else can see. On a mismatch it retries with the new file. */
#include "io/store_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

enum { TAKE_ATTEMPTS = 50 };

/* A job that ends without releasing a lock (dk_die, dk_abort) removes the lock file on the way out; the
 * kernel drops the flock itself. */
static void release_on_exit(void *obj) { dk_store_lock_release(obj); }

/* "pid 123 on host n01 since 2025-01-02T03:04:05Z" as the holder wrote it, or a generic phrase. */
static void read_holder(int fd, char *out, size_t cap) {
    char buf[256];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        snprintf(out, cap, "another job (it has not recorded its pid yet)");
        return;
    }
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    snprintf(out, cap, "%s", buf);
}

static void write_holder(int fd) {
    char host[128] = "?", stamp[32], line[256];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    int n = snprintf(line, sizeof line, "pid %d on host %s since %s\n", (int)getpid(), host, stamp);
    if (ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)n, 0) == n) return;
    /* the lock holds without the note; only the other job's message is poorer */
}

static bool flock_unsupported(int e) { return e == ENOSYS || e == ENOLCK || e == EOPNOTSUPP || e == EINVAL; }

int dk_store_lock_take(dk_store_lock *lk, const char *path, dk_err *err) {
    memset(lk, 0, sizeof *lk);
    lk->fd = -1;
    lk->lock_path = dk_sprintf("%s.lock", path);
    for (int attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
        int fd = open(lk->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) {
            dk_err_set(err, DK_EXIT_RUNTIME, "cannot create the lock file %s: %s (check that the folder is writable)",
                       lk->lock_path, strerror(errno));
            break;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            if (e == EWOULDBLOCK || e == EAGAIN) {
                char holder[256];
                read_holder(fd, holder, sizeof holder);
                close(fd);
                dk_err_set(err, DK_EXIT_RUNTIME, "%s is being written by another job (%s; lock file %s): wait for "
                           "that job to finish, or write to another folder", path, holder, lk->lock_path);
                break;
            }
            if (!flock_unsupported(e)) {
                close(fd);
                dk_err_set(err, DK_EXIT_RUNTIME, "cannot lock %s: %s", lk->lock_path, strerror(e));
                break;
            }
            LOG_WARN("%s: this file system does not support flock (%s): nothing stops a second job from writing %s "
                     "at the same time (on Lustre, mount with -o flock); the final rename is still checked",
                     lk->lock_path, strerror(e), path);
            lk->unsupported = true;
        }
        dk_file_id mine = dk_file_id_of_fd(fd);
        if (!lk->unsupported && !dk_file_id_same(mine, dk_file_id_of_path(lk->lock_path))) {
            close(fd); /* the holder released (and removed) it between our open and flock: try the new one */
            continue;
        }
        write_holder(fd);
        lk->fd = fd;
        lk->id = mine;
        dk_cleanup_add(release_on_exit, lk);
        return 0;
    }
    if (!dk_err_is_set(err))
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot take the lock %s: it keeps being replaced by other jobs",
                   lk->lock_path);
    free(lk->lock_path);
    lk->lock_path = NULL;
    return -1;
}

int dk_store_lock_check(const dk_store_lock *lk, dk_err *err) {
    if (lk->fd < 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "internal: the lock %s is not held",
                          lk->lock_path ? lk->lock_path : "(none)");
    if (!lk->unsupported && !dk_file_id_same(lk->id, dk_file_id_of_path(lk->lock_path)))
        return dk_err_set(err, DK_EXIT_RUNTIME, "the lock file %s was removed or replaced while this job held it "
                          "(by hand, or by a job on a machine where flock does not reach this one): not finishing "
                          "the write", lk->lock_path);
    return 0;
}

void dk_store_lock_release(dk_store_lock *lk) {
    dk_cleanup_remove(lk);
    if (lk->fd >= 0) {
        /* remove it only while still ours: someone else's lock file is not ours to delete */
        if (!lk->unsupported && dk_file_id_same(lk->id, dk_file_id_of_path(lk->lock_path))) unlink(lk->lock_path);
        close(lk->fd);
    }
    free(lk->lock_path);
    memset(lk, 0, sizeof *lk);
    lk->fd = -1;
}

int dk_rename_owned(const char *from, dk_file_id expected, const char *to, dk_err *err) {
    if (!dk_file_id_same(expected, dk_file_id_of_path(from)))
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s is no longer the file this job wrote (removed or replaced by "
                          "another job?): not renaming it to %s", from, to);
    if (rename(from, to) != 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "cannot rename %s to %s: %s", from, to, strerror(errno));
    return 0;
}
