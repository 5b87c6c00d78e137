/* grader_internal.h — what the four graders (grader_*.c) share: the seed's answer patterns compiled with
 * Oniguruma, the requests they send at the same time, token-string normalisation, and the answer parsers
 * themselves (exposed so tests/llm/test_graders.c can hold them to the seed's parsers' outputs). */
#ifndef DK_GRADER_INTERNAL_H
#define DK_GRADER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/strutil.h"
#include "llm/graders.h"

/* ---- answer patterns ---------------------------------------------------------------------------------
 * The seed's regexes are Python `re` with IGNORECASE | MULTILINE. Oniguruma's Ruby syntax reads the same
 * patterns the same way: ^ and $ are line anchors, `.` stops at a newline, \s matches newlines. One
 * difference is deliberate: \d is ASCII only here (Python also takes other scripts' digits), so an index
 * written in, say, Arabic-Indic digits does not parse. Compiled once, on first use; thread-safe. */
typedef enum {
    GRADER_RE_COHERENCE,   /* ^\s*answer\s*:\s*(coherent|incoherent)\s*[.!]?\s*$ */
    GRADER_RE_BEST_SCALE,  /* ^\s*best_scaler\s*:\s*([-+]?[0-9]*\.?[0-9]+)\s*$ */
    GRADER_RE_TOP_TOKENS,  /* ^\s*top_tokens\s*:\s*(.+)$ */
    GRADER_RE_RELEVANCE,   /* ^\s*answer\[(\d+)\]\s*:\s*(relevant|irrelevant)\s*[.!]?\s*$ */
    GRADER_RE_SCORE,       /* ^\s*score\s*:\s*([1-5])\s*$ */
    GRADER_RE_COUNT
} grader_re;

/* One match: the byte ranges of groups 1 and 2 within the text searched ([begin, end), -1 when absent). */
typedef struct grader_match {
    int begin[3], end[3];  /* [group] group 0 is the whole match */
} grader_match;

/* The next match of pattern `re` in text at or after *from; advances *from past it. */
bool grader_re_next(grader_re re, const char *text, size_t *from, grader_match *m);

/* ---- the seed's parsers ------------------------------------------------------------------------------- */
/* The last ANSWER line's label, or UNKNOWN. */
dk_coherence_label grader_parse_coherence(const char *text);
/* The first BEST_SCALER (rounded to 0.1) and the first TOP_TOKENS line split on '|', trimmed, empties dropped
 * (*tokens NULL, *n 0 when there is none). False when there is no BEST_SCALER line. */
bool grader_parse_patchscope(const char *text, double *best, char ***tokens, int *n_tokens);
/* labels[0..n): ANSWER[i] for i = 1..n, the last line for an index wins, UNKNOWN where none. Returns the
 * number of UNKNOWN. */
int grader_parse_relevance(const char *text, int n, dk_relevance_label *labels);
/* The last SCORE line's value 1..5, or 0. */
int grader_parse_score(const char *text);

/* Python's round(x, 1) (correctly rounded, ties to even on the exact binary value). */
double grader_round_scale(double x);

/* ---- text ---------------------------------------------------------------------------------------------- */
/* Python's str.isspace for one code point. */
bool grader_is_space(int32_t cp);
/* s with leading and trailing whitespace (grader_is_space) removed; malloc'ed. */
char *grader_strip(const char *s, size_t len);
/* True when s has nothing but whitespace (or nothing). */
bool grader_is_blank(const char *s);
/* A token string as it is compared: every ▁ and Ġ removed, whitespace stripped (malloc'ed). fold also
 * lowercases each code point. */
char *grader_token_core(const char *token, bool fold);
/* Code points in a UTF-8 string (invalid bytes count one each). */
size_t grader_utf8_length(const char *s);
/* Byte offset after the first k code points of s (strlen(s) when shorter). */
size_t grader_utf8_prefix_bytes(const char *s, size_t k);

/* ---- requests ------------------------------------------------------------------------------------------ */
/* Checks an answer inside the client's retry loop (the seed's parse_fn): true to accept it (parsed values go
 * to item), false with a reason to ask again. */
typedef bool (*grader_parse_fn)(const char *answer, void *item, char *why, size_t why_cap);

typedef struct grader_call {
    const char *system;     /* the system prompt (not owned) */
    char *user;             /* the user prompt (owned, freed by grader_calls_free) */
    double temperature;     /* < 0: not sent */
    grader_parse_fn parse;  /* NULL: any answer is accepted, the caller parses it */
    void *item;             /* parse's destination */
    char *answer;           /* out: the accepted answer, else the last rejected one; NULL when none came */
    int n_rejected;         /* out: answers parse rejected */
    bool ok;                /* out: an answer was accepted */
} grader_call;

/* Checks that g can send requests (LLM mode, a client, a model id the client sends); 0 or -1 + err (code 2). */
int grader_check_llm(const dk_grader *g, dk_err *err);
/* Sends calls[0..n) at the same time (the client's max_in_flight) with max_tokens (g's, else the default).
 * Returns 0 when each call got an answer (accepted, or rejected every time: ok false, answer the last one);
 * -1 + err when some call got none (the first such call's error, naming the endpoint). *n_requests grows by n. */
int grader_send(const dk_grader *g, grader_call *calls, int n, int default_max_tokens, int *n_requests, dk_err *err);
/* Frees the prompts and answers of calls[0..n) (not the array). */
void grader_calls_free(grader_call *calls, int n);

/* A malloc'ed copy of strings[0..n) (NULL when n is 0). */
char **grader_strings_dup(const char *const *strings, int n);

#endif
