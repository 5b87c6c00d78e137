/* diff_sae.c — a BatchTopK SAE on activation differences: host/methods/dict_job.c (the method) run by the
 * harness of host/methods/method_job.c. */
#include "methods/methods.h"

int main(int argc, char **argv) { return dk_method_main(&dk_method_sae_difference, argc, argv); }
