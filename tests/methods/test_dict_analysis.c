/* test_dict_analysis.c — the dictionary analysis's pieces (host/methods/dict_latents.c, dict_export.c) against the
 * seed:
 *   - latent-scaling betas against the seed's closed_form_scalars with its own target functions
 *     (tools/make_dict_goldens.py betas: the reference package's BatchTopKSAE / BatchTopKCrossCoder with random
 *     weights, a normaliser and a threshold, 300 paired rows in batches of 64): the Diff-SAE in both difference
 *     directions (base/ft_activation) and the crosscoder's six targets, fed here in chunks of 37 rows; latents that
 *     never fire give NaN in both; the active counts match exactly;
 *   - the latent_df columns (norms, dec_norm_diff, cosines, tags) against build_push_*_latent_df's torch lines, and
 *     the tags and the steering selection on a hand-made crosscoder whose decoder norms put each latent in a known
 *     class;
 *   - latent activations (dk_dict_acts_sequence) against the seed's get_positive_activations on the same models over
 *     the rows cut into 7 sequences: maxima, active counts, and the max-activating tables' sequences, scores and
 *     sparse values;
 *   - the SAELens export: written, read back with io/safetensors.h, shapes as SAELens expects, cfg.json's fields,
 *     and SAELens's JumpReLU encode/decode on raw rows (pre = (x − b_dec·apply)·W_enc + b_enc, f = relu(pre)·[pre >
 *     threshold], x̂ = f·W_dec + b_dec) equal to ours (normalise, threshold-encode, decode, denormalise).
 * Tolerances: betas within 5e-5 relative + 5e-6 absolute (the seed sums in fp32 over batches, we in fp64; the
 * worst seen is printed); export within 1e-4 relative of each row's norm. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dict_fixture.h"
#include "methods/dict_analysis.h"

static dk_st_checkpoint *CK;

static float *get(const char *prefix, const char *name, int64_t *n) {
    char key[128];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return fx_f32(CK, key, n);
}

/* The fixture's model p ("sae_ftb.", "cc.") with its normaliser. */
static void load_model(const char *p, dk_dict_kind kind, dk_dict_model *m, dk_dict_norm *nrm) {
    float *config = fx_f32(CK, "config", NULL);
    const int64_t d = (int64_t)config[0], F = (int64_t)config[1];
    const double target_rms = config[3];
    free(config);
    dk_dict_model_init(m, kind, d, F);
    float *ew = get(p, "encoder.weight", NULL), *eb = get(p, "encoder.bias", NULL), *dw = get(p, "decoder.weight", NULL);
    float *db = get(p, kind == DK_DICT_SAE ? "b_dec" : "decoder.bias", NULL);
    dk_dict_from_reference(m, ew, eb, dw, db);
    float *thr = get(p, "threshold", NULL);
    m->threshold = thr[0];
    const int L = kind == DK_DICT_SAE ? 1 : 2;
    int64_t n;
    float *mu = get(p, "mean", &n), *sd = get(p, "std", NULL);
    double *mu64 = malloc((size_t)n * sizeof(double)), *sd64 = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) mu64[i] = mu[i], sd64[i] = sd[i];
    memset(nrm, 0, sizeof *nrm);
    dk_dict_norm_set(nrm, L, d, mu64, sd64, target_rms);
    free(ew), free(eb), free(dw), free(db), free(thr), free(mu), free(sd), free(mu64), free(sd64);
}

/* Largest |a − b| / (atol + rtol·|b|) with NaN required at the same places. */
static double compare_nan(const char *what, const double *a, const float *b, int64_t n, double atol, double rtol) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) {
            EXPECT(isnan(a[i]) && isnan(b[i]), "%s[%lld]: %g vs the seed's %g (NaN in one only)", what, (long long)i,
                   a[i], (double)b[i]);
            continue;
        }
        const double r = fabs(a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (r > worst) worst = r;
        EXPECT(r <= 1.0, "%s[%lld]: %.9g vs the seed's %.9g", what, (long long)i, a[i], (double)b[i]);
    }
    return worst;
}

