/* graders.h — the seed's four LLM graders (coherence of steered text, the patchscope scale tournament, token
 * relevance, hypothesis scores) and an offline stand-in for each, plus the frequent tokens of an organism's data.
 *
 * Why it exists: half of ADL's findings and every agent grade are an LLM's judgement. These functions ask an
 * OpenAI-compatible endpoint (host/llm/llm_client.h) the questions the seed asks, with the seed's structure,
 * output grammar, parsing, retries and aggregation (../shared/reference/seed_spec.md §5.4-5.6, §14.5), with
 * prompts written in our own words. Cluster nodes often have no endpoint, so each grader also has an offline
 * mode: deterministic heuristics (documented at each function and in README "Graders") whose results carry the
 * grader id "offline", so nobody mistakes them for an LLM's judgement.
 *
 * Failures:
 *   - A grader answer that never parses (after the seed's retries) makes that item UNKNOWN: counted in the
 *     result (n_unknown), never an error.
 *   - A request that got no answer at all after the client's attempts (dead endpoint, HTTP 500 every time,
 *     timeouts) fails the call: -1 with err naming the endpoint and what happened (the seed raises too).
 *     Every wait is bounded by the client's timeouts and attempts; nothing hangs.
 *   - Bad arguments (n <= 0, no description, an LLM grader without a client) are -1 with err code 2.
 *
 * Usage (LLM mode; offline: mode = DK_GRADER_OFFLINE, llm = NULL):
 *     dk_grader g = dk_grader_llm(llm_client, "openai/gpt-5-nano");
 *     dk_coherence_result r;
 *     if (dk_grade_coherence(&g, samples, n, NULL, 0, &r, &err) != 0) dk_die(&err);
 *     ... r.percentage, r.labels[i] ...
 *     dk_coherence_result_free(&r);
 * A grader is used by one thread at a time (the client is). Several requests go out at once
 * (dk_llm_chat_many, at most the client's max_in_flight).
 */
#ifndef DK_GRADERS_H
#define DK_GRADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "llm/llm_client.h"
#include "tokenizer/tokenizer.h"

typedef enum { DK_GRADER_LLM = 0, DK_GRADER_OFFLINE = 1 } dk_grader_mode;

typedef struct dk_grader {
    dk_grader_mode mode;
    dk_llm_client *llm;      /* LLM mode: the client requests go through (not owned); offline: NULL */
    const char *model_id;    /* LLM mode: the grader model ("openai/gpt-5-mini"); the client's when NULL */
    int max_tokens;          /* max_tokens of each request; 0: the seed's default for that grader
                              * (coherence 1000, patchscope 1200, relevance 1200, hypothesis 800) */
    int max_retries;         /* token relevance: answers asked for while UNKNOWNs remain before the final
                              * temperature-0 one (seed: 3); 0: 3. Transport and parse retries of one request
                              * are the client's max_attempts. */
} dk_grader;

/* An LLM grader with the seed's defaults; an offline grader. */
dk_grader dk_grader_llm(dk_llm_client *llm, const char *model_id);
dk_grader dk_grader_offline(void);

/* The id that goes into result file names and records: the model id with '/' -> '_' ("openai_gpt-5-mini"),
 * or "offline". Written to buf (cap bytes, truncated if longer); returns buf. */
const char *dk_grader_id(const dk_grader *g, char *buf, size_t cap);

