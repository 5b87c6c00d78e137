/* dict_meaning_check.c — what do a dictionary's latents fire on? (tests/methods/dict_meaning.sh, tools/demo.sh)
 *
 *     dict_meaning_check RESULTS.h5 sae|crosscoder TOKENIZER ORGANISM.jsonl.gz PRETRAIN.jsonl.gz [N]
 *
 * For a latent, its strongest example is the first entry of the max-activating table (max_act/<dataset>/latent_<j>)
 * with the highest score over the run's datasets, and its peak token the token of that example where the latent's
 * value is largest. The latent is a domain latent when its peak token is a domain token of the organism's documents
 * (domain_tokens.h: counted from the data with the model's tokenizer).
 *   sae         prints "domain_rate R": the share of the latents that fired that are domain latents.
 *   crosscoder  prints "domain_rate_low R" for the N latents of lowest relative decoder norm (dec_norm_diff: the
 *               seed's "effective finetuned-only" latents; default 20) and "domain_rate_shared R" for the latents
 *               tagged shared (|dec_norm_diff − 0.5| < 0.1).
 * Also prints the first domain latents with their peak token and example text. Exit 0 when the file could be read;
 * the calling script compares the rates (between organisms, and low against shared), which is where the finding
 * has to discriminate. */
#include <hdf5.h>
#include <math.h>

#include "domain_tokens.h"

enum { MAX_DS = 8 };

typedef struct run {
    hid_t group;                   /* layer_<L>/<run_name> */
    int n_ds;
    char ds[MAX_DS][64];
    int64_t F;
} run;

static herr_t add_name(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g, (void)info;
    run *r = data;
    if (r->n_ds < MAX_DS) snprintf(r->ds[r->n_ds++], sizeof r->ds[0], "%s", name);
    return 0;
}

/* the first member named layer_<L> (data: char[256]; with data[0] == '*', the first member of any name) */
static herr_t first_name(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g, (void)info;
    char *out = data;
    if (out[0] != '*' && strncmp(name, "layer_", 6) != 0) return 0;
    snprintf(out, 256, "%s", name);
    return 1;
}

/* A whole 1-D dataset (type mt, element size sz) of group g at path, or NULL when absent; *n its length. */
static void *read_all(hid_t g, const char *path, hid_t mt, size_t sz, hsize_t *n) {
    htri_t ok;
    H5E_BEGIN_TRY { ok = H5Lexists(g, path, H5P_DEFAULT) > 0 ? H5Oexists_by_name(g, path, H5P_DEFAULT) : 0; } H5E_END_TRY;
    if (ok <= 0) return NULL;
    hid_t d = H5Dopen2(g, path, H5P_DEFAULT), sp = H5Dget_space(d);
    H5Sget_simple_extent_dims(sp, n, NULL);
    void *v = malloc((*n ? *n : 1) * sz);
    H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Sclose(sp), H5Dclose(d);
    return v;
}

/* Latent j's peak token (-1: it has no example) and its strongest example's dataset and score. */
static int32_t peak_token(const run *r, int64_t j, int *best_ds, double *best_score) {
    *best_ds = -1;
    for (int k = 0; k < r->n_ds; k++) {
        char path[256];
        snprintf(path, sizeof path, "max_act/%s/latent_%lld/score", r->ds[k], (long long)j);
        hsize_t n = 0;
        double *sc = read_all(r->group, path, H5T_NATIVE_DOUBLE, sizeof(double), &n);
        if (sc && n > 0 && (*best_ds < 0 || sc[0] > *best_score)) *best_ds = k, *best_score = sc[0];
        free(sc);
    }
    if (*best_ds < 0) return -1;
    char base[200], path[256];
    snprintf(base, sizeof base, "max_act/%s/latent_%lld", r->ds[*best_ds], (long long)j);
    hsize_t n_tok, n_to, n_vo, n_pos, n_val;
#define READ(var, name, mt, T) snprintf(path, sizeof path, "%s/%s", base, name); T *var = read_all(r->group, path, mt, sizeof(T), &n_##var)
    READ(tok, "tokens", H5T_NATIVE_INT32, int32_t);
    READ(to, "token_offsets", H5T_NATIVE_INT64, int64_t);
    READ(vo, "value_offsets", H5T_NATIVE_INT64, int64_t);
    READ(pos, "positions", H5T_NATIVE_INT32, int32_t);
    READ(val, "values", H5T_NATIVE_FLOAT, float);
#undef READ
    int32_t peak = -1;
    if (tok && to && vo && pos && val && n_vo > 1 && vo[1] > vo[0]) {
        int64_t at = vo[0];
        for (int64_t e = vo[0]; e < vo[1]; e++)
            if (val[e] > val[at]) at = e;
        peak = tok[to[0] + pos[at]];
    }
    free(tok), free(to), free(vo), free(pos), free(val);
    return peak;
}

