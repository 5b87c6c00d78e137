/* tok_unicode.h — the Unicode pieces the tokenizer needs beyond utf8proc: UTF-8 stepping and validation,
 * Rust's lossy UTF-8 decoding (String::from_utf8_lossy), the GPT-2 byte <-> char map, and the character
 * classes Rust uses (char::is_whitespace, char::is_numeric, regex \w). */
#ifndef DK_TOK_UNICODE_H
#define DK_TOK_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dk_strbuf dk_strbuf;

/* Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when it is not valid. */
size_t tok_utf8_valid_len(const unsigned char *s, size_t n);
/* Offset of the first invalid byte of s[0..n), or n when all of it is valid UTF-8. */
size_t tok_utf8_first_invalid(const char *s, size_t n);
/* Decodes the (valid) char at s, storing its length in *len. */
uint32_t tok_utf8_decode(const char *s, size_t *len);
/* Writes cp as UTF-8 into out (4 bytes room); returns its length. */
size_t tok_utf8_encode(uint32_t cp, char *out);
/* Length in bytes of the char starting with byte b (valid UTF-8 assumed). */
static inline size_t tok_utf8_char_len(unsigned char b) {
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}
/* Appends s[0..n) to out, replacing each maximal invalid subsequence by U+FFFD (Rust from_utf8_lossy). */
void tok_utf8_append_lossy(dk_strbuf *out, const char *s, size_t n);

/* GPT-2 bytes_to_unicode: the char a byte maps to, and the inverse (-1 for chars outside the map). */
uint32_t tok_byte_to_char(uint8_t b);
int tok_char_to_byte(uint32_t cp);
/* UTF-8 of the char byte b maps to (NUL-terminated, 1-2 bytes). */
const char *tok_byte_to_utf8(uint8_t b);

bool tok_is_whitespace(uint32_t cp);  /* Rust char::is_whitespace (Unicode White_Space) */
bool tok_is_numeric(uint32_t cp);     /* Rust char::is_numeric (Nd, Nl, No) */
/* Rust regex \w: Alphabetic (letters, Nl, Other_Alphabetic), marks, Nd, Pc, Join_Control. */
bool tok_is_word_char(uint32_t cp);

#endif
