/* cmd_config.c — `diffkit config [overrides...]`: compose the configuration exactly as a job would and
 * print the resolved YAML (the same text every output file stores). Errors exit 2. */
#include "commands.h"

#include "config/job_args.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_config(int argc, char **argv) {
    dk_cfg *cfg = dk_job_config("diffkit config",
                                "Prints the resolved configuration: configs/config.yaml, its defaults list, the group\n"
                                "choices and overrides given here, with ${...} interpolations resolved.\n"
                                "Example: diffkit config model=qwen3_1_7B organism=cake_bake preprocessing.context_len=512",
                                argc, argv);
    char *yaml = dk_cfg_dump(cfg);
    fputs(yaml, stdout);
    free(yaml);
    dk_cfg_free(cfg);
    return 0;
}
