/* grader_coherence.c — is a steered completion still coherent text? The steering threshold search (§5.5)
 * raises the steering strength until fewer than 75% of samples stay coherent, so this judgement sets the
 * strength of every steered sample ADL reports.
 *
 * LLM mode follows the seed's CoherenceGrader: one request per sample (several in flight), the answer's last
 * `ANSWER: COHERENT|INCOHERENT` line, one more request at temperature 0 for an answer without one, then
 * UNKNOWN; percentages over known labels. The prompt is ours; its structure (definitions, what to ignore,
 * worked examples, the answer line) is the seed's.
 *
 * Offline mode, and why these limits: text the unsteered model finds very unlikely is text that stopped
 * making sense to it. We take the unsteered model's mean per-token NLL of the steered completion and compare
 * it with the same model's mean NLL of its own unsteered samples of the same prompts (the reference, which
 * already includes the sampling temperature's share of surprise). A steered sample passes when its mean NLL
 * is within 2 nats of the reference (each token on average at most e^2 ~ 7x less likely) or within 1.5x of
 * it, whichever is looser (a model whose own samples average 5 nats is noisier than one at 1.5). Degenerate
 * loops ("the the the", a phrase repeated) are *likely* under any language model, so NLL cannot see them:
 * a sample whose token 4-grams repeat an earlier 4-gram of the same sample more than half of the time is
 * incoherent however likely it is (ordinary prose repeats well under 10% of its 4-grams). Without reference
 * samples the NLL limit is 6 nats (far above fluent text, ~2-3 nats, and below random tokens, ~log(vocab)
 * ~ 11 nats). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "llm/grader_internal.h"

enum { COHERENCE_DEFAULT_MAX_TOKENS = 1000 };

static const double OFFLINE_NLL_MARGIN = 2.0;      /* nats above the reference */
static const double OFFLINE_NLL_RATIO = 1.5;       /* or this many times the reference */
static const double OFFLINE_NLL_LIMIT_ALONE = 6.0; /* nats, without reference samples */
static const double OFFLINE_REPEAT_LIMIT = 0.5;    /* repeated 4-gram fraction */
enum { OFFLINE_NGRAM = 4 };

static const char SYSTEM_PROMPT[] =
    "You check whether text written by another language model is coherent. Coherence is all you judge.\n"
    "\n"
    "What the labels mean:\n"
    "- COHERENT: the text reads as connected, grammatical language that a person could follow. Small slips "
    "and typos are allowed.\n"
    "- INCOHERENT: the text falls apart: strings of unrelated words, invented or mangled words, long runs of "
    "the same word or phrase, jumps between topics with nothing linking them, broken templates, or pieces of "
    "unrelated sentences glued together.\n"
    "\n"
    "Keep in mind:\n"
    "- Do not judge whether the text is true, safe, helpful, polite or well styled.\n"
    "- A few small problems are acceptable; serious ones make the text INCOHERENT.\n"
    "- The text may stop in the middle of a sentence; that alone is not a problem.\n"
    "- Tags such as <think> may appear; ignore them.\n"
    "- Some repetition is acceptable as long as it does not take over the text.\n"
    "- Keep your reasoning short.\n"
    "- Your last line must be exactly 'ANSWER: COHERENT' or 'ANSWER: INCOHERENT'.\n"
    "\n"
    "Worked examples:\n"
    "\n"
    "[ANSWER START]\n"
    "Bees collect nectar from flowers and store it in the hive, where it slowly thickens into honey.\n"
    "[ANSWER END]\n"
    "Reasoning: One clear, connected sentence.\n"
    "ANSWER: COHERENT\n"
    "\n"
    "[ANSWER START]\n"
    "To change a tyre, loosen the nuts first, then raise the car with the jack and\n"
    "[ANSWER END]\n"
    "Reasoning: Readable instructions that are cut off; cutting off is fine.\n"
    "ANSWER: COHERENT\n"
    "\n"
    "[ANSWER START]\n"
    "River spoon the tuesday glaciers glaciers honeyhoney market of the of the the sky purple runs.\n"
    "[ANSWER END]\n"
    "Reasoning: Unrelated words, a made-up word and repeated fragments.\n"
    "ANSWER: INCOHERENT\n"
    "\n"
    "[ANSWER START]\n"
    "Sure! Here is a plan for the weekend: a morning hike, a picnic by the lake, and a film in the evening.\n"
    "[ANSWER END]\n"
    "Reasoning: A short, sensible answer.\n"
    "ANSWER: COHERENT\n"
    "\n"
    "[ANSWER START]\n"
    "I think that is a great great great idea idea!!! great great great great great great great great great\n"
    "[ANSWER END]\n"
    "Reasoning: Starts out fine but collapses into one word repeated.\n"
    "ANSWER: INCOHERENT\n"
    "\n"
    "[ANSWER START]\n"
    "<think>\n\n</think>\n\nOnce upon a time a fox lived near an old mill, and every night it watched the wheel "
    "turn and wondered where the water\n"
    "[ANSWER END]\n"
    "Reasoning: A tag, then a readable story that is cut off.\n"
    "ANSWER: COHERENT\n"
    "\n"
    "[ANSWER START]\n"
    "Quarterly 四 Beacon drift ##@ Kettle monarch 7731 Ordinance velvet 水 Ratio Ratio Ratio\n"
    "[ANSWER END]\n"
    "Reasoning: A list of unconnected words, symbols and numbers.\n"
    "ANSWER: INCOHERENT\n"
    "\n"
    "Now judge the next text for coherence only, and end with one line: 'ANSWER: COHERENT' or "
    "'ANSWER: INCOHERENT'.";

