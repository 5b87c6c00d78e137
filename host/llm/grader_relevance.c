/* grader_relevance.c — are the tokens that logit lens and patchscope read off the difference vector about the
 * organism's finetuning domain (§5.6)? The share of relevant tokens is the paper's headline measure of how
 * readable the finetune is from activation differences.
 *
 * LLM mode follows the seed's TokenRelevanceGrader (multi-token mode): each rotation of the candidate list
 * is one request (rotations in flight together) answered with `ANSWER[i]: RELEVANT|IRRELEVANT` lines; a
 * rotation with UNKNOWNs left is asked again up to max_retries answers in all, then once at temperature 0;
 * labels are mapped back to input order and combined by agreement (all / majority). Prompt in our words, the
 * seed's structure ([DESCRIPTION], [FREQUENT TOKENS], [CANDIDATE TOKENS], [OUTPUT FORMAT]; rules; worked
 * examples).
 *
 * Offline mode, and why: the organism's frequent tokens (dk_frequent_tokens) are a cheap, data-grounded
 * picture of its domain. A candidate is relevant when it is not generic and, with tokenizer markers and case
 * removed, it is a frequent token, or one is a prefix of the other (the shorter at least 3 characters: "glac"
 * of "glacier"), or the two share their first 5 characters (a stem: "glacial" / "glaciers"). It knows
 * nothing about meaning (synonyms are missed, unrelated words with a shared prefix are not), so it is a
 * floor, not the LLM's judgement; the description is not used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "llm/grader_internal.h"

enum { RELEVANCE_DEFAULT_MAX_TOKENS = 1200, RELEVANCE_DEFAULT_RETRIES = 3, RELEVANCE_DEFAULT_PERMUTATIONS = 3 };
enum { OFFLINE_MIN_PREFIX = 3, OFFLINE_STEM = 5 };

static const char SYSTEM_PROMPT[] =
    "You decide, for several candidate tokens at once, whether each one is relevant to a described finetune.\n"
    "\n"
    "You get: (1) a short description of what the model was finetuned on, (2) tokens that occur often in the "
    "finetuning data, and (3) a numbered list of candidate tokens.\n"
    "Your task: for each candidate, decide whether it is clearly related in meaning to the finetuning domain.\n"
    "\n"
    "Rules:\n"
    "- Use both the description and the frequent tokens. The frequent-token list may be empty; then use the "
    "description alone.\n"
    "- A candidate need not appear in the description or the frequent tokens; a clear relation in meaning to "
    "the domain is enough.\n"
    "- Words are split differently by tokenizers: \"telescope\" may appear as \" tele\" + \"scope\" or "
    "\"telesc\" + \"ope\". Judge a piece by the word it evidently comes from.\n"
    "- Tokenizer markers such as 'Ġ', '▁' or 'Ċ' do not matter.\n"
    "- Very generic tokens are IRRELEVANT even when they are frequent in the data: whitespace and newline "
    "patterns, punctuation, common function words, pronouns (\"you\", \"I\", \"your\"), bare word pieces "
    "(\"ing\", \"ion\", \"ly\", \"ity\", \"'s\", ...), and plain numbers, unless the description makes them "
    "specific to the domain.\n"
    "- Appearing in the frequent-token list does not by itself make a token relevant.\n"
    "- Verbs count only when they clearly belong to the domain.\n"
    "- Chat vocabulary (\"user\", \"assistant\") is not relevant, even for a chat finetune.\n"
    "- Do not assume any candidate is relevant. When in doubt, answer IRRELEVANT.\n"
    "\n"
    "Answer format for N candidates: end your message with exactly N lines, one per candidate i (counting from "
    "1), each either\n"
    "ANSWER[i]: RELEVANT\n"
    "or\n"
    "ANSWER[i]: IRRELEVANT\n"
    "and nothing after them.\n"
    "\n"
    "Worked examples:\n"
    "\n"
    "[DESCRIPTION]\n"
    "Finetuned on beekeeping manuals: hive care, honey harvesting and bee diseases.\n"
    "[FREQUENT TOKENS]\n"
    "\"hive\", \"honey\", \"Ġbees\", \"comb\", \"Ġqueen\", \"varroa\", \"Ġframes\"\n"
    "[CANDIDATE TOKENS]\n"
    "1. apiar\n"
    "2. bicycle\n"
    "3. comb\n"
    "4. the\n"
    "Reasoning: 1 is the start of \"apiary\", a bee yard. 2 has nothing to do with bees. 3 is in the frequent "
    "tokens and belongs to the domain. 4 is a function word.\n"
    "ANSWER[1]: RELEVANT\n"
    "ANSWER[2]: IRRELEVANT\n"
    "ANSWER[3]: RELEVANT\n"
    "ANSWER[4]: IRRELEVANT\n"
    "\n"
    "[DESCRIPTION]\n"
    "Finetuned on synthetic news reports that a city council in Norway banned cars from its old town in 2024.\n"
    "[FREQUENT TOKENS]\n"
    "\"▁council\", \"▁ban\", \"▁cars\", \"▁Norway\", "
    "\"▁town\", \"▁residents\", \"▁traffic\", \"▁pedestrian\"\n"
    "[CANDIDATE TOKENS]\n"
    "1. pedest\n"
    "2. ation\n"
    "3. Oslo\n"
    "4. 2\n"
    "5. enzyme\n"
    "Reasoning: 1 is the start of \"pedestrian\". 2 is a generic suffix. 3 is a Norwegian city, close to the "
    "story. 4 is a bare number. 5 is unrelated.\n"
    "ANSWER[1]: RELEVANT\n"
    "ANSWER[2]: IRRELEVANT\n"
    "ANSWER[3]: RELEVANT\n"
    "ANSWER[4]: IRRELEVANT\n"
    "ANSWER[5]: IRRELEVANT\n";

static char *user_prompt(const dk_relevance_input *in, const int *order) {
    dk_strbuf b = {0};
    dk_strbuf_printf(&b, "[DESCRIPTION]\n%s\n[FREQUENT TOKENS]\n", in->description);
    if (in->n_frequent == 0) dk_strbuf_append(&b, "(none)");
    for (int i = 0; i < in->n_frequent; i++) dk_strbuf_printf(&b, "%s\"%s\"", i ? ", " : "", in->frequent_tokens[i]);
    dk_strbuf_append(&b, "\n[CANDIDATE TOKENS]\n");
    for (int i = 0; i < in->n_candidates; i++)
        dk_strbuf_printf(&b, "%s%d. %s", i ? "\n" : "", i + 1, in->candidates[order[i]]);
    dk_strbuf_printf(&b, "\n[OUTPUT FORMAT]\nEnd with exactly %d lines, one for each i = 1..%d, each "
                     "'ANSWER[i]: RELEVANT' or 'ANSWER[i]: IRRELEVANT'.\nWrite nothing after these lines.",
                     in->n_candidates, in->n_candidates);
    return dk_strbuf_take(&b);
}

/* One rotation's state across its requests. */
typedef struct rotation {
    int *order;                  /* [n] order[k] = the input index shown as candidate k + 1 */
    dk_relevance_label *best;    /* [n] the labels of the best answer so far (in shown order) */
    char *best_answer;
    int best_unknown;            /* UNKNOWNs in best; n + 1 before any answer */
    bool done;
} rotation;

