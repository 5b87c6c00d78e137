/* report_bad_input.c — the report with bad results: a scratch copy of the fixture where one method has no
 * results (kl removed), one has only results.h5.partial (pca), one results.h5 is a truncated copy
 * (sae_difference), one lacks a dataset a view needs (crosscoder training/loss, ADL's logit lens), and the agent
 * summary is damaged. Each is named in the report with the reason (and the command that makes the missing
 * results), and none of their numbers is shown as real. An organism with no adapter for the model is a clear
 * error (exit 2). Usage: report_bad_input BUILD/bin/diff_report */
#include <hdf5.h>

#include "report_check.h"

static void delete_link(const char *file, const char *path) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0 || H5Ldelete(f, path, H5P_DEFAULT) < 0) {
        fprintf(stderr, "cannot delete %s in %s\n", path, file);
        exit(2);
    }
    H5Fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: report_bad_input DIFF_REPORT\n");
        return 2;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char *dir = strdup(rc_scratch("bad", 0));
    char cmd[16384], p[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && rm -r kl && mv pca/results.h5 pca/results.h5.partial && "
             "head -c 20000 sae_difference/results.h5 > t && mv t sae_difference/results.h5 && "
             "printf '[{\"organism\": \"demo_glacier_honey\",' > agent_summary.json", dir);
    if (system(cmd) != 0) return 2;
    snprintf(p, sizeof p, "%s/crosscoder/results.h5", dir);
    delete_link(p, "/layer_1/demo-demo_glacier_honey-L1-Crosscoder-t100-k16-lr1e-03-x4/training/loss");
    snprintf(p, sizeof p, "%s/activation_difference_lens/results.h5", dir);
    delete_link(p, "/layer_1/pretrain/logit_lens/mean_diff/top_probs");

    char *out = NULL;
    int code = rc_run(argv[1], dir, NULL, &out);
    EXPECT(code == 0, "diff_report exit %d:\n%s", code, out);
    EXPECT_CONTAINS(out, "report: ");
    snprintf(p, sizeof p, "%s/report/index.html", dir);
    char *html = rc_read(p);
    if (!EXPECT(html != NULL, "no %s", p)) return dk_test_finish("report_bad_input");

    char *kl = rc_section(html, "kl");
    EXPECT(kl && strstr(kl, "data-state=\"missing\""), "kl: missing state");
    EXPECT_CONTAINS(kl, "make them with <code>diff_kl model=demo organism=demo_glacier_honey dataset=demo</code>");
    char *pca = rc_section(html, "pca");
    EXPECT(pca && strstr(pca, "data-state=\"partial\""), "pca: partial state");
    EXPECT_CONTAINS(pca, "only pca/results.h5.partial exists: the run did not finish");
    char *sae = rc_section(html, "sae_difference");
    EXPECT(sae && strstr(sae, "data-state=\"corrupt\""), "sae: corrupt state");
    EXPECT_CONTAINS(sae, "sae_difference/results.h5 cannot be opened by HDF5");
    char *cc = rc_section(html, "crosscoder");
    EXPECT_CONTAINS(cc, "the training curve is not shown: crosscoder/results.h5:/layer_1/"
                        "demo-demo_glacier_honey-L1-Crosscoder-t100-k16-lr1e-03-x4/training/loss is missing");
    char *adl = rc_section(html, "adl");
    EXPECT_CONTAINS(adl, "the logit lens is not shown: activation_difference_lens/results.h5:/layer_1/pretrain/"
                         "logit_lens/mean_diff/top_probs is missing");
    char *agent = rc_section(html, "agent");
    EXPECT(agent && strstr(agent, "data-state=\"corrupt\""), "agent: corrupt state");
    EXPECT_CONTAINS(agent, "agent_summary.json is not shown");
    /* nothing of the partial or corrupt files is shown as a value, nor in the headline */
    EXPECT(!strstr(html, "data-h5=\"pca/"), "a number from the partial pca results is shown");
    EXPECT(!strstr(html, "data-h5=\"sae_difference/"), "a number from the corrupt SAE results is shown");
    EXPECT(!strstr(html, "data-h5=\"kl/"), "a number from removed KL results is shown");
    EXPECT(!strstr(out, "KL:") && !strstr(out, "PCA"), "headline from missing results: %s", out);
    EXPECT(strstr(html, "<td>missing: run diff_kl</td>") != NULL, "the table of methods names the missing KL");
    free(kl), free(pca), free(sae), free(cc), free(adl), free(agent), free(html), free(out);

    /* an organism with no finetuned model for this base model: a clear error, no report */
    snprintf(cmd, sizeof cmd, "DIFFKIT_ROOT='%s' '%s' model=demo organism=cake_bake diffing.results_dir='%s/other' 2>&1",
             getenv("DIFFKIT_SOURCE_DIR"), argv[1], dir);
    FILE *pp = popen(cmd, "r");
    char buf[8192] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, pp);
    buf[n] = '\0';
    int status = pclose(pp);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 2, "organism without an adapter: exit %d", WEXITSTATUS(status));
    const char *said = buf;
    EXPECT_CONTAINS(said, "organism cake_bake has no finetuned model for model demo");
    snprintf(p, sizeof p, "%s/other/report/index.html", dir);
    EXPECT(access(p, F_OK) != 0, "a report was written for an organism without an adapter");
    free(dir);
    return dk_test_finish("report_bad_input");
}
