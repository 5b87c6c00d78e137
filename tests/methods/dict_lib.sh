# dict_lib.sh — shared helpers of the dictionary methods' job tests (sourced): methods_lib.sh (the tiny test pair's
# configuration tree, run_job, make_stores, ...) plus the checkpoint folder the SAE and crosscoder write to.
# Needs what methods_lib.sh needs, and DICT_CHECK (tests/dict_check).
source "$(dirname "${BASH_SOURCE[0]}")/methods_lib.sh"
echo '  checkpoint_dir: ${infrastructure.storage.base_dir}/checkpoints' >> "$CONFIGS/infrastructure/test.yaml"
RESULTS=diffing_results/tiny/tiny_org
