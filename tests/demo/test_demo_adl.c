/* test_demo_adl.c — the discrimination check of the demo organisms, recomputed by our engine: the seed's
 * activation difference lens (seed_spec.md §5.2-5.3) on the bundled pair, against the reference that
 * tools/make_demo_models.py computed with transformers (models/demo/golden/adl.json, adl.<organism>.mean_diff.f32).
 *
 * From the data files alone, with our tokenizer and forward pass, for each organism:
 *   - the ADL samples: the pretraining dataset's texts in file order, empty ones skipped, cut to n*10 characters,
 *     encoded with the tokenizer's special tokens, kept when >= n = 128 tokens, their first n ids; the first
 *     max_samples of them (the count must equal the reference's);
 *   - the mean over samples of (organism - base) residual after the middle layer at positions 0-4: within
 *     MEAN_DIFF_BOUND of the reference (relative to its largest entry);
 *   - the logit lens through the organism's final norm and unembedding: the top 20 ids equal the reference's,
 *     except that ids whose probabilities tie within TIE_BOUND may swap;
 *   - the domain tokens (>= 10 occurrences in the organism's training documents, >= 20x more frequent per token
 *     there than in the pretraining text), computed from the data: equal to the reference's;
 *   - the check: at >= 3 of positions 0-4 the top 20 hold >= 3 of its own domain tokens, and at none of them a
 *     domain token of the other organism; our verdict must also equal the reference's (adl.json "passed").
 * The lists are printed with domain tokens marked (* own, ! other's, ~ flagged as never trained). */
#include "test.h"

#include "io/file.h"
#include "model/forward.h"
#include "model/lora.h"
#include "model/undertrained.h"
#include "kernels/cpu/diffops.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>

static const double MEAN_DIFF_BOUND = 1e-4; /* fp32 with another summation order: ~1e-6 here */
static const double TIE_BOUND = 1e-5;       /* relative probability difference treated as a tie */
enum { N_POS = 5, MAX_ORGS = 4, BATCH = 32 };

typedef struct text_list {
    char **texts;
    size_t n;
} text_list;

/* The `column` strings of a (gzip) JSON Lines file, in order. */
static text_list read_texts(const char *path, const char *column) {
    text_list out = {0};
    dk_err err = {0};
    size_t size;
    char *data = dk_read_file(path, &size, &err);
    if (!EXPECT(data != NULL, "%s: %s", path, err.msg)) return out;
    size_t cap = 1024;
    out.texts = malloc(cap * sizeof *out.texts);
    for (char *line = data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        cJSON *obj = cJSON_Parse(line);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, column);
        if (cJSON_IsString(v)) {
            if (out.n == cap) out.texts = realloc(out.texts, (cap *= 2) * sizeof *out.texts);
            out.texts[out.n++] = strdup(v->valuestring);
        }
        cJSON_Delete(obj);
    }
    free(data);
    return out;
}

static void free_texts(text_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->texts[i]);
    free(l->texts);
}

/* Bytes of the first max_chars code points of s (Python's text[:max_chars]). */
static size_t prefix_bytes(const char *s, size_t max_chars) {
    size_t i = 0, chars = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max_chars) break;
            chars++;
        }
    }
    return i;
}

/* The seed's ADL samples: (n_samples, n) ids. */
static int64_t *adl_samples(dk_tokenizer *tok, const text_list *texts, int64_t n, int64_t max_samples,
                            int64_t *n_samples) {
    int64_t *ids = malloc((size_t)(max_samples * n) * sizeof *ids);
    *n_samples = 0;
    for (size_t i = 0; i < texts->n && *n_samples < max_samples; i++) {
        const char *t = texts->texts[i];
        if (strspn(t, " \t\r\n\v\f") == strlen(t)) continue; /* not text.strip() */
        dk_tok_ids out = {0};
        dk_err err = {0};
        if (dk_tokenizer_encode(tok, t, prefix_bytes(t, (size_t)(n * 10)), true, &out, &err) == 0 &&
            (int64_t)out.n >= n) {
            for (int64_t k = 0; k < n; k++) ids[*n_samples * n + k] = out.ids[k];
            (*n_samples)++;
        }
        dk_tok_ids_free(&out);
    }
    return ids;
}

