/* agent_adl.c — the ADL agent's view of the Activation Difference Lens results (seed_spec §14.4; the seed's
 * methods/activation_difference_lens/agent_tools.py and agents.py): the overview of the first user message,
 * ADLBlackboxAgent's unsteered samples, and the tools get_logitlens_details, get_patchscope_details,
 * get_steering_samples and generate_steered.
 *
 * Why it exists: the agent must see exactly what the seed's agent sees for the same results, but from our files
 * (docs/formats.md "ADL results": results.h5 holds the logit lens and the steering vectors, the JSON files beside
 * it the Patchscope and steering outputs), and it runs in threads: everything is read at open, the tools only
 * read memory. The arguments of the tools come from an LLM and are checked before use (types, known dataset,
 * layer and position, k within what is cached, list sizes); none names a file.
 *
 * Correspondence with the seed's files (row i of a (P, ·) array is the seed's *_pos_{positions[i]} file):
 *   logit_lens_pos_{p}.pt                    layer_{L}/{ds}/logit_lens/mean_diff/{top_tokens,top_probs}[i]
 *   auto_patch_scope_pos_{p}.pt              layer_{L}/{ds}/auto_patch_scope_pos_{p}.json
 *   mean_pos_{p}.pt (which positions exist)  layer_{L}/{ds}/positions
 *   steering/position_{p}/ files             the same files; the vector ft_norm · mean_diff/‖mean_diff‖ that the
 *                                            steering step used: results.h5
 *                                            layer_{L}/{ds}/steering/position_{p}/vector
 * Layers: an int is absolute, a float a fraction of depth, int(f · (num_hidden_layers − 1)) with the model's
 * config.json (the seed's get_layer_indices; model.model_id). Datasets configured as [] are discovered from the
 * results in sorted order (the seed iterates a Python set, whose order is arbitrary). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_method_internal.h"
#include "agent/pyjson.h"
#include "config/config.h"
#include "core/strutil.h"
#include "io/file.h"
#include "io/hf_cache.h"

enum { MAX_LIST_ITEMS = 256 };      /* the longest positions / prompts list a tool call may carry */

/* One position of one (layer, dataset). */
typedef struct adl_pos {
    int64_t label;
    cJSON *aps;                     /* auto_patch_scope_pos_{label}.json, or NULL */
    bool has_steering;              /* threshold.json and generations.jsonl exist */
    double avg_threshold;
    float *vector;                  /* [H] the steering vector, or NULL */
    cJSON *generations;             /* [records] generations.jsonl, json.loads per line */
} adl_pos;

/* The results of one dataset at one layer. */
typedef struct adl_entry {
    int64_t layer;
    char *ds;                       /* the dataset folder name */
    int64_t n_pos;
    adl_pos *pos;                   /* [n_pos], in the order of the positions dataset */
    int64_t k_ll;                   /* cached logit-lens k; 0 = no logit lens */
    char **ll_tokens;               /* [n_pos * k_ll] */
    int64_t n_ll_strings;           /* strings in ll_tokens (for freeing, also when the shapes did not match) */
    float *ll_probs;                /* [n_pos * k_ll] */
    int64_t H;                      /* activation_dim */
} adl_entry;

struct adl_results {
    char *dir;
    const dk_cfg *cfg;
    int64_t n_layers;               /* the model's num_hidden_layers; 0 = unknown (floats are refused) */
    char *n_layers_why;             /* why unknown */
    adl_entry *entries;
    int n_entries;
    char **datasets;                /* sorted folder names found */
    int n_datasets;
    int64_t *layers;                /* sorted layers found */
    int n_layers_found;
    /* the anonymised names of the overview: ds{i+1} -> mapping_real[i] (as configured or discovered) */
    char **mapping_real;
    int n_mapping;
    /* agent.* settings */
    int64_t drill_max_chars, drill_max_samples;
    int64_t steer_max_new_tokens, steer_max_per_call;
    double steer_temperature;
    bool steer_do_sample;
};

/* ---- reading results.h5 -------------------------------------------------------------------------------------- */

static bool h5_has(hid_t f, const char *path) {
    htri_t r = -1;
    H5E_BEGIN_TRY { r = H5Oexists_by_name(f, path, H5P_DEFAULT); } H5E_END_TRY;
    return r > 0;
}

/* A dataset read as `type`; dims[0..rank) filled (rank <= 2). NULL + err when it cannot be read. */
static void *h5_read(hid_t f, const char *file, const char *path, hid_t type, int rank_wanted, int64_t dims[2],
                     dk_err *err) {
    hid_t ds = -1;
    H5E_BEGIN_TRY { ds = H5Dopen2(f, path, H5P_DEFAULT); } H5E_END_TRY;
    if (ds < 0) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: no dataset %s (docs/formats.md \"ADL results\"); rerun diff_adl", file,
                   path);
        return NULL;
    }
    hid_t sp = H5Dget_space(ds);
    hsize_t d[2] = {0, 0};
    int rank = H5Sget_simple_extent_ndims(sp);
    void *buf = NULL;
    if (rank != rank_wanted) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: %s has %d dimensions, expected %d", file, path, rank, rank_wanted);
    } else {
        H5Sget_simple_extent_dims(sp, d, NULL);
        size_t n = 1;
        for (int i = 0; i < rank; i++) n *= (size_t)d[i], dims[i] = (int64_t)d[i];
        buf = dk_calloc(n > 0 ? n : 1, H5Tget_size(type));
        if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            dk_err_set(err, DK_EXIT_RUNTIME, "%s: cannot read %s", file, path);
            free(buf);
            buf = NULL;
        }
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return buf;
}

/* A (n) or (P, k) variable-length UTF-8 string dataset as malloc'ed strings. */
static char **h5_strings(hid_t f, const char *file, const char *path, int rank, int64_t dims[2], dk_err *err) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char **raw = h5_read(f, file, path, t, rank, dims, err);
    char **out = NULL;
    if (raw) {
        int64_t n = rank == 2 ? dims[0] * dims[1] : dims[0];
        out = dk_malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
        for (int64_t i = 0; i < n; i++) {
            out[i] = dk_strdup(raw[i] ? raw[i] : "");
            free(raw[i]);  /* HDF5 allocates the strings with the system allocator */
        }
        free(raw);
    }
    H5Tclose(t);
    return out;
}

static int h5_attr_f64(hid_t f, const char *obj, const char *name, double *out) {
    hid_t a = -1;
    H5E_BEGIN_TRY { a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT); } H5E_END_TRY;
    if (a < 0) return -1;
    herr_t r = H5Aread(a, H5T_NATIVE_DOUBLE, out);
    H5Aclose(a);
    return r < 0 ? -1 : 0;
}

/* Names of the members of group `path` that are groups, sorted. */
typedef struct name_list {
    char **names;
    int n;
} name_list;

