/* agent_eval.c — see agent_eval.h: the runs of one method's agents (budgets x repeats, in parallel), their files,
 * their grades, and the rows of the summary. agent_eval_settings.c reads the settings, agent_eval_summary.c
 * writes the tables, agent_server.c starts `diffkit serve` when no server is named. */
#define _GNU_SOURCE
#include "agent/agent_eval.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/agent_eval_internal.h"
#include "agent/agent_method.h"
#include "agent/agent_server.h"
#include "agent/pyjson.h"
#include "core/log.h"
#include "core/strutil.h"
#include "core/timer.h"
#include "io/file.h"
#include "io/json_value.h"
#include "io/out_file.h"
#include "llm/graders.h"
#include "llm/llm_client.h"

/* ---- files ---------------------------------------------------------------------------------------------- */

/* The output registry of io/out_file.c is not thread-safe: every run's files are written under this lock. */
static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;

static int write_text(const char *path, const char *text, dk_err *err) {
    pthread_mutex_lock(&files_lock);
    dk_out_file o;
    int rc = dk_out_open(&o, path, NULL, 0, err);
    if (rc == 0) {
        fputs(text, o.f);
        rc = dk_out_commit(&o, err);
    }
    pthread_mutex_unlock(&files_lock);
    return rc;
}

/* json.dump(value, f, ensure_ascii=False, indent=2), as the seed writes its JSON files. */
static int write_json(const char *dir, const char *name, const cJSON *value, dk_err *err) {
    char *path = dk_path_join(dir, name);
    char *text = dk_pyjson_dumps(value, DK_PYJSON_INDENT2);
    int rc = write_text(path, text, err);
    free(text);
    free(path);
    return rc;
}

static cJSON *read_json_file(const char *path) {
    dk_err err = {0};
    size_t n = 0;
    char *text = dk_read_file(path, &n, &err);
    if (!text) return NULL;
    char why[160];
    cJSON *v = dk_json_parse_one(text, n, why, sizeof why);
    free(text);
    return v;
}

/* ---- the served models ---------------------------------------------------------------------------------- */

/* One `diffkit serve` per diff_agent process, started on first need with the models asked so far. */
static dk_agent_server server;
static char *server_models[4];
static size_t n_server_models;

static char *diffkit_exe(const dk_agent_eval_env *env) {
    if (env->diffkit_exe) return dk_strdup(env->diffkit_exe);
    char *dir = dk_exe_dir();
    char *exe = dir ? dk_path_join(dir, "diffkit") : dk_strdup("diffkit");
    free(dir);
    return exe;
}

static bool served(const char *model) {
    for (size_t i = 0; i < n_server_models; i++)
        if (strcmp(server_models[i], model) == 0) return true;
    return false;
}

/* The base URL of a server offering base and ft: the configured one, or ours (started or restarted here). */
static const char *models_url(const dk_eval_settings *s, const dk_agent_eval_env *env, dk_err *err) {
    if (s->models_url) return s->models_url;
    if (server.pid > 0 && served(s->base_model) && served(s->ft_model)) return server.base_url;
    /* (re)start with the union of the models asked so far */
    const char *want[2] = {s->base_model, s->ft_model};
    for (int i = 0; i < 2; i++)
        if (!served(want[i]) && n_server_models < sizeof server_models / sizeof server_models[0])
            server_models[n_server_models++] = dk_strdup(want[i]);
    dk_agent_server_stop(&server);
    /* the user's overrides, less those of a method's keys (serve composes no method) */
    const char **ov = calloc(env->n_overrides + 1, sizeof *ov);
    size_t n = 0;
    for (size_t i = 0; i < env->n_overrides; i++) {
        const char *a = env->overrides[i];
        while (*a == '+' || *a == '~') a++;
        if (strncmp(a, "diffing.method.", 15) != 0) ov[n++] = env->overrides[i];
    }
    char *exe = diffkit_exe(env);
    int rc = dk_agent_server_start(exe, env->config_dir, ov, n, (const char *const *)server_models, n_server_models,
                                   s->start_timeout_s, &server, err);
    free(exe);
    free(ov);
    return rc == 0 ? server.base_url : NULL;
}

void dk_agent_eval_shutdown(void) {
    dk_agent_server_stop(&server);
    for (size_t i = 0; i < n_server_models; i++) free(server_models[i]);
    n_server_models = 0;
}

/* ---- one evaluation ------------------------------------------------------------------------------------- */

typedef struct eval_job {
    const dk_agent_method *m;
    int64_t budget, token_budget;
    int run_idx;
    char *run_dir;
} eval_job;

typedef struct eval_ctx {
    const dk_cfg *cfg;
    const dk_eval_settings *s;
    char *system_template;
    char *post_tool_result;        /* the text after every tool result */
    const char *description_long;
    const char *organism_system_prompt;
    char *rubric;                  /* NULL: grading off */
    dk_llm_config agent_llm, grader_llm, base_llm, ft_llm;
    bool grade_with_llm;
    cJSON *config;                 /* config.json of every run: the resolved configuration */
    eval_job *jobs;
    int n_jobs;
    pthread_mutex_t lock;
    int next;
    bool stop;                     /* a job failed: start no more */
    dk_err first_err;
} eval_ctx;

