/* pp_dataset.h — the texts diff_preprocess caches: a configured dataset id and split resolved to a local
 * JSON Lines file, its records read (a `text` column, or `messages` rendered with the model's chat template),
 * and tokenized with the seed's semantics (seed_spec §3.1).
 *
 * Resolution of a dataset id (nothing is downloaded): a local .jsonl/.jsonl.gz file (NAME.<split>.jsonl(.gz)
 * names its split, and the other splits are the files beside it with the split swapped), or a local folder
 * holding <split>.jsonl(.gz). Anything else (a Hugging Face id) is an error asking for a local path. */
#ifndef DK_PP_DATASET_H
#define DK_PP_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

/* The file for (id, split) and the dataset's short name (for the store's folder). config_key names the
 * config key in messages ("dataset.pretraining.id"). 0 or -1 + err (code 2). Caller frees both. */
int dk_pp_resolve_dataset(const char *id, const char *split, const char *config_key, char **path, char **name,
                          dk_err *err);

typedef struct dk_pp_read_options {
    bool is_chat;                 /* render messages_column with the chat template */
    const char *text_column;      /* used when !is_chat */
    const char *messages_column;  /* used when is_chat */
    dk_chat_family family;
    const char *bos_token;        /* NULL: the tokenizer has none */
    int64_t max_samples;          /* first max_samples records (seed: select(range(min(N, len)))) */
    bool skip_bad;                /* on_bad_record=skip: log and drop malformed lines instead of failing */
} dk_pp_read_options;

typedef struct dk_pp_texts {
    char **texts;           /* (n) rendered texts */
    size_t *lens;           /* (n) their lengths in bytes (a text may hold U+0000, as HF's strings may) */
    int64_t *line_no;       /* (n) 1-based line of each record in its file */
    bool *add_special;      /* (n) add the tokenizer's special tokens (BOS) when the text lacks them */
    int64_t n;
    int64_t n_bad;          /* malformed records skipped (skip_bad) */
    int64_t n_chat_skipped; /* conversations the template refuses (seed: skipped) */
    uint64_t content_hash;  /* FNV-1a of the file's (decompressed) bytes */
} dk_pp_texts;

/* 0, or -1 + err (code 1, naming the file and line). An empty file is an error. */
int dk_pp_read_texts(const char *path, const dk_pp_read_options *opt, dk_pp_texts *out, dk_err *err);
void dk_pp_texts_free(dk_pp_texts *t);

/* Tokenized, truncated, capped sequences, packed. */
typedef struct dk_pp_tokens {
    int32_t *ids;           /* (n_tokens) */
    int64_t *offsets;       /* (n_seqs + 1) */
    int64_t n_seqs, n_tokens;
    int64_t n_short;        /* sequences under 2 tokens dropped (skip_bad) */
} dk_pp_tokens;

/* Encodes every text (n_threads; <= 0 all cores), truncates to context_len, drops nothing but (with
 * skip_bad) sequences under 2 tokens, and stops once max_tokens is reached (the sequence that crosses it is
 * kept whole). A sequence under 2 tokens without skip_bad is an error naming its line. 0 or -1 + err. */
int dk_pp_tokenize(const dk_tokenizer *tok, const dk_pp_texts *texts, int64_t context_len, int64_t max_tokens,
                   bool skip_bad, const char *path, int n_threads, dk_pp_tokens *out, dk_err *err);
void dk_pp_tokens_free(dk_pp_tokens *t);

#endif
