/* report.c — the report's document: head (Content-Security-Policy, CSS, self-check script), headline, the
 * table of methods with their state, one section per method, written to ${diffing.results_dir}/report/index.html
 * the way every output is written (io/out_file.h: temporary + rename). See report.h. */
#include "report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "html.h"
#include "io/file.h"
#include "io/out_file.h"

typedef void (*rp_section_fn)(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir);

typedef struct rp_method {
    const char *id;        /* data-section and anchor */
    const char *title;
    const char *subdir;    /* under the results folder */
    const char *job;       /* the command that makes the results */
    const char *what;      /* one line for the reader */
    rp_section_fn fn;
} rp_method;

static const rp_method METHODS[] = {
    {"adl", "Activation Difference Lens (ADL)", "activation_difference_lens", "diff_adl",
     "mean activation differences at the first positions, read through the logit lens and Patchscope, and used to "
     "steer the finetuned model", rp_section_adl},
    {"kl", "KL divergence", "kl", "diff_kl",
     "per-token KL(finetuned || base) of the next-token distributions", rp_section_kl},
    {"activation_analysis", "Activation analysis", "activation_analysis", "diff_activation_analysis",
     "norms and cosine distances of the finetuned - base activation differences", rp_section_activation_analysis},
    {"pca", "PCA of the differences", "pca", "diff_pca", "principal components of the activation differences",
     rp_section_pca},
    {"sae_difference", "SAE on the differences", "sae_difference", "diff_sae",
     "a BatchTopK sparse autoencoder trained on finetuned - base activations", rp_section_dictionary},
    {"crosscoder", "Crosscoder", "crosscoder", "diff_crosscoder",
     "a BatchTopK crosscoder trained on [base, finetuned] activations", rp_section_dictionary},
    {"diff_mining", "Diff mining", "diff_mining", "diff_mining",
     "tokens whose logits the finetune raised most, and NMF topics of them", rp_section_diff_mining},
    {"amplification", "Weight amplification", "amplification", "diff_amplification",
     "generations of the base, the organism and the organism with its weight difference amplified",
     rp_section_amplification},
};

