/* check_cuda.h — CUDA_CHECK and CUBLAS_CHECK: a failed CUDA runtime or cuBLAS call ends the job with the
 * call's text, file:line and the library's own error name (see error.h for how fatal errors end a job).
 * Kernel launchers in kernels/cuda return cudaError_t, so host code writes CUDA_CHECK(dk_cuda_...(...)). */
#ifndef DK_CHECK_CUDA_H
#define DK_CHECK_CUDA_H

#include <cublas_api.h>
#include <cuda_runtime.h>

#include "error.h"

#define CUDA_CHECK(expr)                                                                                    \
    do {                                                                                                    \
        cudaError_t dk_cuda_status_ = (expr);                                                               \
        if (dk_cuda_status_ != cudaSuccess)                                                                 \
            dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "CUDA error %s (%s) in %s",                    \
                        cudaGetErrorName(dk_cuda_status_), cudaGetErrorString(dk_cuda_status_), #expr);     \
    } while (0)

#define CUBLAS_CHECK(expr)                                                                                  \
    do {                                                                                                    \
        cublasStatus_t dk_cublas_status_ = (expr);                                                          \
        if (dk_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                     \
            dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "cuBLAS error %s in %s",                       \
                        cublasGetStatusName(dk_cublas_status_), #expr);                                     \
    } while (0)

#endif
