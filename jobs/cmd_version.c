/* cmd_version.c — `diffkit version`: version and what this build contains (for bug reports and logs). */
#include "commands.h"

#include <stdio.h>

#ifndef DIFFKIT_VERSION
#define DIFFKIT_VERSION "unknown"
#endif

int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("diffkit %s\n", DIFFKIT_VERSION);
#ifdef DIFFKIT_HAVE_CUDA
    printf("cuda: yes\n");
#else
    printf("cuda: no (CPU backend only)\n");
#endif
#ifdef DIFFKIT_HAVE_NCCL
    printf("nccl: yes\n");
#else
    printf("nccl: no\n");
#endif
#ifdef DIFFKIT_ENGINE_ONLY
    printf("build: engine only (no MPI, HDF5, libcurl)\n");
#else
    printf("build: full\n");
#endif
    return 0;
}
