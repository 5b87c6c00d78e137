/* cli_numbers.h — strict numbers (and booleans) for the options of the diffkit subcommands. atof/atoi turn a typo into 0
 * (`--adapter-scale O.5` would silently run the base model), so every numeric option goes through these:
 * the whole text must be a number (the config system's parsers, config/node.h), otherwise the command
 * prints which option got what and exits 2. */
#ifndef DK_CLI_NUMBERS_H
#define DK_CLI_NUMBERS_H

#include <stdbool.h>
#include <stdint.h>

double cli_number(const char *command, const char *option, const char *text);
int64_t cli_integer(const char *command, const char *option, const char *text);
/* "true" or "false" exactly (as Jinja's booleans are spelt in the chat templates' switches). */
bool cli_bool(const char *command, const char *option, const char *text);
/* "1,2,3": one or more non-negative integers, comma-separated (token ids); malloc'ed, count in *n. */
int64_t *cli_id_list(const char *command, const char *option, const char *text, int64_t *n);

#endif
