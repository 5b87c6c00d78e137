/* tok_internal.h — the data structures the tokenizer's stages share (loaded components, pieces of text
 * flowing through the pipeline). Not part of the public API: only the files of host/tokenizer include it. */
#ifndef DK_TOK_INTERNAL_H
#define DK_TOK_INTERNAL_H

#include "tokenizer/tokenizer.h"
#include "tokenizer/tok_strmap.h"

#include <oniguruma.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------------------
 * Pieces: the list of strings a stage hands to the next. All text lives in one byte buffer. */
typedef struct tok_piece {
    size_t off, len;  /* bytes [off, off+len) of the list's buf */
    bool at_start;    /* starts at original offset 0 of the input (Metaspace prepend_scheme "first") */
} tok_piece;

typedef struct tok_pieces {
    char *buf;  /* [buf_cap] bytes, buf_len used */
    size_t buf_len, buf_cap;
    tok_piece *items;  /* [cap], n used */
    size_t n, cap;
} tok_pieces;

void tok_pieces_clear(tok_pieces *p);
void tok_pieces_free(tok_pieces *p);
/* Appends a piece with a copy of s[0..len) (empty pieces are dropped, as HF drops them). */
void tok_pieces_add(tok_pieces *p, const char *s, size_t len, bool at_start);
/* Starts a piece built in place: append bytes with tok_pieces_append, then tok_pieces_end. */
void tok_pieces_begin(tok_pieces *p);
void tok_pieces_append(tok_pieces *p, const char *s, size_t len);
void tok_pieces_end(tok_pieces *p, bool at_start);
/* Makes room for `extra` more bytes in buf (for writers that fill it directly). */
void tok_pieces_reserve(tok_pieces *p, size_t extra);
static inline const char *tok_piece_text(const tok_pieces *p, size_t i) { return p->buf + p->items[i].off; }

/* ------------------------------------------------------------------------------------------------------
 * Patterns (Split, Replace): a literal string or an Oniguruma regex, optionally inverted. */
typedef struct tok_pattern {
    char *literal;      /* non-NULL: literal pattern (non-empty) */
    size_t literal_len;
    regex_t *regex;     /* non-NULL: compiled regex (Ruby syntax, UTF-8) */
    bool invert;
} tok_pattern;

/* One span of a string: [start, end) and whether the pattern matched it. */
typedef struct tok_span {
    size_t start, end;
    bool is_match;
} tok_span;

/* HF Pattern::find_matches: spans covering s[0..len) in order (an empty string gives one unmatched empty span).
 * *spans is grown as needed (capacity *cap). Returns the number of spans. */
size_t tok_pattern_find(const tok_pattern *pat, const char *s, size_t len, tok_span **spans, size_t *cap);
/* The same with a caller-owned Oniguruma match region (reused across calls; NULL = allocate one). */
size_t tok_pattern_find_r(const tok_pattern *pat, const char *s, size_t len, tok_span **spans, size_t *cap,
                          OnigRegion *region);
void tok_pattern_free(tok_pattern *pat);
/* Non-zero (an Oniguruma error code, its text in msg) when a regex search on this thread failed since the
 * last call (e.g. the backtracking limit on a run of ~10M spaces); clears it. See tok_pattern.c. */
int tok_pattern_take_error(char *msg, size_t cap);
/* True while such a failure is pending (the encoder then stops instead of encoding what is left). */
bool tok_pattern_failed(void);

/* ------------------------------------------------------------------------------------------------------
 * Components. */
typedef enum {
    TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD, TOK_NORM_LOWERCASE, TOK_NORM_STRIP,
    TOK_NORM_REPLACE, TOK_NORM_PREPEND, TOK_NORM_SEQUENCE
} tok_norm_type;

typedef struct tok_normalizer {
    tok_norm_type type;
    bool strip_left, strip_right;   /* Strip */
    tok_pattern pattern;            /* Replace */
    char *content;                  /* Replace: replacement; Prepend: prefix */
    struct tok_normalizer *children; /* Sequence: [n_children] */
    size_t n_children;
} tok_normalizer;