static char *no_final_text(const dk_agent_result *r) {
    switch (r->outcome) {
    case DK_AGENT_CALLS_EXHAUSTED:
        return dk_sprintf("Inconclusive. No FINAL description: the agent used up its agent_llm_calls budget (%lld calls) "
                          "before answering.", (long long)r->agent_llm_calls_used);
    case DK_AGENT_TOKENS_EXHAUSTED:
        return dk_sprintf("Inconclusive. No FINAL description: the agent used up its token budget (%lld completion "
                          "tokens) before answering.", (long long)r->agent_completion_tokens);
    default: return NULL;
    }
}

/* Runs the agent of one job and writes messages.json, stats.json, dataset_mapping.json and description.txt. */
static int run_agent(eval_ctx *c, eval_job *job, char **description, dk_err *err) {
    const dk_eval_settings *s = c->s;
    dk_llm_client *agent = NULL, *base = NULL, *ft = NULL;
    dk_agent_run_tools rt = {0};
    char *system_prompt = NULL;
    dk_agent_result r = {0};
    int rc = -1;
    if (!(agent = dk_llm_client_open(&c->agent_llm, err)) || !(base = dk_llm_client_open(&c->base_llm, err)) ||
        !(ft = dk_llm_client_open(&c->ft_llm, err)))
        goto done;
    dk_agent_models models = {.base = base, .finetuned = ft, .system_prompt = c->organism_system_prompt,
                              .max_new_tokens = s->ask_max_new_tokens, .temperature = s->ask_temperature,
                              .disable_thinking = s->disable_thinking, .max_prompts = s->ask_max_prompts,
                              .max_prompt_chars = s->ask_max_prompt_chars};
    if (dk_agent_method_tools(job->m, &models, &rt, err) != 0) goto done;
    if (!(system_prompt = dk_agent_system_prompt(c->system_template, dk_agent_method_prompt_parts(job->m), job->budget, err)))
        goto done;
    dk_agent_run_input in = {
        .system_prompt = system_prompt, .hints = s->hints, .first_user_message = dk_agent_method_first_message(job->m),
        .post_tool_result = c->post_tool_result,
        .tools = rt.tools, .n_tools = rt.n, .addendum = dk_agent_blackbox_addendum, .addendum_ctx = rt.board,
        .budgets = {.agent_llm_calls = s->agent_calls, .model_interactions = job->budget, .token_budget = job->token_budget},
        .llm = {.client = agent, .temperature = s->temperature, .max_tokens_per_call = s->max_tokens_per_call}};
    LOG_INFO("diff_agent: %s run %d (budget %lld) ...", dk_agent_method_name(job->m), job->run_idx, (long long)job->budget);
    const double t0 = dk_time_now();
    if (dk_agent_run(&in, &r, err) != 0) goto done;
    if (dk_mkdirs(job->run_dir, err) != 0) goto done;
    cJSON *stats = dk_agent_stats_json(&r);
    int w = write_json(job->run_dir, "messages.json", r.messages, err);
    if (w == 0) w = write_json(job->run_dir, "stats.json", stats, err);
    cJSON_Delete(stats);
    const cJSON *mapping = dk_agent_method_dataset_mapping(job->m);
    if (w == 0 && mapping && cJSON_GetArraySize(mapping) > 0) w = write_json(job->run_dir, "dataset_mapping.json", mapping, err);
    if (w != 0) goto done;
    if (r.outcome == DK_AGENT_FAILED) { /* the transcript so far stays for diagnosis; no description: not finished */
        *err = r.err;
        dk_err_prefix(err, "%s run %d (budget %lld): ", dk_agent_method_name(job->m), job->run_idx, (long long)job->budget);
        goto done;
    }
    *description = r.description ? dk_strdup(r.description) : no_final_text(&r);
    char *path = dk_path_join(job->run_dir, "description.txt");
    w = write_text(path, *description, err); /* last: a folder with description.txt is a finished run */
    free(path);
    if (w != 0) goto done;
    LOG_INFO("diff_agent: %s run %d (budget %lld): %s after %lld agent calls, %lld model interactions, %.1f s -> %s",
             dk_agent_method_name(job->m), job->run_idx, (long long)job->budget,
             r.outcome == DK_AGENT_FINAL ? "FINAL" : "no FINAL (budget used up)", (long long)r.agent_llm_calls_used,
             (long long)r.model_interactions_used, dk_time_now() - t0, job->run_dir);
    rc = 0;
done:
    dk_agent_result_free(&r);
    free(system_prompt);
    dk_agent_run_tools_free(&rt);
    dk_llm_client_close(agent);
    dk_llm_client_close(base);
    dk_llm_client_close(ft);
    return rc;
}

/* hypothesis_grade_{grader}_{j}.json for j < n: all present? */
static bool grades_present(const char *run_dir, const char *grader_id, int n) {
    for (int j = 0; j < n; j++) {
        char name[256];
        snprintf(name, sizeof name, "hypothesis_grade_%s_%d.json", grader_id, j);
        char *path = dk_path_join(run_dir, name);
        bool ok = dk_is_file(path);
        free(path);
        if (!ok) return false;
    }
    return true;
}

