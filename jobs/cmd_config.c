/* cmd_config.c — `diffkit config [--get KEY] [overrides...]`: compose the configuration exactly as a job
 * would and print the resolved YAML (the same text every output file stores), or with --get one value
 * (scripts use this: slurm/run_all.sh reads infrastructure.slurm.* this way). A model config whose
 * `architecture` the engine does not run is refused here, naming it, before any job starts. Errors exit 2. */
#include "commands.h"

#include "config/job_args.h"
#include "config/yaml_io.h"
#include "core/error.h"
#include "io/out_file.h"
#include "model/hf_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "Prints the resolved configuration: configs/config.yaml, its defaults list, the group\n"
    "choices and overrides given here, with ${...} interpolations resolved.\n"
    "  --get KEY   print only the value of KEY (a scalar as plain text, null as an empty line,\n"
    "              a list or mapping as YAML)\n"
    "Example: diffkit config model=qwen3_1_7B organism=cake_bake preprocessing.context_len=512";

int cmd_config(int argc, char **argv) {
    /* take --get KEY out of argv; everything else is the shared job command line */
    const char *get = NULL;
    char **rest = dk_calloc((size_t)argc + 1, sizeof *rest);
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--get") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "diffkit config: --get needs a key, e.g. --get preprocessing.context_len\n");
                free(rest);
                return DK_EXIT_USAGE;
            }
            get = argv[++i];
        } else {
            rest[n++] = argv[i];
        }
    }
    dk_cfg *cfg = dk_job_config("diffkit config", USAGE, n, rest);
    free(rest);
    dk_err err = {0};
    const dk_cfg_node *arch = dk_cfg_get(cfg, "model.architecture");
    if (arch && arch->kind == DK_CFG_SCALAR) {
        char where[1024];
        dk_cfg_node_where(arch, where, sizeof where);
        char *label = dk_sprintf("model.architecture (%s)", where);
        int rc = dk_hf_architecture_check(arch->text, label, &err);
        free(label);
        if (rc != 0) dk_die(&err);
    }
    dk_out_file out;
    if (dk_out_open(&out, NULL, NULL, 0, &err) != 0) dk_die(&err);
    if (get) {
        const dk_cfg_node *node = dk_cfg_get(cfg, get);
        if (!node) {
            const char *unused;
            dk_cfg_try_str(cfg, get, true, &unused, &err); /* the "missing key, did you mean" message */
            dk_out_abort(&out);
            dk_cfg_free(cfg);
            dk_die(&err);
        }
        if (node->kind == DK_CFG_SCALAR) {
            fprintf(out.f, "%s\n", node->text);
        } else if (node->kind == DK_CFG_NULL) {
            fputs("\n", out.f);
        } else {
            char *yaml = dk_cfg_to_yaml(node);
            fputs(yaml, out.f);
            free(yaml);
        }
    } else {
        char *yaml = dk_cfg_dump(cfg);
        fputs(yaml, out.f);
        free(yaml);
    }
    if (dk_out_commit(&out, &err) != 0) {
        dk_cfg_free(cfg);
        dk_die(&err);
    }
    dk_cfg_free(cfg);
    return 0;
}