static herr_t collect_group(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    H5O_info_t oi;  /* HDF5 1.10's API (Debian 12) */
    if (H5Oget_info_by_name2(g, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_GROUP) return 0;
    name_list *l = data;
    l->names = dk_realloc(l->names, (size_t)(l->n + 1) * sizeof *l->names);
    l->names[l->n++] = dk_strdup(name);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static name_list h5_groups(hid_t f, const char *path) {
    name_list l = {0};
    hid_t g = -1;
    H5E_BEGIN_TRY { g = H5Gopen2(f, path, H5P_DEFAULT); } H5E_END_TRY;
    if (g < 0) return l;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_group, &l);
    H5Gclose(g);
    if (l.n > 1) qsort(l.names, (size_t)l.n, sizeof *l.names, cmp_str);
    return l;
}

/* ---- reading one (layer, dataset) ------------------------------------------------------------------------------ */

static cJSON *read_jsonl(const char *path, dk_err *err) {
    size_t size = 0;
    char *text = dk_read_file(path, &size, err);
    if (!text) return NULL;
    cJSON *records = cJSON_CreateArray();
    size_t line_no = 0;
    for (char *line = text, *end; line < text + size; line = end + 1) {
        end = memchr(line, '\n', (size_t)(text + size - line));
        if (!end) end = text + size;
        line_no++;
        size_t len = (size_t)(end - line);
        if (len > 0 && line[len - 1] == '\r') len--;
        if (len == 0) continue;  /* Python's splitlines() gives "" for a blank line, json.loads fails: skip it */
        char why[200];
        cJSON *rec = dk_pyjson_loads(line, len, why, sizeof why);
        if (!rec) {
            dk_err_set(err, DK_EXIT_USAGE, "%s line %zu: %s; rerun diff_adl's steering step", path, line_no, why);
            cJSON_Delete(records);
            free(text);
            return NULL;
        }
        cJSON_AddItemToArray(records, rec);
    }
    free(text);
    return records;
}

static int read_position(adl_results *r, hid_t f, const char *h5path, adl_entry *e, adl_pos *p, dk_err *err) {
    char *ldir = dk_sprintf("%s/layer_%lld/%s", r->dir, (long long)e->layer, e->ds);
    char *aps = dk_sprintf("%s/auto_patch_scope_pos_%lld.json", ldir, (long long)p->label);
    char *thr = dk_sprintf("%s/steering/position_%lld/threshold.json", ldir, (long long)p->label);
    char *gen = dk_sprintf("%s/steering/position_%lld/generations.jsonl", ldir, (long long)p->label);
    int rc = 0;
    if (dk_is_file(aps)) {
        p->aps = agent_read_json(aps, err);
        const cJSON *toks = cJSON_GetObjectItemCaseSensitive(p->aps, "tokens_at_best_scale");
        const cJSON *sel = cJSON_GetObjectItemCaseSensitive(p->aps, "selected_tokens");
        const cJSON *probs = cJSON_GetObjectItemCaseSensitive(p->aps, "token_probs");
        if (p->aps && !(cJSON_IsArray(toks) && cJSON_IsArray(sel) && cJSON_IsArray(probs)))
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: expected the lists tokens_at_best_scale, selected_tokens and "
                            "token_probs (docs/formats.md); rerun diff_adl's auto_patch_scope step", aps);
        if (!p->aps) rc = -1;
    }
    if (rc == 0 && dk_is_file(gen)) {
        p->generations = read_jsonl(gen, err);
        if (!p->generations) rc = -1;
    }
    if (rc == 0 && p->generations && dk_is_file(thr)) {
        cJSON *t = agent_read_json(thr, err);
        const cJSON *avg = cJSON_GetObjectItemCaseSensitive(t, "avg_threshold");
        if (!t) {
            rc = -1;
        } else if (!cJSON_IsNumber(avg)) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: no number avg_threshold", thr);
        } else {
            p->avg_threshold = avg->valuedouble;
            char *vpath = dk_sprintf("%s/steering/position_%lld/vector", h5path, (long long)p->label);
            int64_t dims[2] = {0, 0};
            if (h5_has(f, vpath)) {
                p->vector = h5_read(f, r->dir, vpath, H5T_NATIVE_FLOAT, 1, dims, err);
                if (!p->vector) rc = -1;
                else if (dims[0] != e->H)
                    rc = dk_err_set(err, DK_EXIT_USAGE, "%s/results.h5: %s has %lld values, activation_dim is %lld",
                                    r->dir, vpath, (long long)dims[0], (long long)e->H);
            }
            p->has_steering = rc == 0;
            free(vpath);
        }
        cJSON_Delete(t);
    }
    free(ldir);
    free(aps);
    free(thr);
    free(gen);
    return rc;
}

static int read_entry(adl_results *r, hid_t f, adl_entry *e, dk_err *err) {
    char *g = dk_sprintf("layer_%lld/%s", (long long)e->layer, e->ds);
    char *path = dk_sprintf("%s/positions", g);
    int64_t dims[2] = {0, 0};
    int rc = 0;
    int64_t *labels = h5_read(f, r->dir, path, H5T_NATIVE_INT64, 1, dims, err);
    free(path);
    double H = 0;
    if (!labels || h5_attr_f64(f, g, "activation_dim", &H) != 0) {
        if (labels) dk_err_set(err, DK_EXIT_USAGE, "%s/results.h5: %s has no attribute activation_dim", r->dir, g);
        free(labels);
        free(g);
        return -1;
    }
    e->H = (int64_t)H;
    e->n_pos = dims[0];
    e->pos = dk_calloc((size_t)(e->n_pos > 0 ? e->n_pos : 1), sizeof *e->pos);
    for (int64_t i = 0; i < e->n_pos; i++) e->pos[i].label = labels[i];
    free(labels);
    char *tok_path = dk_sprintf("%s/logit_lens/mean_diff/top_tokens", g);
    char *prob_path = dk_sprintf("%s/logit_lens/mean_diff/top_probs", g);
    if (h5_has(f, tok_path)) {
        int64_t td[2] = {0, 0}, pd[2] = {0, 0};
        e->ll_tokens = h5_strings(f, r->dir, tok_path, 2, td, err);
        if (e->ll_tokens) e->n_ll_strings = td[0] * td[1];
        e->ll_probs = e->ll_tokens ? h5_read(f, r->dir, prob_path, H5T_NATIVE_FLOAT, 2, pd, err) : NULL;
        if (!e->ll_tokens || !e->ll_probs) rc = -1;
        else if (td[0] != e->n_pos || pd[0] != e->n_pos || td[1] != pd[1])
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s/results.h5: %s (%lld x %lld) and %s (%lld x %lld) do not match "
                            "the %lld positions", r->dir, tok_path, (long long)td[0], (long long)td[1], prob_path,
                            (long long)pd[0], (long long)pd[1], (long long)e->n_pos);
        if (rc == 0) e->k_ll = td[1];
    }
    free(tok_path);
    free(prob_path);
    for (int64_t i = 0; rc == 0 && i < e->n_pos; i++) rc = read_position(r, f, g, e, &e->pos[i], err);
    free(g);
    return rc;
}

/* ---- layers and datasets ---------------------------------------------------------------------------------- */

