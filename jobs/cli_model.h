/* cli_model.h — the model a `diffkit forward` / `diffkit generate` runs: --model, alone, with a PEFT adapter
 * (--adapter, multiplier --adapter-scale, or per layer and module --amplification FILE_OR_PRESET: an amplification
 * config, model/amplification.h; `--adapter PATH@W` and `--adapter PATH@PRESET` are short for the two), or replaced by a full finetune of it (--finetuned-model: an
 * organism published as a whole checkpoint). One place, so both commands accept the same options and check a
 * full finetune the same way: the same tensor shapes as --model and the same tokenizer, or a clear refusal. */
#ifndef DK_CLI_MODEL_H
#define DK_CLI_MODEL_H

#include <stdbool.h>

#include "model/forward.h"
#include "model/lora.h"

typedef struct cli_model {
    char *base_dir;             /* the --model folder */
    char *run_dir;              /* the folder of the model that runs (its generation_config.json, tokenizer) */
    dk_model base;
    dk_model finetuned;         /* --finetuned-model, when given */
    bool has_finetuned;
    dk_lora_adapter adapter;    /* --adapter, when given */
    bool has_adapter;
    char *adapter_scaling;      /* how the adapter is scaled, for messages: "--adapter-scale 2", "amplification
                                   negative_1x"; NULL without an adapter */
} cli_model;

/* Opens --model and the adapter or full finetune. Ends the command with a message (exit 2 for usage and
 * mismatches, 1 for unreadable files) on any error. adapter_scale: the multiplier (the caller passes 1 when
 * the option was not given; scale_given refuses it with a full finetune or an amplification). amplification_arg:
 * --amplification's value or NULL. */
void cli_model_open(const char *command, const char *model_arg, const char *adapter_arg, const char *finetuned_arg,
                    double adapter_scale, bool scale_given, const char *amplification_arg, cli_model *out);
/* The model that runs (the full finetune when given, else the base) and the adapter to pass (or NULL). */
dk_model *cli_model_run(cli_model *m);
const dk_lora_adapter *cli_model_adapter(const cli_model *m);
void cli_model_close(cli_model *m);

#endif
