/* diff_amplification.c — weight amplification and logit-difference amplification samples: host/methods/
 * amplification_run.c (the method) run by the harness of host/methods/method_job.c. */
#include "methods/methods.h"

int main(int argc, char **argv) { return dk_method_main(&dk_method_weight_amplification, argc, argv); }
