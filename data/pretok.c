/* pretok: see pretok.h. */
#include "pretok.h"

#include <utf8proc.h>

int gq_codepoint_class(int32_t cp) {
    if (cp < 0) return GQ_CC_OTHER;
    /* White_Space = Zs + Zl + Zp + U+0009..U+000D + U+0085 (PropList.txt). */
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return GQ_CC_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return GQ_CC_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return GQ_CC_NUMBER;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return GQ_CC_SPACE;
    default: return GQ_CC_OTHER;
    }
}

static inline int ascii_class(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return GQ_CC_LETTER;
    if (c >= '0' && c <= '9') return GQ_CC_NUMBER;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return GQ_CC_SPACE;
    return GQ_CC_OTHER;
}

int gq_char_class_at(const uint8_t *s, size_t len, size_t i, size_t *clen) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *clen = 1;
        return ascii_class(c);
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &cp);
    if (n <= 0) { /* invalid or truncated sequence: one byte, class "other" */
        *clen = 1;
        return GQ_CC_OTHER;
    }
    *clen = (size_t)n;
    return gq_codepoint_class(cp);
}

/* End of the run of characters of class `cls` starting at i. */
static inline size_t run_end(const uint8_t *s, size_t len, size_t i, int cls) {
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (ascii_class(c) != cls) break;
            i++;
        } else {
            size_t n;
            if (gq_char_class_at(s, len, i, &n) != cls) break;
            i += n;
        }
    }
    return i;
}

size_t gq_pretok_next(const uint8_t *s, size_t len, size_t i) {
    size_t n0;
    int c0 = gq_char_class_at(s, len, i, &n0);
    /* 's 't 're 've 'm 'll 'd */
    if (s[i] == '\'' && i + 1 < len) {
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < len) {
            uint8_t b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    /* " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" with the optional leading space */
    if (s[i] == ' ' && i + 1 < len) {
        size_t n1;
        int c1 = gq_char_class_at(s, len, i + 1, &n1);
        if (c1 != GQ_CC_SPACE) return run_end(s, len, i + 1 + n1, c1);
    }
    if (c0 != GQ_CC_SPACE) return run_end(s, len, i + n0, c0);
    /* "\s+(?!\S)" then "\s+": a whitespace run; if a non-space follows, the run gives back
     * its last character (so that " word" stays together), unless it is one character. */
    size_t j = i + n0, last = i;
    while (j < len) {
        size_t n;
        if (gq_char_class_at(s, len, j, &n) != GQ_CC_SPACE) break;
        last = j;
        j += n;
    }
    if (j == len || last == i) return j;
    return last;
}

size_t gq_pretok_safe_cut(const uint8_t *s, size_t len, size_t from) {
    if (from < 1) from = 1;
    for (size_t k = from; k + 1 < len; k++) {
        if (s[k] != ' ') continue;
        uint8_t p = s[k - 1], n = s[k + 1];
        if (p < 0x80 && ascii_class(p) != GQ_CC_SPACE && ascii_class(n) == GQ_CC_LETTER) return k;
    }
    return len;
}
