/* diff_pca.c — incremental PCA of activation differences: host/methods/pca.c (the method) run by the harness of
 * host/methods/method_job.c. */
#include "methods/methods.h"

int main(int argc, char **argv) { return dk_method_main(&dk_method_pca, argc, argv); }
