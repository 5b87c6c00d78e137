#!/usr/bin/env python3
"""make_tokenizer_unicode_tables.py — the Unicode-version differences between HF `tokenizers` and the C
libraries we build on, measured by probing HF itself, written as range tables into
host/tokenizer/tok_unicode_hf.h.

Why: HF tokenizers 0.23 bundles Oniguruma with Unicode 16.0 data, while Debian 12's libonig 6.9.8 has Unicode
14.0; HF's normalizers use the `unicode-normalization-alignments` crate, whose tables predate Unicode 10, while
the installed utf8proc (2.8, Unicode 15.0) is newer; and Rust's char::to_lowercase is Unicode 16. Text with
characters assigned in between would get different ids. The C side closes the gaps with these tables:
  HF_EXTRA_LETTERS / HF_EXTRA_NUMBERS  code points in HF's \\p{L} / \\p{N} but not in Unicode 14.0's L / N:
                                       added to every \\p{L} / \\p{N} of a regex before Oniguruma compiles it
                                       (baseline: Python's unicodedata, which must be 14.0.0 like libonig 6.9.8)
  HF_NORM_INERT                        code points HF's NFC/NFD/NFKC/NFKD leave alone and never combine with
                                       (unknown to its tables) while utf8proc normalizes them: the C normalizer
                                       passes them through and normalizes the text between them
  HF_LOWERCASE                         code points whose HF Lowercase differs from utf8proc_tolower, with HF's
                                       result
utf8proc is called through ctypes, so the tables describe the library the C code links.

    python3 tools/make_tokenizer_unicode_tables.py      (about a minute)
"""
import ctypes
import os
import sys
import unicodedata

import tokenizers
from tokenizers import Regex, normalizers, pre_tokenizers

if unicodedata.unidata_version != "14.0.0":
    sys.exit("need Python's unicodedata at Unicode 14.0.0 (Python 3.11, like libonig 6.9.8); got " +
             unicodedata.unidata_version)

CPS = [c for c in range(1, 0x110000) if not (0xD800 <= c <= 0xDFFF) and c != 10]


def hf_class(cls):
    s = "".join(chr(c) for c in CPS)
    kept = set()
    for piece, _ in pre_tokenizers.Split(Regex(cls), "removed").pre_tokenize_str(s):
        kept.update(ord(ch) for ch in piece)
    return set(CPS) - kept


def unicode14(cats):
    return {c for c in CPS if unicodedata.category(chr(c)) in cats}


UTF8PROC = ctypes.CDLL("libutf8proc.so.2")
UTF8PROC.utf8proc_map.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
UTF8PROC.utf8proc_map.restype = ctypes.c_ssize_t
UTF8PROC.utf8proc_tolower.argtypes = [ctypes.c_int32]
UTF8PROC.utf8proc_tolower.restype = ctypes.c_int32
LIBC = ctypes.CDLL(None)
# utf8proc_option_t flags, as host/tokenizer/tok_normalize.c passes them
STABLE, COMPAT, COMPOSE, DECOMPOSE = 1 << 1, 1 << 2, 1 << 3, 1 << 4
FORMS = {"NFC": STABLE | COMPOSE, "NFD": STABLE | DECOMPOSE, "NFKC": STABLE | COMPOSE | COMPAT,
         "NFKD": STABLE | DECOMPOSE | COMPAT}


def utf8proc_normalize(form, text):
    data = text.encode("utf-8")
    out = ctypes.c_void_p()
    n = UTF8PROC.utf8proc_map(data, len(data), ctypes.byref(out), FORMS[form])
    assert n >= 0
    result = ctypes.string_at(out, n).decode("utf-8")
    LIBC.free(out)
    return result


