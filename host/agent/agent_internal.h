/* agent_internal.h — what the files of host/agent share and callers of agent.h do not need: Python's idea of
 * whitespace and lines (the seed strips and splits with str.strip / str.splitlines, which know more whitespace
 * than C's isspace), and Python's str() of a value for messages. */
#ifndef DK_AGENT_INTERNAL_H
#define DK_AGENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* str.strip() of s[0..len): [*begin, *end) is what is left (UTF-8; Python's whitespace code points). */
void agent_strip_span(const char *s, size_t len, size_t *begin, size_t *end);
/* A malloc'ed copy of s[0..len).strip(). */
char *agent_strip(const char *s, size_t len);
/* The seed's "last line": the last of [ln.strip() for ln in text.splitlines()] that is not empty ("" none). */
char *agent_last_line(const char *text);
/* Python's str(v): a string's own text, repr() of anything else (malloc'ed). */
char *agent_py_str(const cJSON *v);
/* The number of code points of a UTF-8 string (Python's len of a str; an invalid byte counts as one). */
size_t agent_py_len(const char *s);

typedef struct dk_agent_tool dk_agent_tool;
typedef struct dk_hypothesis_board dk_hypothesis_board;
/* The hypothesis_tracking tool over a board (agent_hypotheses.c). */
void agent_hypothesis_tool(dk_hypothesis_board *board, dk_agent_tool *tool);

#endif
