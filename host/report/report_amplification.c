/* report_amplification.c — the weight-amplification section (docs/formats.md "Amplification results"): per
 * prompt of completions/generations.jsonl the base model's, the organism's and each amplified variant's samples
 * side by side. results.h5 (its record) says the run is complete; the generations are the JSON beside it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "io/file.h"
#include "report.h"

enum { SAMPLES_SHOWN = 2 };

void rp_section_amplification(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir) {
    char *rel = dk_sprintf("%s/completions/generations.jsonl", method_dir);
    char *path = dk_path_join(c->o->results_dir, rel);
    dk_err err = {0};
    cJSON *gens = rp_jsonl_file(path, &err);
    if (!gens) {
        rp_view_failed(c, b, "the generations", &err);
    } else {
        dk_strbuf_append(b, "<p class=\"from\">from ");
        rp_esc(b, rel);
        dk_strbuf_append(b, " (the run's record: ");
        rp_src(b, f->rel, "/inputs");
        dk_strbuf_printf(b, "); the first %d samples of each variant</p>\n", SAMPLES_SHOWN);
        dk_strbuf_append(b, "<table class=\"amp\"><thead><tr><th>prompt</th><th>samples</th></tr></thead><tbody>\n");
        const cJSON *rec;
        cJSON_ArrayForEach(rec, gens) {
            rp_prompt_row(b, rec);
            rp_samples(b, "base", cJSON_GetObjectItemCaseSensitive(rec, "base_samples"), SAMPLES_SHOWN);
            rp_samples(b, "organism", cJSON_GetObjectItemCaseSensitive(rec, "ft_samples"), SAMPLES_SHOWN);
            static const char *const GROUPS[][2] = {{"amplified_samples", "amplified "},
                                                    {"logit_amplified_samples", "logit-amplified "}};
            for (int g = 0; g < 2; g++) {
                const cJSON *variants = cJSON_GetObjectItemCaseSensitive(rec, GROUPS[g][0]), *v;
                cJSON_ArrayForEach(v, variants) {
                    char *title = dk_sprintf("%s%s", GROUPS[g][1], v->string ? v->string : "?");
                    rp_samples(b, title, v, SAMPLES_SHOWN);
                    free(title);
                }
            }
            dk_strbuf_append(b, "</div></td></tr>\n");
        }
        dk_strbuf_append(b, "</tbody></table>\n");
        if (cJSON_GetArraySize(gens) == 0) {
            rp_problem(b, "%s has no records", rel);
            c->problems++;
        }
    }
    cJSON_Delete(gens);
    free(rel), free(path);
}