/* num_hidden_layers (or text_config.num_hidden_layers) of model.model_id's config.json. */
static void read_n_layers(adl_results *r) {
    const char *id = dk_cfg_has(r->cfg, "model.model_id") ? dk_cfg_str(r->cfg, "model.model_id") : NULL;
    const char *rev = dk_cfg_has(r->cfg, "model.revision") ? dk_cfg_str(r->cfg, "model.revision") : NULL;
    if (!id) {
        r->n_layers_why = dk_strdup("model.model_id is not configured");
        return;
    }
    dk_err e = {0};
    dk_hf_location loc = {0};
    if (dk_hf_resolve(id, rev, "config.json", &loc, &e) != 0) {
        r->n_layers_why = dk_sprintf("the model's config.json was not found (%s)", e.msg);
        return;
    }
    char *path = dk_path_join(loc.path, "config.json");
    cJSON *c = agent_read_json(path, &e);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "num_hidden_layers");
    if (!cJSON_IsNumber(n))
        n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "text_config"), "num_hidden_layers");
    if (cJSON_IsNumber(n) && n->valuedouble >= 1) r->n_layers = (int64_t)n->valuedouble;
    else r->n_layers_why = dk_sprintf("%s has no num_hidden_layers", path);
    cJSON_Delete(c);
    free(path);
    dk_hf_location_free(&loc);
}

static adl_entry *find_entry(const adl_results *r, int64_t layer, const char *ds) {
    for (int i = 0; i < r->n_entries; i++)
        if (r->entries[i].layer == layer && strcmp(r->entries[i].ds, ds) == 0) return &r->entries[i];
    return NULL;
}

/* The seed's _dataset_dir_name: the last path component. */
static const char *dir_name(const char *dataset) {
    const char *slash = strrchr(dataset, '/');
    return slash ? slash + 1 : dataset;
}

static void list_layers(const adl_results *r, dk_strbuf *b) {
    for (int i = 0; i < r->n_layers_found; i++) dk_strbuf_printf(b, "%s%lld", i ? ", " : "", (long long)r->layers[i]);
}

/* _abs_layers_from_rel for one value (the caller has checked it is a number, not a bool). */
static int resolve_layer(const adl_results *r, const cJSON *v, int64_t *out, char **message) {
    char show[100];
    if (agent_arg_is_int(v)) {
        *out = (int64_t)v->valuedouble;
        return 0;
    }
    double f = v->valuedouble;
    if (!(f >= 0.0 && f <= 1.0)) {
        *message = dk_sprintf("layer %s: a float layer is a fraction of depth in [0, 1]; an int is an absolute layer",
                              agent_arg_show(v, show, sizeof show));
        return -1;
    }
    if (r->n_layers < 1) {
        *message = dk_sprintf("layer %g: a fraction of depth needs the model's layer count, which is unknown (%s); "
                              "give the absolute layer as an int", f, r->n_layers_why ? r->n_layers_why : "?");
        return -1;
    }
    *out = (int64_t)(f * (double)(r->n_layers - 1));
    return 0;
}

/* ---- open ----------------------------------------------------------------------------------------------------- */

void adl_results_free(adl_results *r) {
    if (!r) return;
    for (int i = 0; i < r->n_entries; i++) {
        adl_entry *e = &r->entries[i];
        for (int64_t p = 0; p < e->n_pos; p++) {
            cJSON_Delete(e->pos[p].aps);
            cJSON_Delete(e->pos[p].generations);
            free(e->pos[p].vector);
        }
        free(e->pos);
        if (e->ll_tokens) dk_free_strings(e->ll_tokens, (size_t)e->n_ll_strings);
        free(e->ll_probs);
        free(e->ds);
    }
    free(r->entries);
    dk_free_strings(r->datasets, (size_t)r->n_datasets);
    if (r->mapping_real) dk_free_strings(r->mapping_real, (size_t)r->n_mapping);
    free(r->layers);
    free(r->n_layers_why);
    free(r->dir);
    free(r);
}

static int cfg_int(const dk_cfg *cfg, const char *key, int64_t lo, int64_t *out, dk_err *err) {
    if (dk_cfg_try_int(cfg, key, out, err) != 0) return -1;
    if (*out < lo) return dk_err_set(err, DK_EXIT_USAGE, "%s = %lld: must be at least %lld", key, (long long)*out,
                                     (long long)lo);
    return 0;
}

adl_results *adl_results_open(const dk_agent_method_config *mc, dk_err *err) {
    if (agent_results_complete(mc->results_dir, "diff_adl", err) != 0) return NULL;
    adl_results *r = dk_calloc(1, sizeof *r);
    r->dir = dk_strdup(mc->results_dir);
    r->cfg = mc->cfg;
    const char *A = "diffing.method.agent.";
    char key[128];
#define KEY(k) (snprintf(key, sizeof key, "%s%s", A, k), key)
    if (cfg_int(mc->cfg, KEY("drilldown.max_sample_chars"), 1, &r->drill_max_chars, err) != 0 ||
        cfg_int(mc->cfg, KEY("drilldown.max_steering_samples_per_prompt"), 1, &r->drill_max_samples, err) != 0 ||
        cfg_int(mc->cfg, KEY("generate_steered.max_new_tokens"), 1, &r->steer_max_new_tokens, err) != 0 ||
        cfg_int(mc->cfg, KEY("generate_steered.max_samples_per_call"), 1, &r->steer_max_per_call, err) != 0 ||
        dk_cfg_try_float(mc->cfg, KEY("generate_steered.temperature"), &r->steer_temperature, err) != 0 ||
        dk_cfg_try_bool(mc->cfg, KEY("generate_steered.do_sample"), &r->steer_do_sample, err) != 0) {
        adl_results_free(r);
        return NULL;
    }
#undef KEY
    read_n_layers(r);

    char *file = dk_path_join(r->dir, "results.h5");
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (f < 0) {
        dk_err_set(err, DK_EXIT_USAGE, "%s cannot be opened as HDF5; rerun diff_adl", file);
        free(file);
        adl_results_free(r);
        return NULL;
    }
    name_list roots = h5_groups(f, "/");
    int rc = 0;
    for (int i = 0; rc == 0 && i < roots.n; i++) {
        char *end = NULL;
        if (!dk_str_starts_with(roots.names[i], "layer_")) continue;
        long long layer = strtoll(roots.names[i] + 6, &end, 10);
        if (end == roots.names[i] + 6 || *end) continue;
        r->layers = dk_realloc(r->layers, (size_t)(r->n_layers_found + 1) * sizeof *r->layers);
        r->layers[r->n_layers_found++] = layer;
        name_list dss = h5_groups(f, roots.names[i]);
        for (int j = 0; rc == 0 && j < dss.n; j++) {
            r->entries = dk_realloc(r->entries, (size_t)(r->n_entries + 1) * sizeof *r->entries);
            adl_entry *e = &r->entries[r->n_entries++];
            memset(e, 0, sizeof *e);
            e->layer = layer;
            e->ds = dk_strdup(dss.names[j]);
            rc = read_entry(r, f, e, err);
            bool known = false;
            for (int d = 0; d < r->n_datasets; d++) known |= strcmp(r->datasets[d], e->ds) == 0;
            if (!known) {
                r->datasets = dk_realloc(r->datasets, (size_t)(r->n_datasets + 1) * sizeof *r->datasets);
                r->datasets[r->n_datasets++] = dk_strdup(e->ds);
            }
        }
        dk_free_strings(dss.names, (size_t)dss.n);
    }
    dk_free_strings(roots.names, (size_t)roots.n);
    H5Fclose(f);
    if (rc == 0 && r->n_entries == 0)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s has no layer_{L}/{dataset} results; rerun diff_adl", file);
    free(file);
    if (rc != 0) {
        adl_results_free(r);
        return NULL;
    }
    if (r->n_datasets > 1) qsort(r->datasets, (size_t)r->n_datasets, sizeof *r->datasets, cmp_str);
    for (int i = 1; i < r->n_layers_found; i++)  /* insertion sort: a handful of layers */
        for (int j = i; j > 0 && r->layers[j - 1] > r->layers[j]; j--) {
            int64_t t = r->layers[j];
            r->layers[j] = r->layers[j - 1];
            r->layers[j - 1] = t;
        }
    /* the overview's anonymised names: agent.overview.datasets, or every dataset found */
    const dk_cfg_node *list = dk_cfg_get(mc->cfg, "diffing.method.agent.overview.datasets");
    if (list && list->kind == DK_CFG_SEQ && list->n > 0) {
        r->mapping_real = dk_calloc(list->n, sizeof *r->mapping_real);
        for (size_t i = 0; i < list->n; i++) {
            const dk_cfg_node *it = list->items[i];
            if (it->kind != DK_CFG_SCALAR || !it->text || !*it->text) {
                dk_err_set(err, DK_EXIT_USAGE, "diffing.method.agent.overview.datasets[%zu]: expected a dataset name "
                           "(the results have: %s%s)", i, r->datasets[0], r->n_datasets > 1 ? ", ..." : "");
                r->n_mapping = (int)i;
                adl_results_free(r);
                return NULL;
            }
            r->mapping_real[i] = dk_strdup(it->text);
        }
        r->n_mapping = (int)list->n;
    } else {
        r->mapping_real = dk_calloc((size_t)r->n_datasets, sizeof *r->mapping_real);
        for (int i = 0; i < r->n_datasets; i++) r->mapping_real[i] = dk_strdup(r->datasets[i]);
        r->n_mapping = r->n_datasets;
    }
    return r;
}

