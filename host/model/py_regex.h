/* py_regex.h — the regular expressions peft writes into adapter_config.json (target_modules or
 * exclude_modules given as one string, the keys of rank_pattern and alpha_pattern, layers_pattern) are
 * Python `re` patterns matched against module names such as "model.layers.3.self_attn.q_proj". This runs
 * them with Oniguruma's Python syntax, the two ways peft calls them: re.fullmatch and re.match. */
#ifndef DK_PY_REGEX_H
#define DK_PY_REGEX_H

#include <stddef.h>

#include "core/error.h"

/* re.fullmatch(pattern, text): 1 when the pattern matches all of text, 0 when not, -1 with err (code 2) when
 * the pattern is not a valid regular expression (`what` names where it came from: "target_modules of FILE"). */
int dk_py_regex_fullmatch(const char *pattern, const char *text, const char *what, dk_err *err);

/* re.match(pattern, text): a match starting at the beginning of text. When `group` is given, the text of the
 * named group (?P<group>...) goes into out[cap] ("" when it took no part). 1, 0 or -1 as above. */
int dk_py_regex_match(const char *pattern, const char *text, const char *group, char *out, size_t cap,
                      const char *what, dk_err *err);

#endif