static void check_betas(const char *p, dk_dict_kind kind, dk_dict_target input) {
    dk_dict_model m;
    dk_dict_norm nrm;
    load_model(p, kind, &m, &nrm);
    int64_t n_pairs;
    float *pairs = fx_f32(CK, "pairs", &n_pairs);
    const int64_t d = m.s.d, F = m.s.F, N = n_pairs / (2 * d), chunk = 37;
    dk_dict_scaling s;
    dk_dict_scaling_init(&s, &m, &nrm, input, chunk);
    for (int64_t r = 0; r < N; r += chunk) dk_dict_scaling_add(&s, pairs + r * 2 * d, N - r < chunk ? N - r : chunk);
    EXPECT(s.n_targets == (kind == DK_DICT_SAE ? 2 : 6), "%s: %d targets", p, s.n_targets);
    double *beta = malloc((size_t)F * sizeof(double));
    for (int t = 0; t < s.n_targets; t++) {
        char key[64], what[96];
        snprintf(key, sizeof key, "beta.%s", s.target[t]);
        snprintf(what, sizeof what, "%s%s", p, key);
        float *want = get(p, key, NULL);
        dk_dict_scaling_betas(&s, t, beta);
        const double worst = compare_nan(what, beta, want, F, 5e-6, 5e-5);
        printf("  %-40s worst %.3g of the tolerance\n", what, worst);
        free(want);
    }
    float *count = get(p, "count_active", NULL);
    const double *ours = s.sums + (s.n_targets + 1) * F;
    int64_t nan_latents = 0;
    for (int64_t j = 0; j < F; j++) {
        EXPECT(ours[j] == count[j], "%s latent %lld: active %g times, the seed %g", p, (long long)j, ours[j],
               (double)count[j]);
        nan_latents += count[j] == 0;
    }
    EXPECT(nan_latents > 0 && nan_latents < F, "%s: %lld latents never fire (the case needs some)", p,
           (long long)nan_latents);
    free(beta), free(count), free(pairs);
    dk_dict_scaling_free(&s);
    dk_dict_model_free(&m);
    dk_dict_norm_free(&nrm);
}

static void check_df(const char *p, dk_dict_kind kind) {
    dk_dict_model m;
    dk_dict_norm nrm;
    load_model(p, kind, &m, &nrm);
    dk_dict_latent_df df;
    dk_dict_df_init(&df, m.s.F);
    dk_dict_latent_norms(&m, &df);
    static const char *const sae_cols[] = {"dec_norm", "enc_norm", NULL};
    static const char *const cc_cols[] = {"dec_base_norm", "dec_ft_norm", "dec_norm_diff", "enc_base_norm", "enc_ft_norm",
                                          "enc_norm_diff", "dec_cos_sim", "enc_cos_sim", NULL};
    const char *const *cols = kind == DK_DICT_SAE ? sae_cols : cc_cols;
    for (int c = 0; cols[c]; c++) {
        char key[64], what[96];
        snprintf(key, sizeof key, "df.%s", cols[c]);
        snprintf(what, sizeof what, "%s%s", p, key);
        const double *ours = dk_dict_df_col(&df, cols[c]);
        EXPECT(ours != NULL, "%s: no column", what);
        if (!ours) continue;
        float *want = get(p, key, NULL);
        compare_nan(what, ours, want, m.s.F, 1e-6, 1e-5);
        free(want);
    }
    if (kind == DK_DICT_CROSSCODER) {
        static const char *const names[] = {"ft_only", "base_only", "shared", "other"};
        float *tag = get(p, "df.tag", NULL);
        for (int64_t j = 0; j < m.s.F; j++)
            EXPECT(strcmp(df.tag[j], names[(int)tag[j]]) == 0, "%s latent %lld: tag %s, the seed's %s", p, (long long)j,
                   df.tag[j], names[(int)tag[j]]);
        free(tag);
    }
    dk_dict_df_free(&df);
    dk_dict_model_free(&m);
    dk_dict_norm_free(&nrm);
}

