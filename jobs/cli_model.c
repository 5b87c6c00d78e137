/* cli_model.c — see cli_model.h. */
#include "cli_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/node.h"
#include "core/error.h"
#include "io/file.h"
#include "model/amplification.h"
#include "model/model_path.h"
#include "model/organism.h"

/* `--adapter PATH@W` or `PATH@PRESET_OR_FILE`, when the whole text is not itself a folder: the adapter part
 * (malloc'ed) and what follows the last '@' in *suffix (NULL when there is no such suffix). */
static char *split_adapter_suffix(const char *adapter_arg, const char **suffix) {
    const char *at = strrchr(adapter_arg, '@');
    *suffix = NULL;
    if (!at || at == adapter_arg || !at[1] || dk_is_dir(adapter_arg)) return dk_strdup(adapter_arg);
    *suffix = at + 1;
    return dk_sprintf("%.*s", (int)(at - adapter_arg), adapter_arg);
}

/* A number as the config files write one (an integer or a float). */
static bool parse_number(const char *text, double *out) {
    int64_t integer;
    if (dk_cfg_parse_float(text, out)) return true;
    if (!dk_cfg_parse_int(text, &integer)) return false;
    *out = (double)integer;
    return true;
}

/* Sets the adapter's multipliers from an amplification config or preset; a weight on layers and module groups
 * the adapter does not adapt changes nothing there: say so. */
static void amplify(const char *command, const char *amplification, dk_lora_adapter *a) {
    dk_err err = {0};
    dk_amp_config c;
    if (dk_amp_load(amplification, NULL, &c, &err) != 0) dk_die(&err);
    int64_t unadapted = 0;
    if (dk_amp_apply_config(&c, NULL, a, &unadapted, &err) != 0) dk_die(&err);
    fprintf(stderr, "diffkit %s: amplification %s (%s)\n", command, c.name, c.source);
    if (unadapted > 0)
        fprintf(stderr, "diffkit %s: warning: amplification %s sets a weight on %lld (layer, attention|mlp) pairs that "
                "the adapter %s does not adapt: nothing changes there\n", command, c.name, (long long)unadapted, a->path);
    dk_amp_free(&c);
}

void cli_model_open(const char *command, const char *model_arg, const char *adapter_arg_full, const char *finetuned_arg,
                    double adapter_scale, bool scale_given, const char *amplification_arg, cli_model *out) {
    memset(out, 0, sizeof *out);
    dk_err err = {0};
    const char *suffix = NULL;
    char *adapter_arg = adapter_arg_full ? split_adapter_suffix(adapter_arg_full, &suffix) : NULL;
    double suffix_scale = 1;
    bool suffix_is_scale = suffix && parse_number(suffix, &suffix_scale);
    if (suffix && (scale_given || amplification_arg))
        dk_err_set(&err, DK_EXIT_USAGE, "diffkit %s: --adapter %s already says how to scale the adapter (after '@'); "
                   "leave out --adapter-scale and --amplification", command, adapter_arg_full);
    else if (amplification_arg && scale_given)
        dk_err_set(&err, DK_EXIT_USAGE, "diffkit %s: --adapter-scale and --amplification exclude each other (one "
                   "multiplier for everything, or one per layer and module)", command);
    else if (amplification_arg && !adapter_arg)
        dk_err_set(&err, DK_EXIT_USAGE, "diffkit %s: --amplification scales a LoRA adapter: give it with --adapter",
                   command);
    if (adapter_arg && finetuned_arg)
        dk_err_set(&err, DK_EXIT_USAGE, "diffkit %s: --adapter and --finetuned-model exclude each other (an organism "
                   "is one or the other)", command);
    else if (finetuned_arg && scale_given)
        dk_err_set(&err, DK_EXIT_USAGE, "diffkit %s: --adapter-scale scales an adapter; a full finetune "
                   "(--finetuned-model) runs as it is", command);
    if (dk_err_is_set(&err)) dk_die(&err);
    if (suffix_is_scale) adapter_scale = suffix_scale;
    else if (suffix) amplification_arg = suffix;
    out->base_dir = dk_model_folder(model_arg, "config.json", &err);
    if (!out->base_dir || dk_model_open(out->base_dir, &out->base, &err) != 0) dk_die(&err);
    out->run_dir = dk_strdup(out->base_dir);
    if (adapter_arg) {
        char *adapter_dir = dk_model_folder(adapter_arg, "adapter_config.json", &err);
        if (!adapter_dir || dk_lora_load(adapter_dir, &out->base.cfg, &out->base.w, &out->adapter, &err) != 0)
            dk_die(&err);
        dk_lora_set_multiplier(&out->adapter, (float)adapter_scale);
        if (amplification_arg) amplify(command, amplification_arg, &out->adapter);
        out->adapter_scaling = amplification_arg ? dk_sprintf("amplification %s", amplification_arg)
                                                 : dk_sprintf("--adapter-scale %g", adapter_scale);
        out->has_adapter = true;
        free(adapter_dir);
    }
    free(adapter_arg);
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
    free(m->adapter_scaling);
    memset(m, 0, sizeof *m);
}