def norm_inert():
    contexts = [lambda c: c, lambda c: "a" + c, lambda c: c + "\u0301", lambda c: "a\u0301" + c,
                lambda c: "a" + c + "\u0334", lambda c: "a\u0316" + c + "\u0301"]
    flagged = set()
    for form, hf in [("NFC", normalizers.NFC()), ("NFKC", normalizers.NFKC()), ("NFD", normalizers.NFD()),
                     ("NFKD", normalizers.NFKD())]:
        for f in contexts:
            s = "\n".join(f(chr(c)) for c in CPS)  # "\n" is an inert starter: pieces normalize independently
            a, b = hf.normalize_str(s).split("\n"), utf8proc_normalize(form, s).split("\n")
            assert len(a) == len(b) == len(CPS)
            flagged.update(c for c, x, y in zip(CPS, a, b) if x != y)
    # check the claim the C code relies on: HF leaves each flagged char unchanged and untouched by neighbours
    for c in flagged:
        for form in [normalizers.NFC(), normalizers.NFKD()]:
            assert form.normalize_str("a" + chr(c) + "b") == "a" + chr(c) + "b", hex(c)
    return flagged


def lowercase_exceptions():
    s = "\n".join(chr(c) for c in CPS)
    hf = normalizers.Lowercase().normalize_str(s).split("\n")
    assert len(hf) == len(CPS)
    out = {}
    for c, h in zip(CPS, hf):
        ours = "i\u0307" if c == 0x130 else chr(UTF8PROC.utf8proc_tolower(c))
        if h != ours:
            out[c] = h
    return out


def ranges(xs):
    out = []
    for x in sorted(xs):
        if out and out[-1][1] == x - 1:
            out[-1][1] = x
        else:
            out.append([x, x])
    return out


def c_table(name, xs, why):
    rs = ranges(xs)
    lines = ["/* %s (%d code points) */" % (why, len(xs)),
             "static const uint32_t %s[][2] = {" % name]
    row = []
    for a, b in rs:
        row.append("{0x%05X, 0x%05X}" % (a, b))
        if len(row) == 4:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("};")
    lines.append("enum { %s_COUNT = %d };" % (name, len(rs)))
    return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    letters = hf_class(r"\p{L}") - unicode14(("Lu", "Ll", "Lt", "Lm", "Lo"))
    numbers = hf_class(r"\p{N}") - unicode14(("Nd", "Nl", "No"))
    inert = norm_inert()
    lower = lowercase_exceptions()
    lower_rows = ["/* HF Lowercase where it differs from utf8proc_tolower (%d code points): code point, UTF-8 result */"
                  % len(lower), "static const struct { uint32_t cp; const char *lower; } HF_LOWERCASE[] = {"]
    for c in sorted(lower):
        lower_rows.append('    {0x%05X, "%s"},' % (c, "".join("\\x%02X" % b for b in lower[c].encode("utf-8"))))
    lower_rows.append("};")
    lower_rows.append("enum { HF_LOWERCASE_COUNT = %d };" % len(lower))
    text = """/* tok_unicode_hf.h — GENERATED by tools/make_tokenizer_unicode_tables.py (HF tokenizers %s); do not edit.
 * Unicode-version differences between HF tokenizers and our libonig (Unicode 14.0) / utf8proc (15.0): see the
 * script's docstring. Each table is sorted, inclusive [first, last] code point ranges. */
#ifndef DK_TOK_UNICODE_HF_H
#define DK_TOK_UNICODE_HF_H

#include <stdint.h>

%s

%s

%s

%s

#endif
""" % (tokenizers.__version__,
       c_table("HF_EXTRA_LETTERS", letters, "in HF's Oniguruma \\p{L}, not in Unicode 14.0 L"),
       c_table("HF_EXTRA_NUMBERS", numbers, "in HF's Oniguruma \\p{N}, not in Unicode 14.0 N"),
       c_table("HF_NORM_INERT", inert, "left alone by HF's Unicode normalizers, normalized by utf8proc"),
       "\n".join(lower_rows))
    path = os.path.join(here, "..", "host", "tokenizer", "tok_unicode_hf.h")
    open(path, "w").write(text)
    print("wrote", path, len(letters), len(numbers), len(inert), len(lower))


if __name__ == "__main__":
    main()
