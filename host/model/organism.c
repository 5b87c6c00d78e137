/* organism.c — see organism.h. */
#include "organism.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"

int dk_finetune_kind_of(const char *folder, dk_finetune_kind *kind, dk_err *err) {
    const char *names[] = {"adapter_config.json", "config.json"};
    const dk_finetune_kind kinds[] = {DK_FINETUNE_ADAPTER, DK_FINETUNE_FULL};
    for (int i = 0; i < 2; i++) {
        char *p = dk_path_join(folder, names[i]);
        const bool present = dk_is_file(p);
        free(p);
        if (present) {
            *kind = kinds[i];
            return 0;
        }
    }
    return dk_err_set(err, DK_EXIT_USAGE, "%s holds neither adapter_config.json (a PEFT adapter) nor config.json (a "
                      "full model): it is not a finetuned model", folder);
}

char *dk_tokenizer_file(const char *folder) {
    const char *names[] = {"tokenizer.json", "tokenizer.json.gz"};
    for (int i = 0; i < 2; i++) {
        char *p = dk_path_join(folder, names[i]);
        if (dk_is_file(p)) return p;
        free(p);
    }
    return NULL;
}

static cJSON *load_json(const char *path, dk_err *err) {
    size_t n = 0;
    char *text = dk_read_file(path, &n, err);
    if (!text) return NULL;
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        dk_err_set(err, DK_EXIT_USAGE, "%s is not a JSON object (a tokenizer.json was expected)", path);
        return NULL;
    }
    /* what does not change how text is tokenized */
    const char *ignored[] = {"version", "truncation", "padding"};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(root, ignored[i]);
    return root;
}

int dk_tokenizers_check_same(const char *a, const char *b, const char *what, dk_err *err) {
    cJSON *ja = load_json(a, err), *jb = ja ? load_json(b, err) : NULL;
    int rc = 0;
    if (!ja || !jb) {
        rc = -1;
    } else if (!cJSON_Compare(ja, jb, true)) {
        const char *part = "a top-level entry";
        for (int side = 0; side < 2 && part[0] == 'a'; side++) /* an entry that differs, or that one side lacks */
            for (const cJSON *item = (side ? jb : ja)->child; item; item = item->next) {
                const cJSON *other = cJSON_GetObjectItemCaseSensitive(side ? ja : jb, item->string);
                if (!other || !cJSON_Compare(item, other, true)) {
                    part = item->string;
                    break;
                }
            }
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s use different tokenizers (%s differs from %s in \"%s\"): their "
                        "activations cannot be compared token by token", what, b, a, part);
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return rc;
}