/* Sum over samples of the residual after block `layer` at positions 0..N_POS-1: (N_POS, H) in fp64. */
static int residual_sums(const dk_model *m, const dk_lora_adapter *adapter, const int64_t *ids, int64_t n_samples,
                         int64_t n, int64_t layer, double *sums) {
    const int64_t H = m->cfg.hidden_size;
    memset(sums, 0, (size_t)(N_POS * H) * sizeof *sums);
    float *capture = malloc((size_t)(BATCH * n * H) * sizeof *capture); /* (BATCH·n, H) */
    int64_t starts[BATCH + 1];
    int rc = 0;
    for (int64_t s0 = 0; s0 < n_samples && rc == 0; s0 += BATCH) {
        int64_t b = n_samples - s0 < BATCH ? n_samples - s0 : BATCH;
        for (int64_t q = 0; q <= b; q++) starts[q] = q * n;
        dk_batch batch = {.ids = ids + s0 * n, .n_tokens = b * n, .seq_start = starts, .n_seqs = b, .is_prompt = true};
        dk_hook_plan plan = {.n_capture = 1, .capture_layers = &layer, .captures = &capture, .logits = DK_LOGITS_NONE};
        dk_err err = {0};
        rc = dk_forward(m, adapter, &batch, &plan, NULL, &err);
        EXPECT(rc == 0, "forward: %s", err.msg);
        for (int64_t q = 0; q < b && rc == 0; q++)
            for (int64_t p = 0; p < N_POS; p++)
                for (int64_t k = 0; k < H; k++) sums[p * H + k] += capture[(q * n + p) * H + k];
    }
    free(capture);
    return rc;
}

/* Counts of each id in the texts' encodings (no special tokens added), and their total. */
static int64_t *token_counts(const dk_tokenizer *tok, const text_list *texts, int64_t V, int64_t *total) {
    dk_tok_ids *outs = calloc(texts->n, sizeof *outs);
    dk_err err = {0};
    EXPECT(dk_tokenizer_encode_batch(tok, (const char *const *)texts->texts, NULL, texts->n, false, 0, outs, NULL, &err) == 0,
           "encode: %s", err.msg);
    int64_t *c = calloc((size_t)V, sizeof *c);
    *total = 0;
    for (size_t i = 0; i < texts->n; i++) {
        for (size_t k = 0; k < outs[i].n; k++) c[outs[i].ids[k]]++;
        *total += (int64_t)outs[i].n;
        dk_tok_ids_free(&outs[i]);
    }
    free(outs);
    return c;
}

/* probs (rows, V) = softmax(lm_head(final_norm(v))) of each row v of vectors (rows, H): the seed's logit lens
 * (no soft-capping), through the engine's own head (dk_model_unembed), the softmax in double. */
static void logit_lens_probs(const dk_model *m, const float *vectors, int64_t rows, float *probs) {
    const int64_t V = m->cfg.vocab_size;
    dk_model_unembed(m, NULL, vectors, rows, probs); /* logits, turned into probabilities in place */
    for (int64_t r = 0; r < rows; r++) {
        float *z = probs + r * V;
        float max = -INFINITY;
        for (int64_t i = 0; i < V; i++) max = fmaxf(max, z[i]);
        double sum = 0;
        for (int64_t i = 0; i < V; i++) sum += exp((double)z[i] - max);
        for (int64_t i = 0; i < V; i++) z[i] = (float)(exp((double)z[i] - max) / sum);
    }
}

typedef struct organism {
    const cJSON *ref;        /* its entry of adl.json */
    const char *name;
    bool *domain;            /* (V) */
    int32_t top[N_POS][32];  /* our top ids */
} organism;

static void check_top_ids(const organism *o, const float *probs, int64_t V, int64_t top_k) {
    const cJSON *ref_ids = cJSON_GetObjectItem(o->ref, "top_ids");
    for (int64_t p = 0; p < N_POS; p++) {
        const float *pp = probs + p * V;
        int differ = 0;
        for (int64_t r = 0; r < top_k; r++) {
            int32_t want = cJSON_GetArrayItem(cJSON_GetArrayItem(ref_ids, (int)p), (int)r)->valueint;
            int32_t got = o->top[p][r];
            if (got != want && fabsf(pp[got] - pp[want]) > TIE_BOUND * pp[want]) differ++;
        }
        EXPECT(differ == 0, "%s position %lld: %d of the top %lld ids differ from the reference's", o->name,
               (long long)p, differ, (long long)top_k);
    }
}