/* A crosscoder of d = 2 whose decoder rows put each latent in a known class, some near the class boundaries. */
static void check_tags_by_hand(void) {
    enum { N = 10 };
    dk_dict_model m;
    dk_dict_model_init(&m, DK_DICT_CROSSCODER, 2, N);
    memset(m.p, 0, (size_t)m.P * sizeof(float));
    /* rows [base (2), ft (2)]; dec_norm_diff = ((n_b - n_f)/max + 1)/2 */
    static const float dec[N][4] = {
        {1, 0, 0, 0},       /* 1: base_only */
        {0, 0, 0, 2},       /* 0: ft_only */
        {1, 0, 1, 0},       /* 0.5: shared, cosine 1 */
        {1, 0, 0, 0.5f},    /* 0.75: other, cosine 0 */
        {0, 0, 0, 0},       /* NaN (dead): other */
        {0.05f, 0, 0, 1},   /* 0.025: ft_only */
        {0.3f, 0, 0, 1},    /* 0.15: other */
        {1, 0, 0, 0.3f},    /* 0.85: other */
        {0.9f, 0, 0, 1},    /* 0.45: shared */
        {0.6f, 0, 0, 1},    /* 0.3: other */
    };
    float *Wd = dk_dict_W_dec(&m);
    for (int j = 0; j < N; j++) memcpy(Wd + j * 4, dec[j], sizeof dec[j]);
    dk_dict_latent_df df;
    dk_dict_df_init(&df, N);
    dk_dict_latent_norms(&m, &df);
    static const char *const want_tag[N] = {"base_only", "ft_only", "shared", "other", "other",
                                            "ft_only",   "other",   "other",  "shared", "other"};
    static const double want_diff[N] = {1, 0, 0.5, 0.75, NAN, 0.025, 0.15, 0.85, 0.45, 0.3};
    const double *diff = dk_dict_df_col(&df, "dec_norm_diff"), *cosv = dk_dict_df_col(&df, "dec_cos_sim");
    for (int j = 0; j < N; j++) {
        EXPECT(strcmp(df.tag[j], want_tag[j]) == 0, "hand-made latent %d: tag %s, expected %s", j, df.tag[j], want_tag[j]);
        EXPECT(isnan(want_diff[j]) ? isnan(diff[j]) : fabs(diff[j] - want_diff[j]) < 1e-7,
               "hand-made latent %d: dec_norm_diff %g, expected %g", j, diff[j], want_diff[j]);
    }
    EXPECT(fabs(cosv[2] - 1) < 1e-7 && fabs(cosv[3]) < 1e-7, "cosines %g %g, expected 1 and 0", cosv[2], cosv[3]);
    /* the steering selection: smallest |dec_norm_diff|, NaN dropped, ties by index */
    int64_t top[N];
    const int64_t n = dk_dict_smallest(&df, "dec_norm_diff", N, top);
    static const int64_t want_top[] = {1, 5, 6, 9, 8, 2, 3, 7, 0};
    EXPECT(n == 9, "selection of %lld latents, expected 9 (the NaN one dropped)", (long long)n);
    for (int64_t i = 0; i < n && i < 9; i++)
        EXPECT(top[i] == want_top[i], "selection %lld: latent %lld, expected %lld", (long long)i, (long long)top[i],
               (long long)want_top[i]);
    dk_dict_df_free(&df);
    dk_dict_model_free(&m);
}

/* ---- latent activations -------------------------------------------------------------------------------------- */

/* The fixture's 300 rows cut into sequences, through dk_dict_acts_sequence, against the seed's
 * get_positive_activations: per-latent maxima and active counts, and tables of the 2 best sequences per latent whose
 * scores, positions and values are the seed's activations of that sequence and latent. */
