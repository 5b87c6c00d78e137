/* tok_unicode.c — UTF-8 helpers, the GPT-2 byte map and character classes (see tok_unicode.h). */
#include "tokenizer/tok_unicode.h"

#include "core/error.h"
#include "core/strutil.h"
#include "tokenizer/tokenizer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

size_t tok_utf8_valid_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return need;
}

size_t tok_utf8_first_invalid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = tok_utf8_valid_len(u + i, n - i);
        if (!l) return i;
        i += l;
    }
    return n;
}

size_t dk_utf8_first_invalid(const char *s, size_t n) { return tok_utf8_first_invalid(s, n); }

bool dk_utf8_can_occur(const char *s, size_t n) {
    if (tok_utf8_first_invalid(s, n) == n) return true;
    /* Mend a cut character: prepend a lead byte (when s starts inside a character) and append continuation
     * bytes (when it ends inside one); 0x80, 0x90 and 0xA0 cover the second-byte ranges of every lead. */
    const unsigned char *u = (const unsigned char *)s;
    bool starts_inside = u[0] >= 0x80 && u[0] <= 0xBF;
    static const unsigned char second[3] = {0x80, 0x90, 0xA0};
    char *buf = dk_malloc(n + 4);
    bool found = false;
    for (int lead = starts_inside ? 0xC2 : 0; lead <= (starts_inside ? 0xF4 : 0); lead++) {
        size_t p = 0;
        if (starts_inside) buf[p++] = (char)lead;
        memcpy(buf + p, s, n);
        for (int extra = 0; extra <= 3; extra++)
            for (int c = 0; c < (extra ? 3 : 1); c++) {
                size_t len = p + n;
                for (int k = 0; k < extra; k++) buf[len++] = (char)(k == 0 ? second[c] : 0x80);
                found = found || tok_utf8_first_invalid(buf, len) == len;
            }
    }
    free(buf);
    return found;
}

uint32_t tok_utf8_decode(const char *s, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *len = 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *len = 2;
        return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *len = 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
           (u[3] & 0x3F);
}

size_t tok_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Maximal-subpart replacement, as Rust's Utf8Chunks: an invalid sequence is the longest prefix of a
 * possibly valid sequence (lead byte plus the continuation bytes allowed after it), or one byte. */
void tok_utf8_append_lossy(dk_strbuf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t l = u[i] < 0x80 ? 1 : tok_utf8_valid_len(u + i, n - i);
        if (l) {
            i += l;
            continue;
        }
        dk_strbuf_append_n(out, s + run, i - run);
        unsigned char b = u[i];
        size_t need = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) need = 2;
        else if (b >= 0xE0 && b <= 0xEF) {
            need = 3;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 4;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        }
        size_t k = 1;
        if (need) {
            if (k < n - i && u[i + k] >= lo && u[i + k] <= hi) {
                k++;
                while (k < need && k < n - i && u[i + k] >= 0x80 && u[i + k] <= 0xBF) k++;
            }
        }
        dk_strbuf_append(out, "\xEF\xBF\xBD");
        i += k;
        run = i;
    }
    dk_strbuf_append_n(out, s + run, n - run);
}

/* ---- GPT-2 byte map ---- */
static uint32_t byte_char[256];
static char byte_utf8[256][3];
static int16_t char_byte[0x200]; /* every mapped char is < U+0144 */
static pthread_once_t byte_map_once = PTHREAD_ONCE_INIT;

static void byte_map_init(void) {
    for (int i = 0; i < 0x200; i++) char_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool kept = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_char[b] = kept ? (uint32_t)b : (uint32_t)(0x100 + n++);
        char_byte[byte_char[b]] = (int16_t)b;
        size_t l = tok_utf8_encode(byte_char[b], byte_utf8[b]);
        byte_utf8[b][l] = '\0';
    }
}

uint32_t tok_byte_to_char(uint8_t b) {
    pthread_once(&byte_map_once, byte_map_init);
    return byte_char[b];
}

int tok_char_to_byte(uint32_t cp) {
    pthread_once(&byte_map_once, byte_map_init);
    return cp < 0x200 ? char_byte[cp] : -1;
}

const char *tok_byte_to_utf8(uint8_t b) {
    pthread_once(&byte_map_once, byte_map_init);
    return byte_utf8[b];
}

bool tok_is_whitespace(uint32_t cp) {
    if (cp >= 0x09 && cp <= 0x0D) return true;
    switch (cp) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

bool tok_is_numeric(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool tok_is_word_char(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp == 0x200C || cp == 0x200D) return true; /* Join_Control */
    /* Other_Alphabetic symbols (circled / squared Latin letters) */
    if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) ||
        (cp >= 0x1F170 && cp <= 0x1F189))
        return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}