typedef enum {
    TOK_SPLIT_ISOLATED, TOK_SPLIT_REMOVED, TOK_SPLIT_MERGED_WITH_PREVIOUS, TOK_SPLIT_MERGED_WITH_NEXT,
    TOK_SPLIT_CONTIGUOUS
} tok_split_behavior;

typedef enum {
    TOK_PRE_SPLIT, TOK_PRE_BYTE_LEVEL, TOK_PRE_METASPACE, TOK_PRE_DIGITS, TOK_PRE_WHITESPACE,
    TOK_PRE_WHITESPACE_SPLIT, TOK_PRE_SEQUENCE
} tok_pre_type;

typedef enum { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER } tok_prepend_scheme;

typedef struct tok_pretokenizer {
    tok_pre_type type;
    tok_pattern pattern;            /* Split; ByteLevel with use_regex (the GPT-2 regex) */
    tok_split_behavior behavior;    /* Split */
    bool add_prefix_space;          /* ByteLevel */
    bool use_regex;                 /* ByteLevel */
    char replacement[8];            /* Metaspace: the replacement char as UTF-8 */
    uint32_t replacement_cp;
    tok_prepend_scheme prepend_scheme; /* Metaspace */
    bool split;                     /* Metaspace */
    bool individual_digits;         /* Digits */
    struct tok_pretokenizer *children; /* Sequence: [n_children] */
    size_t n_children;
} tok_pretokenizer;

typedef enum {
    TOK_DEC_BYTE_LEVEL, TOK_DEC_METASPACE, TOK_DEC_REPLACE, TOK_DEC_BYTE_FALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP,
    TOK_DEC_SEQUENCE
} tok_dec_type;

typedef struct tok_decoder {
    tok_dec_type type;
    tok_pattern pattern;            /* Replace */
    char *content;                  /* Replace: replacement */
    uint32_t strip_content;         /* Strip: the char stripped */
    size_t strip_start, strip_stop; /* Strip */
    uint32_t replacement_cp;        /* Metaspace */
    tok_prepend_scheme prepend_scheme; /* Metaspace */
    struct tok_decoder *children;   /* Sequence: [n_children] */
    size_t n_children;
} tok_decoder;

/* Post-processor: only the `single` template matters for ids (ByteLevel post-processing adjusts offsets). */
typedef struct tok_post {
    bool present;          /* a TemplateProcessing was found */
    int32_t *before;       /* ids emitted before $A: [n_before] */
    size_t n_before;
    int32_t *after;        /* ids emitted after $A: [n_after] */
    size_t n_after;
} tok_post;

typedef struct tok_added_token {
    int32_t id;
    char *content;
    size_t content_len;
    char *token_string; /* what id_to_token/decode see: the normalized content when normalized (as HF) */
    bool single_word, lstrip, rstrip, normalized, special;
} tok_added_token;

/* Byte trie for leftmost-longest matching of added tokens. Node 0 is the root. */
typedef struct tok_trie_node {
    int32_t first_child;   /* node index or -1 */
    int32_t next_sibling;  /* node index or -1 */
    int32_t token;         /* index into the added token array, or -1 */
    uint8_t byte;
} tok_trie_node;

typedef struct tok_trie {
    tok_trie_node *nodes;  /* [n_nodes] */
    size_t n_nodes, cap;
    int32_t root_child[256]; /* fast path for the first byte */
} tok_trie;