static int grade(eval_ctx *c, eval_job *job, const char *description, bool fresh, dk_err *err) {
    const dk_eval_settings *s = c->s;
    dk_llm_client *llm = NULL;
    dk_grader g = dk_grader_offline();
    if (c->grade_with_llm) {
        if (!(llm = dk_llm_client_open(&c->grader_llm, err))) return -1;
        g = dk_grader_llm(llm, NULL);
    }
    g.max_tokens = s->grader_max_tokens;
    char gid[160];
    dk_grader_id(&g, gid, sizeof gid);
    int rc = 0;
    if (fresh || c->s->overwrite || !grades_present(job->run_dir, gid, s->grader_repeat)) {
        dk_hypothesis_input in = {.description = c->description_long, .rubric = c->rubric, .hypothesis = description,
                                  .num_repeat = s->grader_repeat};
        dk_hypothesis_result res = {0};
        rc = dk_grade_hypothesis(&g, &in, &res, err);
        for (int j = 0; rc == 0 && j < res.n_repeat; j++) {
            cJSON *o = cJSON_CreateObject();
            if (res.scores[j] > 0) dk_pyjson_add_int(o, "score", res.scores[j]);
            else cJSON_AddNullToObject(o, "score");
            cJSON_AddStringToObject(o, "reasoning", res.responses && res.responses[j] ? res.responses[j] : "");
            cJSON_AddStringToObject(o, "rubric", c->rubric);
            cJSON_AddStringToObject(o, "grader_model_id", c->grade_with_llm ? c->grader_llm.model_id : "offline");
            dk_pyjson_add_int(o, "run_idx", j);
            cJSON_AddBoolToObject(o, "failed", res.scores[j] <= 0);
            char name[256];
            snprintf(name, sizeof name, "hypothesis_grade_%s_%d.json", gid, j);
            rc = write_json(job->run_dir, name, o, err);
            cJSON_Delete(o);
        }
        if (rc == 0)
            LOG_INFO("diff_agent: %s run %d (budget %lld) graded %.2f by %s (%d of %d grades parsed)",
                     dk_agent_method_name(job->m), job->run_idx, (long long)job->budget, res.mean_score, gid,
                     res.n_repeat - res.n_unknown, res.n_repeat);
        dk_hypothesis_result_free(&res);
    }
    dk_llm_client_close(llm);
    return rc;
}

static int do_job(eval_ctx *c, eval_job *job, dk_err *err) {
    char *desc_path = dk_path_join(job->run_dir, "description.txt");
    char *description = NULL;
    bool fresh = false;
    int rc = 0;
    if (!c->s->overwrite && dk_is_file(desc_path)) {
        size_t n = 0;
        description = dk_read_file(desc_path, &n, err);
        if (!description) rc = -1;
        else LOG_INFO("diff_agent: %s: finished before and overwrite=false: reused", job->run_dir);
    } else {
        if (dk_is_file(desc_path)) unlink(desc_path); /* overwrite: the folder is unfinished until the new one lands */
        rc = run_agent(c, job, &description, err);
        fresh = true;
    }
    free(desc_path);
    if (rc == 0 && c->rubric) rc = grade(c, job, description, fresh, err);
    if (rc == 0) rc = write_json(job->run_dir, "config.json", c->config, err);
    free(description);
    return rc;
}

static void *worker(void *arg) {
    eval_ctx *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int i = c->stop ? c->n_jobs : c->next++;
        pthread_mutex_unlock(&c->lock);
        if (i >= c->n_jobs) return NULL;
        dk_err err = {0};
        if (do_job(c, &c->jobs[i], &err) != 0) {
            pthread_mutex_lock(&c->lock);
            if (!c->stop) c->first_err = err;
            c->stop = true;
            pthread_mutex_unlock(&c->lock);
        }
    }
}

/* ---- the method's agents -------------------------------------------------------------------------------- */

typedef struct method_plan {
    char *results_dir;             /* the method's results folder */
    dk_agent_kind kinds[2];        /* the method's agent, then its baseline */
    int n_kinds;
} method_plan;

static int plan_method(const dk_cfg *cfg, const char *method, const dk_eval_settings *s, method_plan *p, dk_err *err) {
    memset(p, 0, sizeof *p);
    const char *dir = dk_cfg_str(cfg, "diffing.results_dir");
    if (strcmp(method, "activation_difference_lens") == 0) {
        p->results_dir = dk_path_join(dir, "activation_difference_lens");
        p->kinds[0] = DK_AGENT_ADL;
        p->kinds[1] = DK_AGENT_ADL_BLACKBOX;
    } else if (strcmp(method, "diff_mining") == 0) {
        int64_t seed = 0, top_k = 0;
        if (dk_cfg_try_int(cfg, "seed", &seed, err) != 0 || dk_cfg_try_int(cfg, "diffing.method.top_k", &top_k, err) != 0)
            return -1;
        char *sub = dk_sprintf("diff_mining/seed%lld_top%lld", (long long)seed, (long long)top_k); /* diff_mining.c */
        p->results_dir = dk_path_join(dir, sub);
        free(sub);
        p->kinds[0] = DK_AGENT_DIFF_MINING;
        p->kinds[1] = DK_AGENT_BLACKBOX;
    } else {
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.evaluation.methods: %s has no agent (as in the seed, agents exist for "
                          "activation_difference_lens and diff_mining); remove it from the list", method);
    }
    p->n_kinds = s->baselines ? 2 : 1;
    return 0;
}

