/* check_nccl.h — NCCL_CHECK: a failed NCCL call ends the job with the NCCL error string and file:line.
 * The dist layer's abort handler calls ncclCommAbort before MPI_Abort (never ncclCommDestroy on errors). */
#ifndef DK_CHECK_NCCL_H
#define DK_CHECK_NCCL_H

#include <nccl.h>

#include "error.h"

#define NCCL_CHECK(expr)                                                                                    \
    do {                                                                                                    \
        ncclResult_t dk_nccl_status_ = (expr);                                                              \
        if (dk_nccl_status_ != ncclSuccess)                                                                 \
            dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "NCCL error %s in %s",                         \
                        ncclGetErrorString(dk_nccl_status_), #expr);                                        \
    } while (0)

#endif
