/* organism.h — the finetuned side of a comparison, whatever form it was published in: a PEFT adapter folder
 * (adapter_config.json) or a full checkpoint (config.json: every weight finetuned), and the checks that make
 * the two comparable token by token: the same tokenizer, and (for a full finetune) the same tensor shapes
 * (dk_model_weights_check_same_shapes).
 *
 * Tokenizers are compared by content, not bytes: a finetune re-saved by a newer `tokenizers` rewrites
 * tokenizer.json (key order, its "version"), which changes nothing; a changed vocabulary, merge list, added
 * token, normalizer or pre-tokenizer does. The runtime settings "truncation" and "padding" are ignored. */
#ifndef DK_ORGANISM_H
#define DK_ORGANISM_H

#include "core/error.h"

typedef enum { DK_FINETUNE_ADAPTER, DK_FINETUNE_FULL } dk_finetune_kind;

/* What a finetuned model folder holds: adapter_config.json (an adapter) or else config.json (a full model).
 * 0, or -1 with err (code 2) when it holds neither. */
int dk_finetune_kind_of(const char *folder, dk_finetune_kind *kind, dk_err *err);

/* tokenizer.json (or tokenizer.json.gz) of a folder, malloc'ed; NULL when there is none. */
char *dk_tokenizer_file(const char *folder);

/* 0 when the tokenizer files a and b have the same content (see above); else -1 with err (code 2) naming both
 * and the first part that differs. `what` names the pair in the message ("the base model and the organism"). */
int dk_tokenizers_check_same(const char *a, const char *b, const char *what, dk_err *err);

#endif
