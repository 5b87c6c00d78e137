/* diffkit.c — the `diffkit` command: small tools around the pipeline, one subcommand each.
 *
 * Each subcommand lives in its own cmd_*.c file and is listed in the table below; this file only
 * dispatches. The pipeline stages themselves are separate executables (diff_preprocess, ...), so that
 * SLURM scripts and mpirun launch exactly one job each. Output files go through io/out_file.h; standard output
 * written with printf is checked at exit. */
#include "commands.h"

#include "core/error.h"
#include "io/out_file.h"

#include <stdio.h>
#include <string.h>

static const dk_command commands[] = {
    {"config", cmd_config, "print the resolved configuration: diffkit config [--get KEY] [group=NAME ...] [key=value ...]"},
    {"resolve", cmd_resolve, "print the local folder of a model id: diffkit resolve ID [--revision R] [--require FILE]"},
    {"version", cmd_version, "print the version and the build's features"},
    {"tokenize", cmd_tokenize, "JSON Lines text -> token ids, exact to HF tokenizers: diffkit tokenize --tokenizer PATH"},
    {"detokenize", cmd_detokenize, "JSON Lines token ids -> text: diffkit detokenize --tokenizer PATH"},
    {"chat-template", cmd_chat_template, "JSON Lines chat messages -> rendered chat: diffkit chat-template --tokenizer PATH"},
    {"forward", cmd_forward, "token ids -> residual streams and logits (safetensors): diffkit forward --model PATH --tokens IN.jsonl --output OUT"},
    {"generate", cmd_generate, "generate text with a KV cache: diffkit generate --model PATH --prompt TEXT [--chat] [--temperature T]"},
    {"undertrained", cmd_undertrained, "token ids the model has likely never trained (JSON): diffkit undertrained --model PATH"},
#ifndef DIFFKIT_ENGINE_ONLY
    {"run", cmd_run, "the pipeline, stage by stage, skipping finished ones: diffkit run [--dry-run] [key=value ...]"},
    {"serve", cmd_serve, "an OpenAI-compatible HTTP server over the models: diffkit serve [--host H] [--port P] [key=value ...]"},
#endif
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *out) {
    fprintf(out, "usage: diffkit COMMAND [ARGS...]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`diffkit COMMAND --help` describes one command.\n");
}

int main(int argc, char **argv) {
    dk_stdout_check_at_exit("diffkit"); /* whatever a command printf's: a failed write is an error, exit 1 */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? DK_EXIT_USAGE : DK_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "diffkit: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return DK_EXIT_USAGE;
}
