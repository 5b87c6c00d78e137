/* model_path.h — a --model / --adapter argument to a local folder: the folder itself, or a Hugging Face id
 * found in the local cache (host/io/hf_cache.h). One place, so every command accepts the same spellings. */
#ifndef DK_MODEL_PATH_H
#define DK_MODEL_PATH_H

#include "core/error.h"

/* A malloc'ed folder holding required_file ("config.json", "adapter_config.json"; NULL: any folder), or NULL
 * with err set. */
char *dk_model_folder(const char *path_or_id, const char *required_file, dk_err *err);

#endif