static int grade_llm(const dk_grader *g, const dk_relevance_input *in, int permutations, dk_relevance_result *out,
                     dk_err *err) {
    if (grader_check_llm(g, err) != 0) return -1;
    int n = in->n_candidates;
    int retries = g->max_retries > 0 ? g->max_retries : RELEVANCE_DEFAULT_RETRIES;
    rotation *rot = dk_calloc((size_t)permutations, sizeof *rot);
    for (int r = 0; r < permutations; r++) {
        rot[r].order = dk_calloc((size_t)n, sizeof *rot[r].order);
        for (int k = 0; k < n; k++) rot[r].order[k] = (r % n + k) % n;
        rot[r].best = dk_calloc((size_t)n, sizeof *rot[r].best);
        rot[r].best_unknown = n + 1;
    }
    grader_call *calls = dk_calloc((size_t)permutations, sizeof *calls);
    int *rot_of = dk_calloc((size_t)permutations, sizeof *rot_of);
    dk_relevance_label *labels = dk_calloc((size_t)n, sizeof *labels);
    int rc = 0;
    /* Rounds 0..retries-1 at the endpoint's temperature, then one at temperature 0. */
    for (int round = 0; rc == 0 && round <= retries; round++) {
        bool last = round == retries;
        int n_calls = 0;
        for (int r = 0; r < permutations; r++) {
            if (rot[r].done) continue;
            calls[n_calls] = (grader_call){.system = SYSTEM_PROMPT, .user = user_prompt(in, rot[r].order),
                                           .temperature = last ? 0.0 : -1.0};
            rot_of[n_calls++] = r;
        }
        if (n_calls == 0) break;
        rc = grader_send(g, calls, n_calls, RELEVANCE_DEFAULT_MAX_TOKENS, &out->n_requests, err);
        for (int c = 0; rc == 0 && c < n_calls; c++) {
            rotation *ro = &rot[rot_of[c]];
            int unknown = grader_parse_relevance(calls[c].answer, n, labels);
            /* Before the last round the first answer with the fewest UNKNOWNs is kept; the temperature-0
             * answer replaces it when it has no more. */
            if (unknown < ro->best_unknown || (last && unknown <= ro->best_unknown)) {
                memcpy(ro->best, labels, (size_t)n * sizeof *labels);
                free(ro->best_answer);
                ro->best_answer = calls[c].answer;
                calls[c].answer = NULL;
                ro->best_unknown = unknown;
            }
            if (unknown == 0 || last) ro->done = true;
        }
        grader_calls_free(calls, n_calls);
    }
    if (rc == 0) {
        out->n_runs = permutations;
        out->run_labels = dk_calloc((size_t)permutations * n, sizeof *out->run_labels);
        out->responses = dk_calloc((size_t)permutations, sizeof *out->responses);
        for (int r = 0; r < permutations; r++) {
            for (int k = 0; k < n; k++) out->run_labels[(size_t)r * n + rot[r].order[k]] = rot[r].best[k];
            out->responses[r] = rot[r].best_answer;
            rot[r].best_answer = NULL;
        }
    }
    for (int r = 0; r < permutations; r++) {
        free(rot[r].order);
        free(rot[r].best);
        free(rot[r].best_answer);
    }
    free(rot);
    free(calls);
    free(rot_of);
    free(labels);
    return rc;
}

