/* report_values.c — the report's numbers are the HDF5 values: diff_report runs on the committed fixture of
 * trimmed real demo results (tests/fixtures/report/results, tools/make_report_fixture.py), then every number the
 * page tags (data-h5="FILE:PATH[@ATTR]" data-index="I" data-value="V") is read back from the HDF5 file here,
 * with the plain HDF5 API (not the report's reader), and compared: the value exactly, the text shown to %.4g.
 * Every method's file must contribute tagged numbers, and the headline and the agent section (format fixture)
 * must say what the results say.
 *
 * Usage: report_values BUILD/bin/diff_report */
#include <math.h>
#include <stdint.h>

#include <hdf5.h>

#include "report_check.h"

static char *unescape(const char *s, size_t n) {
    char *out = malloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        static const char *const ENT[][2] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}};
        int hit = 0;
        for (size_t e = 0; e < 5 && !hit; e++)
            if (strncmp(s + i, ENT[e][0], strlen(ENT[e][0])) == 0) {
                out[j++] = ENT[e][1][0];
                i += strlen(ENT[e][0]);
                hit = 1;
            }
        if (!hit) out[j++] = s[i++];
    }
    out[j] = '\0';
    return out;
}

/* The value at flat index (or the attribute / scalar when index < 0) read with the HDF5 API; NAN when absent. */
static double h5_value(const char *results_dir, const char *file, const char *path, long long index) {
    char full[8192];
    snprintf(full, sizeof full, "%s/%s", results_dir, file);
    hid_t f = H5Fopen(full, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NAN;
    double v = NAN;
    const char *at = strchr(path, '@');
    if (at) {
        char *obj = strndup(path, (size_t)(at - path));
        hid_t a = H5Aopen_by_name(f, obj, at + 1, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) v = NAN;
            H5Aclose(a);
        }
        free(obj);
    } else {
        hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
        if (d >= 0) {
            hid_t space = H5Dget_space(d);
            int rank = H5Sget_simple_extent_ndims(space);
            hsize_t dims[8] = {0}, coord[8] = {0};
            H5Sget_simple_extent_dims(space, dims, NULL);
            long long rest = index;
            for (int r = rank - 1; r >= 0; r--) coord[r] = (hsize_t)(rest % (long long)dims[r]), rest /= (long long)dims[r];
            hsize_t one = 1;
            hid_t mem = H5Screate_simple(1, &one, NULL);
            if (rank > 0) H5Sselect_elements(space, H5S_SELECT_SET, 1, coord);
            if (index >= 0 && H5Dread(d, H5T_NATIVE_DOUBLE, mem, space, H5P_DEFAULT, &v) < 0) v = NAN;
            H5Sclose(mem), H5Sclose(space), H5Dclose(d);
        }
    }
    H5Fclose(f);
    return v;
}

