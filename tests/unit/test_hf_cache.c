/* test_hf_cache.c — offline model resolution (host/io/hf_cache.c) against a fake Hugging Face cache built
 * here in a temporary folder, laid out as huggingface_hub lays it out:
 *   <hub>/models--ORG--NAME/refs/main            (commit hash + newline)
 *   <hub>/models--ORG--NAME/snapshots/<hash>/...  (config.json, subfolders for adapters)
 * Checks cache precedence (HF_HUB_CACHE before HF_HOME/hub before ~/.cache), refs, commit revisions,
 * subfolder ids, local folders, and every error message. */
#include "test.h"

#include "core/error.h"
#include "io/file.h"
#include "io/hf_cache.h"
#include "core/strutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *HASH_A = "0123456789abcdef0123456789abcdef01234567";
static const char *HASH_B = "89abcdef0123456789abcdef0123456789abcdef";

static void write_file(const char *path, const char *text) {
    char *dir = dk_strdup(path);
    *strrchr(dir, '/') = '\0';
    dk_err err = {0};
    if (dk_mkdirs(dir, &err) != 0) fprintf(stderr, "%s\n", err.msg);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    free(dir);
}

static void make_repo(const char *hub, const char *flat, const char *ref_hash, const char **snapshots, int n) {
    for (int i = 0; i < n; i++) {
        char *cfg = dk_sprintf("%s/models--%s/snapshots/%s/config.json", hub, flat, snapshots[i]);
        write_file(cfg, "{}");
        free(cfg);
    }
    if (ref_hash) {
        char *ref = dk_sprintf("%s/models--%s/refs/main", hub, flat);
        char *text = dk_sprintf("%s\n", ref_hash);
        write_file(ref, text);
        free(text);
        free(ref);
    }
}