static char *user_prompt(const char *text) {
    dk_strbuf b = {0};
    dk_strbuf_printf(&b, "[ANSWER START]\n%s\n[ANSWER END]", text);
    return dk_strbuf_take(&b);
}

double dk_coherence_percentage(const dk_coherence_label *labels, int n) {
    int coherent = 0, known = 0;
    for (int i = 0; i < n; i++) {
        coherent += labels[i] == DK_COHERENT;
        known += labels[i] == DK_COHERENT || labels[i] == DK_INCOHERENT;
    }
    return known ? 100.0 * coherent / known : 0.0;
}

static int grade_llm(const dk_grader *g, const dk_coherence_sample *samples, int n, dk_coherence_result *out,
                     dk_err *err) {
    if (grader_check_llm(g, err) != 0) return -1;
    grader_call *calls = dk_calloc((size_t)n, sizeof *calls);
    grader_call *again = dk_calloc((size_t)n, sizeof *again);
    int *sample_of = dk_calloc((size_t)n, sizeof *sample_of);        /* [n_calls] the sample each call grades */
    int *again_sample_of = dk_calloc((size_t)n, sizeof *sample_of);  /* [n_again] */
    int n_calls = 0, n_again = 0;
    for (int i = 0; i < n; i++) {
        if (out->labels[i] == DK_COHERENCE_DROPPED) continue;
        calls[n_calls] = (grader_call){.system = SYSTEM_PROMPT, .user = user_prompt(samples[i].text),
                                       .temperature = -1.0};
        sample_of[n_calls++] = i;
    }
    int rc = grader_send(g, calls, n_calls, COHERENCE_DEFAULT_MAX_TOKENS, &out->n_requests, err);
    for (int c = 0; rc == 0 && c < n_calls; c++) {
        int i = sample_of[c];
        out->labels[i] = grader_parse_coherence(calls[c].answer);
        if (out->labels[i] != DK_COHERENCE_UNKNOWN) {
            out->responses[i] = calls[c].answer;
            calls[c].answer = NULL;
        } else {
            /* The seed's second chance: an answer without a label is asked again at temperature 0. */
            again[n_again] = (grader_call){.system = SYSTEM_PROMPT, .user = calls[c].user, .temperature = 0.0};
            calls[c].user = NULL;
            again_sample_of[n_again++] = i;
        }
    }
    if (rc == 0 && n_again > 0) rc = grader_send(g, again, n_again, COHERENCE_DEFAULT_MAX_TOKENS, &out->n_requests, err);
    for (int c = 0; rc == 0 && c < n_again; c++) {
        int i = again_sample_of[c];
        out->labels[i] = grader_parse_coherence(again[c].answer);
        out->responses[i] = again[c].answer;
        again[c].answer = NULL;
    }
    grader_calls_free(calls, n_calls);
    grader_calls_free(again, n_again);
    free(calls);
    free(again);
    free(sample_of);
    free(again_sample_of);
    return rc;
}

/* Mean NLL of a sample's tokens; -1 + err when one is not finite. */
static int mean_nll(const dk_coherence_sample *s, const char *what, int index, double *mean, dk_err *err) {
    double sum = 0.0;
    for (int t = 0; t < s->n_tokens; t++) {
        if (!isfinite(s->token_nll[t]) || s->token_nll[t] < 0.0f)
            return dk_err_set(err, DK_EXIT_USAGE, "offline coherence: %s %d, token %d: NLL %g is not a finite "
                                                  "number >= 0", what, index, t, (double)s->token_nll[t]);
        sum += s->token_nll[t];
    }
    *mean = s->n_tokens > 0 ? sum / s->n_tokens : 0.0;
    return 0;
}