static void check_activations(const char *p, dk_dict_kind kind) {
    dk_dict_model m;
    dk_dict_norm nrm;
    load_model(p, kind, &m, &nrm);
    const bool sae = kind == DK_DICT_SAE;
    const int64_t d = m.s.d, D = m.s.D, F = m.s.F;
    int64_t n_pairs, n_seqs, n_ent;
    float *pairs = fx_f32(CK, "pairs", &n_pairs), *len = fx_f32(CK, "acts.lengths", &n_seqs);
    float *ids = get(p, "acts.ids", &n_ent), *vals = get(p, "acts.values", NULL), *want_max = get(p, "acts.max", NULL);
    float *want_count = get(p, "acts.count", NULL);
    n_ent /= 3;
    enum { K = 2 };
    dk_dict_acts a;
    dk_dict_acts_init(&a, &m, &nrm, 0.0, 64);
    dk_maxact *tables = malloc((size_t)F * sizeof *tables);
    for (int64_t j = 0; j < F; j++) dk_maxact_init(&tables[j], K, true);
    float *x = malloc((size_t)(64 * D) * sizeof(float));
    int32_t tokens[64];
    int64_t row0 = 0;
    for (int64_t q = 0; q < n_seqs; q++) {
        const int64_t T = (int64_t)len[q];
        for (int64_t t = 0; t < T; t++) {
            const float *b = pairs + (row0 + t) * 2 * d, *f = b + d;
            for (int64_t i = 0; i < D; i++)
                x[t * D + i] = !sae ? b[i] : strstr(p, "bft") ? b[i] - f[i] : f[i] - b[i];
            tokens[t] = (int32_t)(1000 + row0 + t);
        }
        dk_dict_acts_sequence(&a, x, T, tokens, q, tables);
        row0 += T;
    }
    char what[96];
    snprintf(what, sizeof what, "%sacts.max", p);
    compare_nan(what, a.max_act, want_max, F, 1e-6, 1e-5);
    for (int64_t j = 0; j < F; j++)
        EXPECT(a.stats[j] == want_count[j], "%s latent %lld: active on %g tokens, the seed %g", p, (long long)j,
               a.stats[j], (double)want_count[j]);
    EXPECT(a.stats[F] == (double)row0 && a.stats[F + 2] == (double)n_seqs && a.stats[F + 1] == (double)n_ent,
           "%s: %g tokens, %g sequences, %g activations; expected %lld, %lld, %lld", p, a.stats[F], a.stats[F + 2],
           a.stats[F + 1], (long long)row0, (long long)n_seqs, (long long)n_ent);
    /* the expected tables from the seed's entries: per (sequence, latent) the maximum, then the K best sequences */
    double *seq_max = calloc((size_t)(n_seqs * F), sizeof(double));
    for (int64_t e = 0; e < n_ent; e++) {
        const int64_t q = (int64_t)ids[3 * e], j = (int64_t)ids[3 * e + 2];
        if (vals[e] > seq_max[q * F + j]) seq_max[q * F + j] = vals[e];
    }
    int64_t checked = 0;
    for (int64_t j = 0; j < F; j++) {
        dk_maxact_entry *got = dk_maxact_sorted(&tables[j]);
        int64_t want_seq[K], n_want = 0;
        for (int64_t r = 0; r < K; r++) { /* the r-th best: largest maximum, then lower sequence */
            int64_t best = -1;
            for (int64_t q = 0; q < n_seqs; q++) {
                bool taken = false;
                for (int64_t i = 0; i < n_want; i++) taken |= want_seq[i] == q;
                if (taken || seq_max[q * F + j] <= 0) continue;
                if (best < 0 || seq_max[q * F + j] > seq_max[best * F + j]) best = q;
            }
            if (best >= 0) want_seq[n_want++] = best;
        }
        EXPECT(tables[j].n == n_want, "%s latent %lld: %lld examples, expected %lld", p, (long long)j,
               (long long)tables[j].n, (long long)n_want);
        for (int64_t i = 0; i < n_want && i < tables[j].n; i++) {
            const int64_t q = want_seq[i];
            EXPECT(got[i].seq == q && fabs(got[i].score - seq_max[q * F + j]) <= 1e-5 * seq_max[q * F + j],
                   "%s latent %lld example %lld: sequence %lld score %g, expected %lld %g", p, (long long)j,
                   (long long)i, (long long)got[i].seq, got[i].score, (long long)q, seq_max[q * F + j]);
            int64_t nz = 0;
            for (int64_t e = 0; e < n_ent; e++) {
                if ((int64_t)ids[3 * e] != q || (int64_t)ids[3 * e + 2] != j) continue;
                const int32_t pos = (int32_t)ids[3 * e + 1];
                bool found = false;
                for (int64_t v = 0; v < got[i].n_values; v++)
                    found |= got[i].positions[v] == pos && fabs(got[i].values[v] - vals[e]) <= 1e-5 * fabs(vals[e]);
                EXPECT(found, "%s latent %lld sequence %lld: the seed's activation %g at %d is not in the table", p,
                       (long long)j, (long long)q, (double)vals[e], pos);
                nz++;
            }
            EXPECT(got[i].n_values == nz, "%s latent %lld sequence %lld: %lld values, the seed %lld", p, (long long)j,
                   (long long)q, (long long)got[i].n_values, (long long)nz);
            checked++;
        }
        free(got);
        dk_maxact_free(&tables[j]);
    }
    printf("  activations %-8s %lld activations, %lld table examples checked\n", p, (long long)n_ent, (long long)checked);
    free(tables), free(x), free(seq_max), free(pairs), free(len), free(ids), free(vals), free(want_max), free(want_count);
    dk_dict_acts_free(&a);
    dk_dict_model_free(&m);
    dk_dict_norm_free(&nrm);
}

