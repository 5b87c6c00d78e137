/* commands.h — the subcommands of `diffkit` (one cmd_*.c file each). Each gets argv with argv[0] being
 * its own name and returns the process exit code (0, 1 runtime error, 2 usage/config error). */
#ifndef DK_COMMANDS_H
#define DK_COMMANDS_H

typedef struct dk_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} dk_command;

int cmd_config(int argc, char **argv);
int cmd_resolve(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_undertrained(int argc, char **argv);
#ifndef DIFFKIT_ENGINE_ONLY
int cmd_serve(int argc, char **argv);
int cmd_run(int argc, char **argv);
#endif

#endif
