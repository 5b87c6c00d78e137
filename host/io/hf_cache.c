/* hf_cache.c — see hf_cache.h. */
#include "hf_cache.h"

#include "core/strutil.h"
#include "file.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_HUBS = 5 };

/* Fills hubs[] with the cache folders to search, in order, without duplicates; returns how many. */
static size_t candidate_hubs(char *hubs[MAX_HUBS]) {
    size_t n = 0;
    char *c[MAX_HUBS] = {0};
    const char *v;
    if ((v = getenv("HF_HUB_CACHE")) && *v) c[0] = dk_strdup(v);
    if ((v = getenv("HUGGINGFACE_HUB_CACHE")) && *v) c[1] = dk_strdup(v);
    if ((v = getenv("HF_HOME")) && *v) c[2] = dk_path_join(v, "hub");
    if ((v = getenv("XDG_CACHE_HOME")) && *v) c[3] = dk_path_join(v, "huggingface/hub");
    if ((v = getenv("HOME")) && *v) c[4] = dk_path_join(v, ".cache/huggingface/hub");
    for (int i = 0; i < MAX_HUBS; i++) {
        if (!c[i]) continue;
        bool seen = false;
        for (size_t j = 0; j < n; j++) seen = seen || strcmp(hubs[j], c[i]) == 0;
        if (seen)
            free(c[i]);
        else
            hubs[n++] = c[i];
    }
    return n;
}

static bool is_commit_hash(const char *s) {
    size_t n = strlen(s);
    if (n != 40) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

static char *read_ref(const char *repo_dir, const char *revision) {
    char *ref_path = dk_sprintf("%s/refs/%s", repo_dir, revision);
    char *text = dk_read_file(ref_path, NULL, NULL);
    free(ref_path);
    if (!text) return NULL;
    size_t len = strlen(text);
    while (len > 0 && isspace((unsigned char)text[len - 1])) text[--len] = '\0';
    return text;
}

static int check_required(const char *folder, const char *required_file, const char *what, dk_err *err) {
    if (!required_file) return 0;
    char *p = dk_path_join(folder, required_file);
    bool ok = dk_is_file(p);
    free(p);
    if (ok) return 0;
    return dk_err_set(err, DK_EXIT_RUNTIME, "%s %s has no %s: is the download incomplete, or is this the wrong id?",
                      what, folder, required_file);
}

/* The cache folder of a repo: "models--ORG--NAME", or "models--NAME" for the Hub's legacy ids without an
 * organisation ("gpt2"). */
static char *repo_cache_name(const char *repo) {
    dk_strbuf s = {0};
    dk_strbuf_append(&s, "models--");
    for (const char *p = repo; *p; p++) {
        if (*p == '/') dk_strbuf_append(&s, "--");
        else dk_strbuf_append_n(&s, p, 1);
    }
    return dk_strbuf_take(&s);
}

/* Looks in one cache; returns 1 found (out filled), 0 not in this cache, -1 error (err set). */
static int resolve_in_hub(const char *hub, const char *repo, const char *subfolder, const char *revision,
                          const char *required_file, dk_hf_location *out, dk_err *err) {
    char *cache_name = repo_cache_name(repo);
    char *repo_dir = dk_path_join(hub, cache_name);
    free(cache_name);
    if (!dk_is_dir(repo_dir)) {
        free(repo_dir);
        return 0;
    }
    char *snapshots = dk_path_join(repo_dir, "snapshots");
    char *commit = read_ref(repo_dir, revision);
    if (!commit && is_commit_hash(revision)) commit = dk_strdup(revision);
    if (!commit) {
        size_t n = 0;
        char **names = dk_list_dir(snapshots, NULL, false, &n);
        if (n == 1 && strcmp(revision, "main") == 0) {
            commit = dk_strdup(names[0]);
        } else {
            dk_strbuf list = {0};
            for (size_t i = 0; i < n; i++) dk_strbuf_printf(&list, "%s%s", i ? ", " : "", names[i]);
            dk_err_set(err, DK_EXIT_RUNTIME,
                       "%s is in the cache %s but revision '%s' is not: %s has no refs/%s and %s snapshot(s)%s%s. "
                       "Set the model's revision to one of the snapshot hashes, or download that revision.",
                       repo, hub, revision, repo_dir, revision, n ? "these" : "no", n ? ": " : "",
                       list.data ? list.data : "");
            dk_strbuf_free(&list);
        }
        dk_free_strings(names, n);
        if (!commit) {
            free(snapshots);
            free(repo_dir);
            return -1;
        }
    }
    char *snap = dk_sprintf("%s/%s%s%s", snapshots, commit, subfolder ? "/" : "", subfolder ? subfolder : "");
    free(snapshots);
    free(repo_dir);
    int rc = 1;
    if (!dk_is_dir(snap)) {
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s is in the cache %s, but %s does not exist%s", repo, hub, snap,
                        subfolder ? ": is the subfolder name right, and was it downloaded?"
                                  : " (refs points at a snapshot that is missing: re-download the model)");
    } else if (check_required(snap, required_file, "the snapshot", err) != 0) {
        rc = -1;
    }
    if (rc == 1) {
        char resolved[PATH_MAX];
        out->path = dk_strdup(realpath(snap, resolved) ? resolved : snap);
        out->repo = dk_strdup(repo);
        out->commit = commit;
        commit = NULL;
    }
    free(commit);
    free(snap);
    return rc;
}

