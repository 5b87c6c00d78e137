/* model_path.c — see model_path.h. */
#include "model_path.h"

#include <stdlib.h>

#include "io/file.h"
#include "io/hf_cache.h"

char *dk_model_folder(const char *path_or_id, const char *required_file, dk_err *err) {
    if (dk_is_dir(path_or_id)) {
        char *file = required_file ? dk_path_join(path_or_id, required_file) : NULL;
        bool present = !file || dk_is_file(file);
        free(file);
        if (!present) {
            dk_err_set(err, DK_EXIT_USAGE, "%s is a folder without %s", path_or_id, required_file);
            return NULL;
        }
        return dk_strdup(path_or_id);
    }
    dk_hf_location loc;
    if (dk_hf_resolve(path_or_id, NULL, required_file, &loc, err) != 0) return NULL;
    char *folder = dk_strdup(loc.path);
    dk_hf_location_free(&loc);
    return folder;
}