/* [system, user]: what the agent is sent first (the loop's first two messages). */
static cJSON *first_messages(const char *system_prompt, const char *hints, int64_t budget, const char *user) {
    cJSON *msgs = cJSON_CreateArray();
    cJSON *sys = cJSON_CreateObject();
    char *content = dk_sprintf("%s\n\n%s%s%sRemaining model interactions: %lld", system_prompt, hints[0] ? "Hints:\n" : "",
                               hints, hints[0] ? "\n\n" : "", (long long)budget);
    cJSON_AddStringToObject(sys, "role", "system");
    cJSON_AddStringToObject(sys, "content", content);
    cJSON *cc = cJSON_AddObjectToObject(sys, "cache_control");
    cJSON_AddStringToObject(cc, "type", "ephemeral");
    free(content);
    cJSON_AddItemToArray(msgs, sys);
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", user);
    cJSON_AddItemToArray(msgs, u);
    return msgs;
}

/* Endpoint settings of the served models. */
static void models_llm_config(const dk_eval_settings *s, const char *url, const char *model, dk_llm_config *out) {
    dk_llm_config_defaults(out);
    out->base_url = dk_strdup(url);
    out->model_id = dk_strdup(model);
    out->api_key_file = s->models_key_file ? dk_strdup(s->models_key_file) : NULL;
    out->api_key_env = s->models_key_env ? dk_strdup(s->models_key_env) : NULL;
    out->request_timeout_s = s->models_timeout_s;
    out->max_attempts = s->models_attempts;
    out->section = dk_strdup("diffing.evaluation.models");
}

/* The summary row of one (agent, budget) from its run folders (so reused runs count as well as new ones). */
static cJSON *group_row(const dk_eval_settings *s, const char *method, const char *agent, const char *group_dir,
                        const char *results_dir, int64_t budget, const char *grader_id) {
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "organism", s->organism ? s->organism : "None");
    cJSON_AddStringToObject(row, "method", method);
    cJSON_AddStringToObject(row, "agent", agent);
    dk_pyjson_add_int(row, "budget", budget);
    cJSON_AddStringToObject(row, "folder", group_dir + strlen(results_dir) + (group_dir[strlen(results_dir)] == '/'));
    cJSON *grades = cJSON_CreateArray(), *outcomes = cJSON_CreateObject();
    int finished = 0, graded = 0, false_pos = 0;
    double sum = 0;
    for (int i = 0; i < s->num_repeat; i++) {
        char run[32];
        snprintf(run, sizeof run, "run%d", i);
        char *run_dir = dk_path_join(group_dir, run), *desc = dk_path_join(run_dir, "description.txt");
        if (dk_is_file(desc)) {
            finished++;
            char *stats_path = dk_path_join(run_dir, "stats.json");
            cJSON *stats = read_json_file(stats_path);
            const cJSON *oc = cJSON_GetObjectItemCaseSensitive(stats, "outcome");
            const char *outcome = cJSON_IsString(oc) ? oc->valuestring : "unknown";
            cJSON *count = cJSON_GetObjectItemCaseSensitive(outcomes, outcome);
            if (count) cJSON_SetNumberValue(count, count->valuedouble + 1);
            else dk_pyjson_add_int(outcomes, outcome, 1);
            cJSON_Delete(stats);
            free(stats_path);
            double run_sum = 0;
            int run_n = 0;
            for (int j = 0; grader_id && j < s->grader_repeat; j++) {
                char name[256];
                snprintf(name, sizeof name, "hypothesis_grade_%s_%d.json", grader_id, j);
                char *gp = dk_path_join(run_dir, name);
                cJSON *g = read_json_file(gp);
                const cJSON *score = cJSON_GetObjectItemCaseSensitive(g, "score");
                if (cJSON_IsNumber(score)) {
                    run_sum += score->valuedouble;
                    run_n++;
                }
                cJSON_Delete(g);
                free(gp);
            }
            if (run_n > 0) {
                const double mean = run_sum / run_n;
                cJSON_AddItemToArray(grades, cJSON_CreateNumber(mean));
                sum += mean;
                graded++;
                if (mean < 3) false_pos++; /* no_finetune rubric: 2 or 1 = claims a finetune that is not there */
            } else {
                cJSON_AddItemToArray(grades, cJSON_CreateNull());
            }
        }
        free(desc);
        free(run_dir);
    }
    dk_pyjson_add_int(row, "runs_planned", s->num_repeat);
    dk_pyjson_add_int(row, "runs_finished", finished);
    dk_pyjson_add_int(row, "runs_graded", graded);
    if (graded > 0) cJSON_AddNumberToObject(row, "mean_grade", sum / graded);
    else cJSON_AddNullToObject(row, "mean_grade");
    cJSON_AddItemToObject(row, "grades", grades);
    cJSON_AddStringToObject(row, "grader", grader_id ? grader_id : "none");
    cJSON_AddItemToObject(row, "outcomes", outcomes);
    if (s->is_null_pair) {
        if (graded > 0) cJSON_AddNumberToObject(row, "false_positive_rate", (double)false_pos / graded);
        else cJSON_AddNullToObject(row, "false_positive_rate");
    }
    return row;
}

static cJSON *missing_row(const dk_eval_settings *s, const char *method, const char *why) {
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "organism", s->organism ? s->organism : "None");
    cJSON_AddStringToObject(row, "method", method);
    cJSON_AddStringToObject(row, "missing", why);
    return row;
}