/* The BPE model. */
typedef struct tok_bpe {
    tok_strmap vocab;            /* token -> id */
    char **id_to_token;          /* [n_ids] vocab strings (NULL for ids not in the vocab) */
    int32_t n_ids;               /* 1 + largest vocab id */
    tok_pairmap merges;          /* (left id, right id) -> (rank, merged id) */
    int32_t unk_id;              /* -1 if no unk token */
    bool fuse_unk, byte_fallback, ignore_merges;
    char *continuing_subword_prefix; /* NULL if none */
    char *end_of_word_suffix;        /* NULL if none */
    int32_t byte_ids[256];       /* byte_fallback: id of "<0xHH>" or -1 */
    int32_t char_ids_ascii[128]; /* id of each one-byte char (no prefix/suffix), or -1: a fast path */
} tok_bpe;

struct dk_tokenizer {
    char *name;                   /* the path it was loaded from */
    tok_bpe bpe;
    tok_normalizer *normalizer;   /* NULL if none */
    tok_pretokenizer *pretokenizer; /* NULL if none */
    tok_decoder *decoder;         /* NULL if none: tokens are joined with " " */
    tok_post post;
    tok_added_token *added;       /* [n_added], in file order */
    size_t n_added;
    tok_strmap added_by_content;  /* content -> index into added */
    int32_t *added_by_id;         /* [vocab_size] index into added or -1 */
    tok_trie trie_raw;            /* tokens with normalized == false */
    tok_trie trie_normalized;     /* tokens with normalized == true, by their normalized content */
    int32_t vocab_size;           /* max(bpe ids, added ids) + 1 */
    char *config_json;            /* tokenizer_config.json text or NULL */
    dk_tok_worker *default_worker;
};

/* ------------------------------------------------------------------------------------------------------
 * Stage functions. */

/* Normalizes s[0..len) (valid UTF-8) into *out, replacing its contents; out->data is never NULL after. */
typedef struct dk_strbuf dk_strbuf;
void tok_normalize(const tok_normalizer *n, const char *s, size_t len, dk_strbuf *out);

/* Scratch memory the pre-tokenizer reuses between calls. */
typedef struct tok_pre_scratch {
    tok_pieces tmp;
    OnigRegion *region;  /* reused by every regex search of this worker */
    tok_span *spans;
    size_t spans_cap;
} tok_pre_scratch;
void tok_pre_scratch_free(tok_pre_scratch *s);
/* Runs the pre-tokenizer over *pieces in place (using *tmp as the second buffer). */
void tok_pretokenize(const tok_pretokenizer *pre, tok_pieces *pieces, tok_pre_scratch *scratch);

/* Added-token splitting (HF AddedVocabulary::find_matches). Segments of s[0..len): token >= 0 for an added
 * token (index into tok->added), -1 for ordinary text. */
typedef struct tok_segment {
    size_t start, end;
    int32_t token;
} tok_segment;
size_t tok_added_split(const dk_tokenizer *tok, const tok_trie *trie, const char *s, size_t len, tok_segment **segs,
                       size_t *cap);
void tok_trie_init(tok_trie *t);
void tok_trie_insert(tok_trie *t, const char *s, size_t len, int32_t token);
void tok_trie_free(tok_trie *t);

/* BPE of one word, appending ids to *out. The cache argument may be NULL. */
typedef struct tok_word_cache tok_word_cache;
tok_word_cache *tok_word_cache_new(void);
void tok_word_cache_free(tok_word_cache *c);
typedef struct tok_bpe_scratch tok_bpe_scratch;
tok_bpe_scratch *tok_bpe_scratch_new(void);
void tok_bpe_scratch_free(tok_bpe_scratch *s);
void tok_bpe_word(const tok_bpe *bpe, const char *word, size_t len, tok_word_cache *cache, tok_bpe_scratch *scratch,
                  dk_tok_ids *out);

/* Component loading and freeing (tok_load.c) */
void tok_normalizer_free(tok_normalizer *n);
void tok_pretokenizer_free(tok_pretokenizer *p);
void tok_decoder_free(tok_decoder *d);
/* Compiles an Oniguruma regex as HF does (Ruby syntax, UTF-8, no options). 0 or -1 with err. */
int tok_regex_compile(const char *pattern, size_t len, regex_t **out, dk_err *err);

#endif
