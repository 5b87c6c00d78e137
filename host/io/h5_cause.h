/* h5_cause.h — what an HDF5 write failure means for a person. A failed write through HDF5 leaves errno unset
 * more often than not (the MPI-IO or POSIX layer below reports it in HDF5's error stack as text), so the cause
 * ("No space left on device", a quota, a file-size limit) is looked up there. Shared by the activation store
 * writer (act_store.c) and the results files of the methods (host/methods/results.c). */
#ifndef DK_H5_CAUSE_H
#define DK_H5_CAUSE_H

/* The errno value named in the current thread's HDF5 error stack (ENOSPC, EFBIG, EDQUOT, EIO, EROFS, EACCES),
 * else fallback (e.g. errno saved right after the failing call; 0 = unknown). */
int dk_h5_error_errno(int fallback);

#endif