/* ---- the overview ------------------------------------------------------------------------------------------- */

static void fmt_prob(double p, char buf[32]) { snprintf(buf, 32, "%.3e", p); }

/* get_steering_samples on an entry (the caller checked that position has generations). */
static cJSON *steering_examples(const adl_pos *p, const char *const *subset, int64_t n_subset, int64_t n,
                                int64_t max_chars) {
    cJSON *out = cJSON_CreateArray();
    /* by_prompt counts: records are few (one per prompt), a linear scan of what was taken is enough */
    const cJSON *rec;
    cJSON_ArrayForEach(rec, p->generations) {
        const cJSON *pos = cJSON_GetObjectItemCaseSensitive(rec, "position");
        int64_t rpos = cJSON_IsNumber(pos) ? (int64_t)pos->valuedouble : -1;
        if (rpos != p->label) continue;
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
        if (!cJSON_IsString(prompt)) continue;
        if (subset) {
            bool in = false;
            for (int64_t i = 0; i < n_subset && !in; i++) in = strcmp(subset[i], prompt->valuestring) == 0;
            if (!in) continue;
        }
        int64_t count = 0;
        const cJSON *taken;
        cJSON_ArrayForEach(taken, out)
            count += strcmp(cJSON_GetObjectItemCaseSensitive(taken, "prompt")->valuestring, prompt->valuestring) == 0;
        if (count >= n) continue;
        const cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "steered_samples"), 0);
        const cJSON *u = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "unsteered_samples"), 0);
        if (!cJSON_IsString(s) || !cJSON_IsString(u)) continue;
        cJSON *ex = cJSON_CreateObject();
        cJSON_AddStringToObject(ex, "prompt", prompt->valuestring);
        cJSON_AddItemToObject(ex, "steered", agent_string_prefix(s->valuestring, max_chars));
        cJSON_AddItemToObject(ex, "unsteered", agent_string_prefix(u->valuestring, max_chars));
        cJSON_AddItemToArray(out, ex);
    }
    return out;
}

/* The seed's discovery order: sorted(glob("mean_pos_*.pt")) sorts the file names as text. */
static int cmp_pos_file(const void *a, const void *b) {
    char x[40], y[40];
    snprintf(x, sizeof x, "%lld.pt", (long long)*(const int64_t *)a);
    snprintf(y, sizeof y, "%lld.pt", (long long)*(const int64_t *)b);
    return strcmp(x, y);
}

static const adl_pos *find_pos(const adl_entry *e, int64_t label, int64_t *row) {
    for (int64_t i = 0; i < e->n_pos; i++)
        if (e->pos[i].label == label) {
            if (row) *row = i;
            return &e->pos[i];
        }
    return NULL;
}

/* The logit lens of row `row` cut to k: {"tokens", "probs"}; probabilities as the overview writes them
 * ("%.3e" text) or as floats (the tool). */
static cJSON *ll_entry(const adl_entry *e, int64_t row, int64_t k, bool formatted) {
    if (k > e->k_ll) k = e->k_ll;
    cJSON *entry = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(entry, "tokens");
    cJSON *probs = cJSON_AddArrayToObject(entry, "probs");
    char prob[32];
    for (int64_t t = 0; t < k; t++) {
        cJSON_AddItemToArray(toks, cJSON_CreateString(e->ll_tokens[row * e->k_ll + t]));
        const double p = (double)e->ll_probs[row * e->k_ll + t];
        fmt_prob(p, prob);
        cJSON_AddItemToArray(probs, formatted ? cJSON_CreateString(prob) : cJSON_CreateNumber(p));
    }
    return entry;
}

/* The cached Patchscope length of a position (len(tokens_at_best_scale)). */
static int64_t aps_k(const adl_pos *p) {
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p->aps, "tokens_at_best_scale"));
}

/* The seed's _load_aps cut to k: {"tokens", "selected_tokens" (all), "token_probs"}, probabilities formatted or
 * as floats ([float(x) for x in token_probs]: an int in the file becomes a float). */
static cJSON *ps_entry(const adl_pos *p, int64_t k, bool formatted) {
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(p->aps, "tokens_at_best_scale");
    const cJSON *probs = cJSON_GetObjectItemCaseSensitive(p->aps, "token_probs"), *it;
    cJSON *entry = cJSON_CreateObject(), *t_out = cJSON_AddArrayToObject(entry, "tokens");
    int64_t c = 0;
    cJSON_ArrayForEach(it, toks) if (c++ < k) cJSON_AddItemToArray(t_out, cJSON_Duplicate(it, 1));
    cJSON_AddItemToObject(entry, "selected_tokens",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(p->aps, "selected_tokens"), 1));
    cJSON *p_out = cJSON_AddArrayToObject(entry, "token_probs");
    char prob[32];
    c = 0;
    cJSON_ArrayForEach(it, probs) if (c++ < k) {
        const double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
        fmt_prob(v, prob);
        cJSON_AddItemToArray(p_out, formatted ? cJSON_CreateString(prob) : cJSON_CreateNumber(v));
    }
    return entry;
}