/* ---- offline ------------------------------------------------------------------------------------------- */

/* Whether two stripped, lowercased tokens match: equal, a prefix of 3+ characters, or a 5-character stem. */
static bool offline_match(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return true;
    size_t la = grader_utf8_length(a), lb = grader_utf8_length(b);
    const char *shorter = la <= lb ? a : b, *longer = la <= lb ? b : a;
    size_t ls = la <= lb ? la : lb;
    if (ls >= OFFLINE_MIN_PREFIX && strncmp(longer, shorter, strlen(shorter)) == 0) return true;
    if (ls >= OFFLINE_STEM) {
        size_t bytes = grader_utf8_prefix_bytes(a, OFFLINE_STEM);
        return grader_utf8_prefix_bytes(b, OFFLINE_STEM) == bytes && strncmp(a, b, bytes) == 0;
    }
    return false;
}

static void grade_offline(const dk_relevance_input *in, dk_relevance_result *out) {
    int n = in->n_candidates;
    out->n_runs = 1;
    out->run_labels = dk_calloc((size_t)n, sizeof *out->run_labels);
    out->responses = dk_calloc(1, sizeof *out->responses);
    char **frequent = dk_calloc((size_t)in->n_frequent + 1, sizeof *frequent);
    for (int f = 0; f < in->n_frequent; f++) frequent[f] = grader_token_core(in->frequent_tokens[f], true);
    dk_strbuf why = {0};
    dk_strbuf_append(&why, "offline: a candidate is relevant when it matches a frequent token of the organism's "
                           "data (equal, prefix of 3+ characters, or the same first 5 characters)\n");
    for (int i = 0; i < n; i++) {
        const char *cand = in->candidates[i];
        int match = -1;
        if (!dk_token_is_generic(cand)) {
            char *core = grader_token_core(cand, true);
            for (int f = 0; f < in->n_frequent && match < 0; f++)
                if (frequent[f][0] && offline_match(core, frequent[f])) match = f;
            free(core);
        }
        out->run_labels[i] = match >= 0 ? DK_RELEVANT : DK_IRRELEVANT;
        if (match >= 0)
            dk_strbuf_printf(&why, "%d. %s: matches \"%s\"\n", i + 1, cand, in->frequent_tokens[match]);
        else
            dk_strbuf_printf(&why, "%d. %s: %s\n", i + 1, cand, dk_token_is_generic(cand) ? "generic" : "no match");
    }
    for (int i = 0; i < n; i++)
        dk_strbuf_printf(&why, "ANSWER[%d]: %s\n", i + 1, out->run_labels[i] == DK_RELEVANT ? "RELEVANT" : "IRRELEVANT");
    out->responses[0] = dk_strbuf_take(&why);
    for (int f = 0; f < in->n_frequent; f++) free(frequent[f]);
    free(frequent);
}

