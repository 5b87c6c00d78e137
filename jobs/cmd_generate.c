/* cmd_generate.c — `diffkit generate`: text (or ids) in, a continuation out, with a KV cache.
 *
 *   diffkit generate --model PATH [--adapter PATH[@W|@PRESET] [--adapter-scale W | --amplification FILE_OR_PRESET]
 *                                 | --finetuned-model PATH] [--chat]
 *                    (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N] [--temperature T] [--top-p P]
 *                    [--top-k K] [--seed S] [--tokenizer PATH] [--print-ids]
 *                    [--logit-amplification ALPHA]
 *                    [--steer-vector FILE --steer-layer L [--steer-strength S] [--steer-mode MODE]] [--device D]
 *
 * Greedy when the temperature is 0 (the default), token-for-token what transformers' generate gives.
 * Generation stops at max-new-tokens or at a stop token: config.json's eos_token_id(s), those of
 * generation_config.json when present, and the chat end-of-turn token when the tokenizer has one
 * (<end_of_turn>, <|eot_id|>, <|im_end|>). --chat renders the prompt as one user message with the model's
 * chat template (host/tokenizer/chat_template.h: recognised from tokenizer_config.json or chat_template.jinja,
 * or named with --chat-family) and a generation prompt, with the model's own BOS token. --prompt-ids runs models
 * that come without a tokenizer and prints the generated ids as {"ids": [...]}.
 * --logit-amplification ALPHA samples from logits_ft + ALPHA·(logits_ft − logits_base): the organism (--adapter)
 * and the base step together (generate.h). --steer-* add S·v after block L (host/io/vector_file.h reads v) on
 * every token, during the prompt only, or with the seed's linear decay over N steps.
 */
#include "cli_model.h"
#include "cli_numbers.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/vector_file.h"
#include "model/generate.h"
#include "model/organism.h"
#include "model/prompt.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: diffkit generate --model PATH (--prompt TEXT | --prompt-ids 1,2,3)\n"
            "                        [--chat [--chat-family F] [--enable-thinking true|false]]\n"
            "                        [--adapter PATH [--adapter-scale W | --amplification FILE_OR_PRESET]\n"
            "                         | --finetuned-model PATH]\n"
            "                        [--max-new-tokens N] [--temperature T]\n"
            "                        [--top-p P] [--top-k K] [--seed S] [--tokenizer PATH] [--print-ids]\n\n"
            "Prints the generated continuation. Greedy when --temperature is 0 (default); stops at EOS or the\n"
            "model's end-of-turn token. --chat wraps the prompt in the model's chat template (recognised from\n"
            "tokenizer_config.json or chat_template.jinja, or named by --chat-family: gemma3, gemma2, llama3,\n"
            "llama3_0, qwen3, qwen2.5); --enable-thinking is Qwen3's switch (false: an empty think block, as the\n"
            "seed prompts models whose config has has_enable_thinking). --prompt-ids takes\n"
            "token ids (no tokenizer needed) and prints {\"ids\": [...]}. Defaults: --max-new-tokens 64, --top-p 1,\n"
            "--top-k 0 (off), --seed 0. The tokenizer is read from the model folder unless --tokenizer is given.\n"
            "--adapter: a PEFT LoRA folder, applied unmerged with multiplier W (default 1; 0 = the base model).\n"
            "--amplification: one multiplier per layer and attention/mlp from an amplification config (the seed's\n"
            "schema, docs/formats.md) or a preset of configs/diffing/method/amplification_presets (default_2x,\n"
            "default_2.5x, default_3x, negative_1x). --adapter PATH@W / PATH@PRESET are short for --adapter-scale W /\n"
            "--amplification PRESET.\n"
            "--finetuned-model: an organism published as a full checkpoint, run instead of --model (it must have\n"
            "--model's shapes and tokenizer).\n"
            "--logit-amplification ALPHA (with --adapter): draw each token from logits_ft + ALPHA*(logits_ft -\n"
            "logits_base), the organism and the base stepping together (model-diff amplification).\n"
            "--steer-vector FILE (.npy of float32/float64, shape (H,) or (1,H), or raw float32) --steer-layer L:\n"
            "add S*v (--steer-strength S, default 1) to the residual after block L; --steer-mode all (default),\n"
            "prompt_only, or linear_decay[:N] (the seed's: step i adds (N-i)/N*S*v, the prompt being step 0;\n"
            "N defaults to 10).\n"
            "--device: cpu (default, the fp32 reference), cuda (bf16 on the GPU; DIFFKIT_CUDA_FP32=1 for fp32), or\n"
            "auto (cuda when this build has CUDA and a GPU is present, else cpu).\n");
}

