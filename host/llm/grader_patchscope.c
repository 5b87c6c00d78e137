/* grader_patchscope.c — auto-patchscope (§5.4) reads the difference vector through an identity prompt at 30
 * scales; small scales say nothing, huge ones say noise. This grader picks the scale whose tokens are most
 * coherent as a group, and which of its tokens form that group (the seed's tokens_at_best_scale comes from
 * the caller; the selected tokens from here).
 *
 * LLM mode follows the seed's PatchScopeGrader: a tournament in groups of at most 10 scales (groups of a
 * round in flight together), then a final among the winners; tokens that are punctuation-only or hold "->"
 * or "=>" (the identity prompt's arrows leaking through) are not shown; the answer's BEST_SCALER must parse
 * (and, our addition, name a scale that was shown: the seed asserts this after its retries and crashes)
 * or the client asks again. Prompt in our words, the seed's structure (task, rules, two worked examples,
 * the two closing lines).
 *
 * Offline mode, and why: a latent read at a good scale names its content consistently, so the same
 * (non-generic) tokens show up over a range of neighbouring scales, while generic filler and noise differ
 * from scale to scale. Each scale scores the number of (its token, other scale) pairs where the other scale
 * shows the token too; the best scale has the highest score (ties: more non-generic tokens, then the smaller
 * scale, the gentler reading); its selected tokens are those seen at another scale too (all its non-generic
 * tokens when none is). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "llm/grader_internal.h"

enum { PATCHSCOPE_DEFAULT_MAX_TOKENS = 1200, PATCHSCOPE_GROUP = 10, PATCHSCOPE_MAX_ROUNDS = 10 };

static const char SYSTEM_PROMPT[] =
    "You compare the results of several Patchscope readings of one hidden vector, each made at a different "
    "scale (strength).\n"
    "\n"
    "You get: a list of scales, and for each scale the tokens that Patchscope surfaced at that scale.\n"
    "Your task:\n"
    "- Pick the one scale whose tokens hang together best in meaning.\n"
    "- From that scale, list only the tokens that belong to that shared meaning; leave out the rest.\n"
    "\n"
    "Rules:\n"
    "- When two scales are about equally coherent, pick the one with more tokens that fit the shared meaning.\n"
    "- Tokenizer markers and letter case do not matter for meaning ('▁', 'Ġ', 'Ċ').\n"
    "- Leave out very generic tokens: whitespace, punctuation, common function words, and bare word pieces such "
    "as \"ing\", \"ion\" or \"'s\".\n"
    "- Only list tokens that appear at the chosen scale; never add your own.\n"
    "- Favour tokens whose meanings clearly belong together; the tokens may even come from one sentence that "
    "is encoded, whole or in part.\n"
    "- Language does not matter, only meaning does.\n"
    "- Think first: name a few candidate scales, argue for one, and only then decide.\n"
    "- If no scale is coherent, pick the scale with at least one token that is not trivial and is "
    "interesting.\n"
    "\n"
    "Answer format (strict): end your message with exactly these two lines and nothing after them:\n"
    "BEST_SCALER: <number>\n"
    "TOP_TOKENS: token1 | token2 | ... | tokenK\n"
    "\n"
    "Worked examples:\n"
    "\n"
    "[TOKENS PER SCALE]\n"
    "SCALE: 1.0\n"
    "  \"Ġof\", \"Ġthe\", \"Ġa\", \"Ġis\"\n"
    "SCALE: 4.0\n"
    "  \"Ġhive\", \"Ġnectar\", \"Ġthe\", \"##\", \"Ġbees\", \"Ġpollen\", "
    "\"Ġand\", \"Ġhoney\", \"Ġqueen\"\n"
    "SCALE: 40.0\n"
    "  \"qx\", \"Ġ@@\", \"Ġ\", \"Ġzzz\"\n"
    "\n"
    "[SCALES]\n"
    "1.0, 4.0, 40.0\n"
    "\n"
    "Reasoning: 4.0 is about bees and honey. 1.0 holds only function words, 40.0 only noise.\n"
    "BEST_SCALER: 4.0\n"
    "TOP_TOKENS: Ġhive | Ġnectar | Ġbees | Ġpollen | Ġhoney | "
    "Ġqueen\n"
    "\n"
    "---\n"
    "\n"
    "[TOKENS PER SCALE]\n"
    "SCALE: 2.0\n"
    "  \"▁orbit\", \"▁comet\", \"▁°\", \"▁telescope\", "
    "\"▁km\", \"▁the\"\n"
    "SCALE: 8.0\n"
    "  \"▁violin\", \"▁carrot\", \"▁km\", \"▁°\"\n"
    "\n"
    "[SCALES]\n"
    "2.0, 8.0\n"
    "\n"
    "Reasoning: 2.0 is about astronomy, and units such as km and degrees fit it. 8.0 is unrelated words.\n"
    "BEST_SCALER: 2.0\n"
    "TOP_TOKENS: ▁orbit | ▁comet | ▁telescope | ▁km | "
    "▁°\n";

/* The seed's artifact filter: punctuation-only tokens (after trimming) and the identity prompt's arrows. */
static bool is_artifact(const char *token) {
    char *stripped = grader_strip(token, strlen(token));
    static const char punctuation[] = ".,;:!?()[]{}\"'-_/\\|@#$%^&*+=<>~`";
    bool artifact = stripped[0] && strspn(stripped, punctuation) == strlen(stripped);
    if (strstr(stripped, "->") || strstr(stripped, "=>")) artifact = true;
    free(stripped);
    return artifact;
}

