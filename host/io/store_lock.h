/* store_lock.h — ownership of a store or results file while one job writes it.
 *
 * Why: two jobs pointed at the same store (two submissions of one command, a rerun while the first still
 * runs) would otherwise adopt each other's NAME.partial, and with overwrite one could rename the other's
 * half-written file into place and mark it complete. The rule (docs/formats.md, "Store ownership"):
 *   - a job holds an exclusive flock on "<final path>.lock" from before it looks at the store until after the
 *     final rename (or its failure). A second job fails at once (non-blocking) with the holder's pid, host
 *     and start time, which the holder writes into the lock file. The kernel drops the lock when the holder
 *     dies, so a killed job never blocks a rerun; a lock file left behind is simply reused.
 *   - the file renamed into place must be the one this job created or adopted: its identity (device, inode)
 *     is recorded then and compared just before the rename (dk_rename_owned).
 * File systems: flock works between processes of one machine on local disks; on NFS (Linux client, v3 with
 * lockd or v4) it is emulated with byte-range locks and works between machines; on Lustre it works between
 * nodes only when mounted with -o flock (-o localflock: per node only; neither: flock fails with ENOSYS).
 * Where flock is not supported the job warns once per lock and goes on; the rename check still holds.
 * Under MPI only one rank (rank 0) takes the lock. */
#ifndef DK_STORE_LOCK_H
#define DK_STORE_LOCK_H

#include <stdbool.h>

#include "core/error.h"
#include "io/out_file.h"

typedef struct dk_store_lock {
    char *lock_path;     /* "<path>.lock" */
    int fd;              /* -1 when not held */
    dk_file_id id;       /* the lock file this job locked */
    bool unsupported;    /* the file system has no flock: held in name only (a warning was printed) */
} dk_store_lock;

/* Takes the lock of the output at path (the final name, e.g. .../train.h5). 0, or -1 with err (code 1)
 * naming the path and the other holder. lk must stay at its address while held: a job that ends without
 * releasing it (exit, dk_die, dk_abort) releases it on the way out. */
int dk_store_lock_take(dk_store_lock *lk, const char *path, dk_err *err);
/* 0 while lk is still held and its lock file is still in place; -1 with err otherwise. */
int dk_store_lock_check(const dk_store_lock *lk, dk_err *err);
/* Removes the lock file and drops the lock. Safe on a zeroed or released lk. */
void dk_store_lock_release(dk_store_lock *lk);

/* Renames from -> to after checking that from is still the file identified by expected (the one this job
 * created or adopted). 0, or -1 with err naming both paths. */
int dk_rename_owned(const char *from, dk_file_id expected, const char *to, dk_err *err);

#endif
