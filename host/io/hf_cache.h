/* hf_cache.h — find a model or adapter on local disk, offline, the way huggingface_hub does.
 *
 * Compute nodes are often offline, so nothing is downloaded: an id is either a local folder, or a repo
 * already in a Hugging Face cache. Ids follow the seed framework: "ORG/NAME" or "ORG/NAME/SUBFOLDER..."
 * (an adapter stored in a subfolder of a repo). Caches are searched in this order:
 *   $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub
 * and inside each: models--ORG--NAME/refs/<revision> names a commit; models--ORG--NAME/snapshots/<commit>/
 * holds the files. A revision may also be a commit hash present under snapshots/.
 */
#ifndef DK_HF_CACHE_H
#define DK_HF_CACHE_H

#include "core/error.h"

typedef struct dk_hf_location {
    char *path;    /* absolute folder holding the files (config.json, adapter_config.json, ...) */
    char *repo;    /* "ORG/NAME", or NULL for a plain local folder */
    char *commit;  /* snapshot commit hash, or NULL for a plain local folder */
} dk_hf_location;

/* revision: NULL means "main". required_file: a file that must exist in the resolved folder (e.g.
 * "config.json" or "adapter_config.json"), or NULL. Returns 0, or -1 with err set (code 1): the message
 * lists every place looked in and the command that downloads the model on a machine with network. */
int dk_hf_resolve(const char *id, const char *revision, const char *required_file, dk_hf_location *out, dk_err *err);
void dk_hf_location_free(dk_hf_location *loc);

#endif
