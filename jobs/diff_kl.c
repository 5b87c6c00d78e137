/* diff_kl.c — KL(finetuned ‖ base) per token on the cached sequences: host/methods/kl.c (the method) run by
 * the harness of host/methods/method_job.c. */
#include "methods/methods.h"

int main(int argc, char **argv) { return dk_method_main(&dk_method_kl, argc, argv); }
