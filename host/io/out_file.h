/* out_file.h — the one way a diffkit command writes an output file (or standard output).
 *
 * Why it exists: a full disk, a quota, a file-size limit or a bad device must never leave a truncated file
 * behind with exit code 0, and `--output` naming an input must never empty that input. So every output
 * goes through this:
 *   - dk_out_open writes to a temporary beside the final path (PATH.tmp.XXXXXX, same folder, so the rename
 *     is atomic); the final file appears only at a successful commit, whole. An output that already exists
 *     and is not a regular file (/dev/stdout, /dev/full, a FIFO) is written in place: there is nothing to
 *     rename over, and its write errors are still checked. NULL or "-" is standard output.
 *   - every write(2) is checked as it happens: the stream is a glibc cookie stream, so the first failing
 *     write's errno is kept ("no space left on OUT.jsonl: No space left on device"), not lost in a later
 *     fclose. dk_out_failed/dk_out_check let a long loop stop at the first failure.
 *   - dk_out_commit = fflush + ferror + fsync + close, each checked, then a check that the temporary is still
 *     the file this call created (same device and inode), then rename. dk_out_abort removes the temporary, and
 *     so does the end of the job (exit, dk_die, dk_abort under MPI) for an output never committed.
 *   - an output that is the same file (same device and inode, so hard links and "./x" vs "x" count) as an
 *     input is refused before anything is written.
 *   - SIGXFSZ is ignored while outputs are open, so a file-size limit (ulimit -f) is a write error (EFBIG)
 *     with a message, not a silent kill.
 * Standard output written with printf (usage text, `diffkit config`) is checked once at exit by
 * dk_stdout_check_at_exit. Messages say what to do ("free space or choose another --output"). */
#ifndef DK_OUT_FILE_H
#define DK_OUT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "core/error.h"

/* A file's identity: equal dev and ino, same file. */
typedef struct dk_file_id {
    dev_t dev;
    ino_t ino;
    bool valid;  /* false when the file could not be stat'ed */
} dk_file_id;

dk_file_id dk_file_id_of_path(const char *path);  /* follows symlinks */
dk_file_id dk_file_id_of_fd(int fd);
bool dk_file_id_same(dk_file_id a, dk_file_id b);  /* both valid and equal */

typedef struct dk_out_file {
    FILE *f;            /* write through this: fprintf, fwrite, fputs ... */
    char *path;         /* the final path, or "<stdout>" (for messages) */
    char *tmp_path;     /* the temporary renamed at commit; NULL when writing in place */
    int fd;             /* the descriptor under f; -1 once closed */
    int write_errno;    /* errno of the first failed write(2), 0 = none so far */
    dk_file_id tmp_id;  /* identity of tmp_path as created */
    bool is_stdout, in_place;
} dk_out_file;

/* Opens an output: path NULL or "-" = standard output. o must stay at its address until commit/abort (the
 * stream writes through it). inputs[0..n_inputs) are the paths the command reads
 * ("-" = standard input; NULL entries are skipped): an output that is the same file as one of them
 * is refused (code 2). 0, or -1 with err naming the file and what to do. */
int dk_out_open(dk_out_file *o, const char *path, const char *const *inputs, size_t n_inputs, dk_err *err);
/* True once a write has failed (the output is lost; stop producing more). */
bool dk_out_failed(const dk_out_file *o);
/* 0, or -1 with err ("cannot write OUT: No space left on device ...") when a write has failed so far. */
int dk_out_check(const dk_out_file *o, dk_err *err);
/* Flushes, checks, syncs, closes and renames into place. 0, or -1 with err; the temporary is removed on
 * failure. Either way o is closed afterwards. */
int dk_out_commit(dk_out_file *o, dk_err *err);
/* Closes and removes the temporary (error paths). Safe on a closed or zeroed o. */
void dk_out_abort(dk_out_file *o);

/* "no space left on X" style message for errno e while writing path (what to do included). */
int dk_err_write(dk_err *err, const char *path, int e);

/* Registers (once) an atexit check of stdout: flush, ferror, close; on failure prints
 * "<prog>: error: cannot write standard output: <reason>" and exits 1. prog names the command. */
void dk_stdout_check_at_exit(const char *prog);

#endif
