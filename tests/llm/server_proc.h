/* server_proc.h — starts tests/llm/scripted_server as a child process for one test case and stops it again.
 * The child's stdin is a pipe we hold: closing it (or our death) ends the server. */
#ifndef DK_TEST_SERVER_PROC_H
#define DK_TEST_SERVER_PROC_H

#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct scripted_server {
    pid_t pid;
    int port;
    int stdin_fd;         /* our end of the server's stdin */
    char log_path[256];   /* one line per request the server received */
    char base_url[64];    /* http://127.0.0.1:<port>/v1 */
} scripted_server;

/* Starts `exe` with --log <tmp> and args (NULL-terminated); 0, or -1 with a message on stderr. */
static int scripted_server_start(scripted_server *s, const char *exe, const char *const *args) {
    memset(s, 0, sizeof *s);
    snprintf(s->log_path, sizeof s->log_path, "/tmp/dk_llm_server_%d_XXXXXX", (int)getpid());
    int log_fd = mkstemp(s->log_path);
    if (log_fd < 0) return -1;
    close(log_fd);
    int in_pipe[2], out_pipe[2];
    if (pipe(in_pipe) != 0 || pipe(out_pipe) != 0) return -1;
    /* Our ends must not leak into servers started later: a second server holding the first one's stdin open
     * would keep the first from ever seeing end of file. */
    fcntl(in_pipe[1], F_SETFD, FD_CLOEXEC);
    fcntl(out_pipe[0], F_SETFD, FD_CLOEXEC);
    int n_args = 0;
    while (args[n_args]) n_args++;
    const char **argv = calloc((size_t)n_args + 4, sizeof *argv);
    argv[0] = exe;
    argv[1] = "--log";
    argv[2] = s->log_path;
    for (int i = 0; i < n_args; i++) argv[3 + i] = args[i];
    s->pid = fork();
    if (s->pid == 0) {
        dup2(in_pipe[0], 0);
        dup2(out_pipe[1], 1);
        close(in_pipe[0]);
        close(in_pipe[1]);
        close(out_pipe[0]);
        close(out_pipe[1]);
        execv(exe, (char *const *)argv);
        fprintf(stderr, "cannot run %s\n", exe);
        _exit(127);
    }
    free(argv);
    close(in_pipe[0]);
    close(out_pipe[1]);
    s->stdin_fd = in_pipe[1];
    FILE *out = fdopen(out_pipe[0], "r");
    if (!out || fscanf(out, "PORT %d", &s->port) != 1) {
        fprintf(stderr, "scripted_server (%s) did not report its port\n", exe);
        if (out) fclose(out);
        return -1;
    }
    fclose(out);
    snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d/v1", s->port);
    return 0;
}

static void scripted_server_stop(scripted_server *s) {
    if (s->pid <= 0) return;
    close(s->stdin_fd);
    int status;
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

/* The server's request log (the caller frees); "" when empty. */
static char *scripted_server_log(const scripted_server *s) {
    FILE *f = fopen(s->log_path, "r");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = calloc((size_t)n + 1, 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

/* Requests the server received so far. */
static int scripted_server_requests(const scripted_server *s) {
    char *text = scripted_server_log(s);
    int lines = 0;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    free(text);
    return lines;
}

static void scripted_server_cleanup(scripted_server *s) {
    scripted_server_stop(s);
    unlink(s->log_path);
}

/* A port on 127.0.0.1 nobody listens on: bound, read, and released again. */
static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    bind(fd, (struct sockaddr *)&addr, sizeof addr);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    close(fd);
    return ntohs(addr.sin_port);
}

#endif
