/* diff_crosscoder.c — a BatchTopK crosscoder on paired base and finetuned activations: host/methods/dict_job.c (the method) run by the
 * harness of host/methods/method_job.c. */
#include "methods/methods.h"

int main(int argc, char **argv) { return dk_method_main(&dk_method_crosscoder, argc, argv); }