static const char CSS[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1300px;padding:0 20px 40px;color:#222}"
    "h1{font-size:24px;margin:18px 0 4px}h2{border-bottom:2px solid #ccd;padding-bottom:3px;margin-top:34px}"
    "h3{margin:22px 0 6px}h4{margin:14px 0 4px}"
    "table{border-collapse:collapse;margin:6px 0 10px}td,th{border:1px solid #dde;padding:3px 7px;vertical-align:top;"
    "text-align:left}thead th{background:#f0f2f8}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".problem{color:#a00;background:#fff0f0;border-left:4px solid #c00;padding:4px 8px}"
    ".missing{color:#555;background:#f6f6f6;border-left:4px solid #999;padding:4px 8px}"
    ".note{color:#444;font-size:13px}.from{color:#555;font-size:12px;margin:2px 0}"
    "a.src{font-family:monospace;font-size:12px;color:#2050a0}"
    "#headline{background:#f3f7ff;border:1px solid #c9d8f5;padding:6px 16px;margin-top:14px}"
    "#headline ul{margin:4px 0}#headline li{margin:3px 0}"
    "svg.plot{width:640px;max-width:100%;height:auto;background:#fff;border:1px solid #eee;margin:4px 8px 0 0}"
    "svg .title{font-size:14px;font-weight:600}svg .tl{font-size:11px;fill:#333}svg .al{font-size:12px}"
    "svg .axis,svg .tick{stroke:#333;fill:none}svg .grid{stroke:#eee}svg .line{fill:none;stroke-width:1.6}"
    "svg .bar{fill:#4c78a8}figure{display:inline-block;margin:4px 10px 10px 0;vertical-align:top}"
    "figcaption{font-size:12px}.strip{font-family:monospace;font-size:12px;white-space:pre-wrap;max-width:1000px}"
    ".tok{border-radius:2px}.toks span{display:inline-block;margin:1px 3px 1px 0;padding:0 4px;background:#eef;"
    "font-family:monospace;white-space:pre}.toks .rel{background:#ffd84d;outline:1px solid #c90}"
    ".toks .unk{outline:1px dashed #888}.side{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));"
    "gap:8px}.side>div{border:1px solid #dde;padding:4px 8px;background:#fafbff}.side pre,.gen{white-space:pre-wrap;"
    "font-size:12px;margin:2px 0 6px}details{margin:4px 0}summary{cursor:pointer}"
    ".msg{border-left:3px solid #ccd;padding-left:8px;margin:6px 0}.msg pre{white-space:pre-wrap;font-size:12px}"
    "#selfcheck{font-size:11px;color:#777;white-space:pre-wrap}nav td,nav th{font-size:13px}";

/* The page checks itself on load (report.h); the verdict is what tests/report/report_browser.sh reads. */
static const char SELF_CHECK[] =
    "(function(){var errors=[],blocked=[];"
    "window.addEventListener('error',function(e){errors.push(String(e.message||e.type))},true);"
    "document.addEventListener('securitypolicyviolation',function(e){blocked.push(e.violatedDirective+' '+"
    "e.blockedURI)});"
    "function check(){var v={ok:true,sections:{},errors:errors,blocked:blocked,external:[]};"
    "document.querySelectorAll('section.method').forEach(function(s){var r={state:s.dataset.state,tables:0,"
    "empty_tables:0,plots:0,empty_plots:0};"
    "s.querySelectorAll('table').forEach(function(t){r.tables++;if(!t.querySelector('tbody tr'))r.empty_tables++});"
    "s.querySelectorAll('svg').forEach(function(g){r.plots++;if(!g.querySelector('path.line,rect.bar'))"
    "r.empty_plots++});"
    "r.rendered=r.state!=='ok'||(r.tables+r.plots>0&&r.empty_tables===0&&r.empty_plots===0);"
    "if(!r.rendered)v.ok=false;v.sections[s.dataset.section]=r});"
    "var far=/^\\s*(https?:|ftp:|wss?:)?\\/\\//i;"
    "document.querySelectorAll('[src],[href],[action],[srcset],[poster],[data],[xlink\\\\:href]').forEach("
    "function(el){['src','href','action','srcset','poster','data','xlink:href'].forEach(function(a){"
    "var x=el.getAttribute(a);if(x&&far.test(x))v.external.push(el.tagName+' '+a+'='+x)})});"
    "document.querySelectorAll('style,[style]').forEach(function(el){var t=el.tagName==='STYLE'?el.textContent:"
    "el.getAttribute('style');if(/url\\(|@import/i.test(t))v.external.push(el.tagName+' style: '+t.slice(0,80))});"
    "if(errors.length||blocked.length||v.external.length||!Object.keys(v.sections).length)v.ok=false;"
    "document.getElementById('selfcheck').textContent=JSON.stringify(v)}"
    "window.addEventListener('load',function(){check();setTimeout(check,300)})})();";

static const char CSP[] = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                          "img-src data:; base-uri 'none'; form-action 'none'";

static char *make_command(const rp_options *o, const char *job) {
    return dk_sprintf("%s model=%s organism=%s%s%s", job, o->model, o->organism, o->command_suffix ? " " : "",
                      o->command_suffix ? o->command_suffix : "");
}

static void missing_line(dk_strbuf *b, const rp_options *o, const char *what, const char *job) {
    char *cmd = make_command(o, job);
    dk_strbuf_append(b, "<p class=\"missing\">");
    rp_esc(b, what);
    dk_strbuf_append(b, ": make them with <code>");
    rp_esc(b, cmd);
    dk_strbuf_append(b, "</code></p>\n");
    free(cmd);
}


static void section_open(dk_strbuf *b, const char *id, const char *title, const char *state, const char *what) {
    dk_strbuf_append(b, "<section class=\"method\" id=\"");
    rp_esc(b, id);
    dk_strbuf_append(b, "\" data-section=\"");
    rp_esc(b, id);
    dk_strbuf_printf(b, "\" data-state=\"%s\">\n<h2>", state);
    rp_esc(b, title);
    dk_strbuf_append(b, "</h2>\n");
    if (what) rp_note(b, "%s.", what);
}

/* One method: its state, and its section when the results are complete. Returns the nav row's detail. */
static char *method_section(rp_ctx *c, dk_strbuf *b, const rp_method *m, const char *id, const char *results_dir,
                            const char *subdir, const char *title, rp_outcome *out) {
    rp_h5 f;
    char why[1024];
    rp_state state = rp_h5_open(&f, results_dir, subdir, why, sizeof why);
    static const char *const NAMES[] = {"missing", "partial", "corrupt", "ok"};
    section_open(b, id, title, NAMES[state], m->what);
    char *detail = NULL;
    if (state == RP_OK) {
        int before = c->problems;
        m->fn(c, b, &f, subdir);
        out->sections_shown++;
        detail = c->problems > before ? dk_sprintf("shown; %d view(s) could not be read (named in the section)",
                                                   c->problems - before)
                                      : dk_strdup("shown");
        if (c->problems > before) out->sections_bad++;
    } else if (state == RP_MISSING) {
        missing_line(b, c->o, "No results of this method", m->job);
        out->sections_missing++;
        detail = dk_sprintf("missing: run %s", m->job);
    } else {
        rp_problem(b, "%s", why);
        char *cmd = make_command(c->o, m->job);
        rp_note(b, "To make complete results: %s diffing.method.overwrite=true", cmd);
        free(cmd);
        out->sections_bad++;
        detail = dk_strdup(why);
    }
    dk_strbuf_append(b, "</section>\n");
    rp_h5_close(&f);
    return detail;
}

void rp_outcome_free(rp_outcome *out) {
    free(out->path), free(out->headline);
    memset(out, 0, sizeof *out);
}

int rp_write_report(const rp_options *o, rp_outcome *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    rp_ctx c = {.o = o};
    dk_strbuf body = {0}, nav = {0};
    const char *adl_dir = o->adl_results_dir ? o->adl_results_dir : o->results_dir;
    char *adl_subdir = NULL;
    if (strcmp(adl_dir, o->results_dir) != 0) {
        const char *slash = strrchr(adl_dir, '/');
        adl_subdir = dk_sprintf("../%s/activation_difference_lens", slash ? slash + 1 : adl_dir);
    }
    dk_strbuf_append(&nav, "<nav><table><thead><tr><th>method</th><th>results</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < sizeof METHODS / sizeof *METHODS; i++) {
        const rp_method *m = &METHODS[i];
        if (strcmp(m->id, "diff_mining") == 0) {
            /* one run folder per (seed, top_k): diff_mining/seed{seed}_top{k}/results.h5 (or .partial) */
            char *dm = dk_path_join(o->results_dir, "diff_mining");
            size_t n_runs = 0;
            char **runs = dk_is_dir(dm) ? dk_list_dir(dm, NULL, false, &n_runs) : NULL;
            size_t shown = 0;
            for (size_t r = 0; r < n_runs; r++) {
                char *sub = dk_sprintf("diff_mining/%s", runs[r]);
                char *full = dk_path_join(o->results_dir, sub);
                if (dk_is_dir(full)) {
                    char *title = dk_sprintf("%s (%s)", m->title, runs[r]);
                    char *id = dk_sprintf("%s-%s", m->id, runs[r]);
                    char *detail = method_section(&c, &body, m, id, o->results_dir, sub, title, out);
                    dk_strbuf_append(&nav, "<tr><td><a href=\"#");
                    rp_esc(&nav, id);
                    dk_strbuf_append(&nav, "\">");
                    rp_esc(&nav, title);
                    dk_strbuf_append(&nav, "</a></td><td>");
                    rp_esc(&nav, detail);
                    dk_strbuf_append(&nav, "</td></tr>\n");
                    free(detail), free(title), free(id);
                    shown++;
                }
                free(full), free(sub);
            }
            dk_free_strings(runs, n_runs);
            free(dm);
            if (shown) continue;
        }
        const char *results_dir = o->results_dir, *subdir = m->subdir;
        if (strcmp(m->id, "adl") == 0 && adl_subdir) subdir = adl_subdir;
        char *detail = method_section(&c, &body, m, m->id, results_dir, subdir, m->title, out);
        dk_strbuf_printf(&nav, "<tr><td><a href=\"#%s\">", m->id);
        rp_esc(&nav, m->title);
        dk_strbuf_append(&nav, "</a></td><td>");
        rp_esc(&nav, detail);
        dk_strbuf_append(&nav, "</td></tr>\n");
        free(detail);
    }
    /* the agent */
    {
        dk_strbuf agent = {0};
        int before = c.problems;
        rp_state st = rp_section_agent(&c, &agent);
        static const char *const NAMES[] = {"missing", "partial", "corrupt", "ok"};
        section_open(&body, "agent", "Agent evaluation", NAMES[st],
                     "an LLM agent reads a method's results, questions both models and says what the finetuning was "
                     "for; a grader scores its description against the organism's rubric");
        dk_strbuf_append(&body, agent.data ? agent.data : "");
        if (st == RP_MISSING) missing_line(&body, o, "No agent results (agent_summary.json)", "diff_agent");
        dk_strbuf_append(&body, "</section>\n");
        dk_strbuf_printf(&nav, "<tr><td><a href=\"#agent\">Agent evaluation</a></td><td>%s</td></tr>\n",
                         st == RP_OK ? (c.problems > before ? "shown; some runs could not be read" : "shown")
                         : st == RP_MISSING ? "missing: run diff_agent" : "agent_summary.json cannot be read");
        if (st == RP_OK) out->sections_shown++;
        else if (st == RP_MISSING) out->sections_missing++;
        if (st == RP_CORRUPT || (st == RP_OK && c.problems > before)) out->sections_bad++;
        dk_strbuf_free(&agent);
    }
    dk_strbuf_append(&nav, "</tbody></table></nav>\n");

    /* the document */
    dk_strbuf doc = {0};
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    dk_strbuf_printf(&doc, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                     "<meta http-equiv=\"Content-Security-Policy\" content=\"%s\">\n<title>diffkit report: ", CSP);
    rp_esc(&doc, o->model);
    dk_strbuf_append(&doc, " / ");
    rp_esc(&doc, o->organism);
    dk_strbuf_printf(&doc, "</title>\n<style>%s</style>\n<script>%s</script>\n</head><body>\n<h1>", CSS, SELF_CHECK);
    rp_esc(&doc, o->model);
    dk_strbuf_append(&doc, " vs its organism ");
    rp_esc(&doc, o->organism);
    dk_strbuf_append(&doc, "</h1>\n<p class=\"note\">diffkit report of ");
    rp_esc(&doc, o->results_dir);
    dk_strbuf_printf(&doc, ", made %s from the results files only. Every number links to the HDF5 dataset it came "
                     "from (paths like <code>kl/results.h5:/pretrain/per_token_kl</code>, relative to the results "
                     "folder).</p>\n", when);
    if (o->organism_description) {
        dk_strbuf_append(&doc, "<p class=\"note\">The organism's configuration says: ");
        rp_esc(&doc, o->organism_description);
        dk_strbuf_append(&doc, " (for comparison; the findings below come from the results only)</p>\n");
    }
    if (!o->tok)
        rp_note(&doc, "The model's tokenizer was not found (%s): tokens of the examples are shown as #id.",
                o->tok_why && o->tok_why[0] ? o->tok_why : "none given");
    dk_strbuf_append(&doc, "<section id=\"headline\"><h2>Headline</h2><ul>\n");
    if (c.headline_html.len) dk_strbuf_append(&doc, c.headline_html.data);
    else dk_strbuf_append(&doc, "<li>No method has complete results yet: nothing was found.</li>\n");
    dk_strbuf_append(&doc, "</ul></section>\n");
    dk_strbuf_append(&doc, nav.data);
    dk_strbuf_append(&doc, body.data);
    dk_strbuf_append(&doc, "<h2>Self-check</h2><p class=\"note\">What this page found about itself on load (every "
                           "section rendered, no blocked load, no script error):</p><pre id=\"selfcheck\">not run "
                           "(scripts disabled?)</pre>\n</body></html>\n");

    char *report_dir = dk_path_join(o->results_dir, "report");
    int rc = dk_mkdirs(report_dir, err);
    out->path = dk_path_join(report_dir, "index.html");
    if (rc == 0) {
        dk_out_file of;
        rc = dk_out_open(&of, out->path, NULL, 0, err);
        if (rc == 0) {
            fwrite(doc.data, 1, doc.len, of.f);
            rc = dk_out_commit(&of, err);
        }
    }
    out->headline = c.headline_text.len ? dk_strbuf_take(&c.headline_text)
                                        : dk_strdup("no method has complete results yet");
    free(report_dir), free(adl_subdir);
    dk_strbuf_free(&doc), dk_strbuf_free(&body), dk_strbuf_free(&nav);
    dk_strbuf_free(&c.headline_html), dk_strbuf_free(&c.headline_text);
    return rc;
}