/* When the start of id is an existing local folder (models/demo/bas: models/demo exists here), it was most
 * likely meant as a path: "there is no folder X (did you mean Y?)" helps, a hub download does not. Finds the
 * first component that does not exist under an existing, non-empty prefix; NULL when the first component
 * itself does not exist (then id reads as ORG/NAME). */
static char *local_path_problem(const char *id) {
    char *path = dk_strdup(id);
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') path[--len] = '\0';
    char *msg = NULL;
    for (char *cut = strchr(path + 1, '/'); cut && !msg; cut = strchr(cut + 1, '/')) {
        *cut = '\0';
        bool prefix_exists = dk_is_dir(path);
        *cut = '/';
        if (!prefix_exists) break;
        char *next = strchr(cut + 1, '/');
        if (next) *next = '\0';
        if (!dk_is_dir(path)) { /* path = existing prefix + "/" + the missing component */
            *cut = '\0';
            const char *parent = path[0] ? path : "/", *name = cut + 1;
            size_t n = 0, best_d = (size_t)-1;
            char **names = dk_list_dir(parent, NULL, false, &n);
            const char *best = NULL;
            for (size_t i = 0; i < n; i++) {
                size_t d = dk_edit_distance(name, names[i]);
                if (d < best_d) best_d = d, best = names[i];
            }
            if (best && best_d > 0 && best_d <= (strlen(name) > 6 ? 3 : 2))
                msg = dk_sprintf("there is no folder %s/%s here (did you mean %s/%s?)", path, name, path, best);
            else
                msg = dk_sprintf("there is no folder %s/%s here", path, name);
            dk_free_strings(names, n);
        }
        if (next) *next = '/';
    }
    free(path);
    return msg;
}

int dk_hf_resolve(const char *id, const char *revision, const char *required_file, dk_hf_location *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    if (!id || !*id) return dk_err_set(err, DK_EXIT_USAGE, "empty model id: give a local folder or ORG/NAME");
    if (!revision || !*revision) revision = "main";
    if (dk_is_dir(id)) {
        if (check_required(id, required_file, "the folder", err) != 0) return -1;
        char resolved[PATH_MAX];
        out->path = dk_strdup(realpath(id, resolved) ? resolved : id);
        return 0;
    }
    /* ORG/NAME[/SUBFOLDER...], or a legacy id without an organisation (NAME, e.g. "gpt2") */
    const char *slash = strchr(id, '/');
    if ((slash && (slash == id || slash[1] == '\0' || slash[1] == '/')) || id[0] == '.' || id[0] == '/') {
        char *local = local_path_problem(id);
        if (local) dk_err_set(err, DK_EXIT_USAGE, "model '%s': %s; give an existing folder", id, local);
        else dk_err_set(err, DK_EXIT_USAGE, "model id '%s' is neither an existing local folder nor a Hugging Face id of "
                        "the form ORG/NAME[/SUBFOLDER]", id);
        free(local);
        return -1;
    }
    const char *second = slash ? strchr(slash + 1, '/') : NULL;
    char *repo = second ? dk_strndup(id, (size_t)(second - id)) : dk_strdup(id);
    const char *subfolder = second ? second + 1 : NULL;

    char *hubs[MAX_HUBS];
    size_t n_hubs = candidate_hubs(hubs);
    int rc = 0;
    for (size_t i = 0; i < n_hubs && rc == 0; i++)
        rc = resolve_in_hub(hubs[i], repo, subfolder, revision, required_file, out, err);
    char *local = rc == 0 ? local_path_problem(id) : NULL;
    if (local) { /* not in the cache either: a mistyped local path, most likely */
        rc = dk_err_set(err, DK_EXIT_USAGE, "model '%s': %s, and no Hugging Face model %s is in the local cache; "
                        "give an existing folder", id, local, repo);
        free(local);
    } else if (rc == 0) {
        dk_strbuf where = {0};
        dk_strbuf_printf(&where, "  - ./%s (not a local folder)\n", id);
        for (size_t i = 0; i < n_hubs; i++) {
            char *cache_name = repo_cache_name(repo);
            dk_strbuf_printf(&where, "  - %s/%s\n", hubs[i], cache_name);
            free(cache_name);
        }
        dk_err_set(err, DK_EXIT_RUNTIME,
                   "model '%s' (revision %s) is not available offline. Looked in:\n%s"
                   "Download it on a machine with network access:\n"
                   "    huggingface-cli download %s%s%s\n"
                   "then copy the models--* folder into one of the caches above (or set HF_HUB_CACHE to it), "
                   "or give a local folder instead of the id.",
                   id, revision, where.data, repo, strcmp(revision, "main") ? " --revision " : "",
                   strcmp(revision, "main") ? revision : "");
        dk_strbuf_free(&where);
    }
    for (size_t i = 0; i < n_hubs; i++) free(hubs[i]);
    free(repo);
    return rc == 1 ? 0 : -1;
}

void dk_hf_location_free(dk_hf_location *loc) {
    free(loc->path);
    free(loc->repo);
    free(loc->commit);
    loc->path = loc->repo = loc->commit = NULL;
}