/* ---- coherence (§5.5): is a steered completion coherent English? -------------------------------------
 * LLM: one request per non-empty sample, answer's last `ANSWER: COHERENT|INCOHERENT` line wins; an answer
 * without one is asked once more at temperature 0, then UNKNOWN. Samples whose text is empty or only
 * whitespace are dropped (DK_COHERENCE_DROPPED, not counted). percentage = 100 * coherent / (coherent +
 * incoherent); 0 when no sample got a known label.
 * Offline: from the unsteered model's per-token NLL of each sample and its token ids (text is not used; a
 * sample with no tokens is dropped): a sample is COHERENT when its mean NLL <= max(reference_mean_nll + 2.0,
 * 1.5 * reference_mean_nll) and its repetition (fraction of token 4-grams that occurred earlier in the
 * sample) <= 0.5, where reference_mean_nll is the token-weighted mean NLL of the reference samples (the
 * unsteered model's own samples for the same prompts). Without reference samples the NLL limit is 6.0 nats.
 * Rationale in grader_coherence.c. */
typedef enum {
    DK_COHERENCE_UNKNOWN = 0,
    DK_COHERENT = 1,
    DK_INCOHERENT = 2,
    DK_COHERENCE_DROPPED = 3,  /* empty sample, not graded */
} dk_coherence_label;

typedef struct dk_coherence_sample {
    const char *text;          /* the completion (LLM mode) */
    const float *token_nll;    /* [n_tokens] offline: the unsteered model's NLL (nats) of each completion token */
    const int32_t *token_ids;  /* [n_tokens] offline: the completion's token ids */
    int n_tokens;
} dk_coherence_sample;

typedef struct dk_coherence_result {
    double percentage;            /* 100 * n_coherent / (n_coherent + n_incoherent), 0 when both are 0 */
    int n_samples;                /* n, the samples given */
    dk_coherence_label *labels;   /* [n_samples] one per input sample */
    char **responses;             /* [n_samples] the grader's last answer (LLM) or the offline numbers; NULL if
                                   * dropped */
    int n_coherent, n_incoherent, n_unknown, n_dropped;
    int n_requests;               /* requests sent (LLM), retries at temperature 0 included */
} dk_coherence_result;

int dk_grade_coherence(const dk_grader *g, const dk_coherence_sample *samples, int n,
                       const dk_coherence_sample *reference, int n_reference, dk_coherence_result *out, dk_err *err);
void dk_coherence_result_free(dk_coherence_result *r);
/* The seed's percentage of any subset of labels (e.g. the samples of one steering strength). */
double dk_coherence_percentage(const dk_coherence_label *labels, int n);

/* ---- patchscope (§5.4): which scale's tokens are most coherent, and which of them -----------------------
 * LLM: scales rounded to 0.1 (a later duplicate replaces an earlier one), sorted; tokens that are
 * punctuation-only or contain "->" or "=>" are not shown. A tournament: while more than 10 (max group size)
 * scales remain, groups of 10 in scale order are asked at the same time and each group's BEST_SCALER goes on;
 * then one final request among the rest (also when only one scale is left: it selects that scale's tokens).
 * An answer is accepted when it has a `BEST_SCALER: <number>` line naming one of the scales shown (the first
 * such line; TOP_TOKENS optional: first `TOP_TOKENS: a | b` line, split on '|', trimmed, empties dropped);
 * otherwise the client asks again (its max_attempts). A group that never answers so drops out (counted in
 * n_unknown_groups); when the final never does, found is false.
 * Offline: each scale's shown tokens, minus generic ones (dk_token_is_generic), are compared after stripping
 * Ġ/▁, trimming and case folding; a scale scores the number of (its token, other scale) pairs where the other
 * scale shows the token too. Best scale: highest score, ties to more non-generic tokens, then the smaller
 * scale. Selected tokens: its non-generic tokens shown at another scale too (all its non-generic tokens when
 * none is). Rationale in grader_patchscope.c. */
typedef struct dk_patchscope_scale {
    double scale;
    const char *const *tokens;  /* [n_tokens] decoded tokens at this scale, most probable first */
    int n_tokens;
} dk_patchscope_scale;