/* The scales, rounded to 0.1, a later duplicate replacing an earlier one, sorted. */
typedef struct scale_entry {
    double scale;
    const dk_patchscope_scale *in;
} scale_entry;

static int compare_entries(const void *a, const void *b) {
    double x = ((const scale_entry *)a)->scale, y = ((const scale_entry *)b)->scale;
    return (x > y) - (x < y);
}

static int unique_scales(const dk_patchscope_scale *scales, int n, scale_entry *out) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        double s = grader_round_scale(scales[i].scale);
        int k = 0;
        while (k < m && out[k].scale != s) k++;
        out[k] = (scale_entry){s, &scales[i]};
        if (k == m) m++;
    }
    qsort(out, (size_t)m, sizeof *out, compare_entries);
    return m;
}

static char *user_prompt(const scale_entry *group, int n) {
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "[TOKENS PER SCALE]\n");
    for (int i = 0; i < n; i++) {
        dk_strbuf line = {0};
        int shown = 0;
        for (int t = 0; t < group[i].in->n_tokens; t++) {
            const char *tok = group[i].in->tokens[t];
            if (!tok[0] || is_artifact(tok)) continue;
            dk_strbuf_printf(&line, "%s\"%s\"", shown++ ? ", " : "", tok);
        }
        if (shown) dk_strbuf_printf(&b, "SCALE: %.1f\n  %s\n", group[i].scale, line.data);
        dk_strbuf_free(&line);
    }
    dk_strbuf_append(&b, "\n[SCALES]\n");
    for (int i = 0; i < n; i++) dk_strbuf_printf(&b, "%s%.1f", i ? ", " : "", group[i].scale);
    dk_strbuf_append(&b, "\n\n[OUTPUT FORMAT]\nBEST_SCALER: <number>\nTOP_TOKENS: token1 | token2 | ... | tokenK");
    return dk_strbuf_take(&b);
}

/* What one request decides. */
typedef struct group_pick {
    const scale_entry *group;  /* [n] the scales shown */
    int n;
    double best;
    char **tokens;
    int n_tokens;
} group_pick;

static void pick_clear(group_pick *p) {
    for (int i = 0; i < p->n_tokens; i++) free(p->tokens[i]);
    free(p->tokens);
    p->tokens = NULL;
    p->n_tokens = 0;
}