int main(void) {
    const char *root = getenv("DIFFKIT_SOURCE_DIR");
    if (!root) {
        fprintf(stderr, "DIFFKIT_SOURCE_DIR is not set: run this test through ctest\n");
        return 2;
    }
    char *fx_path = dk_sprintf("%s/models/demo/golden/adl.json", root), *base_dir = dk_sprintf("%s/models/demo/base", root);
    dk_err err = {0};
    size_t size;
    char *fx_text = dk_read_file(fx_path, &size, &err);
    cJSON *fx = fx_text ? cJSON_Parse(fx_text) : NULL;
    dk_model m;
    dk_tokenizer *tok = NULL;
    if (!EXPECT(fx != NULL, "%s: %s", fx_path, err.msg) ||
        !EXPECT(dk_model_open(base_dir, &m, &err) == 0, "%s: %s", base_dir, err.msg) ||
        !EXPECT((tok = dk_tokenizer_load(base_dir, &err)) != NULL, "%s: %s", base_dir, err.msg))
        return dk_test_finish("test_demo_adl");
    const int64_t H = m.cfg.hidden_size, V = m.cfg.vocab_size;
    const int64_t n = cJSON_GetObjectItem(fx, "n")->valueint, layer = cJSON_GetObjectItem(fx, "layer")->valueint;
    const int64_t max_samples = cJSON_GetObjectItem(fx, "max_samples")->valueint;
    const int64_t top_k = cJSON_GetObjectItem(fx, "top_k")->valueint;
    const cJSON *rule = cJSON_GetObjectItem(fx, "domain_rule"), *check = cJSON_GetObjectItem(fx, "check");
    const int64_t min_count = cJSON_GetObjectItem(rule, "min_count")->valueint;
    const double min_ratio = cJSON_GetObjectItem(rule, "min_ratio")->valuedouble;
    EXPECT(layer == (m.cfg.num_hidden_layers - 1) / 2, "layer %lld is not the seed's int(0.5 * (L - 1))",
           (long long)layer);
    EXPECT(top_k <= 32, "top_k %lld", (long long)top_k);

    /* samples and base sums */
    char *pre_path = dk_sprintf("%s/%s", root, cJSON_GetObjectItem(fx, "dataset")->valuestring);
    text_list pretrain = read_texts(pre_path, "text");
    int64_t n_samples;
    int64_t *ids = adl_samples(tok, &pretrain, n, max_samples, &n_samples);
    EXPECT(n_samples == cJSON_GetObjectItem(fx, "n_samples")->valueint, "%lld ADL samples, the reference has %d",
           (long long)n_samples, cJSON_GetObjectItem(fx, "n_samples")->valueint);
    double *base_sums = malloc((size_t)(N_POS * H) * sizeof *base_sums), *sums = malloc((size_t)(N_POS * H) * sizeof *sums);
    residual_sums(&m, NULL, ids, n_samples, n, layer, base_sums);
    int64_t pre_total;
    int64_t *pre_counts = token_counts(tok, &pretrain, V, &pre_total);
    dk_undertrained ut;
    EXPECT(dk_undertrained_for_model(&m, tok, &ut, &err) == 0, "undertrained: %s", err.msg);

    organism orgs[MAX_ORGS];
    int n_orgs = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItem(fx, "organisms")) {
        if (n_orgs == MAX_ORGS) break;
        organism *o = &orgs[n_orgs++];
        o->ref = entry;
        o->name = cJSON_GetObjectItem(entry, "name")->valuestring;
        /* domain tokens from the data */
        char *docs_path = dk_sprintf("%s/%s", root, cJSON_GetObjectItem(entry, "documents")->valuestring);
        text_list docs = read_texts(docs_path, "text");
        int64_t dom_total;
        int64_t *dom_counts = token_counts(tok, &docs, V, &dom_total);
        o->domain = calloc((size_t)V, sizeof *o->domain);
        int n_domain = 0;
        for (int64_t i = 0; i < V; i++) {
            double ratio = pre_counts[i] == 0 ? INFINITY
                                              : ((double)dom_counts[i] / dom_total) / ((double)pre_counts[i] / pre_total);
            o->domain[i] = dom_counts[i] >= min_count && ratio >= min_ratio;
            n_domain += o->domain[i];
        }
        const cJSON *ref_dom = cJSON_GetObjectItem(entry, "domain_tokens"), *d;
        int missing = 0;
        cJSON_ArrayForEach(d, ref_dom) missing += !o->domain[cJSON_GetArrayItem(d, 0)->valueint];
        EXPECT(missing == 0 && n_domain == cJSON_GetArraySize(ref_dom), "%s: %d domain tokens, the reference has %d "
               "(%d of them not found)", o->name, n_domain, cJSON_GetArraySize(ref_dom), missing);
        free(dom_counts);
        free_texts(&docs);
        free(docs_path);
        /* mean difference and logit lens */
        char *adapter_dir = dk_sprintf("%s/%s", root, cJSON_GetObjectItem(entry, "adapter")->valuestring);
        dk_lora_adapter adapter;
        if (EXPECT(dk_lora_load(adapter_dir, &m.cfg, &m.w, &adapter, &err) == 0, "%s: %s", adapter_dir, err.msg)) {
            residual_sums(&m, &adapter, ids, n_samples, n, layer, sums);
            float *mean_diff = malloc((size_t)(N_POS * H) * sizeof *mean_diff);
            for (int64_t k = 0; k < N_POS * H; k++) mean_diff[k] = (float)((sums[k] - base_sums[k]) / n_samples);
            char *md_path = dk_sprintf("%s/models/demo/golden/%s", root, cJSON_GetObjectItem(entry, "mean_diff")->valuestring);
            char *ref_bytes = dk_read_file(md_path, &size, &err);
            if (EXPECT(ref_bytes && size == (size_t)(N_POS * H) * sizeof(float), "%s: %s", md_path, err.msg)) {
                const float *ref_md = (const float *)ref_bytes;
                double max_ref = 0, max_diff = 0;
                for (int64_t k = 0; k < N_POS * H; k++) {
                    max_ref = fmax(max_ref, fabs(ref_md[k]));
                    max_diff = fmax(max_diff, fabs((double)mean_diff[k] - ref_md[k]));
                }
                EXPECT(max_diff <= MEAN_DIFF_BOUND * max_ref, "%s mean difference: max |ours - ref| %.3g > %.0e * %.3g",
                       o->name, max_diff, MEAN_DIFF_BOUND, max_ref);
                printf("%s: mean difference max |ours - ref| / max |ref| = %.2e\n", o->name, max_diff / max_ref);
            }
            free(ref_bytes);
            free(md_path);
            float *probs = malloc((size_t)(N_POS * V) * sizeof *probs);
            logit_lens_probs(&m, mean_diff, N_POS, probs);
            float top_values[32];
            for (int64_t p = 0; p < N_POS; p++) dk_cpu_topk(probs + p * V, 1, V, top_k, true, top_values, o->top[p]);
            check_top_ids(o, probs, V, top_k);
            free(probs);
            free(mean_diff);
            dk_lora_free(&adapter);
        }
        free(adapter_dir);
    }

    /* the discrimination check on our numbers */
    const int64_t min_own = cJSON_GetObjectItem(check, "min_own_per_position")->valueint;
    const int64_t min_positions = cJSON_GetObjectItem(check, "min_positions")->valueint;
    for (int a = 0; a < n_orgs; a++) {
        int positions_ok = 0, other_total = 0;
        printf("\n%s: top %lld of the logit lens of the mean difference (layer %lld, %lld samples; * own domain "
               "token, ! another organism's, ~ never trained)\n", orgs[a].name, (long long)top_k, (long long)layer,
               (long long)n_samples);
        for (int64_t p = 0; p < N_POS; p++) {
            int own = 0, other = 0;
            printf("  pos %lld:", (long long)p);
            for (int64_t r = 0; r < top_k; r++) {
                int32_t id = orgs[a].top[p][r];
                bool is_other = false;
                for (int b = 0; b < n_orgs; b++) is_other = is_other || (b != a && orgs[b].domain[id]);
                own += orgs[a].domain[id];
                other += is_other;
                const char *t = dk_tokenizer_id_to_token(tok, id);
                printf(" %s%s%s%s", orgs[a].domain[id] ? "*" : "", is_other ? "!" : "",
                       ut.flagged && ut.flagged[id] ? "~" : "", t ? t : "?");
            }
            printf("   [%d own, %d other]\n", own, other);
            positions_ok += own >= min_own;
            other_total += other;
        }
        const bool passed = positions_ok >= min_positions && other_total == 0;
        printf("  discrimination check: %s (%d of positions 0-4 hold >= %lld own domain tokens, need %lld; %d of the "
               "other organism's)\n", passed ? "passed" : "FAILED", positions_ok, (long long)min_own,
               (long long)min_positions, other_total);
        EXPECT(passed == cJSON_IsTrue(cJSON_GetObjectItem(orgs[a].ref, "passed")),
               "%s: the check %s here but %s in the reference (adl.json)", orgs[a].name, passed ? "passes" : "fails",
               passed ? "fails" : "passes");
        EXPECT(positions_ok >= min_positions, "%s: only %d of positions 0-4 hold >= %lld of its domain tokens in the "
               "top %lld (need %lld)", orgs[a].name, positions_ok, (long long)min_own, (long long)top_k,
               (long long)min_positions);
        EXPECT(other_total == 0, "%s: %d domain tokens of another organism in its top %lld at positions 0-4",
               orgs[a].name, other_total, (long long)top_k);
    }
    EXPECT(n_orgs == 2, "adl.json lists %d organisms, want 2", n_orgs);
    for (int a = 0; a < n_orgs; a++) free(orgs[a].domain);
    dk_undertrained_free(&ut);
    free(pre_counts);
    free(base_sums);
    free(sums);
    free(ids);
    free_texts(&pretrain);
    free(pre_path);
    dk_tokenizer_free(tok);
    dk_model_close(&m);
    cJSON_Delete(fx);
    free(fx_text);
    free(fx_path);
    free(base_dir);
    return dk_test_finish("test_demo_adl");
}