int main(int argc, char **argv) {
    if (argc < 6 || argc > 7 || (strcmp(argv[2], "sae") != 0 && strcmp(argv[2], "crosscoder") != 0)) {
        fprintf(stderr, "usage: dict_meaning_check RESULTS.h5 sae|crosscoder TOKENIZER ORGANISM.jsonl.gz "
                        "PRETRAIN.jsonl.gz [N]\n");
        return 2;
    }
    const bool cc = strcmp(argv[2], "crosscoder") == 0;
    const int64_t N = argc > 6 ? atoll(argv[6]) : 20;
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(argv[3], &err);
    if (!tok) return fprintf(stderr, "%s\n", err.msg), 2;
    domain_tokens dt;
    domain_tokens_load(&dt, tok, argv[4], argv[5]);

    run r = {0};
    hid_t file = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return fprintf(stderr, "cannot open %s\n", argv[1]), 2;
    char layer[256] = "", name[256] = "*", path[600];
    H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, NULL, first_name, layer);
    if (strncmp(layer, "layer_", 6) != 0) return fprintf(stderr, "%s: no layer group\n", argv[1]), 2;
    hid_t lg = H5Gopen2(file, layer, H5P_DEFAULT);
    H5Literate(lg, H5_INDEX_NAME, H5_ITER_INC, NULL, first_name, name);
    snprintf(path, sizeof path, "%s/%s", layer, name);
    r.group = H5Gopen2(file, path, H5P_DEFAULT);
    hid_t ma = H5Gopen2(r.group, "max_act", H5P_DEFAULT);
    if (ma < 0) return fprintf(stderr, "%s: %s has no max_act tables\n", argv[1], path), 2;
    H5Literate(ma, H5_INDEX_NAME, H5_ITER_INC, NULL, add_name, &r);
    hsize_t F = 0;
    double *max_act = read_all(r.group, "latent_stats/max_act_train", H5T_NATIVE_DOUBLE, sizeof(double), &F);
    double *dnd = cc ? read_all(r.group, "latent_stats/dec_norm_diff", H5T_NATIVE_DOUBLE, sizeof(double), &F) : NULL;
    if (!max_act || (cc && !dnd)) return fprintf(stderr, "%s: latent_stats missing\n", argv[1]), 2;
    r.F = (int64_t)F;
    printf("%s (%s): %lld latents; %lld domain tokens in %s\n", path, argv[2], (long long)r.F, (long long)dt.n_domain,
           argv[4]);

    /* every latent's peak token, once */
    int32_t *peak = malloc((size_t)r.F * sizeof(int32_t));
    int *best = malloc((size_t)r.F * sizeof(int));
    for (int64_t j = 0; j < r.F; j++) {
        double score = 0;
        peak[j] = peak_token(&r, j, &best[j], &score);
    }
    int shown = 0;
    for (int64_t j = 0; j < r.F && shown < 3; j++) {
        if (peak[j] < 0 || !is_domain(&dt, peak[j])) continue;
        char *piece = dk_tokenizer_decode(tok, &peak[j], 1, true, NULL, &err);
        printf("  latent %lld peaks on \"%s\" (strongest example from %s)\n", (long long)j, piece ? piece : "?",
               r.ds[best[j]]);
        free(piece);
        shown++;
    }
    if (!cc) {
        int64_t fired = 0, domain = 0;
        for (int64_t j = 0; j < r.F; j++) {
            if (peak[j] < 0) continue;
            fired++, domain += is_domain(&dt, peak[j]);
        }
        printf("%lld of %lld latents that fired peak on a domain token\n", (long long)domain, (long long)fired);
        printf("domain_rate %.4f\n", fired ? (double)domain / (double)fired : 0.0);
    } else {
        int64_t *order = malloc((size_t)r.F * sizeof(int64_t));
        for (int64_t j = 0; j < r.F; j++) order[j] = j;
        for (int64_t a = 1; a < r.F; a++) /* insertion sort by dec_norm_diff (a few thousand latents at most) */
            for (int64_t b = a; b > 0 && dnd[order[b]] < dnd[order[b - 1]]; b--) {
                const int64_t t = order[b];
                order[b] = order[b - 1], order[b - 1] = t;
            }
        int64_t low = 0, low_dom = 0, sh = 0, sh_dom = 0;
        for (int64_t i = 0; i < r.F && low < N; i++)
            if (peak[order[i]] >= 0) low++, low_dom += is_domain(&dt, peak[order[i]]);
        for (int64_t j = 0; j < r.F; j++)
            if (fabs(dnd[j] - 0.5) < 0.1 && peak[j] >= 0) sh++, sh_dom += is_domain(&dt, peak[j]);
        printf("%lld of the %lld latents of lowest dec_norm_diff (from %.3f) and %lld of %lld shared latents peak on a "
               "domain token\n", (long long)low_dom, (long long)low, r.F ? dnd[order[0]] : NAN, (long long)sh_dom,
               (long long)sh);
        printf("domain_rate_low %.4f\ndomain_rate_shared %.4f\n", low ? (double)low_dom / (double)low : 0.0,
               sh ? (double)sh_dom / (double)sh : 0.0);
        free(order);
    }
    free(peak), free(best), free(max_act), free(dnd);
    H5Gclose(ma), H5Gclose(r.group), H5Gclose(lg), H5Fclose(file);
    domain_tokens_free(&dt);
    dk_tokenizer_free(tok);
    return 0;
}