static cJSON *overview_layer(const adl_entry *e, const int64_t *want, size_t n_want, int64_t top_k,
                             int64_t samples_per_prompt, int64_t max_chars, dk_err *err) {
    int64_t *fin = dk_malloc((e->n_pos > 0 ? (size_t)e->n_pos : 1) * sizeof *fin);
    int64_t n_fin = 0;
    for (int64_t i = 0; i < e->n_pos; i++)
        for (size_t j = 0; j < n_want; j++)
            if (want[j] == e->pos[i].label) {
                fin[n_fin++] = e->pos[i].label;
                break;
            }
    if (n_fin == 0) {
        free(fin);
        dk_err_set(err, DK_EXIT_USAGE, "diffing.method.agent.overview.positions: none of them is among the positions "
                   "of layer %lld, dataset %s (%lld positions from %lld)", (long long)e->layer, e->ds,
                   (long long)e->n_pos, (long long)(e->n_pos ? e->pos[0].label : 0));
        return NULL;
    }
    qsort(fin, (size_t)n_fin, sizeof *fin, cmp_pos_file);
    cJSON *o = cJSON_CreateObject();
    cJSON *avail = cJSON_AddObjectToObject(o, "available_positions");
    cJSON *a_ll = cJSON_AddArrayToObject(avail, "logit_lens"), *a_ps = cJSON_AddArrayToObject(avail, "patch_scope");
    cJSON *a_st = cJSON_AddArrayToObject(avail, "steering");
    cJSON *ll = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "logit_lens"), "per_position");
    cJSON *ps = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "patch_scope"), "per_position");
    cJSON *st = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "steering_examples"), "per_position");
    int64_t k_aps = -1;
    char key[24];
    for (int64_t i = 0; i < n_fin; i++) {
        int64_t row = 0;
        const adl_pos *p = find_pos(e, fin[i], &row);
        agent_int_key(p->label, key);
        if (e->k_ll > 0) {
            cJSON_AddItemToArray(a_ll, dk_pyjson_int(p->label));
            agent_obj_set(ll, key, ll_entry(e, row, top_k, true));
        }
        if (p->aps) {
            cJSON_AddItemToArray(a_ps, dk_pyjson_int(p->label));
            agent_obj_set(ps, key, ps_entry(p, top_k, true));
            if (k_aps < 0) k_aps = aps_k(p);
        }
        if (p->generations) {
            cJSON_AddItemToArray(a_st, dk_pyjson_int(p->label));
            agent_obj_set(st, key, steering_examples(p, NULL, 0, samples_per_prompt, max_chars));
        }
    }
    cJSON *limits = cJSON_AddObjectToObject(o, "k_limits");
    dk_pyjson_add_int(limits, "logit_lens", cJSON_GetArraySize(a_ll) > 0 ? e->k_ll : 0);
    dk_pyjson_add_int(limits, "patch_scope", k_aps > 0 ? k_aps : 0);
    free(fin);
    return o;
}

/* The overview's layers (agent.overview.layers through _abs_layers_from_rel: one int makes every entry absolute). */
static int overview_layers(const adl_results *r, int64_t **out, size_t *n, dk_err *err) {
    const char *key = "diffing.method.agent.overview.layers";
    const dk_cfg_node *list = dk_cfg_get(r->cfg, key);
    if (!list || list->kind != DK_CFG_SEQ || list->n == 0)
        return dk_err_set(err, DK_EXIT_USAGE, "%s must be a non-empty list of layers (fractions like 0.5 or absolute "
                          "indices)", key);
    bool any_int = false;
    int64_t iv;
    double fv;
    for (size_t i = 0; i < list->n; i++)
        any_int |= list->items[i]->kind == DK_CFG_SCALAR && dk_cfg_parse_int(list->items[i]->text, &iv);
    *out = dk_malloc(list->n * sizeof **out);
    *n = list->n;
    for (size_t i = 0; i < list->n; i++) {
        const dk_cfg_node *it = list->items[i];
        bool is_int = it->kind == DK_CFG_SCALAR && dk_cfg_parse_int(it->text, &iv);
        bool is_float = it->kind == DK_CFG_SCALAR && dk_cfg_parse_float(it->text, &fv);
        if (!is_int && !is_float) {
            free(*out);
            return dk_err_set(err, DK_EXIT_USAGE, "%s[%zu] = %s: expected a number", key, i, it->text ? it->text : "?");
        }
        if (any_int) {
            (*out)[i] = is_int ? iv : (int64_t)fv;  /* the seed's int(x) */
        } else if (!(fv >= 0 && fv <= 1) || r->n_layers < 1) {
            free(*out);
            return dk_err_set(err, DK_EXIT_USAGE, "%s[%zu] = %s: %s", key, i, it->text,
                              r->n_layers < 1 ? r->n_layers_why : "a fraction of depth must be in [0, 1]");
        } else {
            (*out)[i] = (int64_t)(fv * (double)(r->n_layers - 1));
        }
    }
    return 0;
}

static cJSON *mapping_json(const adl_results *r) {
    cJSON *m = cJSON_CreateObject();
    char name[32];
    for (int i = 0; i < r->n_mapping; i++) {
        snprintf(name, sizeof name, "ds%d", i + 1);
        cJSON_AddStringToObject(m, name, r->mapping_real[i]);
    }
    return m;
}

static int missing_entry(const adl_results *r, int64_t layer, const char *ds, dk_err *err) {
    dk_strbuf b = {0};
    list_layers(r, &b);
    dk_strbuf_append(&b, "; datasets ");
    for (int i = 0; i < r->n_datasets; i++) dk_strbuf_printf(&b, "%s%s", i ? ", " : "", r->datasets[i]);
    int rc = dk_err_set(err, DK_EXIT_USAGE, "%s: no results for dataset %s at layer %lld (diffing.method.agent.overview"
                        ".layers/.datasets; the results have layers %s)", r->dir, ds, (long long)layer, b.data);
    dk_strbuf_free(&b);
    return rc;
}

char *adl_first_message(adl_results *r, const char *post_overview, cJSON **mapping, dk_err *err) {
    const dk_cfg *cfg = r->cfg;
    int64_t top_k = 0, per_prompt = 0, max_chars = 0;
    int64_t *positions = NULL, *layers = NULL;
    size_t n_positions = 0, n_layers = 0;
    if (cfg_int(cfg, "diffing.method.agent.overview.top_k_tokens", 0, &top_k, err) != 0 ||
        cfg_int(cfg, "diffing.method.agent.overview.steering_samples_per_prompt", 0, &per_prompt, err) != 0 ||
        cfg_int(cfg, "diffing.method.agent.overview.max_sample_chars", 0, &max_chars, err) != 0 ||
        dk_cfg_try_int_list(cfg, "diffing.method.agent.overview.positions", &positions, &n_positions, err) != 0)
        return NULL;
    if (overview_layers(r, &layers, &n_layers, err) != 0) {
        free(positions);
        return NULL;
    }
    cJSON *ov = cJSON_CreateObject(), *dss = cJSON_AddObjectToObject(ov, "datasets");
    int rc = 0;
    for (int i = 0; rc == 0 && i < r->n_mapping; i++) {
        char name[32];
        snprintf(name, sizeof name, "ds%d", i + 1);
        cJSON *lay = cJSON_CreateObject();
        cJSON *d = cJSON_CreateObject();
        cJSON_AddItemToObject(d, "layers", lay);
        agent_obj_set(dss, name, d);
        for (size_t l = 0; rc == 0 && l < n_layers; l++) {
            const adl_entry *e = find_entry(r, layers[l], dir_name(r->mapping_real[i]));
            if (!e) {
                rc = missing_entry(r, layers[l], r->mapping_real[i], err);
                break;
            }
            cJSON *entry = overview_layer(e, positions, n_positions, top_k, per_prompt, max_chars, err);
            if (!entry) rc = -1;
            char key[24];
            agent_int_key(layers[l], key);
            if (entry) agent_obj_set(lay, key, entry);
        }
    }
    free(positions);
    free(layers);
    if (rc != 0) {
        cJSON_Delete(ov);
        return NULL;
    }
    *mapping = mapping_json(r);
    return agent_first_message("OVERVIEW:\n", ov, post_overview);
}