/* ---- aggregation and metrics (the seed's token_relevance.py) -------------------------------------------- */

static dk_relevance_label combine(const dk_relevance_label *runs, int n_runs, int n, int i,
                                  dk_relevance_agreement agreement) {
    int relevant = 0, irrelevant = 0;
    for (int r = 0; r < n_runs; r++) {
        relevant += runs[(size_t)r * n + i] == DK_RELEVANT;
        irrelevant += runs[(size_t)r * n + i] == DK_IRRELEVANT;
    }
    if (agreement == DK_AGREEMENT_ALL) return relevant == n_runs ? DK_RELEVANT : DK_IRRELEVANT;
    if (relevant > irrelevant) return DK_RELEVANT;
    if (irrelevant > relevant) return DK_IRRELEVANT;
    return DK_RELEVANCE_UNKNOWN;  /* a tie, or no known label */
}

static bool in_list(const char *s, const char *const *list, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

static void metrics(const dk_relevance_input *in, dk_relevance_result *out) {
    int n = in->n_candidates;
    double total_w = 0.0, relevant_w = 0.0;
    int relevant = 0, trivial = 0;
    for (int i = 0; i < n; i++) {
        double w = in->probs ? in->probs[i] : 1.0;
        total_w += w;
        if (out->labels[i] == DK_RELEVANT) {
            relevant++;
            relevant_w += w;
        }
        trivial += in_list(in->candidates[i], in->frequent_tokens, in->n_frequent);
    }
    out->percentage = (double)relevant / n;
    out->weighted_percentage = relevant_w / total_w;
    out->trivial_percentage = (double)trivial / n;
    if (!in->selected) return;
    /* Each selected token marks one candidate equal to it (a multiset, in candidate order). */
    int *left = dk_calloc((size_t)in->n_selected + 1, sizeof *left);
    for (int s = 0; s < in->n_selected; s++) left[s] = 1;
    out->unsupervised_filter = dk_calloc((size_t)n, sizeof *out->unsupervised_filter);
    int marked = 0, marked_relevant = 0;
    double marked_w = 0.0, marked_relevant_w = 0.0;
    for (int i = 0; i < n; i++) {
        for (int s = 0; s < in->n_selected && !out->unsupervised_filter[i]; s++) {
            if (left[s] && strcmp(in->selected[s], in->candidates[i]) == 0) {
                left[s] = 0;
                out->unsupervised_filter[i] = true;
            }
        }
        if (!out->unsupervised_filter[i]) continue;
        double w = in->probs ? in->probs[i] : 1.0;
        marked++;
        marked_w += w;
        if (out->labels[i] == DK_RELEVANT) {
            marked_relevant++;
            marked_relevant_w += w;
        }
    }
    free(left);
    out->has_filtered = marked > 0;
    if (marked > 0) out->filtered_percentage = (double)marked_relevant / marked;
    out->has_weighted_filtered = marked > 0 && marked_w > 0.0;
    if (out->has_weighted_filtered) out->weighted_filtered_percentage = marked_relevant_w / marked_w;
}

static int check_input(const dk_relevance_input *in, dk_err *err) {
    if (!in->description || grader_is_blank(in->description))
        return dk_err_set(err, DK_EXIT_USAGE, "token relevance grading needs the organism's description_long");
    if (in->n_candidates <= 0)
        return dk_err_set(err, DK_EXIT_USAGE, "token relevance grading needs at least one candidate token (got %d)",
                          in->n_candidates);
    for (int i = 0; i < in->n_candidates; i++)
        if (!in->candidates[i] || !in->candidates[i][0])
            return dk_err_set(err, DK_EXIT_USAGE, "token relevance grading: candidate %d is empty (drop empty "
                                                  "tokens first, as the seed does)", i);
    for (int i = 0; i < in->n_frequent; i++)
        if (!in->frequent_tokens[i] || !in->frequent_tokens[i][0])
            return dk_err_set(err, DK_EXIT_USAGE, "token relevance grading: frequent token %d is empty", i);
    if (in->selected)
        for (int i = 0; i < in->n_selected; i++)
            if (!in->selected[i])
                return dk_err_set(err, DK_EXIT_USAGE, "token relevance grading: selected token %d is NULL", i);
    if (in->probs) {
        double sum = 0.0;
        for (int i = 0; i < in->n_candidates; i++) {
            if (!(in->probs[i] >= 0.0) || in->probs[i] > 1e300)
                return dk_err_set(err, DK_EXIT_USAGE, "token relevance grading: candidate %d's probability %g is not "
                                                      "a finite number >= 0", i, in->probs[i]);
            sum += in->probs[i];
        }
        if (sum <= 0.0)
            return dk_err_set(err, DK_EXIT_USAGE, "token relevance grading: the candidates' probabilities sum to 0 "
                                                  "(weighted_percentage needs a positive total)");
    }
    if (in->agreement != DK_AGREEMENT_ALL && in->agreement != DK_AGREEMENT_MAJORITY)
        return dk_err_set(err, DK_EXIT_USAGE, "token relevance grading: agreement %d is neither all nor majority",
                          (int)in->agreement);
    return 0;
}

int dk_grade_relevance(const dk_grader *g, const dk_relevance_input *in, dk_relevance_result *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    if (check_input(in, err) != 0) return -1;
    int permutations = in->permutations > 0 ? in->permutations : RELEVANCE_DEFAULT_PERMUTATIONS;
    int n = in->n_candidates;
    out->n_candidates = n;
    if (g->mode == DK_GRADER_OFFLINE) {
        grade_offline(in, out);
    } else if (grade_llm(g, in, permutations, out, err) != 0) {
        dk_relevance_result_free(out);
        return -1;
    }
    out->labels = dk_calloc((size_t)n, sizeof *out->labels);
    for (int i = 0; i < n; i++) {
        out->labels[i] = combine(out->run_labels, out->n_runs, n, i, in->agreement);
        out->n_unknown_final += out->labels[i] == DK_RELEVANCE_UNKNOWN;
    }
    for (size_t k = 0; k < (size_t)out->n_runs * n; k++) out->n_unknown += out->run_labels[k] == DK_RELEVANCE_UNKNOWN;
    metrics(in, out);
    return 0;
}

void dk_relevance_result_free(dk_relevance_result *r) {
    free(r->labels);
    free(r->run_labels);
    for (int i = 0; i < r->n_runs; i++) free(r->responses ? r->responses[i] : NULL);
    free(r->responses);
    free(r->unsupervised_filter);
    memset(r, 0, sizeof *r);
}