/* Whether the dataset or attribute exists (a NaN read back is only a match where the value is really stored). */
static bool h5_exists(const char *results_dir, const char *file, const char *path) {
    char full[8192];
    snprintf(full, sizeof full, "%s/%s", results_dir, file);
    hid_t f = H5Fopen(full, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return false;
    const char *at = strchr(path, '@');
    char *obj = at ? strndup(path, (size_t)(at - path)) : strdup(path);
    bool ok = H5Oexists_by_name(f, obj, H5P_DEFAULT) > 0 &&
              (!at || H5Aexists_by_name(f, obj, at + 1, H5P_DEFAULT) > 0);
    free(obj);
    H5Fclose(f);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: report_values DIFF_REPORT\n");
        return 2;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char *dir = strdup(rc_scratch("values", 1));
    char *out = NULL;
    int code = rc_run(argv[1], dir, NULL, &out);
    EXPECT(code == 0, "diff_report exit %d:\n%s", code, out);
    char path[8192];
    snprintf(path, sizeof path, "%s/report/index.html", dir);
    EXPECT_CONTAINS(out, "report: ");
    EXPECT_CONTAINS(out, "/report/index.html");
    char *html = rc_read(path);
    if (!EXPECT(html != NULL, "no %s", path)) return dk_test_finish("report_values");

    /* every tagged number */
    static const char *const FILES[] = {"activation_difference_lens/results.h5", "kl/results.h5",
                                        "activation_analysis/results.h5", "pca/results.h5", "sae_difference/results.h5",
                                        "crosscoder/results.h5", "diff_mining/seed42_top100/results.h5"};
    int per_file[7] = {0}, checked = 0, bad = 0;
    for (const char *p = strstr(html, "data-h5=\""); p; p = strstr(p + 1, "data-h5=\"")) {
        const char *a = p + 9, *e = strchr(a, '"');
        char *tag = unescape(a, (size_t)(e - a));
        long long index = 0;
        double value = NAN;
        const char *ip = strstr(e, "data-index=\""), *vp = strstr(e, "data-value=\""), *gt = strchr(e, '>');
        if (!ip || !vp || !gt || ip > gt || vp > gt) {
            EXPECT(0, "a data-h5 tag without data-index and data-value: %s", tag);
            free(tag);
            continue;
        }
        index = strtoll(ip + 12, NULL, 10);
        value = strtod(vp + 12, NULL);
        char shown[64] = "";
        const char *lt = strchr(gt + 1, '<');
        snprintf(shown, sizeof shown, "%.*s", (int)(lt - gt - 1), gt + 1);
        char *colon = strchr(tag, ':');
        *colon = '\0';
        double truth = h5_value(dir, tag, colon + 1, index);
        char expect_shown[64];
        if (isnan(truth)) snprintf(expect_shown, sizeof expect_shown, "NaN");  /* a stored NaN (e.g. a latent's beta) */
        else if (truth == floor(truth) && fabs(truth) < 1e15) snprintf(expect_shown, sizeof expect_shown, "%.0f", truth);
        else snprintf(expect_shown, sizeof expect_shown, "%.4g", truth);
        bool same = (isnan(truth) && isnan(value) && h5_exists(dir, tag, colon + 1)) || truth == value;
        if (!same || strcmp(shown, expect_shown) != 0) {
            if (bad++ < 10)
                EXPECT(0, "%s:%s[%lld]: page %.17g (shown \"%s\"), HDF5 %.17g", tag, colon + 1, index, value, shown, truth);
        }
        for (int i = 0; i < 7; i++)
            if (strcmp(tag, FILES[i]) == 0) per_file[i]++;
        checked++;
        free(tag);
    }
    EXPECT(bad == 0, "%d of %d tagged numbers differ from the HDF5 files", bad, checked);
    for (int i = 0; i < 7; i++) EXPECT(per_file[i] >= 3, "only %d tagged numbers from %s", per_file[i], FILES[i]);
    fprintf(stderr, "checked %d tagged numbers against the HDF5 files\n", checked);

    /* the headline is derived from the results: KL ranking by the stored means, ADL's tokens at position 0 */
    double m_gh = h5_value(dir, "kl/results.h5", "/glacier_honey/per_token_statistics@mean", -1);
    double m_pt = h5_value(dir, "kl/results.h5", "/pretrain/per_token_statistics@mean", -1);
    double m_ch = h5_value(dir, "kl/results.h5", "/chat/per_token_statistics@mean", -1);
    char ranking[256];
    /* the three datasets in decreasing order of their stored means */
    const char *names[3] = {"glacier_honey", "pretrain", "chat"};
    double means[3] = {m_gh, m_pt, m_ch};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (means[j] > means[i]) {
                double t = means[i];
                means[i] = means[j], means[j] = t;
                const char *n = names[i];
                names[i] = names[j], names[j] = n;
            }
    snprintf(ranking, sizeof ranking, "%s %.4g > %s %.4g > %s %.4g", names[0], means[0], names[1], means[1], names[2],
             means[2]);
    EXPECT_CONTAINS(out, ranking);
    char ranking_html[300];
    snprintf(ranking_html, sizeof ranking_html, "%s %.4g &gt; %s %.4g &gt; %s %.4g", names[0], means[0], names[1],
             means[1], names[2], means[2]);
    EXPECT_CONTAINS(html, ranking_html);
    EXPECT_CONTAINS(out, "at position 0 reads ' ice'");     /* top_tokens[0][0] of the fixture: checked below */
    {
        hid_t f;
        char full[8192];
        snprintf(full, sizeof full, "%s/activation_difference_lens/results.h5", dir);
        f = H5Fopen(full, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "/layer_1/pretrain/logit_lens/mean_diff/top_tokens", H5P_DEFAULT);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
        hid_t space = H5Dget_space(d);
        hssize_t n = H5Sget_simple_extent_npoints(space);
        char **s = calloc((size_t)n, sizeof *s);
        H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s);
        char want[256];
        snprintf(want, sizeof want, "at position 0 reads '%s', '%s'", s[0], s[1]);
        EXPECT_CONTAINS(out, want);
        H5Dvlen_reclaim(t, space, H5P_DEFAULT, s);
        free(s);
        H5Sclose(space), H5Tclose(t), H5Dclose(d), H5Fclose(f);
    }

    /* the agent section (format fixture): table rows, grades, escaped text, transcripts, missing runs */
    char *agent = rc_section(html, "agent");
    EXPECT(agent && strstr(agent, "data-state=\"ok\""), "agent section state");
    EXPECT_CONTAINS(agent, "grade <b class=\"grade\">4</b> / 5");
    EXPECT_CONTAINS(agent, "grade <b class=\"grade\">3</b> / 5");
    EXPECT_CONTAINS(agent, "&lt;script&gt;alert(1)&lt;/script&gt;");
    EXPECT(agent && !strstr(agent, "<script>"), "agent text must be escaped");
    EXPECT_CONTAINS(agent, "not finished (no description.txt)");
    EXPECT_CONTAINS(agent, "<details><summary>Transcript (3 messages)</summary>");
    EXPECT_CONTAINS(agent, "FORMAT FIXTURE: what the DiffMiningAgent would be sent first");
    EXPECT_CONTAINS(agent, "missing: format fixture: pca has no agent");
    EXPECT_CONTAINS(html, "Agent: best mean grade 3.5 / 5 (ADLAgent on activation_difference_lens, budget 5");
    free(agent);

    /* every method section is shown */
    static const char *const IDS[] = {"adl", "kl", "activation_analysis", "pca", "sae_difference", "crosscoder",
                                      "diff_mining-seed42_top100", "amplification"};
    for (size_t i = 0; i < sizeof IDS / sizeof *IDS; i++) {
        char *s = rc_section(html, IDS[i]);
        EXPECT(s && strstr(s, "data-state=\"ok\"") && !strstr(s, "class=\"problem\""), "section %s: not shown cleanly",
               IDS[i]);
        free(s);
    }
    free(html), free(out), free(dir);
    return dk_test_finish("report_values");
}
