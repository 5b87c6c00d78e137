/* agent_server.c — see agent_server.h. */
#define _GNU_SOURCE
#include "agent/agent_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strutil.h"
#include "core/timer.h"

static const char READY[] = "serve: listening on http://127.0.0.1:";

/* Forwards the child's remaining log lines to our stderr until it closes its end. */
static void *forward_log(void *arg) {
    int fd = *(int *)arg;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        fwrite(buf, 1, (size_t)n, stderr);
    }
    return NULL;
}

static char *join_models(const char *const *models, size_t n) {
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "serve.models=[");
    for (size_t i = 0; i < n; i++) dk_strbuf_printf(&b, "%s%s", i ? "," : "", models[i]);
    dk_strbuf_append(&b, "]");
    return dk_strbuf_take(&b);
}

int dk_agent_server_start(const char *exe, const char *config_dir, const char *const *overrides, size_t n_overrides,
                          const char *const *models, size_t n_models, double timeout_s, dk_agent_server *out,
                          dk_err *err) {
    memset(out, 0, sizeof *out);
    out->log_fd = -1;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) return dk_err_set(err, DK_EXIT_RUNTIME, "cannot start diffkit serve: pipe: %s", strerror(errno));

    /* argv: exe serve [--config-dir DIR] overrides... host port models */
    size_t argc = 0;
    const char **argv = calloc(n_overrides + 8, sizeof *argv);
    char *models_arg = join_models(models, n_models);
    argv[argc++] = exe;
    argv[argc++] = "serve";
    if (config_dir) {
        argv[argc++] = "--config-dir";
        argv[argc++] = config_dir;
    }
    for (size_t i = 0; i < n_overrides; i++) argv[argc++] = overrides[i];
    argv[argc++] = "serve.host=127.0.0.1";
    argv[argc++] = "serve.port=0";
    argv[argc++] = models_arg;
    argv[argc] = NULL;
    LOG_INFO("diff_agent: starting %s serve with %s (diffing.evaluation.models.base_url is null)", exe, models_arg);

    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        free(argv);
        free(models_arg);
        close(pipefd[0]);
        close(pipefd[1]);
        return dk_err_set(err, DK_EXIT_RUNTIME, "cannot start diffkit serve: fork: %s", strerror(errno));
    }
    if (pid == 0) { /* the child: its stderr into the pipe, dies with us */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        dup2(pipefd[1], STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        execv(exe, (char *const *)argv);
        fprintf(stderr, "diff_agent: cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    free(argv);
    free(models_arg);
    close(pipefd[1]);
    out->pid = pid;
    out->log_fd = pipefd[0];

    /* read its lines until the ready line; forward each */
    dk_strbuf line = {0};
    const double t0 = dk_time_now();
    int port = 0;
    bool eof = false;
    while (!port && !eof) {
        double left = timeout_s - (dk_time_now() - t0);
        if (left <= 0) break;
        struct pollfd p = {.fd = out->log_fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char c;
        ssize_t n = read(out->log_fd, &c, 1);
        if (n == 0) eof = true;
        if (n <= 0) continue;
        if (c != '\n') {
            dk_strbuf_append_n(&line, &c, 1);
            continue;
        }
        const char *text = line.data ? line.data : "";
        fprintf(stderr, "%s\n", text);
        const char *ready = strstr(text, READY);
        if (ready) port = atoi(ready + sizeof READY - 1);
        line.len = 0;
        if (line.data) line.data[0] = 0;
    }
    dk_strbuf_free(&line);
    if (!port) {
        int status = 0;
        bool exited = false; /* after end of file the child is exiting: give it a moment to be reaped */
        for (int i = 0; i < (eof ? 100 : 1) && !exited; i++) {
            exited = waitpid(pid, &status, WNOHANG) == pid;
            if (!exited && eof) usleep(20 * 1000);
        }
        if (exited) out->pid = 0;
        dk_agent_server_stop(out);
        if (exited)
            return dk_err_set(err, DK_EXIT_RUNTIME, "diffkit serve (%s) exited with status %d before it was listening: "
                              "its messages are above", exe, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        return dk_err_set(err, DK_EXIT_RUNTIME, "diffkit serve (%s) was not listening after %.0f s "
                          "(diffing.evaluation.models.start_timeout_s): its messages are above", exe, timeout_s);
    }
    out->port = port;
    out->base_url = dk_sprintf("http://127.0.0.1:%d/v1", port);
    pthread_t *th = malloc(sizeof *th);
    if (pthread_create(th, NULL, forward_log, &out->log_fd) == 0) out->log_thread = th;
    else free(th);
    return 0;
}

void dk_agent_server_stop(dk_agent_server *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int status;
        bool gone = false;
        for (int i = 0; i < 200 && !gone; i++) { /* 10 s grace */
            if (waitpid(s->pid, &status, WNOHANG) == s->pid) gone = true;
            else usleep(50 * 1000);
        }
        if (!gone) {
            LOG_WARN("diff_agent: diffkit serve (pid %d) did not stop within 10 s of SIGTERM: killing it", (int)s->pid);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
        }
        s->pid = 0;
    }
    if (s->log_thread) { /* the child is gone: its end of the pipe is closed, the reader sees end of file */
        pthread_join(*(pthread_t *)s->log_thread, NULL);
        free(s->log_thread);
        s->log_thread = NULL;
    }
    if (s->log_fd > 0) close(s->log_fd); /* 0 in a zeroed server: not ours */
    s->log_fd = -1;
    free(s->base_url);
    s->base_url = NULL;
}