static bool parse_pick(const char *answer, void *item, char *why, size_t why_cap) {
    group_pick *p = item;
    double best;
    char **tokens;
    int n_tokens;
    if (!grader_parse_patchscope(answer, &best, &tokens, &n_tokens)) {
        snprintf(why, why_cap, "no 'BEST_SCALER: <number>' line");
        return false;
    }
    bool shown = false;
    for (int i = 0; i < p->n && !shown; i++) shown = p->group[i].scale == best;
    if (!shown) {
        snprintf(why, why_cap, "BEST_SCALER %.1f is not one of the %d scales shown", best, p->n);
        for (int i = 0; i < n_tokens; i++) free(tokens[i]);
        free(tokens);
        return false;
    }
    pick_clear(p);
    p->best = best;
    p->tokens = tokens;
    p->n_tokens = n_tokens;
    return true;
}

static void keep_response(dk_patchscope_result *out, char *answer) {
    out->responses = dk_realloc(out->responses, (size_t)(out->n_responses + 1) * sizeof *out->responses);
    out->responses[out->n_responses++] = answer ? answer : dk_strdup("");
}

static int grade_llm(const dk_grader *g, scale_entry *entries, int n, dk_patchscope_result *out, dk_err *err) {
    if (grader_check_llm(g, err) != 0) return -1;
    scale_entry *current = dk_calloc((size_t)n, sizeof *current);
    memcpy(current, entries, (size_t)n * sizeof *current);
    int n_current = n;
    int rc = 0;
    for (int round = 1; rc == 0 && n_current > 0; round++) {
        CHECK(round <= PATCHSCOPE_MAX_ROUNDS, "the patchscope tournament did not end after %d rounds", round - 1);
        bool final = n_current <= PATCHSCOPE_GROUP;
        int n_groups = final ? 1 : (n_current + PATCHSCOPE_GROUP - 1) / PATCHSCOPE_GROUP;
        group_pick *picks = dk_calloc((size_t)n_groups, sizeof *picks);
        grader_call *calls = dk_calloc((size_t)n_groups, sizeof *calls);
        for (int k = 0; k < n_groups; k++) {
            int first = k * PATCHSCOPE_GROUP;
            int size = final ? n_current : (n_current - first < PATCHSCOPE_GROUP ? n_current - first : PATCHSCOPE_GROUP);
            picks[k] = (group_pick){.group = current + first, .n = size};
            calls[k] = (grader_call){.system = SYSTEM_PROMPT, .user = user_prompt(current + first, size),
                                     .temperature = -1.0, .parse = parse_pick, .item = &picks[k]};
        }
        rc = grader_send(g, calls, n_groups, PATCHSCOPE_DEFAULT_MAX_TOKENS, &out->n_requests, err);
        int n_winners = 0;
        scale_entry *winners = dk_calloc((size_t)n_groups, sizeof *winners);
        for (int k = 0; rc == 0 && k < n_groups; k++) {
            keep_response(out, calls[k].answer);
            calls[k].answer = NULL;
            if (!calls[k].ok) {
                out->n_unknown_groups++;  /* never parsed: this group has no winner */
                continue;
            }
            for (int i = 0; i < picks[k].n; i++)
                if (picks[k].group[i].scale == picks[k].best) winners[n_winners++] = picks[k].group[i];
            if (final) {
                out->found = true;
                out->best_scale = picks[k].best;
                out->tokens = picks[k].tokens;
                out->n_tokens = picks[k].n_tokens;
                picks[k].tokens = NULL;
                picks[k].n_tokens = 0;
            }
        }
        for (int k = 0; k < n_groups; k++) pick_clear(&picks[k]);
        grader_calls_free(calls, n_groups);
        free(calls);
        free(picks);
        memcpy(current, winners, (size_t)n_winners * sizeof *current);
        n_current = final ? 0 : n_winners;
        free(winners);
    }
    free(current);
    return rc;
}

/* ---- offline ------------------------------------------------------------------------------------------- */

/* The non-generic, non-artifact tokens of a scale, folded for comparison ([*n], malloc'ed). */
static char **comparable_tokens(const dk_patchscope_scale *s, const char ***originals, int *n) {
    char **folded = dk_calloc((size_t)s->n_tokens + 1, sizeof *folded);
    *originals = dk_calloc((size_t)s->n_tokens + 1, sizeof **originals);
    *n = 0;
    for (int t = 0; t < s->n_tokens; t++) {
        const char *tok = s->tokens[t];
        if (!tok[0] || is_artifact(tok) || dk_token_is_generic(tok)) continue;
        folded[*n] = grader_token_core(tok, true);
        (*originals)[(*n)++] = tok;
    }
    return folded;
}