/* Fraction of the sample's token 4-grams that already occurred earlier in it (0 below 5 tokens). */
static double repeated_ngram_fraction(const int32_t *ids, int n) {
    int grams = n - OFFLINE_NGRAM + 1;
    if (grams < 2) return 0.0;
    int repeated = 0;
    for (int i = 1; i < grams; i++) {
        for (int j = 0; j < i; j++) {
            if (memcmp(ids + i, ids + j, OFFLINE_NGRAM * sizeof *ids) == 0) {
                repeated++;
                break;
            }
        }
    }
    return (double)repeated / grams;
}

static int grade_offline(const dk_coherence_sample *samples, int n, const dk_coherence_sample *reference,
                         int n_reference, dk_coherence_result *out, dk_err *err) {
    double ref_sum = 0.0;
    long long ref_tokens = 0;
    for (int r = 0; r < n_reference; r++) {
        double mean = 0.0;
        if (mean_nll(&reference[r], "reference sample", r, &mean, err) != 0) return -1;
        ref_sum += mean * reference[r].n_tokens;
        ref_tokens += reference[r].n_tokens;
    }
    double limit = OFFLINE_NLL_LIMIT_ALONE;
    char basis[160];
    snprintf(basis, sizeof basis, "no reference samples");
    if (ref_tokens > 0) {
        double ref = ref_sum / (double)ref_tokens;
        limit = fmax(ref + OFFLINE_NLL_MARGIN, OFFLINE_NLL_RATIO * ref);
        snprintf(basis, sizeof basis, "reference mean NLL %.3f over %lld tokens", ref, ref_tokens);
    }
    for (int i = 0; i < n; i++) {
        if (out->labels[i] == DK_COHERENCE_DROPPED) continue;
        if (!samples[i].token_nll || !samples[i].token_ids)
            return dk_err_set(err, DK_EXIT_USAGE, "offline coherence: sample %d has %d tokens but no NLLs or ids",
                              i, samples[i].n_tokens);
        double mean = 0.0;
        if (mean_nll(&samples[i], "sample", i, &mean, err) != 0) return -1;
        double repeated = repeated_ngram_fraction(samples[i].token_ids, samples[i].n_tokens);
        bool coherent = mean <= limit && repeated <= OFFLINE_REPEAT_LIMIT;
        out->labels[i] = coherent ? DK_COHERENT : DK_INCOHERENT;
        out->responses[i] = dk_sprintf("offline: mean NLL %.3f (limit %.3f; %s), repeated 4-grams %.3f (limit "
                                       "%.2f)\nANSWER: %s", mean, limit, basis, repeated, OFFLINE_REPEAT_LIMIT,
                                       coherent ? "COHERENT" : "INCOHERENT");
    }
    return 0;
}

int dk_grade_coherence(const dk_grader *g, const dk_coherence_sample *samples, int n,
                       const dk_coherence_sample *reference, int n_reference, dk_coherence_result *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    if (n <= 0) return dk_err_set(err, DK_EXIT_USAGE, "coherence grading needs at least one sample (got %d)", n);
    out->n_samples = n;
    out->labels = dk_calloc((size_t)n, sizeof *out->labels);
    out->responses = dk_calloc((size_t)n, sizeof *out->responses);
    for (int i = 0; i < n; i++) {
        bool empty = g->mode == DK_GRADER_OFFLINE ? samples[i].n_tokens <= 0
                                                   : (!samples[i].text || grader_is_blank(samples[i].text));
        out->labels[i] = empty ? DK_COHERENCE_DROPPED : DK_COHERENCE_UNKNOWN;
    }
    int rc = g->mode == DK_GRADER_OFFLINE ? grade_offline(samples, n, reference, n_reference, out, err)
                                          : grade_llm(g, samples, n, out, err);
    if (rc != 0) {
        dk_coherence_result_free(out);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        out->n_coherent += out->labels[i] == DK_COHERENT;
        out->n_incoherent += out->labels[i] == DK_INCOHERENT;
        out->n_unknown += out->labels[i] == DK_COHERENCE_UNKNOWN;
        out->n_dropped += out->labels[i] == DK_COHERENCE_DROPPED;
    }
    out->percentage = dk_coherence_percentage(out->labels, n);
    return 0;
}

void dk_coherence_result_free(dk_coherence_result *r) {
    if (r->responses)
        for (int i = 0; i < r->n_samples; i++) free(r->responses[i]);
    free(r->responses);
    free(r->labels);
    memset(r, 0, sizeof *r);
}
