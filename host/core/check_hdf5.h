/* check_hdf5.h — H5_CHECK: a failed HDF5 call (negative herr_t or hid_t) prints HDF5's error stack, then
 * ends the job with the call's text and file:line. In parallel an HDF5 error on one rank would leave the
 * others blocked in the next collective, so every HDF5 error is fatal job-wide. Call dk_hdf5_quiet() once
 * at start-up so HDF5 does not print its stack by itself. Put the assignment inside, so the message shows
 * the call:   hid_t file; H5_CHECK(file = H5Fopen(path, H5F_ACC_RDONLY, fapl));                        */
#ifndef DK_CHECK_HDF5_H
#define DK_CHECK_HDF5_H

#include <hdf5.h>
#include <stdio.h>

#include "error.h"

static inline void dk_hdf5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

#define H5_CHECK(expr)                                                                                      \
    do {                                                                                                    \
        if ((long long)(expr) < 0) {                                                                        \
            H5Eprint2(H5E_DEFAULT, stderr);                                                                 \
            dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "HDF5 call failed: %s (error stack above)",    \
                        #expr);                                                                             \
        }                                                                                                   \
    } while (0)

#endif