/* Whether an LLM endpoint is usable: a base_url and, where a key is configured, the key. The reason when not. */
static dk_llm_client *try_open(const dk_llm_config *lc, char *why, size_t cap) {
    dk_err e = {0};
    dk_llm_client *c = dk_llm_client_open(lc, &e);
    if (!c) snprintf(why, cap, "%s", e.msg);
    return c;
}

static int evaluate(const dk_cfg *cfg, const char *method, const dk_agent_eval_env *env, cJSON *rows, dk_err *err);

int dk_agent_eval_method(const dk_cfg *cfg, const char *method, const dk_agent_eval_env *env, cJSON *rows, dk_err *err) {
    const int first_row = cJSON_GetArraySize(rows); /* this method's rows start here */
    const int rc = evaluate(cfg, method, env, rows, err);
    if (rc != 0) return rc;
    /* the null control: the same agents on the base-vs-base pair, beside these rows */
    dk_eval_settings s;
    if (dk_eval_settings_read(cfg, &s, err) != 0) return -1;
    if (!s.null_organism || s.is_null_pair || (s.organism && strcmp(s.organism, s.null_organism) == 0)) {
        dk_eval_settings_free(&s);
        return 0;
    }
    const char **ov = calloc(env->n_overrides + 2, sizeof *ov);
    char *method_arg = dk_sprintf("diffing/method=%s", method), *organism_arg = dk_sprintf("organism=%s", s.null_organism);
    size_t n = 0;
    ov[n++] = method_arg;
    for (size_t i = 0; i < env->n_overrides; i++) ov[n++] = env->overrides[i];
    ov[n++] = organism_arg;
    dk_cfg_options opt = {.config_dir = env->config_dir, .overrides = ov, .n_overrides = n};
    dk_cfg *null_cfg = dk_cfg_compose(&opt, err);
    int nrc = -1;
    cJSON *null_rows = cJSON_CreateArray();
    if (!null_cfg) {
        dk_err_prefix(err, "null control (diffing.evaluation.null_control.organism=%s): ", s.null_organism);
    } else {
        LOG_INFO("diff_agent: null control: the same agents on organism %s (a base-vs-base pair)", s.null_organism);
        nrc = evaluate(null_cfg, method, env, null_rows, err);
        if (nrc == 1) nrc = 0; /* missing null results: said in the rows */
    }
    /* attach each null row's false-positive rate to the matching organism row */
    for (int i = first_row; nrc == 0 && i < cJSON_GetArraySize(rows); i++) {
        cJSON *row = cJSON_GetArrayItem(rows, i);
        cJSON *nc = cJSON_AddObjectToObject(row, "null_control");
        cJSON_AddStringToObject(nc, "organism", s.null_organism);
        const cJSON *agent = cJSON_GetObjectItemCaseSensitive(row, "agent"), *budget = cJSON_GetObjectItemCaseSensitive(row, "budget");
        bool found = false;
        cJSON *nr;
        cJSON_ArrayForEach(nr, null_rows) {
            const cJSON *missing = cJSON_GetObjectItemCaseSensitive(nr, "missing");
            if (missing) {
                cJSON_AddStringToObject(nc, "missing", missing->valuestring);
                found = true;
                break;
            }
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(nr, "agent"), *b = cJSON_GetObjectItemCaseSensitive(nr, "budget");
            if (agent && a && budget && b && strcmp(a->valuestring, agent->valuestring) == 0 && a && b->valuedouble == budget->valuedouble) {
                cJSON_AddItemToObject(nc, "runs_graded", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(nr, "runs_graded"), 1));
                cJSON_AddItemToObject(nc, "false_positive_rate",
                                      cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(nr, "false_positive_rate"), 1));
                cJSON_AddItemToObject(nc, "mean_grade", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(nr, "mean_grade"), 1));
                found = true;
                break;
            }
        }
        if (!found) cJSON_AddStringToObject(nc, "missing", "no null-control run for this agent and budget");
    }
    cJSON *nr;
    cJSON_ArrayForEach(nr, null_rows) cJSON_AddItemToArray(rows, cJSON_Duplicate(nr, 1));
    cJSON_Delete(null_rows);
    dk_cfg_free(null_cfg);
    free(method_arg);
    free(organism_arg);
    free(ov);
    dk_eval_settings_free(&s);
    return nrc;
}