/* ---- SAELens export ----------------------------------------------------------------------------------------- */

static float *tensor(const dk_st_checkpoint *ck, const char *name, int ndim, int64_t a, int64_t b) {
    dk_err err = {0};
    const int64_t shape[2] = {a, b};
    const dk_st_tensor *t = dk_st_require(ck, name, ndim, shape, &err);
    EXPECT(t != NULL, "export: %s", err.msg);
    if (!t) return calloc((size_t)(a * (ndim == 2 ? b : 1)), sizeof(float));
    return dk_st_load_f32(t, &err);
}

static void check_export(const char *p, dk_dict_kind kind) {
    dk_dict_model m;
    dk_dict_norm nrm;
    load_model(p, kind, &m, &nrm);
    const bool sae = kind == DK_DICT_SAE;
    const int64_t d = m.s.d, D = m.s.D, F = m.s.F, rows = 60;
    char dir[] = "/tmp/dk_dict_export_XXXXXX";
    EXPECT(mkdtemp(dir) != NULL, "mkdtemp");
    char sub[sizeof dir + 16];
    snprintf(sub, sizeof sub, "%s/sae", dir);
    dk_err err = {0};
    EXPECT(dk_dict_export_saelens(&m, &nrm, sub, "org/model", 7, "blocks.7.hook_resid_post", &err) == 0, "export: %s",
           err.msg);
    char path[sizeof sub + 32];
    snprintf(path, sizeof path, "%s/sae_weights.safetensors", sub);
    dk_st_checkpoint *ck = dk_st_open(path, &err);
    EXPECT(ck != NULL, "export: %s", err.msg);
    if (!ck) return;
    float *W_enc = tensor(ck, "W_enc", 2, D, F), *b_enc = tensor(ck, "b_enc", 1, F, 0);
    float *W_dec = tensor(ck, "W_dec", 2, F, D), *b_dec = tensor(ck, "b_dec", 1, D, 0);
    float *thr = tensor(ck, "threshold", 1, F, 0);

    snprintf(path, sizeof path, "%s/cfg.json", sub);
    FILE *f = fopen(path, "rb");
    char text[16384] = {0};
    EXPECT(f && fread(text, 1, sizeof text - 1, f) > 0, "cannot read %s", path);
    if (f) fclose(f);
    cJSON *cfg = cJSON_Parse(text);
    EXPECT(cfg != NULL, "cfg.json is not JSON");
    if (cfg) {
        EXPECT(cJSON_GetObjectItem(cfg, "d_in") && cJSON_GetObjectItem(cfg, "d_in")->valuedouble == (double)D, "d_in");
        EXPECT(cJSON_GetObjectItem(cfg, "d_sae") && cJSON_GetObjectItem(cfg, "d_sae")->valuedouble == (double)F, "d_sae");
        const cJSON *arch = cJSON_GetObjectItem(cfg, "architecture"), *hook = cJSON_GetObjectItem(cfg, "hook_name");
        EXPECT(cJSON_IsString(arch) && strcmp(arch->valuestring, "jumprelu") == 0, "architecture");
        EXPECT(cJSON_IsString(hook) && strcmp(hook->valuestring, "blocks.7.hook_resid_post") == 0, "hook_name");
        EXPECT(cJSON_GetObjectItem(cfg, "hook_layer") && cJSON_GetObjectItem(cfg, "hook_layer")->valuedouble == 7, "hook_layer");
        EXPECT(cJSON_IsBool(cJSON_GetObjectItem(cfg, "apply_b_dec_to_input")) &&
                   cJSON_IsTrue(cJSON_GetObjectItem(cfg, "apply_b_dec_to_input")) == sae,
               "apply_b_dec_to_input must be %s", sae ? "true" : "false");
        const cJSON *na = cJSON_GetObjectItem(cfg, "normalize_activations");
        EXPECT(cJSON_IsString(na) && strcmp(na->valuestring, "none") == 0, "normalize_activations");
        cJSON_Delete(cfg);
    }

    /* raw input rows: the difference (SAE) or the stacked pair (crosscoder) */
    int64_t n_pairs;
    float *pairs = fx_f32(CK, "pairs", &n_pairs);
    float *x = malloc((size_t)(rows * D) * sizeof(float)); /* (rows, D) raw */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < D; i++)
            x[r * D + i] = sae ? (strstr(p, "bft") ? pairs[r * 2 * d + i] - pairs[r * 2 * d + d + i]
                                                   : pairs[r * 2 * d + d + i] - pairs[r * 2 * d + i])
                               : pairs[r * 2 * d + i];
    /* ours */
    float *xn = malloc((size_t)(rows * D) * sizeof(float)), *u = malloc((size_t)(rows * D) * sizeof(float));
    float *pre = malloc((size_t)(rows * F) * sizeof(float)), *val = malloc((size_t)(rows * F) * sizeof(float));
    int32_t *idx = malloc((size_t)(rows * F) * sizeof(int32_t));
    int64_t *row_ptr = malloc((size_t)(rows + 1) * sizeof(int64_t));
    float *w = sae ? NULL : malloc((size_t)F * sizeof(float));
    if (w) dk_cpu_dict_code_weights(&m.s, dk_dict_W_dec(&m), w);
    memcpy(xn, x, (size_t)(rows * D) * sizeof(float));
    dk_dict_norm_apply(&nrm, xn, rows);
    dk_dict_encode_threshold(&m, xn, rows, u, pre, w, row_ptr, idx, val);
    float *xhat = malloc((size_t)(rows * D) * sizeof(float));
    dk_cpu_dict_decode(&m.s, rows, row_ptr, idx, val, dk_dict_W_dec(&m), dk_dict_b_dec(&m), xhat);
    dk_dict_norm_undo(&nrm, xhat, rows);
    /* SAELens's JumpReLU on the exported weights */
    int64_t active = 0, near = 0;
    double worst_f = 0, worst_x = 0;
    for (int64_t r = 0; r < rows; r++) {
        double *f_sl = calloc((size_t)F, sizeof(double)), *f_ours = calloc((size_t)F, sizeof(double));
        for (int64_t e = row_ptr[r]; e < row_ptr[r + 1]; e++) f_ours[idx[e]] = val[e];
        double fnorm = 0;
        for (int64_t j = 0; j < F; j++) {
            double h = b_enc[j];
            for (int64_t i = 0; i < D; i++) h += (double)(x[r * D + i] - (sae ? b_dec[i] : 0.0f)) * W_enc[i * F + j];
            f_sl[j] = h > thr[j] ? (h > 0 ? h : 0) : 0;
            if (fabs(h - thr[j]) < 1e-4 * (1 + fabs(h))) near++, f_sl[j] = f_ours[j]; /* at the threshold: rounding decides */
            fnorm += f_ours[j] * f_ours[j];
            active += f_ours[j] > 0;
        }
        fnorm = sqrt(fnorm) + 1e-6;
        double xnorm = 0;
        for (int64_t i = 0; i < D; i++) xnorm += (double)xhat[r * D + i] * xhat[r * D + i];
        xnorm = sqrt(xnorm) + 1e-6;
        for (int64_t j = 0; j < F; j++) worst_f = fmax(worst_f, fabs(f_sl[j] - f_ours[j]) / fnorm);
        for (int64_t i = 0; i < D; i++) {
            double y = b_dec[i];
            for (int64_t j = 0; j < F; j++) y += f_sl[j] * W_dec[j * D + i];
            worst_x = fmax(worst_x, fabs(y - xhat[r * D + i]) / xnorm);
        }
        free(f_sl), free(f_ours);
    }
    printf("  export %-10s %lld active codes, %lld at the threshold, worst relative difference: code %.2g, "
           "reconstruction %.2g\n", p, (long long)active, (long long)near, worst_f, worst_x);
    EXPECT(active > rows, "%s: only %lld active codes (the check needs some)", p, (long long)active);
    EXPECT(worst_f < 1e-4, "%s: SAELens's code differs from ours by %.3g of its norm", p, worst_f);
    EXPECT(worst_x < 1e-4, "%s: SAELens's reconstruction differs from ours by %.3g of its norm", p, worst_x);
    free(W_enc), free(b_enc), free(W_dec), free(b_dec), free(thr), free(pairs), free(x), free(xn), free(u), free(pre);
    free(val), free(idx), free(row_ptr), free(w), free(xhat);
    dk_st_close(ck);
    snprintf(path, sizeof path, "%s/sae_weights.safetensors", sub), unlink(path);
    snprintf(path, sizeof path, "%s/cfg.json", sub), unlink(path);
    rmdir(sub), rmdir(dir);
    dk_dict_model_free(&m);
    dk_dict_norm_free(&nrm);
}

int main(void) {
    char *path = dk_fixture_path("methods/dict/betas_golden.safetensors");
    dk_err err = {0};
    CK = dk_st_open(path, &err);
    free(path);
    if (!CK) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    check_betas("sae_ftb.", DK_DICT_SAE, DK_DICT_DIFF_FTB);
    check_betas("sae_bft.", DK_DICT_SAE, DK_DICT_DIFF_BFT);
    check_betas("cc.", DK_DICT_CROSSCODER, DK_DICT_STACKED);
    check_df("sae_ftb.", DK_DICT_SAE);
    check_df("cc.", DK_DICT_CROSSCODER);
    check_tags_by_hand();
    check_activations("sae_ftb.", DK_DICT_SAE);
    check_activations("sae_bft.", DK_DICT_SAE);
    check_activations("cc.", DK_DICT_CROSSCODER);
    check_export("sae_ftb.", DK_DICT_SAE);
    check_export("sae_bft.", DK_DICT_SAE);
    check_export("cc.", DK_DICT_CROSSCODER);
    dk_st_close(CK);
    return dk_test_finish("test_dict_analysis");
}
