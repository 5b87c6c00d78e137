/* file.c — see file.h. A file that starts with the gzip magic bytes is inflated (every member to its end, so a
 * truncated file is an error); any other file is returned as it is. */
#include "file.h"

#include "core/strutil.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The raw bytes of a file (NUL-terminated, not counted). NULL with err on failure. */
static char *read_raw(const char *path, size_t *size, dk_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
        return NULL;
    }
    dk_strbuf buf = {0};
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) dk_strbuf_append_n(&buf, chunk, n);
    int failed = ferror(f);
    int e = errno;
    fclose(f);
    if (failed) {
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot read %s: %s", path, strerror(e));
        dk_strbuf_free(&buf);
        return NULL;
    }
    *size = buf.len;
    dk_strbuf_append(&buf, ""); /* a NUL after the data even when it is empty */
    return dk_strbuf_take(&buf);
}

/* Decompresses gzip members (one or more, as gzip writes them) until the input ends. Every member must reach
 * its end: zlib's gzread returns a cut-off stream's data and then a plain end of file, so a truncated file is
 * detected here, by inflate never reporting Z_STREAM_END. NULL with err on corrupt or truncated data. */
static char *gunzip(const char *path, const unsigned char *in, size_t in_len, size_t *size, dk_err *err) {
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot read %s: zlib could not start", path);
        return NULL;
    }
    dk_strbuf out = {0};
    unsigned char chunk[1 << 16];
    z.next_in = (unsigned char *)in;
    size_t left = in_len; /* input not yet handed to zlib (avail_in is 32-bit) */
    int ret;
    for (;;) {
        if (z.avail_in == 0 && left > 0) {
            z.avail_in = left > (1u << 30) ? 1u << 30 : (unsigned)left;
            left -= z.avail_in;
        }
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        ret = inflate(&z, Z_NO_FLUSH);
        dk_strbuf_append_n(&out, (const char *)chunk, sizeof chunk - z.avail_out);
        if (ret == Z_STREAM_END) {
            if (z.avail_in == 0 && left == 0) break; /* the last member ended with the file */
            inflateReset(&z);                        /* another member follows */
        } else if (ret != Z_OK) {
            break; /* Z_BUF_ERROR: the input ended inside a member; others: corrupt data */
        }
    }
    inflateEnd(&z);
    if (ret != Z_STREAM_END) {
        if (ret == Z_BUF_ERROR)
            dk_err_set(err, DK_EXIT_RUNTIME, "cannot read %s: the gzip data ends early after %zu bytes of text (the file "
                       "is truncated: copy or download it again)", path, out.len);
        else
            dk_err_set(err, DK_EXIT_RUNTIME, "cannot read %s: the gzip data is corrupt (%s) after %zu bytes of text",
                       path, z.msg ? z.msg : "zlib error", out.len);
        dk_strbuf_free(&out);
        return NULL;
    }
    *size = out.len;
    dk_strbuf_append(&out, "");
    return dk_strbuf_take(&out);
}

char *dk_read_file(const char *path, size_t *size, dk_err *err) {
    size_t raw_len = 0, len = 0;
    char *raw = read_raw(path, &raw_len, err);
    if (!raw) return NULL;
    bool gz = raw_len >= 2 && (unsigned char)raw[0] == 0x1f && (unsigned char)raw[1] == 0x8b;
    char *text = raw;
    len = raw_len;
    if (gz) {
        text = gunzip(path, (const unsigned char *)raw, raw_len, &len, err);
        free(raw);
        if (!text) return NULL;
    }
    if (size) *size = len;
    return text;
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

char *dk_exe_dir(void) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return dk_strdup(".");
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    return dk_strdup(self);
}