/* --steer-mode all | prompt_only | linear_decay[:N] into the steer. 0, or -1 with err (usage). */
static int parse_steer_mode(const char *mode, dk_steer *steer, dk_err *err) {
    int64_t decay_steps = 0; /* 0: the seed's default */
    char name[32];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(mode, ":"), mode);
    if (strcmp(name, "linear_decay") == 0 && mode[12] == ':') {
        char *end;
        long long n = strtoll(mode + 13, &end, 10);
        if (end == mode + 13 || *end || n < 1)
            return dk_err_set(err, DK_EXIT_USAGE, "--steer-mode %s: N in linear_decay:N must be an integer >= 1", mode);
        decay_steps = n;
    } else if (strchr(mode, ':')) {
        name[0] = '\0'; /* only linear_decay takes :N */
    }
    if (!dk_steer_set_mode(steer, name, decay_steps))
        return dk_err_set(err, DK_EXIT_USAGE, "--steer-mode takes all, prompt_only or linear_decay[:N], not '%s'", mode);
    return 0;
}

/* The prompt's ids through the tokenizer, as one user message of the model's chat template when `chat`. */
static int encode_prompt(dk_tokenizer *tok, const char *prompt, bool chat, const char *model_dir,
                         const char *family_name, int enable_thinking, int64_t **ids, int64_t *n, dk_err *err) {
    if (!chat) return dk_prompt_encode_text(tok, prompt, strlen(prompt), ids, n, err);
    dk_chat_format format;
    if (dk_chat_format_open(tok, model_dir, family_name, enable_thinking, &format, err) != 0) {
        if (!family_name) dk_err_prefix(err, "--chat: ");
        return -1;
    }
    if (format.warning[0]) fprintf(stderr, "diffkit generate: warning: --chat: %s\n", format.warning);
    dk_chat_message msg = {"user", prompt, NULL};
    int rc = dk_prompt_encode_chat(tok, &format, &msg, 1, ids, n, err);
    dk_chat_format_free(&format);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    const char *model_arg = NULL, *adapter_arg = NULL, *finetuned_arg = NULL, *amplification_arg = NULL;
    const char *prompt = NULL, *prompt_ids = NULL;
    const char *tok_arg = NULL;
    const char *family_name = NULL;
    double adapter_scale = 1.0;
    bool chat = false, print_ids = false, scale_given = false;
    int enable_thinking = -1; /* -1: not given */
    const char *steer_file = NULL, *steer_mode = "all";
    int64_t steer_layer = -1;
    double steer_strength = 1.0, amp_alpha = 0.0;
    bool steer_layer_given = false, steer_strength_given = false, steer_mode_given = false, logit_amp = false;
    dk_backend_options backend_opt = {.device = DK_DEVICE_CPU};
    dk_generate_options opt = {.max_new_tokens = 64, .temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .seed = 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model_arg = argv[++i];
        else if (strcmp(argv[i], "--adapter") == 0 && i + 1 < argc) adapter_arg = argv[++i];
        else if (strcmp(argv[i], "--finetuned-model") == 0 && i + 1 < argc) finetuned_arg = argv[++i];
        else if (strcmp(argv[i], "--amplification") == 0 && i + 1 < argc) amplification_arg = argv[++i];
        else if (strcmp(argv[i], "--adapter-scale") == 0 && i + 1 < argc) {
            adapter_scale = cli_number("generate", "--adapter-scale", argv[++i]);
            scale_given = true;
        }
        else if (strcmp(argv[i], "--prompt") == 0 && i + 1 < argc) prompt = argv[++i];
        else if (strcmp(argv[i], "--prompt-ids") == 0 && i + 1 < argc) prompt_ids = argv[++i];
        else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) tok_arg = argv[++i];
        else if (strcmp(argv[i], "--max-new-tokens") == 0 && i + 1 < argc) opt.max_new_tokens = cli_integer("generate", "--max-new-tokens", argv[++i]);
        else if (strcmp(argv[i], "--temperature") == 0 && i + 1 < argc) opt.temperature = (float)cli_number("generate", "--temperature", argv[++i]);
        else if (strcmp(argv[i], "--top-p") == 0 && i + 1 < argc) opt.top_p = (float)cli_number("generate", "--top-p", argv[++i]);
        else if (strcmp(argv[i], "--top-k") == 0 && i + 1 < argc) opt.top_k = cli_integer("generate", "--top-k", argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) opt.seed = (uint64_t)cli_integer("generate", "--seed", argv[++i]);
        else if (strcmp(argv[i], "--chat") == 0) chat = true;
        else if (strcmp(argv[i], "--chat-family") == 0 && i + 1 < argc) family_name = argv[++i];
        else if (strcmp(argv[i], "--enable-thinking") == 0 && i + 1 < argc)
            enable_thinking = cli_bool("generate", "--enable-thinking", argv[++i]);
        else if (strcmp(argv[i], "--print-ids") == 0) print_ids = true;
        else if (strcmp(argv[i], "--logit-amplification") == 0 && i + 1 < argc) {
            amp_alpha = cli_number("generate", "--logit-amplification", argv[++i]);
            logit_amp = true;
        } else if (strcmp(argv[i], "--steer-vector") == 0 && i + 1 < argc) steer_file = argv[++i];
        else if (strcmp(argv[i], "--steer-layer") == 0 && i + 1 < argc) {
            steer_layer = cli_integer("generate", "--steer-layer", argv[++i]);
            steer_layer_given = true;
        } else if (strcmp(argv[i], "--steer-strength") == 0 && i + 1 < argc) {
            steer_strength = cli_number("generate", "--steer-strength", argv[++i]);
            steer_strength_given = true;
        } else if (strcmp(argv[i], "--steer-mode") == 0 && i + 1 < argc) {
            steer_mode = argv[++i];
            steer_mode_given = true;
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            dk_err device_err = {0};
            if (dk_device_parse(argv[++i], &backend_opt.device, &device_err) != 0) dk_die(&device_err);
        }
        else {
            fprintf(stderr, "diffkit generate: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return DK_EXIT_USAGE;
        }
    }
    if (!model_arg || (!prompt == !prompt_ids)) {
        fprintf(stderr, "diffkit generate: --model and exactly one of --prompt / --prompt-ids are required\n\n");
        usage(stderr);
        return DK_EXIT_USAGE;
    }
    if (opt.max_new_tokens < 1 || opt.temperature < 0 || opt.top_p <= 0 || opt.top_p > 1 || opt.top_k < 0) {
        fprintf(stderr, "diffkit generate: need --max-new-tokens >= 1, --temperature >= 0, 0 < --top-p <= 1, "
                        "--top-k >= 0\n");
        return DK_EXIT_USAGE;
    }
    if (!steer_file && (steer_layer_given || steer_strength_given || steer_mode_given)) {
        fprintf(stderr, "diffkit generate: --steer-layer/--steer-strength/--steer-mode need --steer-vector FILE\n");
        return DK_EXIT_USAGE;
    }
    if (steer_file && !steer_layer_given) {
        fprintf(stderr, "diffkit generate: --steer-vector needs --steer-layer L (the block after which it is added)\n");
        return DK_EXIT_USAGE;
    }
    if (logit_amp && (!adapter_arg || finetuned_arg)) {
        fprintf(stderr, "diffkit generate: --logit-amplification needs --adapter (the organism, compared with the "
                        "base --model); a --finetuned-model is not supported\n");
        return DK_EXIT_USAGE;
    }
    if (prompt_ids && chat) {
        fprintf(stderr, "diffkit generate: --chat needs a text --prompt (the template is text)\n");
        return DK_EXIT_USAGE;
    }

    dk_err err = {0};
    cli_model cm;
    cli_model_open("generate", model_arg, adapter_arg, finetuned_arg, adapter_scale, scale_given, amplification_arg,
                   &cm);
    dk_model *m = cli_model_run(&cm);
    const dk_lora_adapter *ap = cli_model_adapter(&cm);
    /* the running model's folder, or the base's when a full finetune ships no tokenizer (they must agree) */
    char *own_tokenizer = dk_tokenizer_file(cm.run_dir);
    const char *model_dir = own_tokenizer ? cm.run_dir : cm.base_dir;
    free(own_tokenizer);

    dk_tokenizer *tok = NULL;
    if (prompt || !print_ids) { /* ids-only runs need no tokenizer */
        const char *tok_path = tok_arg ? tok_arg : model_dir;
        tok = dk_tokenizer_load(tok_path, &err);
        if (!tok && prompt) dk_die(&err);
        dk_err_clear(&err);
    }
    int64_t *ids = NULL, n_ids = 0;
    if (prompt_ids) {
        ids = cli_id_list("generate", "--prompt-ids", prompt_ids, &n_ids);
    } else if (encode_prompt(tok, prompt, chat, model_dir, family_name, enable_thinking, &ids, &n_ids, &err) != 0) {
        dk_die(&err);
    }

    int64_t stops[DK_MAX_STOP_IDS];
    char warning[2048];
    int n_stops = dk_model_stop_ids(m, cm.run_dir, tok, stops, warning, sizeof warning);
    if (warning[0]) fprintf(stderr, "diffkit generate: warning: %s\n", warning);
    opt.stop_ids = stops;
    opt.n_stop = n_stops;
    opt.logit_amp = logit_amp;
    opt.logit_amp_alpha = (float)amp_alpha;
    dk_steer steer = {.layer = steer_layer, .strength = (float)steer_strength};
    float *steer_vector = NULL; /* (H) */
    if (steer_file) {
        steer_vector = dk_malloc((size_t)m->cfg.hidden_size * sizeof(float));
        if (dk_read_vector_file(steer_file, m->cfg.hidden_size, steer_vector, &err) != 0 ||
            parse_steer_mode(steer_mode, &steer, &err) != 0)
            dk_die(&err);
        steer.vector = steer_vector;
        opt.steers = &steer;
        opt.n_steer = 1;
    }

    int64_t starts[2] = {0, n_ids};
    dk_batch batch = {ids, n_ids, starts, 1, true};
    dk_generation gen;
    dk_backend be;
    if (dk_backend_open(&be, m, &backend_opt, &err) != 0) dk_die(&err);
    if (dk_generate_backend(&be, ap, &batch, &opt, &gen, &err) != 0) dk_die(&err);
    dk_backend_close(&be);
    if (print_ids || !tok) {
        printf("{\"ids\": [");
        for (int64_t i = 0; i < gen.n_ids[0]; i++) printf(i ? ", %lld" : "%lld", (long long)gen.ids[0][i]);
        printf("]}\n");
    } else {
        int32_t *ids32 = dk_malloc((size_t)(gen.n_ids[0] + 1) * sizeof *ids32);
        for (int64_t i = 0; i < gen.n_ids[0]; i++) ids32[i] = (int32_t)gen.ids[0][i];
        char *text = dk_tokenizer_decode(tok, ids32, (size_t)gen.n_ids[0], true, NULL, &err);
        if (!text) dk_die(&err);
        printf("%s\n", text);
        free(text);
        free(ids32);
    }
    dk_generation_free(&gen);
    free(steer_vector);
    free(ids);
    if (tok) dk_tokenizer_free(tok);
    cli_model_close(&cm);
    return 0;
}