int main(void) {
    char tmpl[] = "/tmp/dk_hf_cache_XXXXXX";
    char *root = mkdtemp(tmpl);
    if (!root) return 2;
    char *hub1 = dk_sprintf("%s/hub_cache", root);   /* HF_HUB_CACHE */
    char *home = dk_sprintf("%s/hf_home", root);     /* HF_HOME -> hf_home/hub */
    char *hub2 = dk_sprintf("%s/hub", home);
    char *user = dk_sprintf("%s/user", root);        /* HOME -> user/.cache/huggingface/hub */
    char *hub3 = dk_sprintf("%s/.cache/huggingface/hub", user);
    unsetenv("HUGGINGFACE_HUB_CACHE");
    unsetenv("XDG_CACHE_HOME");
    setenv("HF_HUB_CACHE", hub1, 1);
    setenv("HF_HOME", home, 1);
    setenv("HOME", user, 1);

    const char *a[] = {HASH_A}, *ab[] = {HASH_A, HASH_B};
    make_repo(hub1, "Qwen--Qwen3-1.7B", HASH_A, a, 1);
    make_repo(hub2, "Qwen--Qwen3-1.7B", HASH_B, (const char *[]){HASH_B}, 1); /* shadowed by hub1 */
    make_repo(hub2, "google--gemma-3-1b-it", HASH_B, (const char *[]){HASH_B}, 1);
    make_repo(hub3, "meta-llama--Llama-3.2-1B", NULL, a, 1);                  /* no refs, one snapshot */
    make_repo(hub3, "org--two-snapshots", NULL, ab, 2);                        /* no refs, two snapshots */
    make_repo(hub1, "maius--personas", HASH_A, a, 1);
    char *adapter = dk_sprintf("%s/models--maius--personas/snapshots/%s/sarcasm/adapter_config.json", hub1, HASH_A);
    write_file(adapter, "{}");
    free(adapter);
    make_repo(hub1, "org--dangling", HASH_B, a, 1);                            /* refs points at a missing snapshot */

    dk_hf_location loc;
    dk_err err = {0};
    EXPECT(dk_hf_resolve("Qwen/Qwen3-1.7B", NULL, "config.json", &loc, &err) == 0, "Qwen in HF_HUB_CACHE: %s", err.msg);
    EXPECT(loc.path && strstr(loc.path, "hub_cache/models--Qwen--Qwen3-1.7B/snapshots/") && strstr(loc.path, HASH_A),
           "HF_HUB_CACHE comes first, refs/main followed: %s", loc.path);
    EXPECT(loc.commit && strcmp(loc.commit, HASH_A) == 0 && strcmp(loc.repo, "Qwen/Qwen3-1.7B") == 0, "commit and repo");
    dk_hf_location_free(&loc);

    EXPECT(dk_hf_resolve("google/gemma-3-1b-it", "main", NULL, &loc, &err) == 0, "gemma in HF_HOME/hub: %s", err.msg);
    EXPECT(loc.path && strstr(loc.path, "hf_home/hub/") && strstr(loc.path, HASH_B), "HF_HOME/hub: %s", loc.path);
    dk_hf_location_free(&loc);

    EXPECT(dk_hf_resolve("meta-llama/Llama-3.2-1B", NULL, "config.json", &loc, &err) == 0, "single snapshot: %s", err.msg);
    EXPECT(loc.path && strstr(loc.path, "user/.cache/huggingface/hub/"), "~/.cache: %s", loc.path);
    dk_hf_location_free(&loc);

    EXPECT(dk_hf_resolve("maius/personas/sarcasm", NULL, "adapter_config.json", &loc, &err) == 0, "subfolder: %s", err.msg);
    EXPECT(loc.path && dk_str_ends_with(loc.path, "/sarcasm"), "subfolder path: %s", loc.path);
    dk_hf_location_free(&loc);

    EXPECT(dk_hf_resolve("org/two-snapshots", HASH_B, NULL, &loc, &err) == 0, "revision = commit hash: %s", err.msg);
    EXPECT(loc.path && strstr(loc.path, HASH_B), "commit revision picks that snapshot");
    dk_hf_location_free(&loc);

    dk_err_clear(&err);
    EXPECT(dk_hf_resolve("org/two-snapshots", NULL, NULL, &loc, &err) != 0, "two snapshots and no refs is ambiguous");
    EXPECT_CONTAINS(err.msg, HASH_A);
    EXPECT_CONTAINS(err.msg, HASH_B);

    dk_err_clear(&err);
    EXPECT(dk_hf_resolve("Qwen/Qwen3-8B", NULL, NULL, &loc, &err) != 0, "absent model");
    EXPECT(err.code == DK_EXIT_RUNTIME, "absent model is a runtime error");
    EXPECT_CONTAINS(err.msg, "not available offline");
    EXPECT_CONTAINS(err.msg, "hub_cache/models--Qwen--Qwen3-8B");
    EXPECT_CONTAINS(err.msg, "hf_home/hub/models--Qwen--Qwen3-8B");
    EXPECT_CONTAINS(err.msg, ".cache/huggingface/hub/models--Qwen--Qwen3-8B");
    EXPECT_CONTAINS(err.msg, "huggingface-cli download Qwen/Qwen3-8B");

    dk_err_clear(&err);
    EXPECT(dk_hf_resolve("maius/personas/humor", NULL, NULL, &loc, &err) != 0, "missing subfolder");
    EXPECT_CONTAINS(err.msg, "subfolder");

    dk_err_clear(&err);
    EXPECT(dk_hf_resolve("Qwen/Qwen3-1.7B", NULL, "adapter_config.json", &loc, &err) != 0, "required file missing");
    EXPECT_CONTAINS(err.msg, "has no adapter_config.json");

    dk_err_clear(&err);
    EXPECT(dk_hf_resolve("org/dangling", NULL, NULL, &loc, &err) != 0, "refs to a missing snapshot");
    EXPECT_CONTAINS(err.msg, "re-download");

    dk_err_clear(&err);
    EXPECT(dk_hf_resolve("org//name", NULL, NULL, &loc, &err) != 0 && err.code == DK_EXIT_USAGE, "malformed id");
    EXPECT_CONTAINS(err.msg, "ORG/NAME");

    /* the Hub's legacy ids without an organisation ("gpt2") live in models--NAME */
    dk_err_clear(&err);
    const char *legacy_snap[] = {HASH_A};
    make_repo(hub2, "gpt2", HASH_A, legacy_snap, 1);
    EXPECT(dk_hf_resolve("gpt2", NULL, "config.json", &loc, &err) == 0, "legacy id: %s", err.msg);
    EXPECT(loc.path && strstr(loc.path, "hf_home/hub/models--gpt2/snapshots/") != NULL, "legacy id path: %s",
           loc.path ? loc.path : "(null)");
    dk_hf_location_free(&loc);
    EXPECT(dk_hf_resolve("distilgpt3", NULL, NULL, &loc, &err) != 0 && err.code == DK_EXIT_RUNTIME, "missing legacy id");
    EXPECT_CONTAINS(err.msg, "hub_cache/models--distilgpt3");
    EXPECT_CONTAINS(err.msg, "huggingface-cli download distilgpt3");

    /* a local folder wins over any cache */
    char *local = dk_sprintf("%s/local_model", root);
    char *local_cfg = dk_sprintf("%s/config.json", local);
    write_file(local_cfg, "{}");
    EXPECT(dk_hf_resolve(local, NULL, "config.json", &loc, &err) == 0 && loc.commit == NULL, "local folder: %s", err.msg);
    EXPECT(loc.path && strcmp(loc.path, local) == 0, "local path returned as is (absolute)");
    dk_hf_location_free(&loc);

    char *cmd = dk_sprintf("rm -rf '%s'", root);
    EXPECT(system(cmd) == 0, "cleanup");
    free(cmd);
    free(local);
    free(local_cfg);
    free(hub1), free(hub2), free(hub3), free(home), free(user);
    return dk_test_finish("test_hf_cache");
}
