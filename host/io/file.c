/* file.c — see file.h. zlib's gzread reads plain files unchanged, so one code path serves both. */
#include "file.h"

#include "core/strutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

char *dk_read_file(const char *path, size_t *size, dk_err *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
        return NULL;
    }
    gzbuffer(f, 1 << 17);
    dk_strbuf buf = {0};
    char chunk[1 << 16];
    for (;;) {
        int n = gzread(f, chunk, sizeof chunk);
        if (n < 0) {
            int zerr = 0;
            const char *msg = gzerror(f, &zerr);
            dk_err_set(err, DK_EXIT_RUNTIME, "cannot read %s: %s (is the file truncated or not really gzip?)", path,
                       zerr == Z_ERRNO ? strerror(errno) : msg);
            gzclose(f);
            dk_strbuf_free(&buf);
            return NULL;
        }
        if (n == 0) break;
        dk_strbuf_append_n(&buf, chunk, (size_t)n);
    }
    /* zlib reads a cut-off gzip stream to its end and reports it only here (so a growing file can be
     * followed): a truncated file is an I/O error, never data that merely ends early */
    int zerr = Z_OK;
    gzerror(f, &zerr);
    if (zerr == Z_BUF_ERROR) {
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot read %s: the gzip data ends early after %zu bytes of text (the file "
                   "is truncated: copy or download it again)", path, buf.len);
        gzclose(f);
        dk_strbuf_free(&buf);
        return NULL;
    }
    gzclose(f);
    if (size) *size = buf.len;
    return dk_strbuf_take(&buf);
}

char *dk_path_join(const char *a, const char *b) {
    size_t la = strlen(a);
    if (la == 0) return dk_strdup(b);
    if (b[0] == '/') return dk_strdup(b);
    return dk_sprintf("%s%s%s", a, a[la - 1] == '/' ? "" : "/", b);
}

bool dk_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool dk_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **dk_list_dir(const char *dir, const char *suffix, bool strip_suffix, size_t *count) {
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    size_t n = 0, cap = 16;
    char **names = dk_malloc(cap * sizeof *names);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (suffix && !dk_str_ends_with(e->d_name, suffix)) continue;
        if (n == cap) names = dk_realloc(names, (cap *= 2) * sizeof *names);
        size_t len = strlen(e->d_name) - (suffix && strip_suffix ? strlen(suffix) : 0);
        names[n++] = dk_strndup(e->d_name, len);
    }
    closedir(d);
    qsort(names, n, sizeof *names, compare_strings);
    *count = n;
    return names;
}

int dk_mkdirs(const char *path, dk_err *err) {
    char *p = dk_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0775) != 0 && errno != EEXIST) {
            dk_err_set(err, DK_EXIT_RUNTIME, "cannot create folder %s: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0775) != 0 && errno != EEXIST) rc = dk_err_set(err, DK_EXIT_RUNTIME, "cannot create folder %s: %s", p, strerror(errno));
    else if (!dk_is_dir(p)) rc = dk_err_set(err, DK_EXIT_RUNTIME, "cannot create folder %s: a file of that name exists", p);
    free(p);
    return rc;
}
