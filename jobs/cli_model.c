/* cli_model.c — see cli_model.h. */
#include "cli_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model_path.h"
#include "model/organism.h"

void cli_model_open(const char *command, const char *model_arg, const char *adapter_arg, const char *finetuned_arg,
                    double adapter_scale, bool scale_given, cli_model *out) {
    memset(out, 0, sizeof *out);
    dk_err err = {0};
    if (adapter_arg && finetuned_arg)
        dk_err_set(&err, DK_EXIT_USAGE, "diffkit %s: --adapter and --finetuned-model exclude each other (an organism "
                   "is one or the other)", command);
    else if (finetuned_arg && scale_given)
        dk_err_set(&err, DK_EXIT_USAGE, "diffkit %s: --adapter-scale scales an adapter; a full finetune "
                   "(--finetuned-model) runs as it is", command);
    if (dk_err_is_set(&err)) dk_die(&err);
    out->base_dir = dk_model_folder(model_arg, "config.json", &err);
    if (!out->base_dir || dk_model_open(out->base_dir, &out->base, &err) != 0) dk_die(&err);
    out->run_dir = dk_strdup(out->base_dir);
    if (adapter_arg) {
        char *adapter_dir = dk_model_folder(adapter_arg, "adapter_config.json", &err);
        if (!adapter_dir || dk_lora_load(adapter_dir, &out->base.cfg, &out->base.w, &out->adapter, &err) != 0)
            dk_die(&err);
        dk_lora_set_multiplier(&out->adapter, (float)adapter_scale);
        out->has_adapter = true;
        free(adapter_dir);
    }
    if (finetuned_arg) {
        char *dir = dk_model_folder(finetuned_arg, "config.json", &err);
        if (!dir || dk_model_open(dir, &out->finetuned, &err) != 0) dk_die(&err);
        out->has_finetuned = true;
        free(out->run_dir);
        out->run_dir = dir;
        if (dk_model_weights_check_same_shapes(&out->base.w, &out->finetuned.w, &err) != 0) {
            err.code = DK_EXIT_USAGE;
            dk_die(&err);
        }
        /* the finetune tokenizes as the base, or ships no tokenizer of its own */
        char *base_tok = dk_tokenizer_file(out->base_dir), *ft_tok = dk_tokenizer_file(dir);
        if (base_tok && ft_tok &&
            dk_tokenizers_check_same(base_tok, ft_tok, "the base model (--model) and the full finetune "
                                     "(--finetuned-model)", &err) != 0)
            dk_die(&err);
        free(base_tok);
        free(ft_tok);
    }
}

dk_model *cli_model_run(cli_model *m) { return m->has_finetuned ? &m->finetuned : &m->base; }

const dk_lora_adapter *cli_model_adapter(const cli_model *m) { return m->has_adapter ? &m->adapter : NULL; }

void cli_model_close(cli_model *m) {
    if (m->has_adapter) dk_lora_free(&m->adapter);
    if (m->has_finetuned) dk_model_close(&m->finetuned);
    dk_model_close(&m->base);
    free(m->base_dir);
    free(m->run_dir);
    memset(m, 0, sizeof *m);
}
