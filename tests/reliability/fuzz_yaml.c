/* fuzz_yaml.c — fuzz target for the YAML loader (config/yaml_io.c): every input is loaded or refused with a
 * message naming the place, never a crash, a hang, or unbounded memory (the alias expansion cap and the
 * depth limit make an alias bomb or 100k-deep nesting an error within linear time). An accepted document
 * dumps to YAML that loads again and dumps to the same text (the stored configuration reads back as written).
 * Built two ways (tests/reliability/CMakeLists.txt): always as the ctest fuzz_yaml_smoke (seeds + seeded
 * mutations through tests/tokenizer/fuzz_driver.c), and for libFuzzer with -DDIFFKIT_FUZZ=ON and clang. */
#include "fuzz_tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "config/yaml_io.h"
#include "core/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dk_err err = {0};
    dk_cfg_node *root = dk_cfg_parse_yaml((const char *)data, size, "fuzz.yaml", &err);
    if (!root) {
        CHECK(err.code != 0 && strncmp(err.msg, "fuzz.yaml", 9) == 0, "a refusal must name the file: %s", err.msg);
        return 0;
    }
    char *dump = dk_cfg_to_yaml(root);
    dk_err again_err = {0};
    dk_cfg_node *again = dk_cfg_parse_yaml(dump, strlen(dump), "dump.yaml", &again_err);
    CHECK(again != NULL, "the dump of an accepted document does not load: %s\n--- dump:\n%s", again_err.msg, dump);
    char *dump2 = dk_cfg_to_yaml(again);
    CHECK(strcmp(dump, dump2) == 0, "dump -> load -> dump changed the text:\n%s\n--- then:\n%s", dump, dump2);
    free(dump2);
    free(dump);
    dk_cfg_node_free(again);
    dk_cfg_node_free(root);
    return 0;
}
