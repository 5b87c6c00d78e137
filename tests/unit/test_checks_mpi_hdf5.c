/* test_checks_mpi_hdf5.c — MPI_CHECK and H5_CHECK end the job with the library's own error text and the
 * failing call (run by ctest through expect.sh, which checks exit code 1 and the message). */
#include "core/check_hdf5.h"
#include "core/check_mpi.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s mpi|hdf5\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "mpi") == 0) {
        MPI_Init(&argc, &argv);
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        int value = 0;
        MPI_CHECK(MPI_Send(&value, 1, MPI_INT, 99, 0, MPI_COMM_WORLD)); /* rank 99 does not exist */
        MPI_Finalize();
    } else if (strcmp(argv[1], "hdf5") == 0) {
        dk_hdf5_quiet();
        hid_t file;
        H5_CHECK(file = H5Fopen("/nonexistent/diffkit-test.h5", H5F_ACC_RDONLY, H5P_DEFAULT));
        H5Fclose(file);
    }
    return 0;
}