char *adl_blackbox_first_message(adl_results *r, const char *post_overview, cJSON **mapping, dk_err *err) {
    int64_t per_prompt = 0, max_chars = 0, *layers = NULL;
    size_t n_layers = 0;
    if (cfg_int(r->cfg, "diffing.method.agent.overview.steering_samples_per_prompt", 0, &per_prompt, err) != 0 ||
        cfg_int(r->cfg, "diffing.method.agent.overview.max_sample_chars", 0, &max_chars, err) != 0 ||
        overview_layers(r, &layers, &n_layers, err) != 0)
        return NULL;
    const int64_t layer = layers[0];
    free(layers);
    cJSON *examples = cJSON_CreateArray();
    for (int i = 0; i < r->n_mapping && cJSON_GetArraySize(examples) == 0; i++) {
        const adl_entry *e = find_entry(r, layer, dir_name(r->mapping_real[i]));
        if (!e) continue;
        /* the first steering position in the seed's order: sorted() of the paths position_{p}/generations.jsonl */
        const adl_pos *first = NULL;
        for (int64_t p = 0; p < e->n_pos; p++) {
            if (!e->pos[p].generations) continue;
            char a[48], b[48];
            snprintf(a, sizeof a, "%lld/", (long long)e->pos[p].label);
            if (first) snprintf(b, sizeof b, "%lld/", (long long)first->label);
            if (!first || strcmp(a, b) < 0) first = &e->pos[p];
        }
        if (!first) continue;
        cJSON *ex = steering_examples(first, NULL, 0, per_prompt, max_chars), *it;
        cJSON_ArrayForEach(it, ex) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToObject(o, "prompt", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(it, "prompt"), 1));
            cJSON_AddItemToObject(o, "generation",
                                  cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(it, "unsteered"), 1));
            cJSON_AddItemToArray(examples, o);
        }
        cJSON_Delete(ex);
        break;  /* the seed stops at the first dataset with a steering position */
    }
    if (cJSON_GetArraySize(examples) == 0) {
        cJSON_Delete(examples);
        dk_err_set(err, DK_EXIT_USAGE, "%s: no steering generations at layer %lld of any dataset: the Blackbox agent "
                   "shows the organism's unsteered samples from them; run diff_adl with steering.enabled=true",
                   r->dir, (long long)layer);
        return NULL;
    }
    cJSON *wrap = cJSON_CreateObject();
    cJSON_AddItemToObject(wrap, "examples", examples);
    *mapping = mapping_json(r);
    return agent_first_message("You are given generations produced by the finetuned model on several prompts.\n\n",
                               wrap, post_overview);
}

/* ---- the tools' arguments -------------------------------------------------------------------------------------- */

typedef struct adl_tool_ctx {
    adl_results *r;
    dk_agent_models *models;
} adl_tool_ctx;

/* dataset (real name, its last component, or ds<i>) and layer -> the entry; -1 + message otherwise. */
static int arg_entry(const adl_results *r, const cJSON *args, const adl_entry **out, const char **dataset_arg,
                     int64_t *abs_layer, char **message) {
    char show[100];
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(args, "dataset");
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(args, "layer");
    dk_strbuf names = {0};
    for (int i = 0; i < r->n_mapping; i++) dk_strbuf_printf(&names, "%sds%d", i ? ", " : "", i + 1);
    if (!cJSON_IsString(d)) {
        *message = dk_sprintf("dataset must be a string, one of: %s (got %s)", names.data ? names.data : "(none)",
                              agent_arg_show(d, show, sizeof show));
        dk_strbuf_free(&names);
        return -1;
    }
    const char *dir = NULL;
    const char *s = d->valuestring;
    if (s[0] == 'd' && s[1] == 's' && s[2] >= '1' && s[2] <= '9') {
        char *end = NULL;
        long v = strtol(s + 2, &end, 10);
        if (!*end && v >= 1 && v <= r->n_mapping) dir = dir_name(r->mapping_real[v - 1]);
    }
    for (int i = 0; !dir && i < r->n_datasets; i++)
        if (strcmp(s, r->datasets[i]) == 0 || (strchr(s, '/') && strcmp(dir_name(s), r->datasets[i]) == 0 &&
                                               strstr(s, "..") == NULL))
            dir = r->datasets[i];
    if (!dir) {
        *message = dk_sprintf("dataset %s is unknown: use one of %s", agent_arg_show(d, show, sizeof show),
                              names.data ? names.data : "(none)");
        dk_strbuf_free(&names);
        return -1;
    }
    dk_strbuf_free(&names);
    if (!cJSON_IsNumber(l) || cJSON_IsBool(l)) {
        *message = dk_sprintf("layer must be an int (absolute layer) or a float in [0, 1] (fraction of depth), got %s",
                              agent_arg_show(l, show, sizeof show));
        return -1;
    }
    if (resolve_layer(r, l, abs_layer, message) != 0) return -1;
    *out = find_entry(r, *abs_layer, dir);
    if (!*out) {
        dk_strbuf b = {0};
        for (int i = 0; i < r->n_entries; i++)
            if (strcmp(r->entries[i].ds, dir) == 0)
                dk_strbuf_printf(&b, "%s%lld", b.len ? ", " : "", (long long)r->entries[i].layer);
        *message = dk_sprintf("layer %s (layer %lld) has no results for dataset %s: available layers: %s",
                              agent_arg_show(l, show, sizeof show), (long long)*abs_layer, d->valuestring,
                              b.data ? b.data : "(none)");
        dk_strbuf_free(&b);
        return -1;
    }
    *dataset_arg = d->valuestring;
    return 0;
}

/* The labels of e that `has` accepts, for messages: "0, 1, 2, ... 127" (cut after 12). */
static char *list_positions(const adl_entry *e, bool (*has)(const adl_entry *, const adl_pos *)) {
    dk_strbuf b = {0};
    int64_t shown = 0, total = 0;
    for (int64_t i = 0; i < e->n_pos; i++) {
        if (!has(e, &e->pos[i])) continue;
        if (shown < 12) dk_strbuf_printf(&b, "%s%lld", shown ? ", " : "", (long long)e->pos[i].label), shown++;
        total++;
    }
    if (total > shown) dk_strbuf_printf(&b, ", ... (%lld in all, up to %lld)", (long long)total,
                                        (long long)e->pos[e->n_pos - 1].label);
    if (total == 0) dk_strbuf_append(&b, "none");
    return dk_strbuf_take(&b);
}

