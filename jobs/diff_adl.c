/* diff_adl.c — the Activation Difference Lens: host/methods/adl.c (the method) run by the harness of
 * host/methods/method_job.c. */
#include "methods/methods.h"

int main(int argc, char **argv) { return dk_method_main(&dk_method_activation_difference_lens, argc, argv); }