static bool holds(char **tokens, int n, const char *tok) {
    for (int i = 0; i < n; i++)
        if (strcmp(tokens[i], tok) == 0) return true;
    return false;
}

static int grade_offline(const scale_entry *entries, int n, dk_patchscope_result *out) {
    char ***folded = dk_calloc((size_t)n, sizeof *folded);
    const char ***originals = dk_calloc((size_t)n, sizeof *originals);
    int *counts = dk_calloc((size_t)n, sizeof *counts);
    for (int i = 0; i < n; i++) folded[i] = comparable_tokens(entries[i].in, &originals[i], &counts[i]);
    dk_strbuf why = {0};
    dk_strbuf_append(&why, "offline: score = (token, other scale) pairs where the other scale shows the token\n");
    int best = -1, best_score = -1;
    for (int i = 0; i < n; i++) {
        int score = 0;
        for (int t = 0; t < counts[i]; t++)
            for (int j = 0; j < n; j++)
                if (j != i && holds(folded[j], counts[j], folded[i][t])) score++;
        dk_strbuf_printf(&why, "SCALE %.1f: %d non-generic tokens, score %d\n", entries[i].scale, counts[i], score);
        if (score > best_score || (score == best_score && counts[i] > counts[best])) {
            best = i;  /* scales are sorted: on a full tie the smaller one stays */
            best_score = score;
        }
    }
    out->found = true;
    out->best_scale = entries[best].scale;
    out->tokens = dk_calloc((size_t)counts[best] + 1, sizeof *out->tokens);
    for (int t = 0; t < counts[best]; t++) {
        bool elsewhere = false;
        for (int j = 0; j < n && !elsewhere; j++) elsewhere = j != best && holds(folded[j], counts[j], folded[best][t]);
        if (elsewhere || best_score == 0) out->tokens[out->n_tokens++] = dk_strdup(originals[best][t]);
    }
    dk_strbuf_printf(&why, "BEST_SCALER: %.1f\nTOP_TOKENS: ", out->best_scale);
    for (int t = 0; t < out->n_tokens; t++) dk_strbuf_printf(&why, "%s%s", t ? " | " : "", out->tokens[t]);
    keep_response(out, dk_strbuf_take(&why));
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < counts[i]; t++) free(folded[i][t]);
        free(folded[i]);
        free(originals[i]);
    }
    free(folded);
    free(originals);
    free(counts);
    return 0;
}

int dk_grade_patchscope(const dk_grader *g, const dk_patchscope_scale *scales, int n_scales,
                        dk_patchscope_result *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    out->best_scale = NAN;
    if (n_scales <= 0)
        return dk_err_set(err, DK_EXIT_USAGE, "patchscope grading needs at least one scale (got %d)", n_scales);
    for (int i = 0; i < n_scales; i++) {
        if (!isfinite(scales[i].scale))
            return dk_err_set(err, DK_EXIT_USAGE, "patchscope grading: scale %d is %g", i, scales[i].scale);
        for (int t = 0; t < scales[i].n_tokens; t++)
            if (!scales[i].tokens[t])
                return dk_err_set(err, DK_EXIT_USAGE, "patchscope grading: scale %g, token %d is NULL",
                                  scales[i].scale, t);
    }
    scale_entry *entries = dk_calloc((size_t)n_scales, sizeof *entries);
    int n = unique_scales(scales, n_scales, entries);
    int rc = g->mode == DK_GRADER_OFFLINE ? grade_offline(entries, n, out) : grade_llm(g, entries, n, out, err);
    free(entries);
    if (rc != 0) dk_patchscope_result_free(out);
    return rc;
}

void dk_patchscope_result_free(dk_patchscope_result *r) {
    for (int i = 0; i < r->n_tokens; i++) free(r->tokens[i]);
    free(r->tokens);
    for (int i = 0; i < r->n_responses; i++) free(r->responses[i]);
    free(r->responses);
    memset(r, 0, sizeof *r);
    r->best_scale = NAN;
}