static int evaluate(const dk_cfg *cfg, const char *method, const dk_agent_eval_env *env, cJSON *rows, dk_err *err) {
    dk_eval_settings s;
    if (dk_eval_settings_read(cfg, &s, err) != 0) return -1;
    method_plan plan;
    eval_ctx c = {.cfg = cfg, .s = &s, .lock = PTHREAD_MUTEX_INITIALIZER};
    dk_agent_method *methods[2] = {0};
    char cfg_hash[33];
    char *llm_id = NULL;
    int rc = -1;
    if (plan_method(cfg, method, &s, &plan, err) != 0) goto out;
    for (int k = 0; k < plan.n_kinds; k++) {
        dk_agent_method_config mc = {.kind = plan.kinds[k], .cfg = cfg, .results_dir = plan.results_dir,
                                     .prompts_dir = s.prompts_dir};
        if (!(methods[k] = dk_agent_method_open(&mc, err))) {
            if (err->code == DK_EXIT_USAGE && k == 0) { /* no (complete) results: a row says so, the others go on */
                LOG_WARN("diff_agent: %s (organism %s): %s", method, s.organism ? s.organism : "None", err->msg);
                cJSON_AddItemToArray(rows, missing_row(&s, method, err->msg));
                rc = 1;
            }
            goto out;
        }
    }
    if (!(c.system_template = dk_agent_prompt_read(s.prompts_dir, "system_prompt.txt", err)) ||
        !(c.post_tool_result = dk_agent_prompt_read(s.prompts_dir, "post_tool_result.txt", err)))
        goto out;
    dk_eval_cfg_hash(cfg, cfg_hash);
    llm_id = dk_eval_llm_id(s.agent_model);
    char *agent_dir = dk_path_join(plan.results_dir, "agent");

    /* no agent LLM: what it would be sent, and stop */
    char why[2048] = "diffing.evaluation.agent.llm.base_url is null";
    dk_llm_client *probe = NULL;
    if (s.agent_base_url) {
        if (dk_llm_config_read(cfg, "diffing.evaluation.agent.llm", &c.agent_llm, err) != 0) {
            free(agent_dir);
            goto out;
        }
        probe = try_open(&c.agent_llm, why, sizeof why);
    }
    if (!probe) {
        if (dk_mkdirs(agent_dir, err) != 0) {
            free(agent_dir);
            goto out;
        }
        rc = 0;
        for (int k = 0; k < plan.n_kinds && rc == 0; k++) {
            char *sys = dk_agent_system_prompt(c.system_template, dk_agent_method_prompt_parts(methods[k]), s.budgets[0], err);
            if (!sys) {
                rc = -1;
                break;
            }
            cJSON *msgs = first_messages(sys, s.hints, s.budgets[0], dk_agent_method_first_message(methods[k]));
            char *name = dk_sprintf("%s_first_messages.json", dk_agent_method_name(methods[k]));
            rc = write_json(agent_dir, name, msgs, err);
            if (rc == 0) {
                LOG_INFO("diff_agent: no LLM configured for the agent (%s): wrote what the %s agent would be sent to "
                         "%s/%s; set diffing.evaluation.agent.llm.base_url (and its key) to run it", why,
                         dk_agent_method_name(methods[k]), agent_dir, name);
                cJSON *row = cJSON_CreateObject();
                cJSON_AddStringToObject(row, "organism", s.organism ? s.organism : "None");
                cJSON_AddStringToObject(row, "method", method);
                cJSON_AddStringToObject(row, "agent", dk_agent_method_name(methods[k]));
                cJSON_AddStringToObject(row, "overview_only", name);
                cJSON_AddItemToArray(rows, row);
            }
            free(name);
            cJSON_Delete(msgs);
            free(sys);
        }
        free(agent_dir);
        goto out;
    }
    dk_llm_client_close(probe);

    /* grading */
    if (s.grader_enabled) {
        if (!s.organism) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "organism=null: there is no finetune to grade a description against; "
                            "choose an organism, or set diffing.evaluation.grader.enabled=false");
            free(agent_dir);
            goto out;
        }
        if (!(c.rubric = dk_rubric_load(s.rubrics_path, s.organism_type ? s.organism_type : "", err))) {
            dk_err_prefix(err, "grading organism %s (type %s): ", s.organism, s.organism_type ? s.organism_type : "none");
            free(agent_dir);
            goto out;
        }
        c.description_long = dk_cfg_has(cfg, "organism.description_long") ? dk_cfg_str(cfg, "organism.description_long")
                             : dk_cfg_has(cfg, "organism.description") ? dk_cfg_str(cfg, "organism.description") : NULL;
        if (!c.description_long) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "organism %s has neither description_long nor description: the grader "
                            "compares the agent's answer with it", s.organism);
            free(agent_dir);
            goto out;
        }
        if (strcmp(s.grader_mode, "offline") != 0) {
            if (dk_llm_config_read(cfg, "llm", &c.grader_llm, err) != 0) {
                free(agent_dir);
                goto out;
            }
            free(c.grader_llm.model_id);
            c.grader_llm.model_id = dk_strdup(s.grader_model);
            char gwhy[2048];
            dk_llm_client *g = try_open(&c.grader_llm, gwhy, sizeof gwhy);
            if (g) c.grade_with_llm = true;
            else if (strcmp(s.grader_mode, "llm") == 0) {
                rc = dk_err_set(err, DK_EXIT_USAGE, "diffing.evaluation.grader.mode=llm, but the grader's endpoint (the llm "
                                "section) cannot be used: %s", gwhy);
                free(agent_dir);
                goto out;
            } else {
                LOG_INFO("diff_agent: grader mode auto: no usable grader endpoint (%s): grading offline (a crude "
                         "word-overlap stand-in, marked \"offline\" in every grade file)", gwhy);
            }
            dk_llm_client_close(g);
        }
    }
    c.organism_system_prompt = dk_cfg_has(cfg, "organism.agent_interaction_system_prompt")
                                   ? dk_cfg_str(cfg, "organism.agent_interaction_system_prompt") : NULL;
    c.config = dk_agent_cfg_json(cfg, "");

    /* the served models */
    const char *url = models_url(&s, env, err);
    if (!url) {
        free(agent_dir);
        goto out;
    }
    models_llm_config(&s, url, s.base_model, &c.base_llm);
    models_llm_config(&s, url, s.ft_model, &c.ft_llm);

    /* the jobs: (kind, budget, run) */
    size_t n_jobs = 0;
    for (int k = 0; k < plan.n_kinds; k++) n_jobs += (k == 0 ? s.n_budgets : s.n_baseline_budgets) * (size_t)s.num_repeat;
    c.jobs = calloc(n_jobs, sizeof *c.jobs);
    char **groups = calloc(n_jobs, sizeof *groups);
    size_t n_groups = 0;
    for (int k = 0; k < plan.n_kinds; k++) {
        const int64_t *budgets = k == 0 ? s.budgets : s.baseline_budgets;
        const size_t nb = k == 0 ? s.n_budgets : s.n_baseline_budgets;
        for (size_t b = 0; b < nb; b++) {
            char *gname = dk_eval_run_group_name(dk_agent_method_name(methods[k]), cfg_hash, llm_id, budgets[b], s.hints);
            groups[n_groups] = dk_path_join(agent_dir, gname);
            free(gname);
            for (int i = 0; i < s.num_repeat; i++) {
                eval_job *j = &c.jobs[c.n_jobs++];
                j->m = methods[k];
                j->budget = budgets[b];
                j->token_budget = k == 0 ? s.token_budget : s.baseline_token_budget;
                j->run_idx = i;
                char run[32];
                snprintf(run, sizeof run, "run%d", i);
                j->run_dir = dk_path_join(groups[n_groups], run);
            }
            n_groups++;
        }
    }
    const int n_threads = s.parallel < c.n_jobs ? s.parallel : (c.n_jobs > 0 ? c.n_jobs : 1);
    LOG_INFO("diff_agent: %s, organism %s: %d agent runs (%d at a time), models at %s", method,
             s.organism ? s.organism : "None", c.n_jobs, n_threads, url);
    pthread_t *threads = calloc((size_t)n_threads, sizeof *threads);
    int started = 0;
    for (int t = 0; t < n_threads; t++)
        if (pthread_create(&threads[t], NULL, worker, &c) == 0) started++;
    if (started == 0) worker(&c);
    for (int t = 0; t < started; t++) pthread_join(threads[t], NULL);
    free(threads);

    /* the rows, from the files */
    char gid[160] = "";
    if (c.rubric) {
        dk_grader g = c.grade_with_llm ? dk_grader_llm(NULL, c.grader_llm.model_id) : dk_grader_offline();
        dk_grader_id(&g, gid, sizeof gid);
    }
    size_t gi = 0;
    for (int k = 0; k < plan.n_kinds; k++) {
        const int64_t *budgets = k == 0 ? s.budgets : s.baseline_budgets;
        const size_t nb = k == 0 ? s.n_budgets : s.n_baseline_budgets;
        for (size_t b = 0; b < nb; b++, gi++)
            cJSON_AddItemToArray(rows, group_row(&s, method, dk_agent_method_name(methods[k]), groups[gi], plan.results_dir,
                                                 budgets[b], c.rubric ? gid : NULL));
    }
    /* the method's own summary: its rows so far */
    cJSON *mine = cJSON_CreateArray();
    cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(row, "method"), *o = cJSON_GetObjectItemCaseSensitive(row, "organism");
        if (m && o && strcmp(m->valuestring, method) == 0 && strcmp(o->valuestring, s.organism ? s.organism : "None") == 0)
            cJSON_AddItemToArray(mine, cJSON_Duplicate(row, 1));
    }
    dk_err werr = {0};
    if (write_json(agent_dir, "summary.json", mine, &werr) != 0) LOG_WARN("diff_agent: %s", werr.msg);
    cJSON_Delete(mine);
    for (size_t i = 0; i < n_groups; i++) free(groups[i]);
    free(groups);
    free(agent_dir);
    if (c.stop) {
        *err = c.first_err;
        rc = -1;
    } else {
        rc = 0;
    }
