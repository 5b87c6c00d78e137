/* agent_server.h — a `diffkit serve` that diff_agent starts on 127.0.0.1 for the length of an evaluation.
 *
 * Why it exists: the agent asks the base model and the organism over HTTP, so that the same runner works
 * against a served model anywhere. When the user names no server (diffing.evaluation.models.base_url null),
 * diff_agent starts one itself with the same configuration, on a free port, reads the port from its log,
 * forwards its log lines, and stops it at the end (SIGTERM, then SIGKILL after a grace period; the child also
 * gets SIGTERM if diff_agent dies, PR_SET_PDEATHSIG). */
#ifndef DK_AGENT_AGENT_SERVER_H
#define DK_AGENT_AGENT_SERVER_H

#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"

typedef struct dk_agent_server {
    pid_t pid;            /* 0: not running */
    int port;
    char *base_url;       /* "http://127.0.0.1:<port>/v1" */
    int log_fd;           /* read end of the child's stderr */
    void *log_thread;     /* forwards the child's lines after start (pthread_t *) */
} dk_agent_server;

/* Starts `exe serve --config-dir DIR overrides... serve.host=127.0.0.1 serve.port=0 serve.models=[models...]`
 * and waits (at most timeout_s) for its "listening on" line. 0, or -1 + err (it exited first: its messages
 * were forwarded above; or it did not start in time). */
int dk_agent_server_start(const char *exe, const char *config_dir, const char *const *overrides, size_t n_overrides,
                          const char *const *models, size_t n_models, double timeout_s, dk_agent_server *out,
                          dk_err *err);
/* Stops it and waits for it (safe on a zeroed server). */
void dk_agent_server_stop(dk_agent_server *s);

#endif
