/* text: small string codecs the API needs: UTF-8 validation, base64 (RFC 4648, standard
 * alphabet with padding), and strict unsigned / duration parsing for query parameters. */
#ifndef CLOUDLESS_UTIL_TEXT_H
#define CLOUDLESS_UTIL_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

bool text_valid_utf8(const char *s, size_t len);
/* The length of the valid UTF-8 character s starts with (1-4, within len), 0 when it does not
 * start with one: for code that copies text character by character and replaces what is not. */
size_t text_utf8_char_len(const char *s, size_t len);
void text_base64_encode(const void *data, size_t len, struct buf *out);
/* -1 on any invalid character or length. */
int text_base64_decode(const char *s, size_t len, struct buf *out);
/* Decimal digits only, no sign, no overflow. */
int text_parse_u64(const char *s, uint64_t *out);
/* "250", "250ms", "2s", "1m", "1h" -> milliseconds (1..3600000). */
int text_parse_duration_ms(const char *s, unsigned *out);

#endif