out:
    for (int i = 0; i < c.n_jobs; i++) free(c.jobs[i].run_dir);
    free(c.jobs);
    cJSON_Delete(c.config);
    free(c.rubric);
    free(c.system_template);
    free(c.post_tool_result);
    dk_llm_config_free(&c.agent_llm);
    dk_llm_config_free(&c.grader_llm);
    dk_llm_config_free(&c.base_llm);
    dk_llm_config_free(&c.ft_llm);
    for (int k = 0; k < 2; k++) dk_agent_method_close(methods[k]);
    free(llm_id);
    free(plan.results_dir);
    dk_eval_settings_free(&s);
    return rc;
}

/* ---- diff_agent --check ------------------------------------------------------------------------------------- */

/* The modification time of path (seconds with nanoseconds), or -1 when it does not exist. */
static double mtime_of(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    return (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
}

/* The grader id the evaluation would use (as evaluate() decides it), or NULL when grading is off. */
static char *current_grader_id(const dk_cfg *cfg, const dk_eval_settings *s) {
    if (!s->grader_enabled) return NULL;
    if (strcmp(s->grader_mode, "offline") == 0) return dk_strdup("offline");
    dk_llm_config lc = {0};
    dk_err e = {0};
    char *id = NULL, why[2048];
    if (dk_llm_config_read(cfg, "llm", &lc, &e) == 0) {
        free(lc.model_id);
        lc.model_id = dk_strdup(s->grader_model);
        dk_llm_client *g = try_open(&lc, why, sizeof why);
        id = g ? dk_eval_llm_id(s->grader_model) : strcmp(s->grader_mode, "auto") == 0 ? dk_strdup("offline") : NULL;
        dk_llm_client_close(g);
    }
    dk_llm_config_free(&lc);
    return id;
}

int dk_agent_eval_check(const dk_cfg *cfg, const char *method, const dk_agent_eval_env *env, char *why, size_t cap) {
    (void)env;
    dk_eval_settings s;
    dk_err err = {0};
    method_plan plan = {0};
    dk_agent_method *methods[2] = {0};
    char *results_h5 = NULL, *summary = NULL, *grader = NULL, *llm_id = NULL;
    int must = 1;
    if (dk_eval_settings_read(cfg, &s, &err) != 0) {
        snprintf(why, cap, "must run (its settings: %s)", err.msg);
        return 1;
    }
    if (plan_method(cfg, method, &s, &plan, &err) != 0) {
        snprintf(why, cap, "must run (%s)", err.msg);
        goto out;
    }
    results_h5 = dk_path_join(plan.results_dir, "results.h5");
    summary = dk_path_join(dk_cfg_str(cfg, "diffing.results_dir"), "agent_summary.json");
    const double t_results = mtime_of(results_h5), t_summary = mtime_of(summary);
    if (t_results < 0) {
        snprintf(why, cap, "must run (no results in %s: it reports them missing)", plan.results_dir);
        goto out;
    }
    if (s.null_organism) {
        snprintf(why, cap, "must run (a null control is configured: the evaluation decides what to reuse)");
        goto out;
    }
    if (t_summary < t_results) {
        snprintf(why, cap, "must run (%s is %s)", summary, t_summary < 0 ? "missing" : "older than the results");
        goto out;
    }
    for (int k = 0; k < plan.n_kinds; k++) {
        dk_agent_method_config mc = {.kind = plan.kinds[k], .cfg = cfg, .results_dir = plan.results_dir,
                                     .prompts_dir = s.prompts_dir};
        if (!(methods[k] = dk_agent_method_open(&mc, &err))) {
            snprintf(why, cap, "must run (%s)", err.msg);
            goto out;
        }
    }
    dk_llm_config lc = {0};
    char probe_why[2048];
    dk_llm_client *probe = NULL;
    if (s.agent_base_url && dk_llm_config_read(cfg, "diffing.evaluation.agent.llm", &lc, &err) == 0)
        probe = try_open(&lc, probe_why, sizeof probe_why);
    dk_llm_config_free(&lc);
    const bool have_llm = probe != NULL;
    dk_llm_client_close(probe);
    char *agent_dir = dk_path_join(plan.results_dir, "agent");
    int n_done = 0;
    if (!have_llm) { /* overview only: the first-messages files */
        for (int k = 0; k < plan.n_kinds; k++) {
            char *name = dk_sprintf("%s_first_messages.json", dk_agent_method_name(methods[k]));
            char *path = dk_path_join(agent_dir, name);
            const bool fresh = mtime_of(path) >= t_results;
            if (!fresh) snprintf(why, cap, "must run (no agent LLM; %s is missing or older than the results)", path);
            free(name);
            free(path);
            if (!fresh) {
                free(agent_dir);
                goto out;
            }
        }
        snprintf(why, cap, "complete (no agent LLM configured: the first messages are up to date)");
        must = 0;
        free(agent_dir);
        goto out;
    }
    if (s.overwrite) {
        snprintf(why, cap, "must run (diffing.evaluation.overwrite=true: every agent run is redone)");
        free(agent_dir);
        goto out;
    }
    grader = current_grader_id(cfg, &s);
    if (s.grader_enabled && !grader) {
        snprintf(why, cap, "must run (the grader's endpoint cannot be used: the evaluation says why)");
        free(agent_dir);
        goto out;
    }
    char cfg_hash[33];
    dk_eval_cfg_hash(cfg, cfg_hash);
    llm_id = dk_eval_llm_id(s.agent_model);
    for (int k = 0; k < plan.n_kinds; k++) {
        const int64_t *budgets = k == 0 ? s.budgets : s.baseline_budgets;
        const size_t nb = k == 0 ? s.n_budgets : s.n_baseline_budgets;
        for (size_t b = 0; b < nb; b++) {
            char *gname = dk_eval_run_group_name(dk_agent_method_name(methods[k]), cfg_hash, llm_id, budgets[b], s.hints);
            char *group = dk_path_join(agent_dir, gname);
            free(gname);
            for (int i = 0; i < s.num_repeat; i++) {
                char run[32];
                snprintf(run, sizeof run, "run%d", i);
                char *run_dir = dk_path_join(group, run), *desc = dk_path_join(run_dir, "description.txt");
                const bool done = mtime_of(desc) >= t_results && (!grader || grades_present(run_dir, grader, s.grader_repeat));
                if (!done) snprintf(why, cap, "must run (%s is not finished%s)", run_dir, grader ? " and graded" : "");
                free(desc);
                free(run_dir);
                if (!done) {
                    free(group);
                    free(agent_dir);
                    goto out;
                }
                n_done++;
            }
            free(group);
        }
    }
    snprintf(why, cap, "complete (%d agent runs finished and graded, overwrite=false)", n_done);
    must = 0;
    free(agent_dir);
out:
    for (int k = 0; k < 2; k++) dk_agent_method_close(methods[k]);
    free(plan.results_dir);
    free(results_h5);
    free(summary);
    free(grader);
    free(llm_id);
    dk_eval_settings_free(&s);
    return must;
}
