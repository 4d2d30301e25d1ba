/* pretok: GPT-2's pre-tokenizer, the regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * written out as a scanner over UTF-8 bytes (leftmost-first alternation, greedy runs, the
 * (?!\S) lookahead as "give back the last whitespace character"). Character classes come
 * from utf8proc's general categories; \s is Unicode White_Space. Bytes that are not valid
 * UTF-8 are one character each of the "other" class, so any byte string can be split. */
#ifndef GQ_PRETOK_H
#define GQ_PRETOK_H

#include <stddef.h>
#include <stdint.h>

enum gq_char_class { GQ_CC_OTHER = 0, GQ_CC_LETTER = 1, GQ_CC_NUMBER = 2, GQ_CC_SPACE = 3 };

/* Class of one code point (-1 = an invalid byte, class "other"). */
int gq_codepoint_class(int32_t cp);

/* Class of the character starting at s[i] (i < len); its length in bytes goes to *clen. */
int gq_char_class_at(const uint8_t *s, size_t len, size_t i, size_t *clen);

/* End (exclusive) of the pre-token that starts at s[i], i < len. */
size_t gq_pretok_next(const uint8_t *s, size_t len, size_t i);

/* A position >= from where the text can be cut without changing the pre-tokens on either
 * side (a space preceded by an ASCII non-space and followed by an ASCII letter), or len. */
size_t gq_pretok_safe_cut(const uint8_t *s, size_t len, size_t from);

#endif
