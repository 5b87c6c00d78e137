/* diff_activation_analysis.c — per-token norms and cosine distances of finetuned − base activations from the
 * stores: host/methods/activation_analysis.c (the method) run by the harness of host/methods/method_job.c. */
#include "methods/methods.h"

int main(int argc, char **argv) { return dk_method_main(&dk_method_activation_analysis, argc, argv); }
