/* adl_inputs.h — the token sequences the Activation Difference Lens runs on (seed_spec §5.2, the seed's
 * load_and_tokenize_dataset and load_and_tokenize_chat_dataset), read from a local JSON Lines dataset in file
 * order (the seed shuffles with cfg.seed unless streaming; diffkit reads the file as the seed streams it):
 *
 *   pretraining-style (is_chat false): records with a non-blank text column; the text cut to n·10 characters
 *     (Unicode code points, as Python slices a str); encoded with the tokenizer's special tokens (BOS when the
 *     tokenizer adds one); kept when it gives at least n tokens, as its first n tokens. Position labels
 *     0..n-1 are token indices 0..n-1.
 *   chat (is_chat true): records whose first message is the user's (others skipped; the second must be the
 *     assistant's); assistant content cut to n·10 characters; user_ids = the template of [user] with the
 *     generation prompt, dropped when over 512 tokens; full_ids = the template of [user, assistant]; the
 *     assistant starts at a = len(user_ids); kept when full_ids has at least n tokens from a, as
 *     full_ids[:a + n]. Labels -k..-1, 0..n-1 (k = pre_assistant_k) are token indices a + label.
 * Both stop at max_samples kept sequences. */
#ifndef DK_METHODS_ADL_INPUTS_H
#define DK_METHODS_ADL_INPUTS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

typedef struct adl_input_options {
    const char *path;             /* the dataset's JSON Lines file (plain or gzip) */
    const char *name;             /* its short name, for messages */
    bool is_chat;
    const char *text_column;      /* pretraining-style */
    const char *messages_column;  /* chat */
    dk_chat_family family;        /* chat */
    const char *bos_token;        /* chat: the template's BOS, NULL = the family's */
    int64_t n, pre_assistant_k, max_samples;
    int64_t max_user_tokens;      /* 512 in the seed */
    int64_t debug_print_samples;  /* log the first N kept texts (0: none) */
    int n_threads;                /* tokenizer threads */
} adl_input_options;

typedef struct adl_inputs {
    int64_t n_seqs;               /* kept sequences */
    int64_t n_pos;                /* positions per sequence P: n, or pre_assistant_k + n */
    int32_t *ids;                 /* (offsets[n_seqs]) the sequences, packed */
    int64_t *offsets;             /* (n_seqs + 1) */
    int64_t *positions;           /* (n_seqs, P) token index within its sequence of each label */
    int64_t *labels;              /* (P) position labels */
    int64_t *line;                /* (n_seqs) 1-based line of each sequence's record */
    int64_t n_records;            /* records read */
    int64_t n_skipped;            /* records skipped: blank text, first message not the user's, user turn too long */
    int64_t n_short;              /* records with fewer than n tokens (of the assistant's, for chat) */
    uint64_t content_hash;        /* FNV-1a of the file's bytes */
} adl_inputs;

/* 0, or -1 with err (code 1 naming the file and line for malformed records and files; code 2 when no
 * record gives a sequence of n tokens, saying how many were read and what to change). */
int adl_inputs_read(const adl_input_options *opt, const dk_tokenizer *tok, adl_inputs *out, dk_err *err);
void adl_inputs_free(adl_inputs *in);

#endif
