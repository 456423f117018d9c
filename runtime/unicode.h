/* Unicode helpers for the tokenizers: UTF-8 decoding the way llama.cpp does it
 * (an invalid byte becomes U+FFFD and is skipped alone), and the coarse
 * general-category class of a code point from the generated run table. */
#ifndef TERN_RUNTIME_UNICODE_H
#define TERN_RUNTIME_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tern_ucat {
    TERN_UCAT_UNASSIGNED = 0,
    TERN_UCAT_CONTROL = 1,
    TERN_UCAT_LETTER = 2,
    TERN_UCAT_MARK = 3,
    TERN_UCAT_NUMBER = 4,
    TERN_UCAT_PUNCT = 5,
    TERN_UCAT_SYMBOL = 6,
    TERN_UCAT_SEPARATOR = 7,
} tern_ucat;

extern const uint32_t tern_unicode_runs[];
extern const uint32_t tern_unicode_n_runs;

tern_ucat tern_unicode_cat(uint32_t cp);
/* The White_Space property (PropList.txt): \t..\r, space, U+0085, U+00A0, ... */
int tern_unicode_is_space(uint32_t cp);
/* Length of the UTF-8 sequence a lead byte announces (1 for stray bytes). */
size_t tern_utf8_len(uint8_t lead);
/* Decodes one code point at s[*pos] (n bytes in all), advances *pos; an
 * invalid or truncated sequence yields 0xFFFD and advances by one byte. */
uint32_t tern_utf8_decode(const uint8_t *s, size_t n, size_t *pos);
/* Writes cp as UTF-8 into out (4 bytes room), returns the length. */
size_t tern_utf8_encode(uint32_t cp, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
