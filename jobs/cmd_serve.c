/* cmd_serve.c — `diffkit serve`: the OpenAI-compatible HTTP server (host/serve/serve.h) from the command line.
 *
 *   diffkit serve [--host H] [--port P] [--config-dir DIR] [--print-config] [group=NAME ...] [key=value ...]
 *
 * The configuration is every job's (config.yaml, model=, organism=, overrides); --host and --port are short for
 * serve.host= and serve.port=. SIGINT and SIGTERM stop it cleanly: the handler writes one byte into a pipe the
 * server waits on, and nothing else. */
#include "commands.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/job_args.h"
#include "core/error.h"
#include "serve/serve.h"

static const char usage_text[] =
    "usage: diffkit serve [--host H] [--port P] [--config-dir DIR] [--print-config] [group=NAME ...] [key=value ...]\n\n"
    "An OpenAI-compatible HTTP server over the configured base model and its organisms: POST /v1/chat/completions,\n"
    "POST /v1/completions, GET /v1/models. The models offered are serve.models (default: the base, named model.name,\n"
    "and the configured organism); ORGANISM@W runs its LoRA at multiplier W, ORGANISM@PRESET an amplification config,\n"
    "ORGANISM~ALPHA logit-difference amplification. Concurrent requests for one model are generated as one batch.\n"
    "Beyond OpenAI's fields: \"steering\" {layer, vector, strength, mode, decay_steps} (as diffkit generate\n"
    "--steer-*) and \"chat_template_kwargs\" {\"enable_thinking\": BOOL} (Qwen3's thinking switch, per request).\n"
    "--host/--port are short for serve.host=/serve.port= (default 127.0.0.1:8000; port 0: any free port, logged).\n"
    "A bearer token is required when serve.api_key_file or serve.api_key_env names one. SIGINT/SIGTERM stop it.\n"
    "README \"Serving models\" has the details.\n";

static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    (void)sig;
    char byte = 1;
    ssize_t ignored = write(wake_pipe[1], &byte, 1);
    (void)ignored;
}

int cmd_serve(int argc, char **argv) {
    /* --host and --port become overrides; everything else is the jobs' command line */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    char **owned = calloc((size_t)argc + 1, sizeof *owned);
    int n_args = 0, n_owned = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--host") == 0 || strcmp(argv[i], "--port") == 0) && i + 1 < argc) {
            owned[n_owned] = dk_sprintf("serve.%s=%s", argv[i] + 2, argv[i + 1]);
            args[n_args++] = owned[n_owned++];
            i++;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            args[n_args++] = argv[i];
        }
    }
    dk_err err = {0};
    dk_job_args ja;
    if (dk_job_args_parse(n_args, args, &ja, &err) != 0) dk_die(&err);
    dk_cfg_options co = {.config_dir = ja.config_dir, .overrides = ja.overrides, .n_overrides = ja.n_overrides};
    dk_cfg *cfg = dk_cfg_compose(&co, &err);
    if (!cfg) dk_die(&err);
    if (ja.print_config) {
        char *yaml = dk_cfg_dump(cfg);
        fputs(yaml, stdout);
        free(yaml);
        return 0;
    }
    dk_serve_config sc;
    int64_t threads = 0;
    if (dk_serve_config_read(cfg, &sc, &err) != 0 || dk_cfg_try_int(cfg, "threads", &threads, &err) != 0) dk_die(&err);

    if (pipe(wake_pipe) != 0) {
        perror("diffkit serve: pipe");
        return DK_EXIT_RUNTIME;
    }
    fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK); /* a second signal never blocks the handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up is the listener's business, not a reason to die */

    int rc = dk_serve_run(cfg, &sc, cfg->config_dir, (const char *const *)ja.overrides, ja.n_overrides, (int)threads,
                          wake_pipe[0], &err);
    if (rc != 0) dk_die(&err);
    dk_serve_config_free(&sc);
    dk_job_args_free(&ja);
    dk_cfg_free(cfg);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(args);
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    return 0;
}