typedef struct dk_patchscope_result {
    bool found;               /* false: the final request never parsed (best_scale is NaN, no tokens) */
    double best_scale;        /* rounded to 0.1, one of the input scales */
    char **tokens;            /* [n_tokens] the selected tokens (the seed's selected_tokens) */
    int n_tokens;
    int n_requests;           /* requests sent (LLM): groups + final */
    int n_unknown_groups;     /* groups (final included) whose answers never parsed */
    char **responses;         /* [n_responses] each request's last answer, in order sent (offline: one text) */
    int n_responses;
} dk_patchscope_result;

int dk_grade_patchscope(const dk_grader *g, const dk_patchscope_scale *scales, int n_scales,
                        dk_patchscope_result *out, dk_err *err);
void dk_patchscope_result_free(dk_patchscope_result *r);

/* ---- token relevance (§5.6): is each candidate token relevant to the organism's finetune? ----------------
 * LLM: `permutations` rotations of the candidates (shift 0, 1, 2, ...), one request each (sent at the same
 * time); a rotation whose answer leaves some `ANSWER[i]: RELEVANT|IRRELEVANT` line missing is asked again, up
 * to max_retries answers, then once at temperature 0 (that answer is kept when it has no more UNKNOWNs than
 * the best before). Labels are mapped back to the input order. agreement ALL: RELEVANT iff every rotation
 * said RELEVANT, else IRRELEVANT; MAJORITY: the most frequent known label, UNKNOWN on a tie or none.
 * Offline: one pass, no rotations: a candidate is RELEVANT when it is not generic and, stripped of Ġ/▁ and
 * whitespace and case folded, it equals a (likewise stripped) frequent token, or the shorter of the two
 * (3 characters or more) is a prefix of the longer, or they share a first 5 characters (a stem).
 * Metrics as the seed: percentage = #RELEVANT / n; weighted_percentage = sum of the probs of RELEVANT ones /
 * sum of all probs (uniform without probs); trivial_percentage = fraction of candidates found literally in
 * frequent_tokens; with selected tokens (patchscope): unsupervised_filter[i] = candidate i is among them
 * (each selected token marks one candidate), filtered_percentage and weighted_filtered_percentage over the
 * marked candidates (has_filtered: some candidate is marked; has_weighted_filtered: their probs sum > 0). */
typedef enum { DK_RELEVANCE_UNKNOWN = 0, DK_RELEVANT = 1, DK_IRRELEVANT = 2 } dk_relevance_label;
typedef enum { DK_AGREEMENT_ALL = 0, DK_AGREEMENT_MAJORITY = 1 } dk_relevance_agreement;

typedef struct dk_relevance_input {
    const char *description;               /* the organism's description_long */
    const char *const *frequent_tokens;    /* [n_frequent] dk_frequent_tokens' output; may be empty */
    int n_frequent;
    const char *const *candidates;         /* [n_candidates] non-empty token strings */
    int n_candidates;
    const double *probs;                   /* [n_candidates] weights, or NULL: uniform */
    const char *const *selected;           /* [n_selected] patchscope's selected tokens, or NULL (logit lens) */
    int n_selected;
    int permutations;                      /* rotations (seed: 3); 0: 3 */
    dk_relevance_agreement agreement;      /* seed's ADL default: ALL */
} dk_relevance_input;

typedef struct dk_relevance_result {
    dk_relevance_label *labels;      /* [n_candidates] after agreement */
    dk_relevance_label *run_labels;  /* [n_runs][n_candidates] each rotation's labels in input order */
    int n_runs;                      /* permutations (LLM), 1 (offline) */
    int n_candidates;
    char **responses;                /* [n_runs] the answer kept for each rotation (offline: the matches) */
    int n_unknown;                   /* UNKNOWN labels in run_labels (answers that never named a candidate) */
    int n_unknown_final;             /* UNKNOWN in labels (MAJORITY only) */
    int n_requests;
    double percentage, weighted_percentage, trivial_percentage;
    bool *unsupervised_filter;       /* [n_candidates], NULL without selected tokens */
    bool has_filtered, has_weighted_filtered;
    double filtered_percentage, weighted_filtered_percentage;
} dk_relevance_result;