static bool has_ll(const adl_entry *e, const adl_pos *p) { (void)p; return e->k_ll > 0; }
static bool has_ps(const adl_entry *e, const adl_pos *p) { (void)e; return p->aps != NULL; }
static bool has_gen(const adl_entry *e, const adl_pos *p) { (void)e; return p->generations != NULL; }
static bool has_steer(const adl_entry *e, const adl_pos *p) { (void)e; return p->has_steering && p->vector; }

/* args[name] (an int) as a position of e that `has` accepts. */
static const adl_pos *arg_position(const adl_entry *e, const cJSON *v, const char *what,
                                   bool (*has)(const adl_entry *, const adl_pos *), const char *kind, char **message) {
    char show[100];
    if (!agent_arg_is_int(v)) {
        char *avail = list_positions(e, has);
        *message = dk_sprintf("%s must be an int position, got %s; %s positions of layer %lld: %s", what,
                              agent_arg_show(v, show, sizeof show), kind, (long long)e->layer, avail);
        free(avail);
        return NULL;
    }
    const adl_pos *p = find_pos(e, (int64_t)v->valuedouble, NULL);
    if (!p || !has(e, p)) {
        char *avail = list_positions(e, has);
        *message = dk_sprintf("%s %lld has no %s results at layer %lld; available positions: %s", what,
                              (long long)v->valuedouble, kind, (long long)e->layer, avail);
        free(avail);
        return NULL;
    }
    return p;
}

/* dataset, layer and position (the steering tools): the position, or NULL + message. */
static const adl_pos *arg_entry_position(const adl_results *r, const cJSON *args,
                                         bool (*has)(const adl_entry *, const adl_pos *), const char *kind,
                                         const adl_entry **e, const char **dataset, int64_t *layer, char **message) {
    if (arg_entry(r, args, e, dataset, layer, message) != 0) return NULL;
    return arg_position(*e, cJSON_GetObjectItemCaseSensitive(args, "position"), "position", has, kind, message);
}

/* positions: a list (at most MAX_LIST_ITEMS) of available positions. */
static int arg_positions(const adl_entry *e, const cJSON *args, bool (*has)(const adl_entry *, const adl_pos *),
                         const char *kind, const adl_pos ***out, int64_t *n, char **message) {
    char show[100];
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(args, "positions");
    if (!cJSON_IsArray(ps)) {
        char *avail = list_positions(e, has);
        *message = dk_sprintf("positions must be a list of int positions, got %s; %s positions of layer %lld: %s",
                              agent_arg_show(ps, show, sizeof show), kind, (long long)e->layer, avail);
        free(avail);
        return -1;
    }
    int64_t count = cJSON_GetArraySize(ps);
    if (count > MAX_LIST_ITEMS) {
        *message = dk_sprintf("positions has %lld entries; at most %d per call", (long long)count, MAX_LIST_ITEMS);
        return -1;
    }
    *out = dk_malloc((size_t)(count > 0 ? count : 1) * sizeof **out);
    *n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, ps) {
        const adl_pos *p = arg_position(e, it, "positions entry", has, kind, message);
        if (!p) {
            free(*out);
            *out = NULL;
            return -1;
        }
        (*out)[(*n)++] = p;
    }
    return 0;
}

/* ---- the tools --------------------------------------------------------------------------------------------------- */

/* get_logitlens_details (source LL) and get_patchscope_details (source PS): the same arguments and layout. */
typedef enum { SOURCE_LL = 0, SOURCE_PS = 1 } lens_source;

static dk_tool_status details_tool(const adl_results *r, lens_source source, const cJSON *args, cJSON **output,
                                   char **message) {
    const adl_entry *e;
    const char *dataset;
    int64_t layer, k;
    const adl_pos **pos = NULL;
    int64_t n = 0;
    if (arg_entry(r, args, &e, &dataset, &layer, message) != 0) return DK_TOOL_PARAM_ERROR;
    if (source == SOURCE_LL && e->k_ll == 0) {
        *message = dk_sprintf("layer %lld of dataset %s has no logit lens results (diff_adl ran with "
                              "logit_lens.cache=false)", (long long)layer, dataset);
        return DK_TOOL_PARAM_ERROR;
    }
    if (arg_positions(e, args, source == SOURCE_LL ? has_ll : has_ps, source == SOURCE_LL ? "logit lens" : "patchscope",
                      &pos, &n, message) != 0)
        return DK_TOOL_PARAM_ERROR;
    /* the seed checks k against each position's cached length in turn: the smallest of those asked for */
    int64_t k_max = source == SOURCE_LL ? e->k_ll : INT32_MAX;  /* no position asked: no limit, as the seed */
    for (int64_t i = 0; source == SOURCE_PS && i < n; i++)
        if (aps_k(pos[i]) < k_max) k_max = aps_k(pos[i]);
    if (agent_arg_int(args, "k", 1, k_max, &k, message) != 0) {
        free(pos);
        return DK_TOOL_PARAM_ERROR;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "dataset", dataset);
    dk_pyjson_add_int(o, "layer", layer);
    cJSON *per = cJSON_AddObjectToObject(o, "positions"), *lim = cJSON_AddObjectToObject(o, "k_limits_per_position");
    char key[24];
    for (int64_t i = 0; i < n; i++) {
        agent_int_key(pos[i]->label, key);
        agent_obj_set(per, key,
                      source == SOURCE_LL ? ll_entry(e, pos[i] - e->pos, k, false) : ps_entry(pos[i], k, false));
        agent_obj_set(lim, key, dk_pyjson_int(source == SOURCE_LL ? e->k_ll : aps_k(pos[i])));
    }
    free(pos);
    *output = o;
    return DK_TOOL_OK;
}

static dk_tool_status tool_logitlens(void *ctx, const cJSON *args, cJSON **output, char **message, dk_err *err) {
    (void)err;
    return details_tool(((adl_tool_ctx *)ctx)->r, SOURCE_LL, args, output, message);
}

static dk_tool_status tool_patchscope(void *ctx, const cJSON *args, cJSON **output, char **message, dk_err *err) {
    (void)err;
    return details_tool(((adl_tool_ctx *)ctx)->r, SOURCE_PS, args, output, message);
}

static dk_tool_status tool_steering_samples(void *ctx, const cJSON *args, cJSON **output, char **message,
                                            dk_err *err) {
    (void)err;
    const adl_results *r = ((adl_tool_ctx *)ctx)->r;
    const adl_entry *e;
    const char *dataset;
    int64_t layer, n;
    const char **subset = NULL;
    int64_t n_subset = 0;
    const adl_pos *p = arg_entry_position(r, args, has_gen, "steering", &e, &dataset, &layer, message);
    if (!p) return DK_TOOL_PARAM_ERROR;
    if (agent_arg_strings(args, "prompts_subset", MAX_LIST_ITEMS, 1 << 16, true, &subset, &n_subset, message) != 0 ||
        agent_arg_int(args, "n", 1, r->drill_max_samples, &n, message) != 0) {
        free(subset);
        return DK_TOOL_PARAM_ERROR;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "dataset", dataset);
    dk_pyjson_add_int(o, "layer", layer);
    dk_pyjson_add_int(o, "position", p->label);
    cJSON_AddItemToObject(o, "examples",
                          steering_examples(p, subset, subset ? n_subset : 0, n, r->drill_max_chars));
    free(subset);
    *output = o;
    return DK_TOOL_OK;
}

