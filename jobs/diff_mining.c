/* diff_mining.c — which tokens the finetune pushes up (top-k logit differences, orderings, NMF topics):
 * host/methods/diff_mining.c (the method) run by the harness of host/methods/method_job.c. */
#include "methods/methods.h"

int main(int argc, char **argv) { return dk_method_main(&dk_method_diff_mining, argc, argv); }