int dk_grade_relevance(const dk_grader *g, const dk_relevance_input *in, dk_relevance_result *out, dk_err *err);
void dk_relevance_result_free(dk_relevance_result *r);

/* ---- hypothesis (§14.5): score an agent's description of the finetune 1..5 against a rubric ------------
 * LLM: num_repeat independent requests (sent at the same time); an answer is accepted when some line is
 * `SCORE: <1-5>` (the last such line wins); otherwise the client asks again (its max_attempts), then that
 * repeat is UNKNOWN (score 0). mean_score = mean of the known scores (NaN when none).
 * Offline (a crude stand-in, not a judgement): the content words of the description (3+ letters, not
 * stopwords, case folded, compared by their first 5 characters) that the hypothesis also uses, as a
 * fraction r of the description's: score 1 when r = 0, 2 when r < 0.15, 3 when r < 0.30, 4 when r < 0.50,
 * else 5; the rubric is not read. Every repeat gives the same score. */
typedef struct dk_hypothesis_input {
    const char *description;   /* the organism's description_long */
    const char *rubric;        /* the rubric of the organism's type (dk_rubric_load) */
    const char *hypothesis;    /* the agent's description */
    int num_repeat;            /* independent grades (seed: 3); 0: 3 */
} dk_hypothesis_input;

typedef struct dk_hypothesis_result {
    int *scores;            /* [n_repeat] 1..5, 0 = UNKNOWN */
    char **responses;       /* [n_repeat] the grader's answer (the seed's "reasoning"); offline: the overlap */
    int n_repeat;
    int n_unknown;
    double mean_score;      /* over known scores, NaN when none */
    int n_requests;
} dk_hypothesis_result;

int dk_grade_hypothesis(const dk_grader *g, const dk_hypothesis_input *in, dk_hypothesis_result *out, dk_err *err);
void dk_hypothesis_result_free(dk_hypothesis_result *r);

/* The rubric for an organism type ("SDF", "EM", "Taboo", ...) from a rubrics YAML
 * (configs/diffing/grading_rubrics.yaml: grading_rubrics: {TYPE: text}). Malloc'ed, or NULL + err (code 2)
 * naming the file and the types it has. */
char *dk_rubric_load(const char *yaml_path, const char *organism_type, dk_err *err);

/* ---- frequent tokens of the organism's data (§5.6) -------------------------------------------------------
 * Counts the token strings (the vocabulary's raw BPE strings, "Ġcake", "▁cake", as HF tokenize() gives) of
 * seqs[0..n_seqs) (each text encoded WITHOUT special tokens; chat samples: message contents joined with
 * "\n"), drops generic tokens (dk_token_is_generic) and those seen fewer than min_count times, and returns the
 * num_tokens most frequent, most frequent first, ties in order of first occurrence (as the seed's Counter).
 * *tokens_out [*n_out] malloc'ed strings, *counts_out [*n_out] (may be NULL). 0, or -1 + err (an id out of the
 * vocabulary). An empty result is 0 with *n_out = 0 (the seed asserts; the caller decides). */
int dk_frequent_tokens(const dk_tokenizer *tok, const dk_tok_ids *seqs, size_t n_seqs, int min_count, int num_tokens,
                       char ***tokens_out, int64_t **counts_out, int *n_out, dk_err *err);
void dk_frequent_tokens_free(char **tokens, int64_t *counts, int n);

/* Whether a token string is too generic to say anything about a domain (the seed's rule): after removing
 * every ▁ and Ġ and trimming whitespace it is at most 1 character, only punctuation/symbols, one of the
 * contraction or suffix pieces 's 't 're 've 'll 'd 'm ing, only whitespace, or a stopword (case folded; our
 * list, grader_common.c). */
bool dk_token_is_generic(const char *token);

#endif