static dk_tool_status tool_generate_steered(void *ctx, const cJSON *args, cJSON **output, char **message,
                                            dk_err *err) {
    const adl_tool_ctx *c = ctx;
    const adl_results *r = c->r;
    const adl_entry *e;
    const char *dataset;
    int64_t layer, n;
    const char **prompts = NULL;
    int64_t n_prompts = 0;
    const adl_pos *p = arg_entry_position(r, args, has_steer, "steering (a threshold and a vector)", &e, &dataset,
                                          &layer, message);
    if (!p) return DK_TOOL_PARAM_ERROR;
    const int64_t max_chars = c->models->max_prompt_chars > 0 ? c->models->max_prompt_chars : 1 << 16;
    if (agent_arg_strings(args, "prompts", r->steer_max_per_call, max_chars, false, &prompts, &n_prompts,
                          message) != 0)
        return DK_TOOL_PARAM_ERROR;
    if (n_prompts == 0) {
        *message = dk_strdup("prompts must be a non-empty list of prompt strings");
        free(prompts);
        return DK_TOOL_PARAM_ERROR;
    }
    if (agent_arg_int(args, "n", 1, r->steer_max_per_call / n_prompts, &n, message) != 0) {
        char *more = dk_sprintf("%s (n x len(prompts) may be at most %lld per call: "
                                "diffing.method.agent.generate_steered.max_samples_per_call)", *message,
                                (long long)r->steer_max_per_call);
        free(*message);
        *message = more;
        free(prompts);
        return DK_TOOL_PARAM_ERROR;
    }
    /* the request: one chat per prompt, n samples each, the steering in extra_body (diffkit serve) */
    cJSON *extra = cJSON_CreateObject();
    if (c->models->disable_thinking)
        cJSON_AddFalseToObject(cJSON_AddObjectToObject(extra, "chat_template_kwargs"), "enable_thinking");
    cJSON *steer = cJSON_AddObjectToObject(extra, "steering");
    dk_pyjson_add_int(steer, "layer", layer);
    cJSON *vec = cJSON_AddArrayToObject(steer, "vector");
    for (int64_t h = 0; h < e->H; h++) cJSON_AddItemToArray(vec, cJSON_CreateNumber((double)p->vector[h]));
    cJSON_AddNumberToObject(steer, "strength", p->avg_threshold);
    cJSON_AddStringToObject(steer, "mode", "all");
    dk_llm_message *msgs = dk_malloc((size_t)n_prompts * sizeof *msgs);
    dk_llm_request *reqs = dk_malloc((size_t)n_prompts * sizeof *reqs);
    dk_llm_response *resps = dk_calloc((size_t)n_prompts, sizeof *resps);
    for (int64_t i = 0; i < n_prompts; i++) {
        msgs[i] = (dk_llm_message){.role = "user", .content = prompts[i]};
        reqs[i] = dk_llm_request_init(&msgs[i], 1);
        reqs[i].n = (int)n;
        reqs[i].max_tokens = (int)r->steer_max_new_tokens;
        reqs[i].temperature = r->steer_do_sample ? r->steer_temperature : 0.0;
        reqs[i].extra_body = extra;
    }
    dk_llm_chat_many(c->models->finetuned, reqs, (int)n_prompts, resps);  /* each failure is in its resps[i].err */
    dk_tool_status st = DK_TOOL_OK;
    cJSON *texts = cJSON_CreateArray();
    for (int64_t i = 0; i < n_prompts && st == DK_TOOL_OK; i++) {
        if (resps[i].err.code != 0) {
            dk_err_set(err, DK_EXIT_RUNTIME, "generate_steered: the organism's endpoint %s failed: %s",
                       dk_llm_client_url(c->models->finetuned), resps[i].err.msg);
            st = DK_TOOL_FAILED;
        } else if (resps[i].n_choices != n) {
            dk_err_set(err, DK_EXIT_RUNTIME,
                       "generate_steered: the organism's endpoint %s sent %d samples for n = %lld",
                       dk_llm_client_url(c->models->finetuned), resps[i].n_choices, (long long)n);
            st = DK_TOOL_FAILED;
        } else {
            for (int j = 0; j < resps[i].n_choices; j++)
                cJSON_AddItemToArray(texts, cJSON_CreateString(resps[i].choices[j].content));
        }
    }
    for (int64_t i = 0; i < n_prompts; i++) dk_llm_response_free(&resps[i]);
    free(resps);
    free(reqs);
    free(msgs);
    free(prompts);
    cJSON_Delete(extra);
    if (st != DK_TOOL_OK) {
        cJSON_Delete(texts);
        return st;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "texts", texts);
    *output = o;
    return DK_TOOL_OK;
}

/* generate_steered's cost: n samples per prompt. The seed charges 1 before the call and n·|prompts| − 1 after it
 * (ADLAgent.get_pre_tool_cost / get_post_tool_cost), so a call larger than the remaining budget runs and the
 * seed then asserts (the run crashes). Here the whole n·|prompts| is charged before (when the arguments have that
 * shape; else 1, as the seed), so such a call is answered MODEL_INTERACTION_BUDGET_EXHAUSTED before any model
 * runs; every call the seed completes is charged the same total. */
static int64_t steered_pre_cost(void *ctx, const cJSON *args) {
    (void)ctx;
    const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(args, "prompts"), *n = cJSON_GetObjectItemCaseSensitive(args, "n");
    if (!cJSON_IsArray(prompts) || !cJSON_IsNumber(n) || !dk_pyjson_is_int(n) || n->valuedouble < 1) return 1;
    const int64_t total = (int64_t)cJSON_GetArraySize(prompts) * (int64_t)n->valuedouble;
    return total >= 1 ? total : 1;
}

/* a successful call returns exactly n·|prompts| texts, all charged before */
static int64_t steered_post_cost(void *ctx, const cJSON *output) {
    (void)ctx, (void)output;
    return 0;
}

static const char *const PARAMS_DETAILS[] = {"dataset", "layer", "positions", "k"};
static const char *const PARAMS_SAMPLES[] = {"dataset", "layer", "position", "prompts_subset", "n"};
static const char *const PARAMS_STEERED[] = {"dataset", "layer", "position", "prompts", "n"};

void *adl_tools(adl_results *r, dk_agent_models *models, dk_agent_tool tools[4]) {
    adl_tool_ctx *c = dk_calloc(1, sizeof *c);
    c->r = r;
    c->models = models;
    tools[0] = (dk_agent_tool){.name = "get_logitlens_details", .params = PARAMS_DETAILS, .n_params = 4,
                               .run = tool_logitlens, .ctx = c};
    tools[1] = (dk_agent_tool){.name = "get_patchscope_details", .params = PARAMS_DETAILS, .n_params = 4,
                               .run = tool_patchscope, .ctx = c};
    tools[2] = (dk_agent_tool){.name = "get_steering_samples", .params = PARAMS_SAMPLES, .n_params = 5,
                               .run = tool_steering_samples, .ctx = c};
    tools[3] = (dk_agent_tool){.name = "generate_steered", .params = PARAMS_STEERED, .n_params = 5,
                               .pre_cost = steered_pre_cost, .post_cost = steered_post_cost,
                               .run = tool_generate_steered, .ctx = c};
    return c;
}

void adl_tools_state_free(void *state) { free(state); }
