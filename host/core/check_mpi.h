/* check_mpi.h — MPI_CHECK: a failed MPI call ends the job with MPI_Error_string's text and file:line.
 * Only useful where MPI_ERRORS_RETURN is set on the communicator (the default handler already aborts). */
#ifndef DK_CHECK_MPI_H
#define DK_CHECK_MPI_H

#include <mpi.h>

#include "error.h"

#define MPI_CHECK(expr)                                                                                     \
    do {                                                                                                    \
        int dk_mpi_status_ = (expr);                                                                        \
        if (dk_mpi_status_ != MPI_SUCCESS) {                                                                \
            char dk_mpi_text_[MPI_MAX_ERROR_STRING];                                                        \
            int dk_mpi_len_ = 0;                                                                            \
            MPI_Error_string(dk_mpi_status_, dk_mpi_text_, &dk_mpi_len_);                                   \
            dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "MPI error in %s: %s", #expr, dk_mpi_text_);   \
        }                                                                                                   \
    } while (0)

#endif
