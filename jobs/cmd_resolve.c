/* cmd_resolve.c — `diffkit resolve ID`: where a model or adapter id lives on this machine (offline).
 * Prints the folder, and with --verbose the repo and snapshot commit; the error lists where it looked. */
#include "commands.h"

#include "core/error.h"
#include "io/hf_cache.h"

#include <stdio.h>
#include <string.h>

int cmd_resolve(int argc, char **argv) {
    const char *id = NULL, *revision = NULL, *require = NULL;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: diffkit resolve ID [--revision R] [--require FILE] [--verbose]\n\n"
                   "ID is a local folder or a Hugging Face id ORG/NAME[/SUBFOLDER] already in the local cache\n"
                   "($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub). Nothing is downloaded.\n");
            return 0;
        } else if (strcmp(argv[i], "--revision") == 0 && i + 1 < argc) {
            revision = argv[++i];
        } else if (strcmp(argv[i], "--require") == 0 && i + 1 < argc) {
            require = argv[++i];
        } else if (strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else if (argv[i][0] == '-' || id) {
            fprintf(stderr, "diffkit resolve: unexpected argument '%s' (see diffkit resolve --help)\n", argv[i]);
            return DK_EXIT_USAGE;
        } else {
            id = argv[i];
        }
    }
    if (!id) {
        fprintf(stderr, "diffkit resolve: give a model id, e.g. diffkit resolve Qwen/Qwen3-1.7B\n");
        return DK_EXIT_USAGE;
    }
    dk_hf_location loc;
    dk_err err = {0};
    if (dk_hf_resolve(id, revision, require, &loc, &err) != 0) dk_die(&err);
    printf("%s\n", loc.path);
    if (verbose && loc.repo) printf("repo: %s\ncommit: %s\n", loc.repo, loc.commit);
    dk_hf_location_free(&loc);
    return 0;
}
