/* file.h — the file-system helpers every module needs: read a whole (optionally gzip-compressed) file,
 * join paths, test for files and folders, list a folder, create folders. Errors name the path and say
 * what to check. */
#ifndef DK_FILE_H
#define DK_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* Reads the whole file; gzip-compressed files (any name) are decompressed transparently. The result is
 * NUL-terminated (not counted in *size). NULL with err set (code 1) on failure. */
char *dk_read_file(const char *path, size_t *size, dk_err *err);

/* "a" + "b" -> "a/b" (no doubled slash); the caller frees. */
char *dk_path_join(const char *a, const char *b);
bool dk_is_dir(const char *path);
bool dk_is_file(const char *path);
/* The folder of the running executable (/proc/self/exe), malloc'ed; "." when it cannot be read. Finds the
 * executables built beside this one (diffkit run's stages). */
char *dk_exe_dir(void);
/* Sorted names of the entries of `dir` (no "." or ".."), those ending in `suffix` if not NULL, with the
 * suffix removed when strip_suffix. *count set; NULL and *count = 0 when the folder cannot be read.
 * Free with dk_free_strings (core/strutil.h). */
char **dk_list_dir(const char *dir, const char *suffix, bool strip_suffix, size_t *count);
/* mkdir -p; 0 or -1 with err set. */
int dk_mkdirs(const char *path, dk_err *err);

#endif
